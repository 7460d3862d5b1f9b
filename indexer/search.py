"""The ask use case: a question in any language → the stored sentences that answer it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import faiss
import filelock
import numpy as np

from indexer.embed import Embedder
from indexer.errors import EmptyQuestionError, IndexUnusableError
from indexer.store import SentenceRow, Store, build_faiss

#: Candidates fetched per requested hit, so grouping can still return k different places.
OVERFETCH = 4


@dataclass
class Hit:
    """One answer: a stored sentence with its place, score and surrounding sentences."""

    rank: int
    score: float
    path: str
    line: int
    line_end: int
    text: str
    kind: str
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    sentence_id: int = 0

    @property
    def location(self) -> str:
        """`path:line` as editors and terminals understand it."""
        return f"{self.path}:{self.line}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready record with every field."""
        return {**asdict(self), "location": self.location}


class Searcher:
    """Answers questions from one index; keeps the FAISS file of the current generation open."""

    def __init__(
        self, store: Store, embedder: Embedder, *, warn: Callable[[str], None] | None = None
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.warn = warn or (lambda message: None)
        self._faiss: tuple[int, faiss.Index] | None = None

    def ask(self, question: str, *, k: int = 5, context: int = 1) -> list[Hit]:
        """The k best places for a question, best first."""
        if not question or not question.strip():
            raise EmptyQuestionError()
        vector = self.embedder.embed_query(question.strip())
        with self._snapshot():
            index = self._current_index()
            if index.ntotal == 0:
                return []
            scores, ids = index.search(vector.reshape(1, -1).astype(np.float32), k * OVERFETCH)
            ranked = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            rows = self.store.sentences([i for i, _ in ranked])
            chosen = _distinct_places(ranked, rows, k=k, context=context)
            return [
                self._hit(rank, rows[i], score, context)
                for rank, (i, score) in enumerate(chosen, 1)
            ]

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        # One read transaction: the generation and the sentences come from the same commit.
        db = self.store.db
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.execute("COMMIT")

    def _current_index(self) -> faiss.Index:
        generation = self.store.generation()
        if self._faiss and self._faiss[0] == generation:
            return self._faiss[1]
        index = self._load_checked(generation)
        self._faiss = (generation, index)
        return index

    def _load_checked(self, generation: int) -> faiss.Index:
        meta = self.store.meta()
        expected = int(meta.get("sentences", -1))
        path = self.store.faiss_path(generation)
        index = None
        if path.is_file():
            with contextlib.suppress(RuntimeError):
                index = self.store.read_faiss(generation)
        if index is not None and index.ntotal == expected:
            return index
        self.warn(
            f"{path.name} does not match the database (crash or manual change); "
            "rebuilding it from stored vectors, no re-embedding needed"
        )
        dim = int(meta.get("dimension", self.embedder.dimension))
        index = build_faiss(self.store.iter_sentence_vectors(dim), dim)
        self._persist(generation, index)
        return index

    def _persist(self, generation: int, index: faiss.Index) -> None:
        # Only when no build is running; a reader never waits for a writer.
        lock = filelock.FileLock(self.store.lock_path, timeout=0)
        with contextlib.suppress(filelock.Timeout, OSError), lock:
            target = self.store.faiss_path(generation)
            tmp = target.with_suffix(".tmp")
            faiss.write_index(index, str(tmp))
            tmp.replace(target)

    def _hit(self, rank: int, row: SentenceRow, score: float, context: int) -> Hit:
        before, after = self._context(row, context)
        return Hit(
            rank=rank,
            score=round(score, 4),
            path=row.path,
            line=row.line_start,
            line_end=row.line_end,
            text=row.text,
            kind=row.kind,
            before=before,
            after=after,
            sentence_id=row.id,
        )

    def _context(self, row: SentenceRow, context: int) -> tuple[list[str], list[str]]:
        if context <= 0:
            return [], []
        around = self.store.neighbours(row.file_id, row.position - context, row.position + context)
        before = [r.text for r in around if r.position < row.position]
        after = [r.text for r in around if r.position > row.position]
        return before, after


def _distinct_places(
    ranked: list[tuple[int, float]], rows: dict[int, SentenceRow], *, k: int, context: int
) -> list[tuple[int, float]]:
    """Drop hits whose shown context would overlap that of a better hit in the same file."""
    chosen: list[tuple[int, float]] = []
    taken: list[SentenceRow] = []
    reach = 2 * max(context, 0)
    for sentence_id, score in ranked:
        row = rows.get(sentence_id)
        if row is None:
            continue
        if any(t.file_id == row.file_id and abs(t.position - row.position) <= reach for t in taken):
            continue
        chosen.append((sentence_id, score))
        taken.append(row)
        if len(chosen) == k:
            break
    return chosen


def require_index(store: Store) -> None:
    """Fail with a clear message unless the store holds a committed build."""
    store.check_schema()
    if store.generation() == 0:
        raise IndexUnusableError(f"{store.path} has no finished build — run `index build DIR`")
