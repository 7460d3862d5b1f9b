"""The vector index: FAISS files per generation, built from the vectors SQLite stores.

Everything FAISS lives here: building from blocks, saving atomically, loading with a full
check (count and ids) against what the database committed, repairing, searching. A vector
file is derived data: whatever happens to it, `repair` makes it again from SQLite without
re-embedding anything.

A generation's vectors are a base file plus delta files (store.VectorLayout, recorded in
meta). A build that changes a few files writes one delta: the ids it removes
(vectors.<g>.removed.npy) and a flat index of the vectors it adds (vectors.<g>.delta.faiss).
Search sees base + deltas − removed ids. When the deltas grow past a share of the base (or on
request) the build compacts: a fresh base for the new generation. Small indexes always
compact, so they keep a single flat file as before. A large base is approximate (IVF with
8-bit scalar quantization), its candidates re-ranked on the exact vectors from SQLite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from indexer.config import AnnMode
from indexer.errors import BuildLockedError, GenerationMovedError, IndexerError
from indexer.store import FILE_MODE, IndexMeta, Store, VectorLayout

FILE_PATTERN = "vectors.{gen}.faiss"
DELTA_PATTERN = "vectors.{gen}.delta.faiss"
REMOVED_PATTERN = "vectors.{gen}.removed.npy"
#: How far a component read back from a flat file may stray from the stored float32 value:
#: flat files hold float16 codes (half the bytes for every exact search to read; relative
#: rounding error at most 2^-11).
FLAT_RTOL = 1e-3
FLAT_ATOL = 1e-6
#: Vectors compared with SQLite when a vector file is opened, and by `index verify`.
CHECKED_ON_LOAD = 4
CHECKED_BY_VERIFY = 256
#: A single query only gains from threads on large indexes (measured by scripts/bench.py).
PARALLEL_SEARCH_FROM = 200_000
#: FAISS's IndexIVF.parallel_mode that splits one query's probed lists between threads.
SPLIT_PROBES = 1
#: Up to this many ids hidden in a layer (removed by later deltas), a search asks for that
#: many more hits and drops them instead of giving FAISS a selector (Layer.search).
FILTER_AFTER = 1024
#: How far (L2) a vector read back from an 8-bit quantized base may stray from the stored
#: one: cosine 0.995 for unit vectors (a component past the trained range is clipped).
QUANTIZED_TOLERANCE = 0.1
#: Margin around each dimension's trained range, as a share of it (fewer clipped components).
QUANTIZER_MARGIN = 0.1
#: Candidates fetched from an approximate base per wanted hit, re-ranked on exact vectors.
RERANK_DEPTH = 2
#: Sample vectors an IVF base is trained on, per inverted list (FAISS warns below 39).
TRAIN_PER_LIST = 64
#: Queries used to choose nprobe, and the recall@k they are measured at.
RECALL_QUERIES = 200
RECALL_AT = 10
#: Norm of the noise added to the stored vectors that stand in for questions (cosine about
#: 0.8 to their own vector): an unchanged stored vector finds itself in its own list, and
#: nprobe chosen on such queries gave recall@10 0.87 on real questions (scripts/scale_bench.py).
QUERY_NOISE = 0.75
#: Stored vectors whose spread shapes that noise (recall_queries).
NOISE_BASIS = 2000
#: Scores this close count as tied when recall is measured (float32 sums in another order).
TIE = 1e-5

Warn = Callable[[str], None]
Step = Callable[[str], None]
Exact = Callable[[Sequence[int]], dict[int, np.ndarray]]


@dataclass(frozen=True)
class Policy:
    """When a build writes a delta, compacts, and makes the base approximate."""

    #: exact: always a flat base; always: an IVF base; auto: IVF from `ann_from` vectors.
    ann: AnnMode = "auto"
    #: Vectors from which `auto` trains an IVF base (it goes back to flat below half of it):
    #: exact search took 7 ms (p50, 1 thread) at 140 k vectors and 134 ms at 1.4 M.
    ann_from: int = 1_000_000
    #: Below this many vectors every build writes a whole base, as before deltas: rewriting
    #: 140 k vectors took 1.6 s against 0.2 s for a delta (docs/performance.md, Scale).
    delta_from: int = 100_000
    #: Compact when the deltas' churn (vectors added + ids removed) passes this share of the base.
    compact_share: float = 0.10
    #: Compact when a generation would have more delta files than this.
    max_deltas: int = 16
    #: Retrain the IVF base when the index has grown this many times past its training size.
    retrain_growth: float = 4.0
    #: nprobe is the smallest power of two reaching this recall@10 against exact search on
    #: the build's sample (recall_queries), times `nprobe_margin`. The sample rates each
    #: nprobe a little lower than questions in the documents' language do (1,000,000
    #: sentences: .958 at nprobe 16, questions .986), but higher than questions asked in
    #: another language, whose answers sit in the other language's lists (Japanese asking
    #: English: R@1 .814 at the sample's nprobe, .830 at twice it and with exact search;
    #: docs/performance.md, Scale).
    target_recall: float = 0.95
    nprobe_margin: int = 2
    #: Compact on this build whatever the deltas' size.
    compact: bool = False


DEFAULT_POLICY = Policy()


# ---------------------------------------------------------------- digests


def _hashes(ids: np.ndarray) -> np.ndarray:
    """splitmix64 of each id: an order-free digest is the sum of these."""
    z = np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _sum(ids: np.ndarray) -> int:
    return int(_hashes(ids).sum(dtype=np.uint64)) if len(ids) else 0


def ids_digest(ids: np.ndarray) -> str:
    """A digest of a set of vector ids (any order), recorded at commit and checked on load;
    a delta updates it from the ids it removes and adds."""
    return f"s1:{_sum(ids):016x}"


def updated_digest(digest: str, removed: np.ndarray, added: np.ndarray) -> str:
    """The digest of a set after removing and adding some ids."""
    total = (int(digest[3:], 16) - _sum(removed) + _sum(added)) % (1 << 64)
    return f"s1:{total:016x}"


def _legacy_digest(ids: np.ndarray) -> str:
    """The digest indexes recorded before deltas: blake2b of the sorted ids."""
    import hashlib

    data = np.ascontiguousarray(np.sort(ids), dtype=np.int64).tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# ---------------------------------------------------------------- one file


def flat_index(dim: int) -> faiss.Index:
    """An empty flat FAISS index over int64 ids, as flat files hold it: float16 codes."""
    codes = faiss.IndexScalarQuantizer(
        dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    return faiss.IndexIDMap2(codes)


class VectorIndex:
    """One FAISS file over int64 vector ids: flat (every vector compared; float16 codes, or
    float32 in files written before them), or IVF with 8-bit scalar quantization."""

    def __init__(self, index: faiss.Index) -> None:
        self._index = index
        self._threads = faiss.omp_get_max_threads()
        if (ivf := self._ivf) is not None:
            # Threads share one query's lists: FAISS's default shares queries between
            # threads, so the one question of an ask searched its lists on one thread.
            ivf.parallel_mode = SPLIT_PROBES

    @classmethod
    def from_blocks(cls, blocks: Iterable[tuple[np.ndarray, np.ndarray]], dim: int) -> VectorIndex:
        """Build a flat index from (ids, vectors) blocks, its codes float16: an exact search
        reads every vector, and at half the bytes it took 2.7 ms instead of 4.7 ms over the
        shared corpus's 26,189 vectors, with the same top 10 and scores within 5e-5."""
        index = flat_index(dim)
        for ids, vecs in blocks:
            index.add_with_ids(np.ascontiguousarray(vecs), ids)
        return cls(index)

    @classmethod
    def load(cls, path: Path, *, kind: str = "flat") -> VectorIndex:
        """Open a vector file memory-mapped; RuntimeError if unreadable. FAISS maps flat codes
        only with IO_FLAG_MMAP_IFC (IO_FLAG_MMAP reads them whole) and IVF lists only with
        IO_FLAG_MMAP (with both flags it refuses the file), so the caller says which it is."""
        mapped = faiss.IO_FLAG_MMAP_IFC if kind == "flat" else faiss.IO_FLAG_MMAP
        try:
            return cls(faiss.read_index(str(path), mapped | faiss.IO_FLAG_READ_ONLY))
        except RuntimeError:
            return cls(faiss.read_index(str(path)))

    def save(self, path: Path) -> None:
        """Write atomically: temp file, fsync, rename, fsync the folder; on any failure the
        temp file is removed and a full disk is an OSError(ENOSPC)."""
        _atomic_write(path, lambda tmp: faiss.write_index(self._index, str(tmp)))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        """ "flat" or "ivf-sq8"."""
        return "ivf-sq8" if self._ivf is not None else "flat"

    @property
    def _ivf(self) -> faiss.IndexIVF | None:
        inner = _inner(self._index)
        return inner if isinstance(inner, faiss.IndexIVF) else None

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of some ids held by the index (decoded, for a quantized one)."""
        index = faiss.downcast_index(self._index)
        return np.stack([index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, 0))

    def id_at(self, position: int) -> int:
        """The id of the vector added `position`-th (no need to read every id)."""
        return int(faiss.downcast_index(self._index).id_map.at(position))  # type: ignore[attr-defined]

    def ids(self) -> np.ndarray:
        """The vector ids held, in the order they were added."""
        id_map = faiss.downcast_index(self._index).id_map  # type: ignore[attr-defined]
        return faiss.vector_to_array(id_map).astype(np.int64)

    def search(
        self, vector: np.ndarray, k: int, *, skip: faiss.IDSelector | None = None, nprobe: int = 0
    ) -> list[tuple[int, float]]:
        """(vector id, score) of the k nearest, best first, leaving out ids `skip` selects
        (scores of a quantized index are approximate)."""
        if len(self) == 0 or k <= 0:
            return []
        faiss.omp_set_num_threads(1 if len(self) < PARALLEL_SEARCH_FROM else self._threads)
        queries = vector.reshape(-1, vector.shape[-1]).astype(np.float32)
        scores, ids = self._index.search(queries, k, params=self._params(skip, nprobe))
        return [(i, s) for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True) if i >= 0]

    def _params(self, skip: faiss.IDSelector | None, nprobe: int) -> faiss.SearchParameters | None:
        ivf = self._ivf
        params: faiss.SearchParameters
        if ivf is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = nprobe or ivf.nprobe
        elif skip is not None:
            params = faiss.SearchParameters()
        else:
            return None
        if skip is not None:
            params.sel = skip
        return params


# ---------------------------------------------------------------- a generation


@dataclass
class Layer:
    """One file of a generation and the ids later deltas hide in it (sorted, each one the
    layer holds)."""

    index: VectorIndex
    hidden: np.ndarray

    def __post_init__(self) -> None:
        self._hidden = frozenset(self.hidden.tolist()) if len(self.hidden) <= FILTER_AFTER else None
        self.skip: faiss.IDSelector | None = None
        if self._hidden is None:
            self._batch = faiss.IDSelectorBatch(np.ascontiguousarray(self.hidden, dtype=np.int64))
            self.skip = faiss.IDSelectorNot(self._batch)

    def search(self, vector: np.ndarray, k: int, nprobe: int) -> list[tuple[int, float]]:
        """The k nearest ids the layer shows, best first. Up to FILTER_AFTER hidden ids, the
        search asks for as many more and drops them: FAISS checking every scanned id against
        a selector made IVF searches about twice as slow (scripts/scale_bench.py --existing,
        docs/performance.md)."""
        if self._hidden is None:
            return self.index.search(vector, k, skip=self.skip, nprobe=nprobe)
        found = self.index.search(vector, k + len(self._hidden), nprobe=nprobe)
        return [hit for hit in found if hit[0] not in self._hidden][:k]

    @functools.cached_property
    def visible(self) -> np.ndarray:
        """The ids this layer holds and no later delta hides (read once: a layer is opened
        whole and never changes)."""
        ids = self.index.ids()
        return ids[~np.isin(ids, self.hidden)] if len(self.hidden) else ids

    def hides(self, vector_id: int) -> bool:
        """Whether a later delta removed this id from the layer."""
        at = int(np.searchsorted(self.hidden, vector_id))
        return at < len(self.hidden) and int(self.hidden[at]) == vector_id


class GenerationIndex:
    """A generation's vectors: the base, then deltas; each layer without the ids that later
    deltas removed. Approximate layers are re-ranked on `exact` vectors."""

    def __init__(self, layers: list[Layer], *, nprobe: int = 0, exact: Exact | None = None):
        self.layers = layers
        self.nprobe = nprobe
        self.exact = exact

    @classmethod
    def of(cls, index: VectorIndex) -> GenerationIndex:
        """A generation made of one file."""
        return cls([Layer(index, np.zeros(0, dtype=np.int64))])

    def __len__(self) -> int:
        return sum(len(layer.index) - len(layer.hidden) for layer in self.layers)

    @property
    def kind(self) -> str:
        """The base's kind."""
        return self.layers[0].index.kind

    def ids(self) -> np.ndarray:
        """The vector ids the generation holds (each once)."""
        parts = [layer.visible for layer in self.layers]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """Vectors of some ids the generation holds, each read from the layer that holds it
        visibly: the deltas (small) are asked first, the base gets the rest."""
        rows: dict[int, np.ndarray] = {}
        left = np.asarray(ids, dtype=np.int64)
        for layer in reversed(self.layers[1:]):
            held = left[np.isin(left, layer.visible)]
            rows.update(zip(held.tolist(), layer.index.vectors_of(held), strict=True))
            left = left[~np.isin(left, held)]
        base = self.layers[0]
        left = left[~np.isin(left, base.hidden)]
        rows.update(zip(left.tolist(), base.index.vectors_of(left), strict=True))
        return np.stack([rows[int(i)] for i in ids]) if len(ids) else np.zeros((0, 0))

    def sample_ids(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Up to `count` distinct random ids the generation holds, found by position (without
        reading every id)."""
        sizes = np.cumsum([len(layer.index) for layer in self.layers])
        wanted = min(count, len(self))
        chosen: set[int] = set()
        for position in rng.integers(0, max(1, int(sizes[-1])), size=20 * wanted + 20).tolist():
            if len(chosen) == wanted:
                break
            number = int(np.searchsorted(sizes, position, side="right"))
            layer = self.layers[number]
            vector_id = layer.index.id_at(position - (int(sizes[number - 1]) if number else 0))
            if not layer.hides(vector_id):
                chosen.add(vector_id)
        return np.array(sorted(chosen), dtype=np.int64)

    def digest(self) -> str:
        """ids_digest of the ids the generation holds: each layer's ids less those it hides
        (the digest is a sum, so nothing needs filtering)."""
        digest = ids_digest(np.zeros(0, dtype=np.int64))
        for layer in self.layers:
            digest = updated_digest(digest, layer.hidden, layer.index.ids())
        return digest

    def differs(self, held: np.ndarray, stored: np.ndarray) -> bool:
        """Whether a vector read back is not the stored one (beyond quantization)."""
        if self.kind == "flat":
            return not np.allclose(held, stored, rtol=FLAT_RTOL, atol=FLAT_ATOL, equal_nan=True)
        return not float(np.linalg.norm(held - stored)) <= QUANTIZED_TOLERANCE

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(vector id, cosine) of the k nearest, best first."""
        found: list[tuple[int, float]] = []
        for layer in self.layers:
            if layer.index.kind == "flat" or self.exact is None:
                found += layer.search(vector, k, self.nprobe)
            else:
                found += self._reranked(layer, vector, k)
        return sorted(found, key=lambda hit: -hit[1])[:k]

    def _reranked(self, layer: Layer, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        assert self.exact is not None
        candidates = layer.search(vector, k * RERANK_DEPTH, self.nprobe)
        stored = self.exact([i for i, _ in candidates])
        query = vector.reshape(-1).astype(np.float32)
        return [(i, float(stored[i] @ query)) for i, _ in candidates if i in stored]


def _inner(index: faiss.Index) -> faiss.Index:
    """The index an IndexIDMap2 wraps."""
    return faiss.downcast_index(faiss.downcast_index(index).index)  # type: ignore[attr-defined]


def path_of(directory: Path, generation: int) -> Path:
    """The base file a generation writes when it compacts."""
    return directory / FILE_PATTERN.format(gen=generation)


def layout_of(meta: IndexMeta) -> VectorLayout:
    """The generation's layout, with the defaults of an index older than deltas filled in."""
    layout = meta.vectors
    if not layout.base:
        name = FILE_PATTERN.format(gen=meta.generation)
        layout = dataclasses.replace(layout, base=name, base_count=meta.vector_count)
    return layout


def file_names(layout: VectorLayout) -> list[str]:
    """Every file of a layout: base first, then each delta's removed ids and vectors."""
    names = [layout.base]
    for gen in layout.deltas:
        names += [REMOVED_PATTERN.format(gen=gen), DELTA_PATTERN.format(gen=gen)]
    return names


def open_layout(
    directory: Path, layout: VectorLayout, *, exact: Exact | None = None
) -> GenerationIndex:
    """Open a generation's files (memory-mapped); RuntimeError, OSError or ValueError when one
    is missing or unreadable."""
    indexes = [VectorIndex.load(directory / layout.base, kind=layout.kind)]
    removed = []
    for gen in layout.deltas:
        removed.append(np.load(directory / REMOVED_PATTERN.format(gen=gen), mmap_mode="r"))
        path = directory / DELTA_PATTERN.format(gen=gen)
        if not path.is_file():
            raise OSError(errno.ENOENT, "missing", str(path))
        indexes.append(VectorIndex.load(path))
    hidden = _attribute(removed, [index.ids() for index in indexes[1:]])
    layers = [Layer(index, ids) for index, ids in zip(indexes, hidden, strict=True)]
    return GenerationIndex(layers, nprobe=layout.nprobe, exact=exact)


def _attribute(removed: list[np.ndarray], added: list[np.ndarray]) -> list[np.ndarray]:
    """The ids each layer hides (base first, then each delta), from each delta's removed ids
    and the ids each delta added. A removed id hides the row that was visible when its delta
    was written: the newest earlier delta that added it and still shows it, else the base.
    Only the deltas' ids are read, never every id of the base."""
    shown = [np.asarray(ids, dtype=np.int64) for ids in added]
    hidden: list[list[np.ndarray]] = [[] for _ in range(len(added) + 1)]
    for position, gone in enumerate(removed):
        left = np.unique(np.asarray(gone, dtype=np.int64))
        for earlier in reversed(range(position)):
            held = np.isin(left, shown[earlier])
            if held.any():
                hidden[earlier + 1].append(left[held])
                shown[earlier] = shown[earlier][~np.isin(shown[earlier], left[held])]
                left = left[~held]
        hidden[0].append(left)
    empty = np.zeros(0, dtype=np.int64)
    return [np.unique(np.concatenate(parts)) if parts else empty for parts in hidden]


# ---------------------------------------------------------------- writing a generation


@dataclass(frozen=True)
class Change:
    """What a build changes in the vector index: ids it removes, ids it adds (sorted)."""

    removed: np.ndarray
    added: np.ndarray


@dataclass(frozen=True)
class Written:
    """What a generation's vector files hold, as recorded in meta."""

    count: int
    digest: str
    layout: VectorLayout


def write_generation(
    store: Store,
    generation: int,
    dim: int,
    change: Change,
    policy: Policy = DEFAULT_POLICY,
    *,
    step: Step = lambda _: None,
) -> Written:
    """Write the files of a new generation (inside the build's transaction, before it
    commits): a delta when the change is small against the base, else a fresh base."""
    meta = store.meta()
    current = layout_of(meta)
    count = meta.vector_count - len(change.removed) + len(change.added)
    if needs_base(meta, current, count, change, policy) or not _matches(store, meta, current):
        return write_base(store, generation, dim, policy, previous=current, step=step)
    return _write_delta(store, generation, dim, meta, current, change, step)


def needs_base(
    meta: IndexMeta, current: VectorLayout, count: int, change: Change, policy: Policy
) -> bool:
    """Whether the next generation compacts instead of writing a delta."""
    churn = current.churn + len(change.removed) + len(change.added)
    return (
        meta.generation == 0
        or policy.compact
        or not meta.vector_ids_digest.startswith("s1:")
        or count < policy.delta_from
        or len(current.deltas) >= policy.max_deltas
        or churn > policy.compact_share * max(current.base_count, 0)
        or wanted_kind(count, policy, current) != current.kind
        or (current.kind != "flat" and count > policy.retrain_growth * current.trained_on)
    )


def base_outdated(meta: IndexMeta, policy: Policy) -> bool:
    """Whether a build that changes nothing still writes a new base: on request, or to switch
    between flat and approximate."""
    layout = layout_of(meta)
    return policy.compact or wanted_kind(meta.vector_count, policy, layout) != layout.kind


def wanted_kind(count: int, policy: Policy, current: VectorLayout | None = None) -> str:
    """The base kind for an index of `count` vectors (auto keeps IVF down to half its
    threshold, so an index near it does not flip on every build)."""
    if policy.ann == "exact" or count < 2:
        return "flat"
    if policy.ann == "always":
        return "ivf-sq8"
    threshold = policy.ann_from
    if current is not None and current.kind != "flat":
        threshold //= 2
    return "ivf-sq8" if count >= threshold else "flat"


def _matches(store: Store, meta: IndexMeta, layout: VectorLayout) -> bool:
    """Whether the current files hold what meta says (a delta on a wrong base stays wrong).

    A base whose size, modification time and inode are those recorded when it was written
    is taken as it is, so a small build never reads every id of a large base; readers still
    check the ids when they open it (open_current), and `index verify` checks every one.
    """
    if layout.base_stamp and _unchanged(store.path, layout):
        return True
    try:
        index = open_layout(store.path, layout)
    except (RuntimeError, OSError, ValueError):
        return False
    return mismatch(index, meta.vector_count, meta.vector_ids_digest) is None


def file_stamp(path: Path) -> str:
    """Size, modification time and inode of a file: what a rewrite or a copy changes."""
    status = path.stat()
    return f"{status.st_size}:{status.st_mtime_ns}:{status.st_ino}"


def _unchanged(directory: Path, layout: VectorLayout) -> bool:
    """Whether the base is the file written for this layout and every delta file is there."""
    try:
        if file_stamp(directory / layout.base) != layout.base_stamp:
            return False
    except OSError:
        return False
    return all((directory / name).is_file() for name in file_names(layout)[1:])


def _write_delta(
    store: Store,
    generation: int,
    dim: int,
    meta: IndexMeta,
    current: VectorLayout,
    change: Change,
    step: Step,
) -> Written:
    removed = np.ascontiguousarray(change.removed, dtype=np.int64)
    _atomic_write(
        store.path / REMOVED_PATTERN.format(gen=generation),
        lambda tmp: _save_array(tmp, removed),
    )
    step("delta")
    delta = VectorIndex.from_blocks(_blocks_of(store, change.added, dim), dim)
    delta.save(store.path / DELTA_PATTERN.format(gen=generation))
    layout = dataclasses.replace(
        current,
        deltas=(*current.deltas, generation),
        churn=current.churn + len(change.removed) + len(change.added),
    )
    count = meta.vector_count - len(change.removed) + len(change.added)
    return Written(count, updated_digest(meta.vector_ids_digest, removed, change.added), layout)


def _blocks_of(
    store: Store, ids: np.ndarray, dim: int, block: int = 4096
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(ids), block):
        chunk = ids[start : start + block]
        vectors = store.vectors_by_id(chunk.tolist())
        yield chunk, np.stack([vectors[int(i)] for i in chunk]).reshape(len(chunk), dim)


def write_base(
    store: Store,
    generation: int,
    dim: int,
    policy: Policy = DEFAULT_POLICY,
    *,
    previous: VectorLayout | None = None,
    step: Step = lambda _: None,
) -> Written:
    """Write a fresh base for `generation` from every vector SQLite stores (this
    transaction's view): flat, or IVF trained on a sample (or reusing the previous base's
    training while the index has not outgrown it)."""
    count = store.vector_count()
    kind = wanted_kind(count, policy, previous)
    name = FILE_PATTERN.format(gen=generation)
    if kind == "flat":
        index = VectorIndex.from_blocks(store.iter_vectors(dim), dim)
        layout = VectorLayout(base=name, base_count=len(index))
    else:
        index, layout = _ivf_base(store, dim, count, policy, previous, step)
        layout = dataclasses.replace(layout, base=name)
    index.save(store.path / name)
    layout = dataclasses.replace(layout, base_stamp=file_stamp(store.path / name))
    return Written(len(index), ids_digest(index.ids()), layout)


def nlist_for(count: int) -> int:
    """Inverted lists for `count` vectors: about 4·√n, with at least 39 training points each
    (FAISS's own minimum)."""
    return max(1, min(int(4 * math.sqrt(count)), count // 39))


def ivf_sq8(quantizer: faiss.Index, dim: int, nlist: int) -> faiss.IndexIVFScalarQuantizer:
    """An untrained IVF index with 8-bit scalar codes over `nlist` lists, by inner product.

    The caller's coarse quantizer is flat (IndexFlatIP) in every base index build writes: an
    HNSW one (faiss.IndexHNSWFlat) trained and filled 3.7-5.1 times slower at 300,000 and
    1,400,000 vectors for the same recall, since a flat one compares every centroid in one
    matrix product (scripts/ivf_quantizer.py)."""
    ivf = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    ivf.sq.rangestat_arg = QUANTIZER_MARGIN
    return ivf


def _ivf_base(
    store: Store,
    dim: int,
    count: int,
    policy: Policy,
    previous: VectorLayout | None,
    step: Step,
) -> tuple[VectorIndex, VectorLayout]:
    rng = np.random.default_rng(0)
    all_ids = store.expected_vector_ids()
    queries = recall_queries(store.vectors_by_id, all_ids, rng)
    trained = _reusable_training(store, previous, count, policy)
    if trained is None:
        nlist = nlist_for(count)
        sample_ids = rng.choice(all_ids, size=min(count, nlist * TRAIN_PER_LIST), replace=False)
        sample = np.concatenate([v for _, v in _blocks_of(store, np.sort(sample_ids), dim)])
        ivf = ivf_sq8(faiss.IndexFlatIP(dim), dim, nlist)
        ivf.train(sample)
        index: faiss.Index = faiss.IndexIDMap2(ivf)
        trained_on = count
    else:
        index, trained_on = trained
    step("train")
    heap = faiss.ResultHeap(len(queries), RECALL_AT, keep_max=True)
    for ids, vecs in store.iter_vectors(dim):
        index.add_with_ids(np.ascontiguousarray(vecs), ids)
        scores, rows = faiss.knn(
            queries, vecs, min(RECALL_AT, len(vecs)), faiss.METRIC_INNER_PRODUCT
        )
        heap.add_result(scores, np.where(rows >= 0, ids[rows], -1))
    heap.finalize()
    built = VectorIndex(index)
    filled = built._ivf
    assert filled is not None
    filled.make_direct_map()
    nprobe, recall = choose_nprobe(
        built, queries, heap, store, policy.target_recall, margin=policy.nprobe_margin
    )
    layout = VectorLayout(
        base_count=len(built),
        kind="ivf-sq8",
        nlist=int(filled.nlist),
        nprobe=nprobe,
        trained_on=trained_on,
        recall=round(recall, 4),
    )
    return built, layout


def recall_queries(read: Exact, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stand-ins for questions, on which a build measures the recall of its IVF base: stored
    vectors moved by noise of norm QUERY_NOISE shaped like the spread of the stored vectors
    (random combinations of NOISE_BASIS of them, centred); `read` gives vectors by id.

    A question differs from the sentence answering it along the directions in which sentences
    differ from each other. Noise of the same norm drawn evenly over all dimensions falls
    mostly where stored vectors barely vary, so it rarely moved a query out of its own
    list: nprobe chosen on it gave recall@10 0.938 on real questions at 140,000 vectors and
    0.932 at 14,000,000, where the build expected 0.95 (docs/performance.md, Scale).
    """
    picked = np.sort(rng.choice(ids, size=min(RECALL_QUERIES, len(ids)), replace=False))
    queries = np.stack(list(read(picked.tolist()).values()))
    basis_ids = np.sort(rng.choice(ids, size=min(NOISE_BASIS, len(ids)), replace=False))
    basis = np.stack(list(read(basis_ids.tolist()).values()))
    basis -= basis.mean(axis=0)
    noise = rng.normal(size=(len(queries), len(basis))).astype(np.float32) @ basis
    norms = np.linalg.norm(noise, axis=1, keepdims=True)
    queries = queries + noise * (QUERY_NOISE / np.where(norms > 0, norms, 1.0))
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def _reusable_training(
    store: Store, previous: VectorLayout | None, count: int, policy: Policy
) -> tuple[faiss.Index, int] | None:
    """The previous IVF base emptied, when its training still fits the index."""
    if (
        previous is None
        or previous.kind == "flat"
        or count > policy.retrain_growth * previous.trained_on
    ):
        return None
    with contextlib.suppress(RuntimeError):
        index = faiss.read_index(str(store.path / previous.base))
        if isinstance(_inner(index), faiss.IndexIVF):
            index.reset()
            return index, previous.trained_on
    return None


def choose_nprobe(
    index: VectorIndex,
    queries: np.ndarray,
    truth: faiss.ResultHeap,
    store: Store,
    target: float,
    *,
    margin: int = 1,
) -> tuple[int, float]:
    """`margin` times the smallest power-of-two nprobe whose re-ranked top-10 reaches
    `target` recall against exact search (`truth`: its finalized top-k), at most every list;
    and the recall the chosen nprobe reaches."""
    exact: Exact = store.vectors_by_id
    generation = GenerationIndex([Layer(index, np.zeros(0, dtype=np.int64))], exact=exact)
    nlist = index._ivf.nlist if index._ivf is not None else 1

    def recall(nprobe: int) -> float:
        generation.nprobe = nprobe
        return recall_at(generation, queries, truth.I, truth.D)

    nprobe, reached = 1, recall(1)
    while reached < target and nprobe < nlist:
        nprobe = min(nprobe * 2, nlist)
        reached = recall(nprobe)
    chosen = min(nprobe * margin, nlist)
    return chosen, reached if chosen == nprobe else recall(chosen)


def recall_at(
    index: GenerationIndex, queries: np.ndarray, truth: np.ndarray, scores: np.ndarray
) -> float:
    """Mean share of each query's exact top-k (rows of ids `truth`, best first, with their
    `scores`) that the index returns. A hit whose exact score ties the k-th one counts too:
    rows sharing one vector (a heading repeated in many files) are interchangeable, and which
    of them fill the last places is arbitrary in exact search as well. The index must return
    exact scores (flat layers, or approximate ones re-ranked on the stored vectors)."""
    k = truth.shape[1]
    found = 0
    for query, expected, best in zip(queries, truth, scores, strict=True):
        wanted = expected[expected >= 0]
        if not len(wanted):
            continue
        last = float(best[len(wanted) - 1]) - TIE
        ids = set(wanted.tolist())
        found += sum(1 for i, score in index.search(query, k) if i in ids or score >= last)
    return found / max(1, int((truth >= 0).sum()))


# ---------------------------------------------------------------- files on disk


def remove_old(directory: Path, referenced: Iterable[str]) -> None:
    """Delete the vector files the committed generation does not refer to, temp files
    among them (under the writer lock, after the commit).

    Readers that opened an older generation keep reading it: its files stay mapped after
    they are deleted. A reader whose read snapshot names a generation whose files are gone
    before it opened them gets GenerationMovedError and asks again (open_current). So the
    compaction that supersedes a base deletes it, not the next build: deleting a 5 GB file
    took 3.2 s on a file system mounted with `discard` (docs/performance.md, Scale)."""
    wanted = set(referenced)
    for path in directory.glob("vectors.*"):
        if path.name not in wanted:
            path.unlink(missing_ok=True)


def _save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as out:
        np.save(out, array)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        _fsync(tmp)
        os.replace(tmp, path)
    except RuntimeError as exc:  # faiss reports write errors as RuntimeError
        tmp.unlink(missing_ok=True)
        if "No space left" in str(exc):
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
        raise OSError(errno.EIO, f"cannot write the vector file ({exc})", str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):
        _fsync(path.parent)


# ---------------------------------------------------------------- checks and repair


def mismatch(index: VectorIndex | GenerationIndex, count: int, digest: str) -> str | None:
    """Why a loaded index does not belong to the committed state (None if it does)."""
    if len(index) != count:
        return f"holds {len(index)} vectors, the database {count}"
    if not digest:
        return None
    if isinstance(index, GenerationIndex) and digest.startswith("s1:"):
        held = index.digest()
    else:
        ids = index.ids()
        held = ids_digest(ids) if digest.startswith("s1:") else _legacy_digest(ids)
    if held != digest:
        return "holds other vector ids than the database"
    return None


def differing_vectors(index: VectorIndex | GenerationIndex, store: Store, sample: int) -> int:
    """How many of `sample` random vectors of the index differ from those SQLite stores
    (bytes overwritten inside the vector data keep counts and ids intact)."""
    generation = index if isinstance(index, GenerationIndex) else GenerationIndex.of(index)
    chosen = generation.sample_ids(sample, np.random.default_rng())
    if not len(chosen):
        return 0
    stored = store.vectors_by_id(chosen.tolist())
    held = generation.vectors_of(chosen)
    return sum(
        1
        for i, vector in zip(chosen.tolist(), held, strict=True)
        if i not in stored or generation.differs(vector, stored[i])
    )


def open_current(store: Store, *, warn: Warn) -> GenerationIndex:
    """The current generation's vector index, checked against the database (inside the
    caller's read snapshot); rebuilt from SQLite when a file is missing or does not match.
    GenerationMovedError when its files could not be opened because a newer commit replaced
    them (rebuilding would give the reader an outdated index, at great cost)."""
    meta = store.meta()
    layout = layout_of(meta)
    exact: Exact = store.vectors_by_id
    index = None
    with contextlib.suppress(RuntimeError, OSError, ValueError):
        index = open_layout(store.path, layout, exact=exact)
    if index is None and store.latest_generation() != meta.generation:
        raise GenerationMovedError(meta.generation)
    if (
        index is not None
        and not mismatch(index, meta.vector_count, meta.vector_ids_digest)
        and not differing_vectors(index, store, CHECKED_ON_LOAD)
    ):
        return index
    names = " + ".join(file_names(layout)) if layout.deltas else layout.base
    warn(
        f"{names} does not match the database (crash or manual change); "
        "rebuilding it from stored vectors, no re-embedding needed"
    )
    dim = meta.model.dimension if meta.model else 0
    rebuilt = VectorIndex.from_blocks(store.iter_vectors(dim), dim)
    if not layout.deltas and layout.kind == "flat":
        # Saved only when no build is running: a reader never waits for a writer.
        with contextlib.suppress(BuildLockedError, OSError), store.writer_lock(wait=0):
            rebuilt.save(store.path / layout.base)
    return GenerationIndex.of(rebuilt)


def problems(store: Store) -> list[str]:
    """What is wrong with the current vector files, compared id by id with the database."""
    meta = store.meta()
    layout = layout_of(meta)
    for name in file_names(layout):
        if not (store.path / name).is_file():
            if store.latest_generation() != meta.generation:
                return ["a build committed while the index was checked — run `index verify` again"]
            return [f"{name} is missing — run `index verify --repair`"]
    try:
        index = open_layout(store.path, layout)
    except (RuntimeError, OSError, ValueError) as exc:
        names = ", ".join(file_names(layout))
        return [f"{names}: cannot be read ({exc}) — run `index verify --repair`"]
    ids = np.sort(index.ids())
    stored = store.expected_vector_ids()
    if len(ids) != len(stored):
        return [
            f"FAISS holds {len(ids)} vectors but SQLite {len(stored)} sentences and passages — "
            "run `index verify --repair`"
        ]
    if not np.array_equal(ids, stored):
        return ["FAISS ids differ from SQLite sentence ids — run `index verify --repair`"]
    differing = differing_vectors(index, store, CHECKED_BY_VERIFY)
    if differing:
        return [
            f"{differing} of {min(CHECKED_BY_VERIFY, len(ids))} sampled FAISS vectors differ from "
            "those stored in SQLite — run `index verify --repair`"
        ]
    return []


def repair(store: Store, policy: Policy = DEFAULT_POLICY) -> int:
    """Write a fresh base for the current generation from SQLite and record it (its deltas
    dropped), under the writer lock."""
    busy = f"a build is writing {store.path}; repair after it finishes"
    with store.writer_lock(wait=0, busy=busy), store.transaction():
        meta = store.meta()
        if meta.generation == 0 or meta.model is None:
            raise IndexerError(f"{store.path} has no committed build — run `index build DIR`")
        previous = dataclasses.replace(layout_of(meta), trained_on=0)  # retrain: may be damaged
        written = write_base(
            store, meta.generation, meta.model.dimension, policy, previous=previous
        )
        store.record_vectors(
            vector_count=written.count, vector_ids_digest=written.digest, layout=written.layout
        )
    return meta.generation


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
