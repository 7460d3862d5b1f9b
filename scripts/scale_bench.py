"""Scale on one box: re-index cost against the size of the change, and vector search at 100 k
to 1 M (10 M with --huge) sentences, without embedding anything.

    python -m scripts.scale_bench [--sizes 100000,1000000] [--huge] [--source INDEX] [--questions N]
                                  [--commit-size 1000000] [--flat-up-to 2000000] [--texts]
    python -m scripts.scale_bench --existing INDEX [--source INDEX]   # searches and recall only

An index of N sentences is written through the store's public API and build.commit (the real
commit path: SQL rows, keyword rows, vector files): files of 20 sentences, each with seven
chunks and one section, so about 1.4 N vectors. The vectors resemble real ones: each is a real
stored vector of --source (an existing index, read through Store.iter_vectors and never
written) plus Gaussian noise of norm 0.5, normalised. Queries are real question vectors: the
first --questions questions of the eval set beside --source, embedded with its model.

Sentences are text such as "sentence 3 of file 17", which no question's words match, unless
--texts: then each sentence is a real sentence of --source with its own vector plus the noise
(chunks and sections get noisy passage vectors of --source), so its keyword rows are real
text repeated, and one more step times whole hybrid asks (`Index.ask`, the questions' text).

Per size, each step in a child process (scripts.common.run_python reports its peak RSS):

    make          the index from nothing (a commit per --commit-size sentences)
    no-change     a build that changes nothing
    edit-delta    one file rewritten: a delta (the default above Policy.delta_from)
    edit-full     the same edit with a whole flat base rewritten (what every build did before)
    compact       a fresh flat base on request
    train         a fresh IVF-SQ8 base: training, filling, choosing nprobe
    ask           warm vector search (top 50) p50/p95 at 1 and 2 threads, flat and IVF, with
                  the mean time in FAISS and in reading stored vectors to re-rank; and
                  recall@10 of IVF (re-ranked) against exact search on the question vectors
    ask-hybrid    (--texts) warm `index ask` in the default hybrid mode, k=5, p50/p95: the
                  question embedded, vector and keyword search, the passage stage; then
                  the milliseconds per ask of each step (STAGES)

Sizes above --flat-up-to (10 M: 21 GB of float32 vectors) never get a flat base: make writes
IVF bases from its first commit, and edit-full, compact, the flat asks and train are left out;
the exact search that recall is measured against runs block by block over the stored vectors.

One stamped JSON row per size goes to stdout, progress to stderr.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from scripts.common import CHILD_ENV, SHARED, emit, log, percentiles, read_jsonl, run_python
from scripts.eval import set_name_of

SENTENCES_PER_FILE = 20
NOISE = 0.5
DEFAULT_SOURCE = Path("~/.cache/indexer/eval").expanduser()
K = 50
#: Sentences written per commit by `make` (--commit-size).
MAKE_BATCH = 1_000_000
#: Sizes above this (--flat-up-to) skip every step that needs a flat base of the whole index
#: (10 M sentences make 21 GB of float32 vectors): make writes IVF bases, and edit-full,
#: compact, the flat asks and the separate train step are left out (make has trained).
FLAT_UP_TO = 2_000_000


# ---------------------------------------------------------------- children


#: --source: the index whose vectors synthetic ones are made from (largest_index by default).
source_option = click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="An existing index whose vectors the synthetic ones are made from "
    "(default: the largest eval index under ~/.cache/indexer/eval).",
)


def largest_index(folder: Path) -> Path:
    """The index under `folder` with the largest vector file (the default --source), among
    those scripts/eval.py keeps per set, not its copies built another way, whose questions
    question_texts would not find."""
    kept = (p for p in folder.glob("*/vectors.*.faiss") if set_name_of(p.parent))
    return max(kept, key=lambda p: p.stat().st_size).parent


def real_vectors(source: Path) -> np.ndarray:
    """Every vector of an existing index (read only)."""
    from indexer.store import Store

    store = Store(source)
    with store.snapshot():
        dim = store.meta().model.dimension  # type: ignore[union-attr]
        return np.concatenate(list(store.vector_blocks(dim)))


def model_record(source: Path) -> Any:
    from indexer.store import Store

    store = Store(source)
    return store.meta().model


def synthetic(real: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return noisy(real[rng.integers(0, len(real), size=count)], rng)


def noisy(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vectors with Gaussian noise of norm about NOISE, normalised."""
    noise = rng.normal(size=rows.shape).astype(np.float32) * (NOISE / np.sqrt(rows.shape[1]))
    out = rows + noise
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class Synthetic:
    """Files of synthetic text whose vectors are real ones with noise."""

    def __init__(self, real: np.ndarray) -> None:
        self.real = real

    def file(self, rng: np.random.Generator) -> tuple[list[str] | None, np.ndarray]:
        """No texts (file_plan makes them), and one file's vectors."""
        return None, synthetic(self.real, vectors_per_file(), rng)


class RealTexts:
    """The sentences of an existing index with their vectors, and its passage vectors (read
    only): a file of real sentences drawn at random, each vector with noise."""

    def __init__(self, source: Path) -> None:
        from indexer.store import Store

        store = Store(source)
        with store.snapshot():
            rows = list(store.sentences_with_vectors())
            passages = [row[-1] for row in store.passages_with_vectors()]
        self.texts = [row[2] for row in rows]
        self.sentences = np.stack([row[-1] for row in rows])
        self.passages = np.stack(passages)

    def file(self, rng: np.random.Generator) -> tuple[list[str] | None, np.ndarray]:
        """One file's sentence texts and vectors (sentences, then chunks and the section)."""
        chosen = rng.integers(0, len(self.texts), size=SENTENCES_PER_FILE)
        passages = rng.integers(0, len(self.passages), size=vectors_per_file() - len(chosen))
        rows = np.concatenate([self.sentences[chosen], self.passages[passages]])
        return [self.texts[i] for i in chosen], noisy(rows, rng)


def file_plan(
    number: int,
    vecs: np.ndarray,
    tag: str,
    store: Any,
    old: Any = None,
    texts: list[str] | None = None,
) -> Any:
    """A FilePlan of SENTENCES_PER_FILE sentences (synthetic text unless `texts`), 7 chunks
    and a section, its vectors stored."""
    from indexer.build import FilePlan
    from indexer.passages import Passage, Unit
    from indexer.split import Sentence
    from indexer.store import FileEntry

    n = SENTENCES_PER_FILE
    keys = [f"{tag}-{number}-{i}" for i in range(len(vecs))]
    store.add_vectors(keys, vecs)
    units = [
        Unit(Sentence(f"sentence {i} of file {number} {tag}", "prose", i + 1, i + 1, 0, 1, i),
             texts[i] if texts else "", keys[i])
        for i in range(n)
    ]  # fmt: skip
    passages = [
        Passage(f, min(f + 2, n - 1), "", keys[n + j]) for j, f in enumerate(range(0, n, 3))
    ]
    passages.append(Passage(0, n - 1, "", keys[-1], "section"))
    entry = FileEntry(
        f"f{number:07}.txt", 1000 + number, number, f"{tag}{number}", "utf-8", "txt", False
    )
    return FilePlan(entry, units, passages, old)


def vectors_per_file() -> int:
    return SENTENCES_PER_FILE + len(range(0, SENTENCES_PER_FILE, 3)) + 1


def open_store(path: Path) -> Any:
    from indexer.store import Store

    store = Store(path)
    store.create()
    return store


def make(
    index: Path, source: Path, sentences: int, batch: int, flat_up_to: int, texts: bool = False
) -> dict[str, Any]:
    """The index from nothing, in commits of `batch` sentences (as a folder that grew would
    be: one commit's rows are held until it ends). Up to `flat_up_to` sentences a flat base;
    above, an IVF base from the first commit, rebuilt by the later ones as Policy decides.
    With `texts`, real sentences of `source` (RealTexts)."""
    from indexer.build import Plan, commit
    from indexer.vectors import Policy

    store = open_store(index)
    draw = RealTexts(source).file if texts else Synthetic(real_vectors(source)).file
    record = model_record(source)
    policy = Policy(ann="exact") if sentences <= flat_up_to else Policy(ann="always")
    rng = np.random.default_rng(0)
    files = sentences // SENTENCES_PER_FILE
    per_commit = max(1, batch // SENTENCES_PER_FILE)
    started = time.perf_counter()
    stored = 0.0
    commits = []
    for first in range(0, files, per_commit):
        began = time.perf_counter()
        plans = []
        for number in range(first, min(files, first + per_commit)):
            made, vecs = draw(rng)
            plans.append(file_plan(number, vecs, "v1", store, texts=made))
        stored += time.perf_counter() - began
        began = time.perf_counter()
        commit(store, Plan(index=plans), record, policy)
        commits.append(round(time.perf_counter() - began, 1))
        log(f"  committed {min(files, first + per_commit) * SENTENCES_PER_FILE} sentences")
    return {
        "store_seconds": round(stored, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "commit_seconds": commits,
        "kind": store.meta().vectors.kind,
    }


def change(index: Path, source: Path, what: str) -> dict[str, Any]:
    """One timed commit on an existing index; of its seconds, those spent cleaning up after
    it (deleting superseded vector files, giving free pages back)."""
    from indexer import vectors
    from indexer.build import Plan, commit
    from indexer.store import Store
    from indexer.vectors import Policy

    store = open_store(index)
    meta = store.meta()
    record = meta.model
    # Each step pins the base's kind: with `auto`, an index past Policy.ann_from would train.
    policies = {
        "no-change": Policy(ann="exact"),
        "no-change-ivf": Policy(ann="always"),
        "edit-delta": Policy(delta_from=0, ann="exact"),
        "edit-delta-ivf": Policy(delta_from=0, ann="always"),
        "edit-full": Policy(delta_from=1 << 62, ann="exact"),
        "compact": Policy(ann="exact", compact=True),
        "train": Policy(ann="always", compact=True),
    }
    plan = Plan()
    if what.startswith("edit"):
        rows = store.files()
        row = rows[sorted(rows)[len(rows) // 2]]
        rng = np.random.default_rng(int(time.time()))
        vecs = synthetic(real_vectors(source), vectors_per_file(), rng)
        plan = Plan(index=[file_plan(int(row.path[1:8]), vecs, f"e{time.time_ns()}", store, row)])
    started = time.perf_counter()
    with timed_calls([(vectors, "remove_old"), (Store, "reclaim_space")]) as tidying:
        commit(store, plan, record, policies[what])
    seconds = time.perf_counter() - started
    layout = store.meta().vectors
    return {
        "seconds": round(seconds, 3),
        # After the commit: superseded vector files deleted, free SQLite pages given back.
        "cleanup_seconds": round(sum(tidying.values()), 3),
        "kind": layout.kind,
        "deltas": len(layout.deltas),
        "nprobe": layout.nprobe,
        "sample_recall": layout.recall,
        "bytes": store.size_on_disk(),
    }


def question_texts(source: Path, count: int) -> list[str]:
    """The first `count` questions of the eval set the source index was built for (none when
    there is no such set)."""
    name = set_name_of(source)
    path = SHARED / "eval" / str(name) / "queries.jsonl"
    return [r["question"] for r in read_jsonl(path)][:count] if name and path.is_file() else []


def question_vectors(source: Path, count: int, scratch: Path) -> np.ndarray:
    """The first `count` questions of the eval set the source index was built for, embedded
    with its model as `index ask` embeds them."""
    from indexer import Index, ranking

    questions = question_texts(source, count)
    if not questions:
        log(f"no eval set beside {source}: its stored vectors stand in for questions")
        return real_vectors(source)[:count]
    recorded = model_record(source)
    embedder = Index(scratch / "unused", model=recorded.path or None).embedder
    weight = ranking.DEFAULT.statement_passage_weight
    return np.stack([embedder.embed_query(q, statement_weight=weight) for q in questions])


def ask(index: Path, queries: Path) -> dict[str, Any]:
    """Warm search latency of the current generation, and recall@10 against exact search."""
    from indexer import vectors
    from indexer.store import Store

    store = Store(index)
    qs = np.load(queries)
    parts = [(vectors.VectorIndex, "search"), (Store, "vectors_by_id")]
    with store.snapshot(), timed_calls(parts) as spent:
        current = vectors.open_current(store, warn=log)  # re-ranks through vectors_by_id
        spent.update(dict.fromkeys(spent, 0.0))  # not the checks made on opening
        times = []
        for q in qs:
            started = time.perf_counter()
            current.search(q, K)
            times.append(time.perf_counter() - started)
    per_search = {name: round(seconds / len(qs) * 1000, 2) for name, seconds in spent.items()}
    return {
        "kind": current.kind,
        **percentiles(times),
        # Mean ms per search in the FAISS files (coarse quantizer and lists, deltas too) and
        # reading the candidates' stored vectors to re-rank them (approximate bases only).
        "faiss_ms": per_search["search"],
        "rerank_read_ms": per_search["vectors_by_id"],
    }


#: Steps of a hybrid ask timed apart by ask_hybrid (Searcher or Store methods). The times are
#: inclusive: `_dense` holds the vector search and the dense scores of its candidates,
#: `_hybrid` the dense scores of the keyword side's extra candidates and the passage stage.
STAGES = (
    ("Searcher", "question_vector"),
    ("Searcher", "_dense"),
    ("Searcher", "keyword_match"),
    ("Store", "keyword_search"),
    ("Searcher", "_hybrid"),
    ("Searcher", "dense_scores"),
    ("Searcher", "_passages"),
    ("Searcher", "_script_evidence"),
    ("Searcher", "_hit"),
)


def ask_hybrid(index: Path, questions: Path) -> dict[str, Any]:
    """Warm `index ask` (hybrid, k=5, one line of context) on the questions' text; then the
    same asks again with each of STAGES timed (mean ms per ask)."""
    from indexer import Index

    asked = Index(index)
    texts = json.loads(questions.read_text(encoding="utf-8"))
    asked.ask(texts[0], k=5)  # loads the model and opens the vector files
    times, found = [], 0
    for question in texts:
        started = time.perf_counter()
        hits = asked.ask(question, k=5, context=1)
        times.append(time.perf_counter() - started)
        found += any(hit.keyword_rank for hit in hits)
    return {
        "kind": asked.store.meta().vectors.kind,
        "questions": len(texts),
        "keyword_found": found,  # asks whose hits include a keyword match
        **percentiles(times),
        "stages_ms": stage_times(lambda q: asked.ask(q, k=5, context=1), texts),
    }


def stage_times(ask: Any, texts: list[str]) -> dict[str, float]:
    """Mean milliseconds per ask spent in each of STAGES."""
    from indexer import search, store

    owners = {"Searcher": search.Searcher, "Store": store.Store}
    with timed_calls([(owners[owner], name) for owner, name in STAGES]) as spent:
        for question in texts:
            ask(question)
    return {name: round(seconds / len(texts) * 1000, 2) for name, seconds in spent.items()}


@contextlib.contextmanager
def timed_calls(targets: list[tuple[Any, str]]) -> Iterator[dict[str, float]]:
    """Seconds spent in each (owner, attribute) function or method while the block runs,
    by attribute name: each is wrapped with a timer, and restored afterwards."""
    spent = dict.fromkeys((name for _, name in targets), 0.0)

    def timed(name: str, method: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return run

    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
    for owner, name, method in saved:
        setattr(owner, name, timed(name, method))
    try:
        yield spent
    finally:
        for owner, name, method in saved:
            setattr(owner, name, method)


def recall(index: Path, queries: Path) -> dict[str, Any]:
    """recall@10 of the current generation against exact search of the same vectors."""
    from indexer import vectors
    from indexer.store import Store

    store = Store(index)
    qs = np.load(queries)
    with store.snapshot():
        current = vectors.open_current(store, warn=log)
        truth, scores = exact_top(store.iter_vectors(qs.shape[1]), qs, 10)
        return {"recall_at_10": round(vectors.recall_at(current, qs, truth, scores), 4)}


def exact_top(
    blocks: Iterable[tuple[np.ndarray, np.ndarray]], queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's exact top k (ids, scores), best first, over (ids, vectors) blocks, keeping
    only k per query between blocks: a flat index of 10 M sentences would not fit in memory."""
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for block_ids, block in blocks:
        scores = np.concatenate([best, queries @ block.T], axis=1)
        both = np.concatenate([ids, np.broadcast_to(block_ids, (len(queries), len(block_ids)))], 1)
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best, ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(both, keep, 1)
    order = np.argsort(-best, axis=1, kind="stable")
    return np.take_along_axis(ids, order, 1), np.take_along_axis(best, order, 1)


# ---------------------------------------------------------------- the parent


def child(*args: object, threads: int = 2) -> dict[str, Any]:
    env = {**CHILD_ENV, "OMP_NUM_THREADS": str(threads)}
    run = run_python(["-m", "scripts.scale_bench", *map(str, args)], peak=True, env=env).check()
    row = json.loads(run.stdout.strip().splitlines()[-1])
    return {**row, "peak_rss_mib": run.peak_rss_mib, "wall_seconds": round(run.seconds, 1)}


def one_size(
    sentences: int,
    source: Path,
    queries: Path,
    work: Path,
    batch: int,
    flat_up_to: int,
    questions: Path | None = None,
) -> dict[str, Any]:
    """Every step at one size; with `questions` (their text, --texts) real sentences and
    timed hybrid asks."""
    index = work / f"idx{sentences}"
    shutil.rmtree(index, ignore_errors=True)
    row: dict[str, Any] = {"sentences": sentences, "texts": questions is not None}
    log(f"{sentences}: make")
    texts = ["--texts"] if questions else []
    row["make"] = child("make", index, source, sentences, batch, flat_up_to, *texts)
    if sentences <= flat_up_to:
        for step in ("no-change", "edit-full", "edit-delta", "compact"):
            log(f"{sentences}: {step}")
            row[step] = child("change", index, source, step)
            if step == "edit-delta":
                row["edit-delta-2"] = child("change", index, source, step)
        for threads in (1, 2):
            row[f"ask_flat_{threads}t"] = child("ask", index, queries, threads=threads)
        log(f"{sentences}: train")
        row["train"] = child("change", index, source, "train")
    else:
        log(f"{sentences}: no-change")
        row["no-change"] = child("change", index, source, "no-change-ivf")
    log(f"{sentences}: edits on the IVF base")
    row["edit-delta-on-ivf"] = child("change", index, source, "edit-delta-ivf")
    if sentences > flat_up_to:
        row["edit-delta-on-ivf-2"] = child("change", index, source, "edit-delta-ivf")
    log(f"{sentences}: asks and recall")
    row.update(searches(index, queries))
    if questions:
        log(f"{sentences}: hybrid asks")
        row["ask_hybrid_2t"] = child("ask-hybrid", index, questions)
    row["bytes_on_disk"] = row["edit-delta-on-ivf"]["bytes"]
    row["vectors"] = sentences // SENTENCES_PER_FILE * vectors_per_file()
    shutil.rmtree(index, ignore_errors=True)
    return row


def searches(index: Path, queries: Path) -> dict[str, Any]:
    """Warm searches of an index with an IVF base at 1 and 2 threads, and its recall."""
    row = {f"ask_ivf_{t}t": child("ask", index, queries, threads=t) for t in (1, 2)}
    return {**row, "recall_ivf": child("recall", index, queries)}


@click.group(invoke_without_command=True)
@click.option("--sizes", default="100000,1000000", show_default=True, help="Sentences per index.")
@click.option("--huge", is_flag=True, help="Add 10,000,000 sentences (hours and ~40 GB here).")
@source_option
@click.option("--questions", default=200, show_default=True, help="Question vectors to time.")
@click.option(
    "--work", type=click.Path(path_type=Path), default=None, help="Scratch folder (made if needed)."
)
@click.option(
    "--texts",
    is_flag=True,
    help="Real sentences of --source instead of synthetic text, and timed hybrid asks.",
)
@click.option(
    "--commit-size", default=MAKE_BATCH, show_default=True, help="Sentences per commit of make."
)
@click.option(
    "--flat-up-to",
    default=FLAT_UP_TO,
    show_default=True,
    help="Largest size run with flat bases; larger ones run on IVF bases only.",
)
@click.option(
    "--existing",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Only time the searches and recall of this index with an IVF base (e.g. one the "
    "make step wrote, kept), as it is; nothing is made or changed.",
)
@click.pass_context
def main(
    ctx: click.Context,
    sizes: str,
    huge: bool,
    source: Path | None,
    questions: int,
    work: Path | None,
    commit_size: int,
    flat_up_to: int,
    texts: bool,
    existing: Path | None,
) -> None:
    """Build synthetic indexes of each size and time re-indexing, compaction and search."""
    if ctx.invoked_subcommand:
        return
    source = source or largest_index(DEFAULT_SOURCE)
    counts = [int(s) for s in sizes.split(",") if s] + ([10_000_000] if huge else [])
    if work:
        work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        queries = Path(tmp) / "queries.npy"
        np.save(queries, question_vectors(source, questions, Path(tmp)))
        asked = None
        if texts:
            asked = Path(tmp) / "questions.json"
            # Without an eval set beside the source, its first sentences stand in.
            made = question_texts(source, questions) or RealTexts(source).texts[:questions]
            asked.write_text(json.dumps(made, ensure_ascii=False), encoding="utf-8")
        if existing is not None:
            log(f"{existing}: asks and recall")
            emit({"source": source.name, "index": str(existing), **searches(existing, queries)})
            return
        for count in counts:
            row = one_size(count, source, queries, Path(tmp), commit_size, flat_up_to, asked)
            emit({"source": source.name, **row}, readable=True)


@main.command("make")
@click.argument("index", type=click.Path(path_type=Path))
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("sentences", type=int)
@click.argument("batch", type=int)
@click.argument("flat_up_to", type=int)
@click.option("--texts", is_flag=True)
def make_command(
    index: Path, source: Path, sentences: int, batch: int, flat_up_to: int, texts: bool
) -> None:
    """(child) Write a synthetic index."""
    print(json.dumps(make(index, source, sentences, batch, flat_up_to, texts)))


@main.command("change")
@click.argument("index", type=click.Path(path_type=Path))
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("what")
def change_command(index: Path, source: Path, what: str) -> None:
    """(child) One timed commit."""
    print(json.dumps(change(index, source, what)))


@main.command("ask")
@click.argument("index", type=click.Path(path_type=Path))
@click.argument("queries", type=click.Path(path_type=Path))
def ask_command(index: Path, queries: Path) -> None:
    """(child) Warm search timings."""
    print(json.dumps(ask(index, queries)))


@main.command("ask-hybrid")
@click.argument("index", type=click.Path(path_type=Path))
@click.argument("questions", type=click.Path(path_type=Path))
def ask_hybrid_command(index: Path, questions: Path) -> None:
    """(child) Warm hybrid asks."""
    print(json.dumps(ask_hybrid(index, questions)))


@main.command("recall")
@click.argument("index", type=click.Path(path_type=Path))
@click.argument("queries", type=click.Path(path_type=Path))
def recall_command(index: Path, queries: Path) -> None:
    """(child) recall@10 against exact search."""
    print(json.dumps(recall(index, queries)))


if __name__ == "__main__":
    sys.exit(main())
