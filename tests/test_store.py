"""The store on a real SQLite file: records in, records out, and the writer lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.errors import BuildLockedError, NoIndexError
from indexer.ranking import DEFAULT
from indexer.store import (
    FileEntry,
    ModelRecord,
    PassageEntry,
    SentenceEntry,
    Store,
    decode_vector,
    decode_vectors,
    encode_vector,
    keyword_rows,
    vector_key,
)
from tests.files import store_vectors_as_float32

MODEL = ModelRecord(name="m", checksum="c" * 64, path="", dimension=4, pooling="mean")


def entry(path: str = "a.md") -> FileEntry:
    return FileEntry(path, 10, 1, "sha", "utf-8", "markdown", truncated=False)


def sentences(texts: list[str]) -> list[SentenceEntry]:
    return [SentenceEntry(t, "text", i + 1, i + 1, 0, len(t), None, vector_key("c", t))
            for i, t in enumerate(texts)]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "idx")
    store.create()
    return store


def written(store: Store, texts: list[str], path: str = "a.md") -> int:
    rows = sentences(texts)
    keys = [r.key for r in rows] + ["passage"]
    store.add_vectors(keys, np.eye(len(keys), 4, dtype=np.float32))
    with store.transaction():
        return store.write_file(
            entry(path), rows, [PassageEntry(0, len(texts) - 1, "passage", "chunk")],
            indexed_at="now", keyword_window=DEFAULT.keyword_window,
        )  # fmt: skip


def test_a_missing_index_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(NoIndexError):
        Store(tmp_path / "none").meta()


def test_meta_round_trips_as_a_typed_record(store: Store) -> None:
    assert store.meta().model is None and store.meta().generation == 0
    with store.transaction():
        store.record_build(
            MODEL, split_version="5", generation=3, vector_count=7, vector_ids_digest="d"
        )
    meta = store.meta()
    assert meta.model == MODEL and meta.generation == 3 and store.generation() == 3
    assert (meta.vector_count, meta.vector_ids_digest, meta.split_version) == (7, "d", "5")


def test_one_file_is_written_and_deleted_as_a_whole(store: Store) -> None:
    file_id = written(store, ["Alpha beta.", "Gamma delta.", "Epsilon."])
    assert store.stats().sentences == 3 and store.stats().passages == 1
    ids = store.expected_vector_ids()
    assert len(ids) == 4 and store.vector_count() == 4
    texts = store.texts(ids[:3].tolist())
    assert sorted(texts.values()) == ["Alpha beta.", "Epsilon.", "Gamma delta."]
    assert store.keyword_search('"gamma"', 5, DEFAULT.bm25_weights)
    members = store.passage_members([int(ids[3]) - (1 << 48)])
    assert sorted(next(iter(members.values()))) == sorted(ids[:3].tolist())
    with store.transaction():
        store.delete_file(file_id)
        store.delete_unused_vectors()
    assert store.stats() == type(store.stats())(0, 0, 0, 0)
    assert store.keyword_search('"gamma"', 5, DEFAULT.bm25_weights) == []


def test_every_vector_is_read_in_id_order_without_a_temporary_sort(store: Store) -> None:
    written(store, ["Alpha beta.", "Gamma delta."], "b.md")
    written(store, ["Epsilon.", "Zeta eta.", "Theta."], "a.md")
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    with store.snapshot():
        blocks = list(store.iter_vectors(4, block=2))
    store.db.conn.set_trace_callback(None)
    ids = np.concatenate([i for i, _ in blocks])
    assert ids.tolist() == sorted(store.expected_vector_ids().tolist()) and len(ids) == 7
    for sql in (s for s in statements if s.lstrip().upper().startswith("SELECT")):
        plan = " ".join(r[3] for r in store.db.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "TEMP B-TREE" not in plan, plan


def stored_keys(store: Store) -> set[str]:
    return {r[0] for r in store.db.execute("SELECT key FROM vectors")}


def test_unused_vectors_are_found_from_what_the_change_released(store: Store) -> None:
    first = written(store, ["Shared sentence.", "Only in a."], "a.md")
    written(store, ["Shared sentence.", "Only in b."], "b.md")
    with store.transaction():
        store.delete_unused_vectors()  # the first cleanup looks at everything, then marks
    everything = stored_keys(store)
    assert len(everything) == 4  # three sentences and the passage key both files use
    # A vector staged after the mark by a build that died: nobody refers to it.
    store.add_vectors(["orphan"], np.ones((1, 4), dtype=np.float32))
    released = store.vector_refs([first])
    with store.transaction():
        store.delete_file(first)
        store.delete_unused_vectors(released)
    # a.md's own sentence and the orphan go; the shared sentence and passage stay for b.md.
    assert stored_keys(store) == everything - {vector_key("c", "Only in a.")}
    # What a full sweep would delete now: nothing more.
    with store.transaction():
        store.delete_unused_vectors()
    assert stored_keys(store) == everything - {vector_key("c", "Only in a.")}


@pytest.mark.filterwarnings("error")
def test_vectors_are_stored_as_float16_and_float32_blobs_still_read() -> None:
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(6, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    blobs = [encode_vector(v) for v in vecs]
    assert {len(b) for b in blobs} == {2 * 384 + 1}  # half of float32's 1,536 bytes, and a tag
    decoded = decode_vectors(blobs, 384)
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, vecs, rtol=1e-3, atol=1e-7)
    assert np.abs((decoded * vecs).sum(axis=1) - 1).max() < 1e-3  # cosine with itself
    before = vecs[0].tobytes()  # how every vector was stored before float16
    assert np.array_equal(decode_vector(before), vecs[0])
    mixed = decode_vectors([before, blobs[1]], 384)
    assert np.array_equal(mixed[0], vecs[0]) and np.array_equal(mixed[1], decoded[1])
    # float16 cannot hold 1e6: kept float32, exactly; a damaged model's NaN stays NaN
    large = np.full(4, 1e6, dtype=np.float32)
    assert len(encode_vector(large)) == 16 and np.array_equal(
        decode_vector(encode_vector(large)), large
    )
    assert np.isnan(decode_vector(encode_vector(np.full(4, np.nan, dtype=np.float32)))).all()
    assert decode_vectors([], 384).shape == (0, 384)


def test_narrow_vectors_stores_float32_blobs_as_float16_where_float16_holds_them(
    store: Store,
) -> None:
    vecs = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float16).astype(np.float32)
    large = np.full(4, 1e6, dtype=np.float32)  # float16 cannot hold it: stays float32
    store.add_vectors(["a", "b", "c", "large"], np.vstack([vecs, large]))
    store_vectors_as_float32(store.path)  # as an older version stored them
    with store.db.atomic():
        assert store.narrow_vectors(block=2) == 3
        assert store.narrow_vectors() == 0, "nothing left to narrow; the large one stays"
    stored = dict(store.db.execute("SELECT key, vector FROM vectors").fetchall())
    assert {k: len(b) for k, b in stored.items()} == {"a": 9, "b": 9, "c": 9, "large": 16}
    for key, vector in zip("abc", vecs, strict=True):
        assert np.array_equal(decode_vector(stored[key]), vector)


def test_narrowed_vectors_leave_whole_pages_free(store: Store) -> None:
    vecs = np.random.default_rng(3).normal(size=(300, 384)).astype(np.float16).astype(np.float32)
    keys = [f"k{i}" for i in range(len(vecs))]
    store.add_vectors(keys, vecs)
    # As an older version stored them: 1,536 bytes, two to a page.
    store_vectors_as_float32(store.path)

    def used_pages() -> int:
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        return pages - store.db.execute("PRAGMA freelist_count").fetchone()[0]

    before = used_pages()
    with store.db.atomic():
        assert store.narrow_vectors(block=64) == len(vecs)
    assert used_pages() < 0.6 * before, "rows rewritten, not updated in place, fill their pages"


def test_integrity_counts_staged_vectors(store: Store) -> None:
    written(store, ["One sentence here."])
    store.add_vectors(["staged"], np.ones((1, 4), dtype=np.float32))
    integrity = store.integrity()
    assert integrity.staged_vectors == 1 and integrity.quick_check == "ok"
    assert integrity.sentences_without_vector == integrity.sentences_without_file == 0


def test_a_second_writer_is_refused_with_the_message_given(store: Store) -> None:
    second = Store(store.path)
    with (
        store.writer_lock(),
        pytest.raises(BuildLockedError, match="busy now"),
        second.writer_lock(busy="busy now"),
    ):
        pass
    with store.writer_lock():
        pass  # released after the first


def test_keyword_rows_hold_the_heading_beyond_the_window() -> None:
    window = DEFAULT.keyword_window
    rows = [(1, "Kubernetes", "heading")] + [(i, f"word{i}", "text") for i in range(2, 8)]
    near = {i: context.split() for i, _, context in keyword_rows(rows, window=window)}
    far = 2 + window  # the first sentence the window no longer reaches back from
    assert "kubernetes" in near[far] and "kubernetes" in near[7]
    assert near[2].count("kubernetes") == 1, "inside the window the heading counts once"


def test_a_files_sentences_are_read_back_in_order(store: Store) -> None:
    written(store, ["First one.", "Second one.", "Third one."], path="dir/a.md")
    rows = store.file_sentences("dir/a.md")
    assert [r.text for r in rows] == ["First one.", "Second one.", "Third one."]
    assert [r.position for r in rows] == [0, 1, 2] and rows[0].path == "dir/a.md"
    assert store.file_sentences("../etc/passwd") == []


def test_opening_an_index_does_not_import_pandas(tmp_path: Path) -> None:
    # sqlite-utils imports pandas when it is installed (0.5–0.8 s of every process); the
    # store keeps it out, and pandas still imports afterwards for whatever needs it.
    pytest.importorskip("pandas")
    code = (
        "import sys; from pathlib import Path; from indexer.store import Store; "
        f"s = Store(Path({str(tmp_path / 'idx')!r})); s.create(); "
        "print('pandas' in sys.modules); import pandas; print(pandas.DataFrame is not None)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
