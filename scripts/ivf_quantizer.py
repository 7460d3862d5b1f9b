"""The IVF base's coarse quantizer: flat (what index build uses) against HNSW, side by side.

    python -m scripts.ivf_quantizer [--sizes 300000,1400000] [--source INDEX] [--questions 200]
                                    [--hnsw-m 32] [--ef 64]

Per size (vectors), synthetic vectors made as scripts/scale_bench.py makes them (real stored
vectors of --source plus Gaussian noise of norm 0.5, normalised) fill an IVF base with 8-bit
codes built by `indexer.vectors.ivf_sq8` with nlist and training sample as `index build`
chooses them (`nlist_for`, `TRAIN_PER_LIST` sample vectors a list), once with each coarse quantizer:

    flat    faiss.IndexFlatIP over the centroids (index build's choice)
    hnsw    faiss.IndexHNSWFlat over the centroids (M = --hnsw-m, efSearch = --ef, or nprobe
            when larger), also used to assign vectors while k-means trains

and measures training seconds, filling (add) seconds, then per nprobe the recall@10 against
exact search of the real questions of the eval set beside --source, re-ranked as `index ask`
does (RERANK_DEPTH × 10 candidates scored on the exact vectors), and the search's ms per
question (one thread). Variants take turns in one process on the same vectors. One stamped
JSON row per size and quantizer on stdout, progress on stderr.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import click
import faiss
import numpy as np

from indexer import vectors
from scripts.common import emit, log
from scripts.scale_bench import (
    DEFAULT_SOURCE,
    largest_index,
    question_vectors,
    real_vectors,
    source_option,
    synthetic,
)

NPROBES = (8, 16, 32, 64)
K = 10
QUANTIZERS = ("flat", "hnsw")


def coarse(kind: str, dim: int, m: int, ef: int) -> faiss.Index:
    """An empty coarse quantizer of one kind."""
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = ef
    return index


def measure(
    kind: str, data: np.ndarray, sample: np.ndarray, questions: np.ndarray, truth: np.ndarray,
    *, nlist: int, m: int, ef: int,
) -> dict[str, Any]:  # fmt: skip
    """Train, fill and search one IVF base of `nlist` lists; its timings and recall per
    nprobe."""
    dim = data.shape[1]
    ivf = vectors.ivf_sq8(coarse(kind, dim, m, ef), dim, nlist)
    if kind == "hnsw":
        ivf.clustering_index = coarse(kind, dim, m, ef)
    started = time.perf_counter()
    ivf.train(sample)
    trained = time.perf_counter() - started
    started = time.perf_counter()
    ivf.add(data)
    filled = time.perf_counter() - started
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    searches: dict[str, dict[str, float]] = {}
    for nprobe in NPROBES:
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
        if kind == "hnsw":
            ef_params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            ef_params.efSearch = max(ef, nprobe)
            params.quantizer_params = ef_params
        found, seconds = [], 0.0
        for question in questions:
            started = time.perf_counter()
            _, ids = ivf.search(question[None, :], vectors.RERANK_DEPTH * K, params=params)
            seconds += time.perf_counter() - started
            kept = ids[0][ids[0] >= 0]
            found.append(kept[np.argsort(-(data[kept] @ question))[:K]])
        pairs = zip(found, truth, strict=True)
        recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in pairs])
        searches[str(nprobe)] = {
            "recall_at_10": round(float(recall), 4),
            "ms": round(seconds / len(questions) * 1000, 3),
        }
    faiss.omp_set_num_threads(threads)
    return {"nlist": nlist, "train_seconds": round(trained, 3), "add_seconds": round(filled, 3),
            "by_nprobe": searches}  # fmt: skip


@click.command()
@click.option("--sizes", default="300000,1400000", show_default=True, help="Vectors per base.")
@source_option
@click.option("--questions", default=200, show_default=True, help="Question vectors to search.")
@click.option("--hnsw-m", "m", default=32, show_default=True, help="HNSW links per centroid.")
@click.option("--ef", default=64, show_default=True, help="HNSW efSearch (at least nprobe).")
def main(sizes: str, source: Path | None, questions: int, m: int, ef: int) -> None:
    """Flat against HNSW coarse quantizers for the IVF base."""
    source = source or largest_index(DEFAULT_SOURCE)
    rng = np.random.default_rng(0)
    real = real_vectors(source)
    with tempfile.TemporaryDirectory() as scratch:
        queries = question_vectors(source, questions, Path(scratch))
    for count in (int(s) for s in sizes.split(",") if s):
        data = synthetic(real, count, rng).astype(np.float32)
        nlist = vectors.nlist_for(count)
        size = min(count, nlist * vectors.TRAIN_PER_LIST)
        sample = data[rng.choice(count, size=size, replace=False)]
        _, truth = faiss.knn(queries, data, K, faiss.METRIC_INNER_PRODUCT)
        for kind in QUANTIZERS:
            log(f"{count} vectors: {kind} quantizer")
            row = measure(kind, data, sample, queries, truth, nlist=nlist, m=m, ef=ef)
            emit({"vectors": count, "quantizer": kind, "source": source.name, **row},
                 readable=True)  # fmt: skip


if __name__ == "__main__":
    main()
