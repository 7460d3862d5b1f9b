"""The ask use case: a question in any language → the stored sentences that answer it.

Gathers the evidence for each candidate (indexer.vectors for meaning, the store's keyword
rows for shared words, indexer.names for names written by sound) and leaves the ordering to
indexer.ranking.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from indexer import config, keyword, names, ranking, vectors
from indexer.config import MODES, Mode
from indexer.embed import Embedder
from indexer.errors import (
    EmptyQuestionError,
    GenerationMovedError,
    IndexerError,
    ModelDamagedError,
)
from indexer.ranking import Ranking, Scored
from indexer.store import PASSAGE_ID_BASE, Holders, PassageKind, SentenceRow, Store

#: Read snapshots an ask tries: each retry follows a build that replaced the vector files
#: of the generation the snapshot named before they were opened (vectors.remove_old).
READ_ATTEMPTS = 3


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


@dataclass(frozen=True)
class Around:
    """What surrounds a candidate: its passage, the question's keyword terms the passage
    holds, whether the candidate is the heading that opens it, and then the passage's text
    ("" otherwise)."""

    passage: int
    terms: frozenset[str]
    heading: bool
    text: str = ""


class Searcher:
    """Answers questions from one index; keeps the vector file of the current generation open."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        *,
        ranking: Ranking = ranking.DEFAULT,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.ranking = ranking
        self.warn = warn or (lambda message: None)
        self._vectors: tuple[int, vectors.GenerationIndex] | None = None
        #: What holds each sentence, read once per question (the dense and passage steps
        #: both need it); cleared by rank().
        self._holders: dict[int, Holders] = {}
        #: The last question's terms with their row counts, and the row count (_frequencies);
        #: cleared for each question (keyword_found).
        self._counted: tuple[str, dict[str, int], int] | None = None
        #: Embeds a question while its keyword search runs (made on the first ask; close()).
        self._embedding: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Stop the question-embedding thread, if one was started."""
        if self._embedding is not None:
            self._embedding.shutdown()
            self._embedding = None

    def ask(
        self, question: str, *, k: int = 5, context: int = 1, mode: Mode = config.DEFAULT_MODE
    ) -> list[Hit]:
        """The k best places for a question, best first."""
        question = readable(question).strip() if question else ""
        if not question:
            raise EmptyQuestionError()
        if mode not in MODES:
            raise IndexerError(f"unknown mode {mode!r} — choose one of {', '.join(MODES)}")
        embedding = None if mode == "keyword" else self._embed_beside(question)
        for _ in range(READ_ATTEMPTS - 1):
            with contextlib.suppress(GenerationMovedError):
                return self._ask(question, embedding, k=k, context=context, mode=mode)
        return self._ask(question, embedding, k=k, context=context, mode=mode)

    def _ask(
        self,
        question: str,
        embedding: Future[np.ndarray] | None,
        *,
        k: int,
        context: int,
        mode: Mode,
    ) -> list[Hit]:
        """ask() in one read snapshot."""
        with self.store.snapshot():
            pool = self.ranking.pool(k)
            found = self.keyword_found(question, mode=mode, pool=pool)
            vector = None if embedding is None else embedding.result()
            ranked = self.rank(question, vector, mode=mode, pool=pool, found=found)
            wanted = ranked[: pool * self.ranking.place_rows]
            rows = self.store.sentences([s.id for s in wanted])
            chosen = ranking.distinct_places(ranked, rows, k=k, context=context)
            return [self._hit(rank, rows[s.id], s, context) for rank, s in enumerate(chosen, 1)]

    def question_vector(self, question: str) -> np.ndarray:
        """The question's vector, a statement leaning toward the passage form; a question
        longer than the model reads is cut to what it reads, with a note."""
        prefix = self.embedder.info.query_prefix
        first, end = self.embedder.windows(question, prefix=prefix)[0]
        if end < len(question):
            self.warn(
                f"note: the question is longer than the model reads; only its first "
                f"{end - first} characters are used for meaning (all of it for words)"
            )
        vector = self.embedder.embed_query(
            question[first:end], statement_weight=self.ranking.statement_passage_weight
        )
        if not np.isfinite(vector).all():
            raise ModelDamagedError(
                f"the model in {self.embedder.info.path} gives vectors that are not numbers: "
                "its files are damaged — run `index verify` to see which"
            )
        return vector

    def _embed_beside(self, question: str) -> Future[np.ndarray]:
        """The question's vector, made on another thread while this one searches its words:
        onnxruntime and SQLite both let go of the interpreter while they work."""
        if self._embedding is None:
            self._embedding = ThreadPoolExecutor(1, thread_name_prefix="indexer-embed")
        return self._embedding.submit(self.question_vector, question)

    def keyword_found(self, question: str, *, mode: Mode, pool: int) -> list[tuple[int, float]]:
        """The keyword rows of a question with their BM25 scores, best first (inside a read
        snapshot): `pool` of them in keyword mode, Ranking.keyword_depth in hybrid mode, none
        in dense mode. The first step of every question: forgets the last one's terms."""
        self._counted = None
        if mode == "dense":
            return []
        match = self.keyword_match(question)
        depth = pool if mode == "keyword" else self.ranking.keyword_depth
        return self.store.keyword_search(match, depth, self.ranking.bm25_weights) if match else []

    def rank(
        self,
        question: str,
        vector: np.ndarray | None,
        *,
        mode: Mode,
        pool: int,
        found: list[tuple[int, float]] | None = None,
    ) -> list[Scored]:
        """Every candidate of a question, best first (inside a read snapshot); `found`: its
        keyword_found rows when already searched."""
        if found is None:
            found = self.keyword_found(question, mode=mode, pool=pool)
        self._holders = {}
        # Hybrid scores the keyword candidates' meaning in the same pass as the dense ones.
        also = [i for i, _ in found[:pool]] if mode == "hybrid" else []
        dense, reference = self._dense(vector, pool, also) if vector is not None else ([], set())
        if mode == "dense":
            return [Scored(i, s, dense_rank=r, dense_score=s) for r, (i, s) in enumerate(dense, 1)]
        if mode == "keyword":
            return [
                Scored(i, s, keyword_rank=r, keyword_score=s)
                for r, (i, s) in enumerate(found[:pool], 1)
            ]
        reference.update(i for i, _ in found[: self.ranking.min_pool])
        return self._hybrid(question, dense, dict(found), reference)

    def dense(
        self, vector: np.ndarray, pool: int, *, also: Collection[int] = ()
    ) -> list[tuple[int, float]]:
        """Sentences by dense score, from sentence and passage vectors alike, and the dense
        scores of the sentences `also` names."""
        return self._dense(vector, pool, also)[0]

    def _dense(
        self, vector: np.ndarray, pool: int, also: Collection[int]
    ) -> tuple[list[tuple[int, float]], set[int]]:
        """dense(), and the candidates that the first Ranking.min_pool vector hits make: the
        candidates of any k up to min_pool / overfetch, which fix the scale of hybrid scores
        (_hybrid): asking for more hits keeps the first ones and their scores, unless a
        candidate only the deeper search finds scores higher."""
        own: dict[int, float] = {}
        passages: dict[int, float] = {}
        hits = self._current_vectors().search(vector, pool)
        for i, s in hits:
            if i >= PASSAGE_ID_BASE:
                passages[i - PASSAGE_ID_BASE] = s
            else:
                own[i] = s
        kind: PassageKind | None = None if self.ranking.expand_sections else "chunk"
        members = self.store.passage_members(list(passages), kind=kind)
        candidates = list(dict.fromkeys([*own, *(j for js in members.values() for j in js), *also]))
        combined = self.dense_scores(vector, candidates, own, passages)
        reference: set[int] = set()
        for i, _ in hits[: self.ranking.min_pool]:
            reference.update(members.get(i - PASSAGE_ID_BASE, ()) if i >= PASSAGE_ID_BASE else [i])
        return sorted(combined.items(), key=lambda item: -item[1]), reference

    def dense_scores(
        self,
        vector: np.ndarray,
        ids: list[int],
        own: dict[int, float],
        passages: dict[int, float] | None = None,
    ) -> dict[int, float]:
        """Dense scores of some sentences (ranking.dense_mix); cosines not given are computed
        from the stored vectors."""
        passages = dict(passages or {})
        own = {**own, **self._cosines(vector, [i for i in ids if i not in own])}
        holders = self.holders(ids)
        wanted = {c for h in holders.values() for c in (h.chunk, h.section) if c is not None}
        stored = self.store.passage_vectors([c for c in wanted if c not in passages])
        passages.update({c: float(v @ vector) for c, v in stored.items()})
        # A vector a damaged model stored cannot be scored (index verify finds it).
        kept = [i for i in ids if i in own and math.isfinite(own[i])]
        nan = float("nan")
        chunk = [passages[holders[i].chunk] if i in holders else nan for i in kept]
        section = [
            passages[h.section if h.section is not None else h.chunk]
            if (h := holders.get(i))
            else nan
            for i in kept
        ]
        heading = [i in holders and holders[i].kind == "heading" for i in kept]
        scores = ranking.dense_mix(
            np.array([own[i] for i in kept]),
            np.array(chunk, dtype=np.float64),
            np.array(section, dtype=np.float64),
            np.array(heading, dtype=bool),
            self.ranking,
        )
        return dict(zip(kept, scores.tolist(), strict=True))

    def _hybrid(
        self,
        question: str,
        dense: list[tuple[int, float]],
        bm25: dict[int, float],
        reference: set[int],
    ) -> list[Scored]:
        """Dense candidates and the best keyword ones (all dense-scored), fused. The
        `reference` candidates (those of the smallest pool) set the range dense scores are
        scaled by and the passages terms are weighed among, so the scores do not depend on
        how many hits were asked for."""
        cosines = dict(dense)
        ids = list(cosines)
        terms, trust = self.term_weights(question)
        weight = ranking.keyword_weight(trust, self.ranking)
        passages = self._passages(ids, terms) if weight > 0 else {}
        alike, sounds = self._script_evidence(question, ids, weight, passages)
        shares = self._passage_shares(terms, passages, reference)
        scores = ranking.fuse(
            np.array([cosines[i] for i in ids]),
            np.array([bm25.get(i, 0.0) for i in ids]),
            weight,
            keyword_top=max(bm25.values(), default=0.0),
            reference=np.array([i in reference for i in ids], dtype=bool),
            alike=None if alike is None else np.array([i in alike for i in ids], dtype=bool),
            name_share=np.array([sounds.get(i, 0.0) for i in ids]) if sounds else None,
            passage_share=np.array([shares.get(i, 0.0) for i in ids]) if shares else None,
            ranking=self.ranking,
        )
        dense_rank, keyword_rank = ranking.ranks(cosines), ranking.ranks(bm25)
        ordered = [ids[p] for p in ranking.best_first(scores).tolist()]
        final = dict(zip(ids, scores.tolist(), strict=True))
        return [
            Scored(i, final[i], dense_rank.get(i), keyword_rank.get(i), cosines[i], bm25.get(i),
                   sounds.get(i))
            for i in ordered
        ]  # fmt: skip

    def _passage_shares(
        self, terms: dict[str, float], passages: dict[int, Around], reference: set[int]
    ) -> dict[int, float]:
        """The share of the question's terms each candidate's passage holds, the terms weighted
        by their IDF in the index and (Ranking.pool_idf) among the `reference` candidates'
        passages."""
        held = {a.passage: a.terms for a in passages.values()}
        if self.ranking.pool_idf:
            among = {a.passage: a.terms for i, a in passages.items() if i in reference}
            terms = ranking.pool_weighted(terms, list(among.values()))
        shares = {p: ranking.weighted_share(terms, t) for p, t in held.items()}
        return {i: shares[a.passage] for i, a in passages.items()}

    def holders(self, ids: list[int]) -> dict[int, Holders]:
        """The chunk and section holding each sentence (store.holders), read once per question."""
        missing = [i for i in ids if i not in self._holders]
        if missing:
            self._holders.update(self.store.holders(missing))
        return {i: self._holders[i] for i in ids if i in self._holders}

    def _passages(self, ids: list[int], wanted: Collection[str]) -> dict[int, Around]:
        """The passage around each candidate: the section holding it (or the part of a long
        section the model reads), or its chunk when that is the whole section; with the
        `wanted` terms it holds, found in its sentences' keyword rows (normalising every
        passage's text to find them took twice as long)."""
        holders = self.holders(ids)
        around = {i: h.section if h.section is not None else h.chunk for i, h in holders.items()}
        terms = self.store.passage_terms(list(set(around.values())))
        held = {p: frozenset(t for t in wanted if f" {t} " in row) for p, row in terms.items()}
        headings = {i for i, h in holders.items() if h.kind == "heading"}
        texts = self.store.passage_texts([around[i] for i in headings])
        return {
            i: Around(p, held[p], i in headings, texts.get(p, ""))
            for i, p in around.items()
            if p in held
        }

    def _script_evidence(
        self, question: str, ids: list[int], weight: float, passages: dict[int, Around]
    ) -> tuple[set[int] | None, dict[int, float]]:
        """The candidates written like the question (None when no keyword or name evidence
        counts), and the others' share of the question's names written by sound."""
        keys = names.question_keys(question, min_key=self.ranking.name_min_key)
        if weight == 0 and not keys:
            return None, {}
        texts = self.store.texts(ids)
        alike = self._written_alike(question, texts, passages)
        if not keys:
            return alike, {}
        fuzzy = self.ranking.name_fuzzy_from
        others = {i: t for i, t in texts.items() if i not in alike}
        return alike, {i: names.shared(keys, t, fuzzy_from=fuzzy) for i, t in others.items()}

    def _written_alike(
        self, question: str, texts: dict[int, str], passages: dict[int, Around]
    ) -> set[int]:
        """The candidates written like the question (both in words, or both in CJK/Thai); a
        heading is written like the passage it opens.

        Only they can share words with it: in a folder of English and Japanese documents, an
        English question's keyword matches are all in English ones, and fusing them pushed the
        Japanese answer down (scripts/mixed_set.py, scripts/ablation.py --measure alike). An
        English title over Chinese text, judged on its own, escaped the keyword side and
        outranked the sentences a Chinese question's words found.
        """
        if self.ranking.keyword_on == "every":
            return set(texts)
        style = keyword.writing(question)
        written = {
            i: passages[i].text if i in passages and passages[i].heading else t
            for i, t in texts.items()
        }
        return {i for i, text in written.items() if keyword.writing(text) == style}

    def _cosines(self, vector: np.ndarray, ids: list[int]) -> dict[int, float]:
        stored = self.store.sentence_vectors(ids) if ids else {}
        return {i: float(v @ vector) for i, v in stored.items()}

    def keyword_trust(self, question: str) -> float:
        """How much of the question (IDF-weighted) the index's vocabulary holds at all."""
        return self.term_weights(question)[1]

    def term_weights(self, question: str) -> tuple[dict[str, float], float]:
        """The question's keyword terms with their IDF weights, and its keyword trust."""
        counted, total = self._frequencies(question)
        if not counted:
            return {}, 0.0
        weights = {t: ranking.idf(df, total) for t, df in counted.items()}
        return weights, ranking.keyword_trust(list(counted.values()), total)

    def _frequencies(self, question: str) -> tuple[dict[str, int], int]:
        """How many keyword rows hold each of the question's terms (in question order, 0 for
        none), and how many rows there are (read once per question: cleared by rank())."""
        if self._counted is None or self._counted[0] != question:
            terms = list(dict.fromkeys(keyword.terms(question)))
            held, total = self.store.term_frequencies(terms) if terms else ({}, 0)
            self._counted = (question, {t: held.get(t, 0) for t in terms}, total)
        return self._counted[1], self._counted[2]

    def keyword_match(self, question: str) -> str | None:
        """The keyword search for a question: any of its rarest terms (ranking.searched_terms);
        when even the rarest is held by more rows than Ranking.keyword_rows, the rows holding
        its rarest terms together (_together).

        FTS5 scores every row a search matches. A term held by half the rows or more has an
        IDF of about zero (clamped to 1e-6), so it moves no score, yet found and scored every
        row holding it (ます, in polite Japanese); and the common character pairs of a
        Japanese question together match most rows of any index, so the search grew with the
        index (1.3 s at 1,140,800 rows, scripts/keyword_bench.py).
        """
        counted, total = self._frequencies(question)
        budget = self.ranking.keyword_rows
        searched = ranking.searched_terms(counted, total, budget)
        if sum(counted[t] for t in searched) <= budget:
            return keyword.match_any(searched)
        return keyword.match_all(self._together(counted, budget))

    def _together(self, counted: dict[str, int], budget: int) -> list[str]:
        """The fewest of a question's rarest terms that rows hold together within `budget`
        rows (counted by FTS5, which finds them without scoring them); all of them when no
        number does, and never so many that no row holds them all.

        In a large index a question's rarest term can be held by more rows than the budget
        (a word of an English question in a few million sentences): searched alone, BM25
        scored every row holding it, and by that one term, so the rows also holding the
        question's other words ranked no higher than the rest.
        """
        ordered = sorted((t for t, df in counted.items() if df > 0), key=counted.__getitem__)
        together = ordered[:1]
        for term in ordered[1:]:
            rows = self.store.keyword_count(keyword.match_all([*together, term]) or "")
            if rows == 0:
                break
            together.append(term)
            if rows <= budget:
                break
        return together

    def _current_vectors(self) -> vectors.GenerationIndex:
        generation = self.store.generation()
        if self._vectors and self._vectors[0] == generation:
            return self._vectors[1]
        index = vectors.open_current(self.store, warn=self.warn)
        self._vectors = (generation, index)
        return index

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


def readable(question: str) -> str:
    """The question with bytes that are not valid UTF-8 (surrogate escapes, from a terminal
    or argv) replaced by U+FFFD, so the tokenizer and SQLite take it."""
    try:
        data = question.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no byte stands for
        data = question.encode("utf-8", "replace")
    return data.decode("utf-8", "replace")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
