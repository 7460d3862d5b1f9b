"""Where the time goes: embedding by operator, and a cold `index ask` by phase.

    python -m scripts.profile [--corpus ../shared/corpus] [--sentences 600] [--index DIR]
                              [--runs 5]

- embed: onnxruntime's own profiler over the same corpus sentences scripts/bench.py samples,
  in length-sorted batches of 32; time per operator type, as a share of the time inside nodes.
- cold ask: fresh processes that time each phase of what `index ask` does, in order:
  interpreter start, imports (numpy, onnxruntime, faiss, sqlite-utils, click, the rest of
  indexer), the tokenizer and the onnxruntime session (loaded one after the other here;
  `index ask` starts the tokenizer before the imports and creates the session beside it),
  opening the index, the first question (FAISS file read, query embedding, search) and a
  second one; median over --runs processes.

The index asked is --index DIR, else an index of --corpus kept in ~/.cache/indexer/profile-index
(the first run builds it, about 4 minutes for ../shared/corpus; later runs only check it). One
stamped JSON line per measurement on stdout, a readable table on stderr.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

import click
import onnxruntime as ort

from indexer import Index, models
from indexer.embed import Embedder
from indexer.tokenize import Tokenizer
from scripts.bench import corpus_texts, sample
from scripts.common import corpus_option, emit, log, run_python

QUESTIONS = ("How should Java imports be ordered?", "画像の代替テキストはどう書く？")

#: Runs in a fresh interpreter; prints one JSON object of phase -> seconds.
COLD_PHASES = r"""
import json, sys, time
from pathlib import Path
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
import numpy; mark("import numpy")
import onnxruntime; mark("import onnxruntime")
import faiss; mark("import faiss")
from indexer.store import load_sqlite_utils; load_sqlite_utils(); mark("import sqlite-utils")
import click; mark("import click")
import indexer.cli, indexer.index; mark("import indexer (rest)")
from indexer import Index, models
from indexer.embed import make_session, usable_threads
from indexer.tokenize import Tokenizer
index = Index(Path(sys.argv[1]))
info = models.load_info(index.model.path); mark("read model.json")
Tokenizer(info); mark("load tokenizer")
make_session(info, usable_threads(None)); mark("create onnxruntime session")
index.status(); mark("open index")
index.embedder; mark("load model again (tokenizer and session in parallel)")
index.ask(sys.argv[2], k=5); mark("first question")
index.ask(sys.argv[3], k=5); mark("second question")
print(json.dumps({b[0]: b[1] - a[1] for a, b in zip(marks, marks[1:])}))
"""


def operator_profile(model_dir: Path, texts: list[str]) -> dict[str, float]:
    """Share of node time per operator type while embedding texts (onnxruntime profiler)."""
    info = models.load_info(model_dir)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "embed")
        session = ort.InferenceSession(str(info.onnx_path), options, ["CPUExecutionProvider"])
        embedder = Embedder(info, session, Tokenizer(info))
        embedder.embed(texts, batch_size=32)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    per_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    return {op: round(us / total, 4) for op, us in sorted(per_op.items(), key=lambda x: -x[1])}


def cold_phases(index_dir: Path, runs: int) -> dict[str, float]:
    """Median seconds per phase of a cold ask, plus the bare interpreter start."""
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        samples["interpreter start"].append(run_python(["-c", "pass"]).check().seconds)
        done = run_python(["-c", COLD_PHASES, str(index_dir), *QUESTIONS]).check()
        for phase, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
            samples[phase].append(seconds)
    return {phase: round(statistics.median(values), 4) for phase, values in samples.items()}


@click.command()
@corpus_option
@click.option("--sentences", default=600, show_default=True, help="Sentences profiled.")
@click.option(
    "--index",
    "index_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="An index to ask (default: one of --corpus in ~/.cache/indexer/profile-index).",
)
@click.option("--runs", default=5, show_default=True, help="Cold processes timed.")
def main(corpus: Path, sentences: int, index_dir: Path | None, runs: int) -> None:
    """Profile embedding by operator and a cold ask by phase."""
    model_dir = models.prepare()
    texts = sample(corpus_texts(corpus, Embedder.load(model_dir)), sentences)
    shares = operator_profile(model_dir, texts)
    emit({"measure": "embed_operators", "sentences": len(texts), "share": shares})
    log("embedding, share of time inside onnxruntime nodes:")
    for op, share in shares.items():
        log(f"  {op:28s} {share:6.1%}")
    if index_dir is None:
        index_dir = Path.home() / ".cache" / "indexer" / "profile-index"
        log(f"bringing the index of {corpus} in {index_dir} up to date ...")
        Index(index_dir).build(corpus)
    phases = cold_phases(index_dir, runs)
    emit({"measure": "cold_ask_phases", "runs": runs, "seconds": phases})
    log(f"cold ask, median of {runs} processes:")
    for phase, seconds in phases.items():
        log(f"  {phase:52s} {seconds * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
