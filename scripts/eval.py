"""Score the real build and ask code on a retrieval set, or the embedder on an STS set.

    python -m scripts.eval SET_DIR [--mode MODE|all] [--limit N] [--k 10] [--index-dir DIR]
                                   [--model DIR] [--ann always] [--chunks pooled]
                                   [--passages int8] [--sections averaged]
    python -m scripts.eval --table scripts/eval_results.jsonl

Progress goes to stderr; each result is one JSON line on stdout (the last line is the result),
stamped with commit, date, arguments and machine (scripts.common.emit).
"""

from __future__ import annotations

import hashlib
import inspect
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import click
import numpy as np

from indexer import Hit, Index, IndexerError, config, search
from indexer.cli import choice_option
from indexer.config import AnnMode, ChunkVectors, PassagePrecision, SectionVectors
from indexer.vectors import Policy
from scripts.common import SetError, copy_index, emit, log, read_jsonl

#: Retrieval modes the tool offers; "all" runs each of them in one process.
MODES: tuple[str, ...] = getattr(search, "MODES", ("dense", "keyword", "hybrid"))
#: Hits asked for per passage kept, so passages with many matching sentences still leave k stems.
OVERFETCH = 5
RECALL_AT = (1, 5, 10)
MRR_AT = 10
METRICS = (*(f"recall@{n}" for n in RECALL_AT), f"mrr@{MRR_AT}")
QUERY_PROGRESS_EVERY = 200


# -- metrics (pure functions, imported by the tests)


def passage_ranking(paths: Iterable[str], *, k: int) -> list[str]:
    """Passage ids (file stems) in hit order, each once at its best rank, at most k."""
    ranking: list[str] = []
    for path in paths:
        stem = Path(path).stem
        if stem not in ranking:
            ranking.append(stem)
            if len(ranking) == k:
                break
    return ranking


def recall_at(ranking: Sequence[str], gold: str, n: int) -> float:
    """1.0 when the gold passage is among the first n, else 0.0."""
    return float(gold in ranking[:n])


def reciprocal_rank(ranking: Sequence[str], gold: str, n: int = MRR_AT) -> float:
    """1 / rank of the gold passage within the first n, 0.0 when absent."""
    top = list(ranking[:n])
    return 1.0 / (top.index(gold) + 1) if gold in top else 0.0


def retrieval_scores(rankings: Sequence[Sequence[str]], golds: Sequence[str]) -> dict[str, float]:
    """Mean recall@1/5/10 and MRR@10 over queries."""
    pairs = list(zip(rankings, golds, strict=True))
    if not pairs:
        return {**{f"recall@{n}": 0.0 for n in RECALL_AT}, f"mrr@{MRR_AT}": 0.0}
    scores = {
        f"recall@{n}": float(np.mean([recall_at(r, g, n) for r, g in pairs])) for n in RECALL_AT
    }
    scores[f"mrr@{MRR_AT}"] = float(np.mean([reciprocal_rank(r, g) for r, g in pairs]))
    return scores


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + 1 + end) / 2
            start = end
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of tie-averaged ranks (0.0 if either is constant)."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denominator) if denominator else 0.0


# -- reading sets


@dataclass
class Query:
    """One retrieval question and the passage that answers it."""

    question: str
    passage_id: str


def set_kind(set_dir: Path) -> str:
    """ "retrieval" or "sts"; a clear error for anything else."""
    if (set_dir / "sts.jsonl").is_file():
        return "sts"
    needed = ("queries.jsonl", "passages.jsonl", "docs")
    if all((set_dir / name).exists() for name in needed):
        return "retrieval"
    raise SetError(
        f"{set_dir} is not an eval set: expected sts.jsonl, or queries.jsonl + passages.jsonl "
        "+ docs/"
    )


def read_queries(set_dir: Path, limit: int | None) -> list[Query]:
    """The first `limit` queries in file order (all when limit is None)."""
    queries: list[Query] = []
    for record in read_jsonl(set_dir / "queries.jsonl"):
        if limit is not None and len(queries) >= limit:
            break
        try:
            queries.append(Query(record["question"], str(record["passage_id"])))
        except KeyError as exc:
            raise SetError(f"{set_dir / 'queries.jsonl'}: a query has no {exc}") from None
    return queries


def count_lines(path: Path) -> int:
    """Non-blank lines of a file."""
    with path.open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())


# -- running


#: The name default_index_dir gives an index: the set's folder name, "-", 12 hex digits.
KEPT_INDEX = re.compile(r"(?P<set>.+)-[0-9a-f]{12}")


def default_index_dir(set_dir: Path, model: Path | None) -> Path:
    """A cached index per (set, model) under the indexer cache, so re-runs only stat files."""
    model_key = str(model.resolve()) if model else "default"
    digest = hashlib.sha256(f"{set_dir.resolve()}\n{model_key}".encode()).hexdigest()[:12]
    return config.cache_dir() / "eval" / f"{set_dir.resolve().name}-{digest}"


def set_name_of(index_dir: Path) -> str | None:
    """The eval set an index default_index_dir named was built for; None for any other
    folder (a copy variant_index_dir made, an index of one's own)."""
    kept = KEPT_INDEX.fullmatch(index_dir.name)
    return kept["set"] if kept else None


#: What `index status` calls the outcome of each Variant option, reported beside the scores.
STATUS_KEYS = {
    "ann": "vector_index",
    "chunks": "chunk_vectors",
    "passages": "passage_precision",
    "sections": "section_vectors",
}


@dataclass(frozen=True)
class Variant:
    """How the evaluated index is built unlike the tool's default (`index build` options),
    in a copy beside the cached one (variant_index_dir); all None: the index as it is."""

    ann: AnnMode | None = None
    chunks: ChunkVectors | None = None
    passages: PassagePrecision | None = None
    sections: SectionVectors | None = None

    def built_as(self, status: dict[str, object]) -> dict[str, object]:
        """What `index status` says of each option this variant sets."""
        return {key: status[key] for name, key in STATUS_KEYS.items() if getattr(self, name)}

    @property
    def name(self) -> str:
        """The copy's suffix, e.g. "chunks-pooled-passages-int8"; "" for none."""
        chosen = ((f.name, getattr(self, f.name)) for f in fields(self))
        return "-".join(f"{name}-{value}" for name, value in chosen if value)


def variant_index_dir(index_dir: Path, variant: str) -> Path:
    """The index evaluated with `--ann`, `--chunks`, `--passages` or `--sections`: a sibling of
    the default one, first copied from it, so the variant's build re-embeds only what the
    variant changes (nothing for --ann or --sections, the chunks for --chunks, chunks and
    sections for --passages)."""
    copy = index_dir.with_name(f"{index_dir.name}-{variant}")
    if not (copy / config.DB_NAME).exists() and (index_dir / config.DB_NAME).exists():
        log(f"copying {index_dir} to {copy}")
        shutil.rmtree(copy, ignore_errors=True)
        copy_index(index_dir, copy)
    return copy


def build_progress(total: int) -> Callable[[int], None]:
    """Print embedding progress to stderr about every 10%."""
    done = 0
    step = max(total // 10, 1)

    def tick(n: int) -> None:
        nonlocal done
        before, done = done, done + n
        if done // step > before // step or done == total:
            log(f"embedding {done}/{total} sentences")

    return tick


def supports_mode(index: Index) -> bool:
    """True once `Index.ask` takes a `mode` keyword."""
    return "mode" in inspect.signature(index.ask).parameters


def ask_passages(index: Index, question: str, *, k: int, mode: str | None) -> list[str]:
    """The k best distinct passages for a question, by the real ask code."""
    extra = {"mode": mode} if mode else {}
    hits: list[Hit] = index.ask(question, k=k * OVERFETCH, context=0, **extra)
    return passage_ranking((hit.path for hit in hits), k=k)


def run_queries(
    index: Index, queries: Sequence[Query], *, k: int, mode: str | None
) -> tuple[dict[str, float], float]:
    """Scores over all queries and the seconds spent asking."""
    start = time.perf_counter()
    rankings: list[list[str]] = []
    for number, query in enumerate(queries, 1):
        rankings.append(ask_passages(index, query.question, k=k, mode=mode))
        if number % QUERY_PROGRESS_EVERY == 0:
            log(f"[{mode or 'default'}] {number}/{len(queries)} queries")
    seconds = time.perf_counter() - start
    return retrieval_scores(rankings, [q.passage_id for q in queries]), seconds


def modes_to_run(index: Index, mode: str | None) -> list[str | None]:
    """[None] for the tool's default, every mode for "all", else the one asked for."""
    if mode is None:
        return [None]
    if not supports_mode(index):
        raise click.ClickException(
            f"--mode {mode}: this version of indexer's Index.ask has no `mode` yet; "
            "run without --mode"
        )
    return list(MODES) if mode == "all" else [mode]


def mode_name(mode: str | None) -> str:
    """The name printed for a mode; the tool's default when none was given."""
    return mode or getattr(config, "DEFAULT_MODE", None) or "default"


def evaluate_retrieval(
    set_dir: Path,
    index: Index,
    *,
    mode: str | None,
    limit: int | None,
    k: int,
    variant: Variant | None = None,
) -> Iterator[dict[str, object]]:
    """Build (incrementally) the set's docs, then one result per mode."""
    variant = variant or Variant()
    modes = modes_to_run(index, mode)
    queries = read_queries(set_dir, limit)
    log(f"building {index.path} from {set_dir / 'docs'}")
    start = time.perf_counter()
    # With --ann, a fresh vector base on every run: the copy kept from an earlier run would
    # keep the lists and nprobe that the earlier code chose.
    policy = Policy(ann=variant.ann, compact=True) if variant.ann else None
    report = index.build(
        set_dir / "docs",
        progress=build_progress,
        vector_policy=policy,
        chunks=variant.chunks,
        passages=variant.passages,
        sections=variant.sections,
    )
    build_seconds = time.perf_counter() - start
    built_as = variant.built_as(index.status())
    log(
        f"index ready: {len(report.added)} added, {len(report.changed)} changed, "
        f"{report.unchanged} unchanged files; {report.embedded} sentences embedded "
        f"in {build_seconds:.1f} s"
    )
    passage_count = count_lines(set_dir / "passages.jsonl")
    for each in modes:
        scores, seconds = run_queries(index, queries, k=k, mode=each)
        yield {
            "set": set_dir.resolve().name,
            "mode": mode_name(each),
            "queries": len(queries),
            "passages": passage_count,
            **scores,
            "seconds": seconds,
            "build_seconds": build_seconds,
            **built_as,
        }


def evaluate_sts(set_dir: Path, index: Index, *, limit: int | None) -> dict[str, object]:
    """Spearman of cosine(query: s1, query: s2) with the gold scores."""
    pairs = list(read_jsonl(set_dir / "sts.jsonl"))[:limit]
    embedder = index.embedder
    start = time.perf_counter()
    left = embedder.embed([embedder.query_text(p["s1"]) for p in pairs])
    right = embedder.embed([embedder.query_text(p["s2"]) for p in pairs])
    cosines = np.sum(unit(left) * unit(right), axis=1)
    rho = spearman(cosines.tolist(), [float(p["score"]) for p in pairs])
    seconds = time.perf_counter() - start
    return {"set": set_dir.resolve().name, "pairs": len(pairs), "spearman": rho, "seconds": seconds}


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (the embedder usually does this already)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def rounded(result: dict[str, object]) -> dict[str, object]:
    """Floats rounded to 4 digits."""
    return {key: round(v, 4) if isinstance(v, float) else v for key, v in result.items()}


# -- the results table


def provenance(results: Sequence[dict]) -> str:
    """The commits and days the results were measured at, from their stamps."""
    commits = dict.fromkeys(
        f"`{r.get('commit', 'unknown')}`" + (" with uncommitted changes" if r.get("dirty") else "")
        for r in results
    )
    days = sorted({str(r["date"])[:10] for r in results if r.get("date")})
    when = f"{days[0]} to {days[-1]}" if len(days) > 1 else days[0] if days else "date unknown"
    return f"{'Commit' if len(commits) == 1 else 'Commits'} {', '.join(commits)}, {when}."


def results_table(results: Sequence[dict]) -> str:
    """A Markdown table of retrieval results, then one line per STS result."""
    lines = [
        provenance(results),
        "",
        "| set | mode | queries | R@1 | R@5 | R@10 | MRR@10 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "recall@1" in r:
            cells = [r["set"], r["mode"], r["queries"], *(f"{r[m]:.3f}" for m in METRICS)]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    for r in results:
        if "spearman" in r:
            lines.append(f"\n{r['set']}: Spearman {r['spearman']:.3f} over {r['pairs']} pairs.")
    return "\n".join(lines)


# -- the command


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("set_dir", required=False, type=click.Path(path_type=Path))
@click.option(
    "--mode",
    type=click.Choice([*MODES, "all"]),
    default=None,
    help="Retrieval mode; default: the tool's default. `all` runs every mode, one JSON line each.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N queries (or pairs).")
@click.option(
    "--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Passages kept."
)
@click.option(
    "--index-dir",
    type=click.Path(path_type=Path),
    help="Index to build/reuse; default: a cached one under the indexer cache, keyed by set and "
    "model.",
)
@click.option(
    "--model", type=click.Path(path_type=Path), help="Model directory; default: the default model."
)
@choice_option(
    "--ann",
    choices=config.ANN_MODES,
    help="Vector search to evaluate (index build --ann), in a copy of the index beside it; "
    "`always` forces the approximate path at any size. Default: the index as the tool builds it.",
)
@choice_option(
    "--chunks",
    choices=config.CHUNK_VECTORS,
    help="How chunk vectors are made (index build --chunks), in a copy of the index beside it. "
    "Default: the index as the tool builds it.",
)
@choice_option(
    "--passages",
    choices=config.PASSAGE_PRECISIONS,
    help="Which copy of the model makes chunk and section vectors (index build "
    "--passage-precision), in a copy of the index beside it. Default: the index as the tool "
    "builds it.",
)
@choice_option(
    "--sections",
    choices=config.SECTION_VECTORS,
    help="How section vectors are made (index build --sections), in a copy of the index beside "
    "it. Default: the index as the tool builds it.",
)
@click.option(
    "--table",
    "table",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Print a Markdown table of the JSON lines in this file instead of evaluating.",
)
def main(
    set_dir: Path | None,
    mode: str | None,
    limit: int | None,
    k: int,
    index_dir: Path | None,
    model: Path | None,
    ann: AnnMode | None,
    chunks: ChunkVectors | None,
    passages: PassagePrecision | None,
    sections: SectionVectors | None,
    table: Path | None,
) -> None:
    """Evaluate SET_DIR: a retrieval set (recall@1/5/10, MRR@10 at passage level, hits mapped
    to passages by file stem) or an STS set (Spearman of cosine similarity with the gold score;
    both sentences get the model's query prefix, as e5's model card advises for symmetric
    tasks). Progress on stderr; one JSON line per result on stdout."""
    if table:
        click.echo(results_table(list(read_jsonl(table))))
        return
    if set_dir is None:
        raise click.UsageError("give SET_DIR (or --table FILE)")
    variant = Variant(ann, chunks, passages, sections)
    try:
        for result in evaluate(
            set_dir, mode=mode, limit=limit, k=k, index_dir=index_dir, model=model, variant=variant
        ):
            emit(rounded(result))
    except IndexerError as exc:
        raise click.ClickException(str(exc)) from None


def evaluate(
    set_dir: Path,
    *,
    mode: str | None,
    limit: int | None,
    k: int,
    index_dir: Path | None,
    model: Path | None,
    variant: Variant | None = None,
) -> Iterator[dict[str, object]]:
    """Results for one set: one per mode for retrieval, one for STS."""
    kind = set_kind(set_dir)
    path = index_dir or default_index_dir(set_dir, model)
    variant = variant or Variant()
    if variant.name and kind != "sts":
        path = variant_index_dir(path, variant.name)
    index = Index(path, model=model, echo=log)
    try:
        if kind == "sts":
            yield evaluate_sts(set_dir, index, limit=limit)
        else:
            yield from evaluate_retrieval(
                set_dir, index, mode=mode, limit=limit, k=k, variant=variant
            )
    finally:
        index.close()


if __name__ == "__main__":
    main()
