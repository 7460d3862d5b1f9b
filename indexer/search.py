"""The ask use case: a question in any language → the stored sentences that answer it."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import faiss
import filelock
import numpy as np

from indexer import config, keyword, names
from indexer.config import MODES, Mode
from indexer.embed import Embedder
from indexer.errors import EmptyQuestionError, IndexerError, IndexUnusableError
from indexer.store import CHUNK_BASE, SentenceRow, Store, build_faiss

#: Candidates fetched per requested hit, so grouping can still return k different places.
OVERFETCH = 4
MIN_POOL = 50
#: Keyword rows scored per question in hybrid mode, so dense candidates get their BM25 score
#: from one FTS5 query (a row outside this depth scores 0).
KEYWORD_DEPTH = 1000
PARALLEL_SEARCH_FROM = 200_000

#: Dense score = OWN_WEIGHT × sentence cosine + the rest × its chunk's cosine (0.7 has the best
#: R@1 summed over the dev sets; scripts/ablation.py).
OWN_WEIGHT = 0.7
#: Then the section's cosine (the sentences under the sentence's heading, as many as the model
#: takes) weighs this much against the rest (scripts/ablation.py).
SECTION_WEIGHT = 0.1
#: Weight of the keyword side in hybrid mode when the question's terms are all known to the
#: index; scaled down by how much of the question the index vocabulary holds (tuned on the
#: dev sets with scripts/eval.py).
HYBRID_KEYWORD_WEIGHT = 0.5
#: The keyword side gets no weight while the index knows less than 40 % of the question's
#: (IDF-weighted) terms and full weight from 80 %. English→German questions share names and
#: cognates (median 25 %), English→Chinese only numbers (9 %), Japanese→Japanese nearly all
#: (median 100 %, p10 77 %); scripts/ablation.py.
TRUST_RAMP = (0.4, 0.8)
#: Added in hybrid mode for a candidate written unlike the question (an English question, a
#: Japanese passage) times the share of the question's names it writes by sound (indexer.names).
#: NTREX English→Japanese R@1 .925 → .932 at 0.2, among English distractors .898 → .908; more
#: lets chance matches in (scripts/ablation.py).
NAME_WEIGHT = 0.2


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
    page: int | None = None
    dense_rank: int | None = None
    keyword_rank: int | None = None
    dense_score: float | None = None
    keyword_score: float | None = None
    name_share: float | None = None

    @property
    def location(self) -> str:
        """`path:line` as editors understand it, or `path:pPAGE` for PDF pages and slides."""
        return f"{self.path}:p{self.page}" if self.page is not None else f"{self.path}:{self.line}"

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
        self._threads = faiss.omp_get_max_threads()

    def ask(
        self, question: str, *, k: int = 5, context: int = 1, mode: Mode = config.DEFAULT_MODE
    ) -> list[Hit]:
        """The k best places for a question, best first."""
        question = question.strip() if question else ""
        if not question:
            raise EmptyQuestionError()
        if mode not in MODES:
            raise IndexerError(f"unknown mode {mode!r} — choose one of {', '.join(MODES)}")
        vector = None if mode == "keyword" else self.embedder.embed_query(question)
        with self._snapshot():
            pool = max(k * OVERFETCH, MIN_POOL)
            dense = self._dense(vector, pool) if vector is not None else []
            match = keyword.query(question) if mode != "dense" else None
            depth = pool if mode == "keyword" else KEYWORD_DEPTH
            found = self.store.keyword_search(match, depth) if match else []
            scored = self._rank(mode, question, vector, dense, found[:pool], dict(found))
            rows = self.store.sentences([s.id for s in scored[: pool * 2]])
            chosen = _distinct_places(scored, rows, k=k, context=context)
            return [self._hit(rank, rows[s.id], s, context) for rank, s in enumerate(chosen, 1)]

    def _dense(self, vector: np.ndarray, pool: int) -> list[tuple[int, float]]:
        """Sentences by dense score, from sentence and chunk vectors alike."""
        index = self._current_index()
        if index.ntotal == 0:
            return []
        # One query: threads only pay off on big indexes (measured by scripts/bench.py).
        faiss.omp_set_num_threads(1 if index.ntotal < PARALLEL_SEARCH_FROM else self._threads)
        scores, ids = index.search(vector.reshape(1, -1).astype(np.float32), pool)
        own: dict[int, float] = {}
        chunks: dict[int, float] = {}
        for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True):
            if i >= CHUNK_BASE:
                chunks[i - CHUNK_BASE] = s
            elif i >= 0:
                own[i] = s
        members = self.store.chunk_members(list(chunks))
        candidates = list(dict.fromkeys([*own, *(j for js in members.values() for j in js)]))
        combined = self._passage_scores(vector, candidates, own, chunks)
        return sorted(combined.items(), key=lambda item: -item[1])

    def _passage_scores(
        self,
        vector: np.ndarray,
        ids: list[int],
        own: dict[int, float],
        chunks: dict[int, float] | None = None,
    ) -> dict[int, float]:
        """A sentence's own cosine mixed with its chunk's (OWN_WEIGHT), then with its section's
        (SECTION_WEIGHT), all tuned on the dev sets; a heading scores as the chunk it opens.

        Sentence vectors alone miss questions whose answer spans sentences (English→Chinese
        R@1 .76 vs .80 mixed); chunks alone blur sentence-level matches (NTREX .66 vs .93);
        the section says what a passage is about (English→Chinese .794 → .803). A short
        heading sits close to any question on its topic: scored on its own vector, titles
        outranked the passages under them (English→Chinese R@1 .76; .80 as chunks).
        Numbers: scripts/ablation.py.
        """
        chunks = dict(chunks or {})
        own = {**own, **self._cosines(vector, [i for i in ids if i not in own])}
        holders = self.store.chunks_of(ids)
        wanted = {c for h in holders.values() for c in (h.chunk, h.section) if c is not None}
        stored = self.store.chunk_vectors([c for c in wanted if c not in chunks])
        chunks.update({c: float(v @ vector) for c, v in stored.items()})
        scores = {}
        for i in ids:
            if i not in own:
                continue
            held = holders.get(i)
            if held is None:
                scores[i] = own[i]
                continue
            weight = 0.0 if held.kind == "heading" else OWN_WEIGHT
            local = weight * own[i] + (1 - weight) * chunks[held.chunk]
            section = chunks[held.section] if held.section is not None else chunks[held.chunk]
            scores[i] = (1 - SECTION_WEIGHT) * local + SECTION_WEIGHT * section
        return scores

    def _rank(
        self,
        mode: Mode,
        question: str,
        vector: np.ndarray | None,
        dense: list[tuple[int, float]],
        found: list[tuple[int, float]],
        bm25: dict[int, float],
    ) -> list[Scored]:
        if mode == "dense":
            return [Scored(i, s, dense_rank=r, dense_score=s) for r, (i, s) in enumerate(dense, 1)]
        if mode == "keyword":
            return [
                Scored(i, s, keyword_rank=r, keyword_score=s) for r, (i, s) in enumerate(found, 1)
            ]
        assert vector is not None
        known = dict(dense)
        extra = [i for i, _ in found if i not in known]
        scores = {**known, **self._passage_scores(vector, extra, {})}
        ids = list(scores)
        weight = HYBRID_KEYWORD_WEIGHT * _ramp(self._keyword_trust(question), *TRUST_RAMP)
        keys = names.question_keys(question)
        if weight == 0 and not keys:
            return fuse(ids, scores, bm25, weight)
        texts = self.store.texts(ids)
        alike = self._written_alike(question, texts)
        sounds = (
            {i: names.shared(keys, t) for i, t in texts.items() if i not in alike} if keys else {}
        )
        return fuse(ids, scores, bm25, weight, alike, sounds)

    def _written_alike(self, question: str, texts: dict[int, str]) -> set[int]:
        """The candidates written like the question (both in words, or both in CJK/Thai).

        Only they can share words with it: in a folder of English and Japanese documents, an
        English question's keyword matches are all in English ones, and fusing them pushed the
        Japanese answer down (English→Japanese among English distractors: R@1 .54 fused,
        .85 dense; scripts/mixed_set.py).
        """
        style = keyword.writing(question)
        return {i for i, text in texts.items() if keyword.writing(text) == style}

    def _cosines(self, vector: np.ndarray, ids: list[int]) -> dict[int, float]:
        stored = self.store.sentence_vectors(ids) if ids else {}
        return {i: float(v @ vector) for i, v in stored.items()}

    def _keyword_trust(self, question: str) -> float:
        """How much of the question (IDF-weighted) the index's vocabulary contains at all.

        An English question over Chinese passages shares only numbers and names with them, so
        keyword matches are chance; this fraction is then small and the dense side decides.
        """
        terms = list(dict.fromkeys(keyword.terms(question)))
        if not terms:
            return 0.0
        frequencies, total = self.store.term_frequencies(terms)
        weights = {t: _idf(frequencies.get(t, 0), total) for t in terms}
        known = sum(w for t, w in weights.items() if frequencies.get(t, 0) > 0)
        return known / sum(weights.values())

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
        expected = int(meta.get("faiss_entries", -1))
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
        index = build_faiss(self.store.iter_vectors(dim), dim)
        self._persist(generation, index)
        return index

    def _persist(self, generation: int, index: faiss.Index) -> None:
        # Only when no build is running; a reader never waits for a writer.
        lock = filelock.FileLock(self.store.lock_path, timeout=0)
        with contextlib.suppress(filelock.Timeout, OSError), lock:
            self.store.save_faiss(generation, index)

    def _hit(self, rank: int, row: SentenceRow, scored: Scored, context: int) -> Hit:
        before, after = self._context(row, context)
        return Hit(
            rank=rank,
            score=round(scored.score, 4),
            dense_rank=scored.dense_rank,
            keyword_rank=scored.keyword_rank,
            dense_score=_round(scored.dense_score),
            keyword_score=_round(scored.keyword_score),
            name_share=_round(scored.name_share),
            path=row.path,
            line=row.line_start,
            line_end=row.line_end,
            text=row.text,
            kind=row.kind,
            before=before,
            after=after,
            sentence_id=row.id,
            page=row.page,
        )

    def _context(self, row: SentenceRow, context: int) -> tuple[list[str], list[str]]:
        if context <= 0:
            return [], []
        around = self.store.neighbours(row.file_id, row.position - context, row.position + context)
        before = [r.text for r in around if r.position < row.position]
        after = [r.text for r in around if r.position > row.position]
        return before, after


@dataclass
class Scored:
    """A candidate sentence with its final score and the evidence behind it."""

    id: int
    score: float
    dense_rank: int | None = None
    keyword_rank: int | None = None
    dense_score: float | None = None
    keyword_score: float | None = None
    name_share: float | None = None


def fuse(
    ids: list[int],
    cosines: dict[int, float],
    bm25: dict[int, float],
    weight: float,
    alike: set[int] | None = None,
    sounds: dict[int, float] | None = None,
) -> list[Scored]:
    """Weighted sum of min-max normalised cosine and BM25 over the candidates, best first.

    Candidates not in `alike` (when given) cannot share the question's words, so they are
    scored by the dense side alone rather than with a keyword score of zero; they gain
    NAME_WEIGHT × their share of the question's names written by sound (`sounds`).
    """
    sounds = sounds or {}
    dense_rank = _ranks(cosines)
    keyword_rank = _ranks(bm25)
    low, high = min(cosines.values()), max(cosines.values())
    top = max(bm25.values(), default=0.0)
    scored = []
    for i in ids:
        dense = (cosines[i] - low) / (high - low) if high > low else 1.0
        kw = bm25.get(i, 0.0) / top if top > 0 else 0.0
        share = weight if alike is None or i in alike else 0.0
        scored.append(
            Scored(
                i,
                (1 - share) * dense + share * kw + NAME_WEIGHT * sounds.get(i, 0.0),
                dense_rank=dense_rank.get(i),
                keyword_rank=keyword_rank.get(i),
                dense_score=cosines[i],
                keyword_score=bm25.get(i),
                name_share=sounds.get(i),
            )
        )
    return sorted(scored, key=lambda s: -s.score)


def _ranks(scores: dict[int, float]) -> dict[int, int]:
    ordered = sorted(scores, key=lambda i: -scores[i])
    return {i: r for r, i in enumerate(ordered, 1)}


def _ramp(value: float, low: float, high: float) -> float:
    return min(max((value - low) / (high - low), 0.0), 1.0)


def _idf(df: int, total: int) -> float:
    return math.log((total - df + 0.5) / (df + 0.5) + 1.0)


def _distinct_places(
    ranked: list[Scored],
    rows: dict[int, SentenceRow],
    *,
    k: int,
    context: int,
) -> list[Scored]:
    """Drop hits whose shown context would overlap that of a better hit in the same file.

    Code blocks are hits only with keyword evidence: their embeddings sit close to any
    technical question (an HTTP header block "answered" a question about rate limits).
    """
    chosen: list[Scored] = []
    taken: list[SentenceRow] = []
    reach = 2 * max(context, 0)
    for candidate in ranked:
        row = rows.get(candidate.id)
        if row is None or (row.kind == "code" and candidate.keyword_rank is None):
            continue
        if any(t.file_id == row.file_id and abs(t.position - row.position) <= reach for t in taken):
            continue
        chosen.append(candidate)
        taken.append(row)
        if len(chosen) == k:
            break
    return chosen


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def require_index(store: Store) -> None:
    """Fail with a clear message unless the store holds a committed build."""
    store.check_schema()
    if store.generation() == 0:
        raise IndexUnusableError(f"{store.path} has no finished build — run `index build DIR`")
