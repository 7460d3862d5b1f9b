"""The vector index: seeded vectors, real FAISS files, checked against a real index database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer import Index, vectors
from indexer.vectors import VectorIndex
from tests.files import write_docs


def seeded(n: int, dim: int = 8, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.arange(100, 100 + n, dtype=np.int64), vecs


def test_search_finds_each_vector_first_and_survives_save_and_load(tmp_path: Path) -> None:
    ids, vecs = seeded(200)
    index = VectorIndex.from_blocks([(ids[:120], vecs[:120]), (ids[120:], vecs[120:])], 8)
    path = tmp_path / "v.faiss"
    index.save(path)
    loaded = VectorIndex.load(path)
    assert len(loaded) == 200 and np.array_equal(loaded.ids(), ids)
    for row in (0, 57, 199):
        best, score = loaded.search(vecs[row], 3)[0]
        # float16 codes: a unit vector's score with itself within about 2^-11 of 1
        assert best == ids[row] and score == pytest.approx(1.0, abs=5e-4)
    assert not list(tmp_path.glob("*.tmp"))
    assert VectorIndex.from_blocks([], 8).search(vecs[0], 3) == []


def test_flat_files_hold_float16_and_float32_files_still_open(tmp_path: Path) -> None:
    import faiss

    ids, vecs = seeded(500, dim=64)
    new = VectorIndex.from_blocks([(ids, vecs)], 64)
    new.save(tmp_path / "new.faiss")
    legacy = faiss.IndexIDMap2(faiss.IndexFlatIP(64))  # what flat files held before float16
    legacy.add_with_ids(vecs, ids)
    faiss.write_index(legacy, str(tmp_path / "old.faiss"))
    sizes = {name: (tmp_path / f"{name}.faiss").stat().st_size for name in ("new", "old")}
    assert sizes["new"] < 0.6 * sizes["old"]
    for name in sizes:
        loaded = VectorIndex.load(tmp_path / f"{name}.faiss")
        generation = vectors.GenerationIndex.of(loaded)
        assert loaded.kind == "flat" and loaded.search(vecs[7], 1)[0][0] == ids[7]
        held = generation.vectors_of(ids[:50])
        assert not any(generation.differs(h, v) for h, v in zip(held, vecs[:50], strict=True))
        # a flipped sign in one component is damage, whatever the codes
        assert generation.differs(held[0] * np.where(np.arange(64) == 3, -1, 1), vecs[0])


def test_mismatch_tells_counts_and_ids_apart() -> None:
    ids, vecs = seeded(10)
    index = VectorIndex.from_blocks([(ids, vecs)], 8)
    digest = vectors.ids_digest(ids)
    assert vectors.mismatch(index, 10, digest) is None
    assert "9" in str(vectors.mismatch(index, 9, digest))
    assert "ids" in str(vectors.mismatch(index, 10, vectors.ids_digest(ids + 1)))
    assert vectors.mismatch(index, 10, "") is None, "older indexes recorded no digest"


@pytest.fixture
def built(tmp_path: Path, tiny_model_dir: Path) -> Index:
    docs = {"a.md": "# Title\n\nFirst sentence here. Second one there.\n", "b.txt": "Other text.\n"}
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    index.build(write_docs(tmp_path / "docs", docs))
    return index


def test_another_generations_file_with_the_same_count_is_noticed(
    built: Index, tmp_path: Path
) -> None:
    store = built.store
    generation = store.generation()
    current = vectors.path_of(store.path, generation)
    ids, vecs = seeded(len(VectorIndex.load(current)), dim=store.meta().model.dimension)
    VectorIndex.from_blocks([(ids, vecs)], vecs.shape[1]).save(current)
    assert vectors.problems(store), "verify compares ids, not only counts"
    warnings: list[str] = []
    with store.snapshot():
        index = vectors.open_current(store, warn=warnings.append)
    assert warnings and np.array_equal(np.sort(index.ids()), store.expected_vector_ids())
    assert vectors.problems(store) == [], "the repaired file was saved"


def test_repair_rewrites_a_missing_file(built: Index) -> None:
    store = built.store
    vectors.path_of(store.path, store.generation()).unlink()
    assert "missing" in vectors.problems(store)[0]
    assert vectors.repair(store) == store.generation()
    assert vectors.problems(store) == []


def test_vector_files_the_committed_generation_does_not_name_are_removed(tmp_path: Path) -> None:
    ids, vecs = seeded(4)
    for generation in range(1, 5):
        VectorIndex.from_blocks([(ids, vecs)], 8).save(vectors.path_of(tmp_path, generation))
    (tmp_path / "vectors.9.tmp").write_bytes(b"partial")
    (tmp_path / "index.sqlite").write_bytes(b"")
    vectors.remove_old(tmp_path, ["vectors.2.faiss", "vectors.4.faiss"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "index.sqlite",
        "vectors.2.faiss",
        "vectors.4.faiss",
    ]


def test_deltas_hide_what_they_removed_where_it_was_visible(tmp_path: Path) -> None:
    # Base 1..10; delta 2 rewrites 3 (removed and added again), drops 4, adds 11;
    # delta 3 drops 3 (now delta 2's row), 11 and 5 (the base's), adds 12.
    def flat(ids: list[int]) -> VectorIndex:
        rows = np.random.default_rng(ids[0]).normal(size=(len(ids), 8)).astype(np.float32)
        return VectorIndex.from_blocks([(np.array(ids, dtype=np.int64), rows)], 8)

    flat(list(range(1, 11))).save(tmp_path / "vectors.1.faiss")
    for gen, removed, added in ((2, [3, 4], [3, 11]), (3, [3, 11, 5], [12])):
        np.save(tmp_path / vectors.REMOVED_PATTERN.format(gen=gen), np.array(removed))
        flat(added).save(tmp_path / vectors.DELTA_PATTERN.format(gen=gen))
    layout = vectors.VectorLayout(base="vectors.1.faiss", base_count=10, deltas=(2, 3))
    generation = vectors.open_layout(tmp_path, layout)

    assert [layer.hidden.tolist() for layer in generation.layers] == [[3, 4, 5], [3, 11], []]
    held = [1, 2, 6, 7, 8, 9, 10, 12]
    assert sorted(generation.ids().tolist()) == held and len(generation) == len(held)
    assert generation.digest() == vectors.ids_digest(np.array(held))
    assert vectors.mismatch(generation, len(held), vectors.ids_digest(np.array(held))) is None
    sampled = generation.sample_ids(100, np.random.default_rng(0))
    assert sampled.tolist() == held
    # Each id is read from the layer that shows it: 12 from the newest delta, 1 from the base.
    assert np.allclose(
        generation.vectors_of(np.array([12, 1])),
        [
            generation.layers[2].index.vectors_of(np.array([12]))[0],
            generation.layers[0].index.vectors_of(np.array([1]))[0],
        ],
    )


def ivf_of(ids: np.ndarray, vecs: np.ndarray, nlist: int) -> Any:
    """An IVF-SQ8 FAISS index over these ids, as an IVF base holds them, trained and filled."""
    import faiss

    dim = vecs.shape[1]
    raw = faiss.IndexIDMap2(vectors.ivf_sq8(faiss.IndexFlatIP(dim), dim, nlist))
    raw.train(vecs)
    raw.add_with_ids(vecs, ids)
    return raw


def test_threads_share_one_querys_lists_with_the_same_answers(tmp_path: Path) -> None:
    import faiss

    ids, vecs = seeded(4000, dim=16)
    raw = ivf_of(ids, vecs, 32)
    faiss.write_index(raw, str(tmp_path / "ivf.faiss"))
    index = VectorIndex.load(tmp_path / "ivf.faiss", kind="ivf-sq8")
    split = faiss.extract_index_ivf(index._index)
    assert split.parallel_mode == vectors.SPLIT_PROBES  # FAISS's default (0) splits queries
    before = faiss.omp_get_max_threads()
    params = faiss.SearchParametersIVF()
    params.nprobe = 8
    try:
        for query in vecs[:20]:
            faiss.omp_set_num_threads(2)
            expected = raw.search(query[None], 10, params=params)[1][0].tolist()
            found = split.search(query[None], 10, params=params)[1][0].tolist()
            assert [int(ids[i]) for i in found] == expected
            assert [i for i, _ in index.search(query, 10, nprobe=8)] == expected
    finally:
        faiss.omp_set_num_threads(before)


@pytest.mark.parametrize("kind", ["flat", "ivf-sq8"])
def test_a_layer_drops_its_hidden_ids_as_a_selector_would(tmp_path: Path, kind: str) -> None:
    import faiss

    ids, vecs = seeded(3000, dim=16)
    if kind == "flat":
        index = VectorIndex.from_blocks([(ids, vecs)], 16)
    else:
        index = VectorIndex(ivf_of(ids, vecs, 16))
    rng = np.random.default_rng(5)
    for count in (0, 7, vectors.FILTER_AFTER, vectors.FILTER_AFTER + 1):
        hidden = np.sort(rng.choice(ids, size=count, replace=False))
        layer = vectors.Layer(index, hidden)
        assert (layer.skip is None) == (count <= vectors.FILTER_AFTER)
        selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(hidden))
        for query in vecs[:30:3]:
            expected = index.search(query, 20, skip=selector, nprobe=4) if count else None
            found = layer.search(query, 20, 4)
            assert len(found) == 20 and not set(hidden.tolist()) & {i for i, _ in found}
            if expected is not None:
                assert [i for i, _ in found] == [i for i, _ in expected]
