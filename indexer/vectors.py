"""The vector index: one FAISS file per generation, built from the vectors SQLite stores.

Everything FAISS lives here: building from blocks, saving atomically, loading with a full
check (count and ids) against what the database committed, repairing, searching. A vector
file is derived data: whatever happens to it, `rebuild` makes it again from SQLite without
re-embedding anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import faiss
import numpy as np

from indexer.errors import BuildLockedError, IndexerError
from indexer.store import Store

FILE_PATTERN = "vectors.{gen}.faiss"
#: A single query only gains from threads on large indexes (measured by scripts/bench.py).
PARALLEL_SEARCH_FROM = 200_000

Warn = Callable[[str], None]


def ids_digest(ids: np.ndarray) -> str:
    """A short digest of sorted vector ids, recorded at commit and checked on load."""
    return hashlib.blake2b(
        np.ascontiguousarray(ids, dtype=np.int64).tobytes(), digest_size=16
    ).hexdigest()


class VectorIndex:
    """An exact inner-product index (cosine on normalised vectors) over int64 vector ids."""

    def __init__(self, index: faiss.Index) -> None:
        self._index = index
        self._threads = faiss.omp_get_max_threads()

    @classmethod
    def from_blocks(cls, blocks: Iterable[tuple[np.ndarray, np.ndarray]], dim: int) -> VectorIndex:
        """Build from (ids, vectors) blocks."""
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        for ids, vecs in blocks:
            index.add_with_ids(np.ascontiguousarray(vecs), ids)
        return cls(index)

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        """Open a vector file (memory-mapped where faiss allows it); RuntimeError if unreadable."""
        try:
            return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY))
        except RuntimeError:
            return cls(faiss.read_index(str(path)))

    def save(self, path: Path) -> None:
        """Write atomically: temp file, fsync, rename, fsync the folder."""
        tmp = path.with_suffix(".tmp")
        faiss.write_index(self._index, str(tmp))
        _fsync(tmp)
        os.replace(tmp, path)
        with contextlib.suppress(OSError):
            _fsync(path.parent)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """The vector ids held, in the order they were added."""
        id_map = faiss.downcast_index(self._index).id_map  # type: ignore[attr-defined]
        return faiss.vector_to_array(id_map).astype(np.int64)

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(vector id, cosine) of the k nearest, best first."""
        if len(self) == 0:
            return []
        faiss.omp_set_num_threads(1 if len(self) < PARALLEL_SEARCH_FROM else self._threads)
        scores, ids = self._index.search(vector.reshape(1, -1).astype(np.float32), k)
        return [(i, s) for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True) if i >= 0]


def path_of(directory: Path, generation: int) -> Path:
    """The vector file belonging to a generation."""
    return directory / FILE_PATTERN.format(gen=generation)


def rebuild(store: Store, generation: int, dim: int) -> VectorIndex:
    """Build a generation's vector file from the vectors in SQLite (the caller's view) and
    save it."""
    index = VectorIndex.from_blocks(store.iter_vectors(dim), dim)
    index.save(path_of(store.path, generation))
    return index


def remove_old(directory: Path, keep: int) -> None:
    """Delete vector files older than the previous generation (readers may still hold it)."""
    for path in directory.glob("vectors.*.faiss"):
        gen = path.name.split(".")[1]
        if gen.isdigit() and int(gen) < keep - 1:
            path.unlink(missing_ok=True)
    for path in directory.glob("vectors.*.tmp"):
        path.unlink(missing_ok=True)


def mismatch(index: VectorIndex, count: int, digest: str) -> str | None:
    """Why a loaded index does not belong to the committed state (None if it does)."""
    if len(index) != count:
        return f"holds {len(index)} vectors, the database {count}"
    if digest and ids_digest(np.sort(index.ids())) != digest:
        return "holds other vector ids than the database"
    return None


def open_current(store: Store, *, warn: Warn) -> VectorIndex:
    """The current generation's vector index, checked against the database (inside the
    caller's read snapshot); rebuilt from SQLite when it is missing or does not match."""
    meta = store.meta()
    path = path_of(store.path, meta.generation)
    index = None
    if path.is_file():
        with contextlib.suppress(RuntimeError):
            index = VectorIndex.load(path)
    if index is not None and not mismatch(index, meta.vector_count, meta.vector_ids_digest):
        return index
    warn(
        f"{path.name} does not match the database (crash or manual change); "
        "rebuilding it from stored vectors, no re-embedding needed"
    )
    dim = meta.model.dimension if meta.model else 0
    index = VectorIndex.from_blocks(store.iter_vectors(dim), dim)
    # Saved only when no build is running: a reader never waits for a writer.
    with contextlib.suppress(BuildLockedError, OSError), store.writer_lock(wait=0):
        index.save(path)
    return index


def problems(store: Store) -> list[str]:
    """What is wrong with the current vector file, compared id by id with the database."""
    generation = store.generation()
    path = path_of(store.path, generation)
    if not path.is_file():
        return [f"{path.name} is missing — run `index verify --repair`"]
    try:
        ids = np.sort(VectorIndex.load(path).ids())
    except RuntimeError as exc:
        return [f"{path.name} cannot be read ({exc}) — run `index verify --repair`"]
    stored = store.expected_vector_ids()
    if len(ids) != len(stored):
        return [
            f"FAISS holds {len(ids)} vectors but SQLite {len(stored)} sentences and passages — "
            "run `index verify --repair`"
        ]
    if not np.array_equal(ids, stored):
        return ["FAISS ids differ from SQLite sentence ids — run `index verify --repair`"]
    return []


def repair(store: Store) -> int:
    """Rewrite the current generation's vector file from SQLite, under the writer lock."""
    busy = f"a build is writing {store.path}; repair after it finishes"
    with store.writer_lock(wait=0, busy=busy), store.snapshot():
        meta = store.meta()
        if meta.generation == 0 or meta.model is None:
            raise IndexerError(f"{store.path} has no committed build — run `index build DIR`")
        rebuild(store, meta.generation, meta.model.dimension)
    return meta.generation


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
