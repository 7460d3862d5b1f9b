"""The block-by-block exact search scale_bench measures recall against."""

from __future__ import annotations

import faiss
import numpy as np

from scripts.scale_bench import exact_top


def test_exact_top_over_blocks_matches_a_flat_index() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(1000, 16)).astype(np.float32)
    queries = rng.normal(size=(7, 16)).astype(np.float32)
    ids = np.arange(1000, dtype=np.int64) * 3 + 5
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(16))
    flat.add_with_ids(vectors, ids)
    want_scores, want_ids = flat.search(queries, 10)
    blocks = [(ids[i : i + 128], vectors[i : i + 128]) for i in range(0, 1000, 128)]
    got_ids, got_scores = exact_top(blocks, queries, 10)
    assert (got_ids == want_ids).all()
    assert np.allclose(got_scores, want_scores, atol=1e-4)
