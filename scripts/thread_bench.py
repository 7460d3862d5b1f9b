"""How the embedder uses the cores: one onnxruntime session with 1..N intra-op threads (with
their idle threads spinning, as a build runs them, and sleeping, as an ask's do)
against N sessions of one thread each, embedding the same corpus sentences side by side.

    python -m scripts.thread_bench [--corpus DIR] [--sample 1200] [--rounds 2] [--model DIR]

N is the number of cores this process may use. Each variant embeds the sample in
length-sorted batches (Embedder.embed); the N single-thread sessions each take every N-th
sentence of the length-sorted sample, in N Python threads (onnxruntime releases the GIL while
it runs), so they see batches of the same shapes. Variants take turns within each round; each
row is one variant's best round. One stamped JSON line per variant on stdout, with its
speed-up over one session of one thread. Progress on stderr.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

from indexer import Index
from indexer.embed import Embedder, make_session, usable_threads
from scripts.bench import corpus_texts, sample
from scripts.common import corpus_option, emit, log


def timed(run: Any) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


@click.command()
@corpus_option
@click.option("--sample", "size", type=click.IntRange(min=1), default=1200, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None
)
def main(corpus: Path, size: int, rounds: int, model: Path | None) -> None:
    """Embed a sample of CORPUS with each threading variant; print their rates."""
    cores = usable_threads(None)
    loaded = Index(Path("unused-index"), model=model).model
    info, tokenizer = loaded.info, loaded.tokenizer
    probe = Embedder(info, make_session(info, 1), tokenizer)
    texts = sample(corpus_texts(corpus, probe), size)
    order = sorted(texts, key=probe.token_count)
    shares = [order[i::cores] for i in range(cores)]
    variants: dict[str, Any] = {}
    for threads in range(1, cores + 1):
        one = probe if threads == 1 else Embedder(info, make_session(info, threads), tokenizer)
        variants[f"1 session, {threads} threads"] = lambda e=one: e.embed(texts)
        if threads > 1:
            calm = Embedder(info, make_session(info, threads, spin=False), tokenizer)
            variants[f"1 session, {threads} threads, sleeping"] = lambda e=calm: e.embed(texts)
    if cores > 1:
        sessions = [Embedder(info, make_session(info, 1), tokenizer) for _ in range(cores)]
        pool = ThreadPoolExecutor(max_workers=cores)

        def parallel() -> None:
            parts = zip(sessions, shares, strict=True)
            for done in [pool.submit(e.embed, part) for e, part in parts]:
                done.result()

        variants[f"{cores} sessions, 1 thread each"] = parallel
    for run in variants.values():  # warm-up: first runs allocate and plan
        run()
    best: dict[str, float] = {}
    for number in range(rounds):
        for name, run in variants.items():
            seconds = timed(run)
            best[name] = min(best.get(name, seconds), seconds)
            log(f"round {number + 1}: {name}: {len(texts) / seconds:.1f} sentences/s")
    base = best["1 session, 1 threads"]
    for name, seconds in best.items():
        emit({"variant": name, "sentences": len(texts), "seconds": round(seconds, 3),
              "sentences_per_s": round(len(texts) / seconds, 1),
              "speedup": round(base / seconds, 2), "cores": cores})  # fmt: skip


if __name__ == "__main__":
    main()
