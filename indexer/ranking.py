"""How candidates are ranked: every knob in one frozen record, and pure functions over arrays.

The ask use case (indexer.search) gathers the evidence (cosines of sentences and of the
passages holding them, BM25 scores, how much of the question the index knows, which
candidates are written like the question, names shared by sound); the functions here turn it
into one ordering. Each knob was chosen by a `scripts/ablation.py --measure NAME` run, named
beside it; docs/ranking.md holds the figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from indexer.store import SentenceRow

K = TypeVar("K")


@dataclass(frozen=True)
class Ranking:
    """Every ranking knob. Build variants with dataclasses.replace, never by patching."""

    #: Sentence cosine's share against its chunk's: sentences alone miss answers spread over a
    #: paragraph, chunks alone blur one-sentence matches (--measure mix).
    own_weight: float = 0.7
    #: The section's share (the sentences under the heading): says what a passage is about
    #: (--measure mix).
    section_weight: float = 0.1
    #: A heading's own cosine share: a short title sits close to any question on its topic, so
    #: it scores as the chunk it opens (--measure headings).
    heading_own_weight: float = 0.0
    #: The keyword side's weight in hybrid mode when the index knows all the question's terms
    #: (scripts/eval.py on the dev sets).
    keyword_weight: float = 0.5
    #: Share of the question's IDF-weighted terms the index knows at which the keyword side
    #: starts to count and reaches full weight: cross-language questions share only names and
    #: numbers, same-language ones nearly everything (--measure trust, --measure ramp).
    trust_ramp: tuple[float, float] = (0.4, 0.8)
    #: Weight, within the keyword side, of the share of the question's words (IDF-weighted)
    #: that the passage around a candidate holds (its section, or the section's part the model
    #: reads), against 1 for the candidate's own BM25: paragraphs of one article share their
    #: topic words, and the one a question was asked about holds more of its other words
    #: (--measure passage).
    passage_words_weight: float = 1.0
    #: Whether the passage's share weighs each term also by its IDF among the candidates'
    #: passages: paragraphs of one article all hold its topic words, which then say nothing
    #: about which of them answers, while the question's other words do (--measure pool).
    pool_idf: bool = True
    #: Whether the passage's share counts relative to the best candidate's, as the own BM25
    #: counts relative to the question's best. Off: JSQuAD and DRCD gain .004 R@1 from it, but
    #: in a folder mixing English and Japanese the best English passage's share becomes whole
    #: however little of the question it holds, and English paragraphs outrank the Japanese
    #: answers of English questions (.922 → .907; --measure pool).
    share_relative: bool = False
    #: Which candidates take keyword evidence: those written like the question, or every one.
    #: A folder mixing English and Japanese puts an English question's word matches only in
    #: English passages, pushing a Japanese answer down (--measure alike).
    keyword_on: Literal["alike", "every"] = "alike"
    #: Gain of a passage written unlike the question, times the share of the question's
    #: names it writes by sound; more lets chance matches in (--measure names).
    name_weight: float = 0.2
    #: Name keys shorter than this match by chance ("tn" for Tom) (--measure names).
    name_min_key: int = 3
    #: Name keys this long may differ by one letter (--measure names).
    name_fuzzy_from: int = 4
    #: How far a question written as a statement leans from the query form to the passage
    #: form: symmetric matching finds translations, too far draws same-language passages
    #: (--measure statement).
    statement_passage_weight: float = 0.5
    #: BM25 weights of a keyword row's own terms and its neighbours': own words count double,
    #: so the sentence holding them is the hit rather than a neighbour (scripts/eval.py).
    bm25_weights: tuple[float, float] = (1.0, 0.5)
    #: Neighbours on each side whose terms a keyword row holds, so words of a question spread
    #: over a paragraph still meet (scripts/eval.py). Applied when rows are written: changing it
    #: needs a re-split (indexer.build.SPLIT_VERSION).
    keyword_window: int = 2
    #: Whether the sentences of a section the vector search finds become candidates, as those
    #: of a chunk it finds do. Off: they were up to two thirds of a question's dense candidates
    #: (DRCD: a median of 146, 47 without) and R@1 and MRR@10 moved on no evaluation set; the
    #: section's cosine still counts in the dense score of every candidate under it
    #: (--measure expand).
    expand_sections: bool = False
    #: Candidates fetched per requested hit, so dropping overlapping places still leaves k.
    overfetch: int = 4
    #: Fewest candidates fetched whatever k is.
    min_pool: int = 50
    #: Keyword rows scored per hybrid question, so dense candidates get their BM25 score from
    #: one FTS5 query (a row outside this depth scores 0).
    keyword_depth: int = 1000
    #: Rows a question's keyword search may read: its terms are searched rarest first while
    #: the rows holding them add up to this (always the rarest one); the others still count
    #: through the passage's share of the question's words. Bounds the search at any index
    #: size: a Japanese question's common character pairs (には, です) match most rows, and
    #: FTS5 scores every row it matches (scripts/keyword_bench.py).
    keyword_rows: int = 5000
    #: Ranked candidates read back per pool slot when choosing distinct places.
    place_rows: int = 2

    def pool(self, k: int) -> int:
        """Candidates to fetch for k hits."""
        return max(k * self.overfetch, self.min_pool)


DEFAULT = Ranking()


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


def dense_mix(
    own: np.ndarray,
    chunk: np.ndarray,
    section: np.ndarray,
    heading: np.ndarray,
    ranking: Ranking = DEFAULT,
) -> np.ndarray:
    """Dense scores: each sentence's own cosine mixed with its chunk's, then with its section's.

    `chunk` is NaN for a sentence no passage holds (an index built before passages): it keeps
    its own cosine. `section` is the chunk's cosine when the chunk is the whole section.
    """
    weight = np.where(heading, ranking.heading_own_weight, ranking.own_weight)
    local = weight * own + (1 - weight) * chunk
    mixed = (1 - ranking.section_weight) * local + ranking.section_weight * section
    return np.where(np.isnan(chunk), own, mixed)


def idf(df: int, total: int) -> float:
    """BM25's inverse document frequency."""
    return math.log((total - df + 0.5) / (df + 0.5) + 1.0)


def bm25_weighs(df: int, total: int) -> bool:
    """Whether a term held by `df` of `total` keyword rows moves FTS5's BM25 scores: its
    IDF, log((total - df + 0.5) / (df + 0.5)), is clamped to 1e-6 from half the rows on."""
    return df > 0 and 2 * df < total


def searched_terms(frequencies: Mapping[str, int], total: int, budget: int) -> list[str]:
    """The terms a keyword search looks for, rarest first: those BM25 weighs (bm25_weighs),
    while the rows holding them add up to at most `budget`, and always the rarest of them;
    every term when BM25 weighs none. `frequencies`: each term's rows, in question order."""
    weighed = sorted(
        (t for t, df in frequencies.items() if bm25_weighs(df, total)), key=frequencies.__getitem__
    )
    kept: list[str] = []
    rows = 0
    for term in weighed:
        rows += frequencies[term]
        if kept and rows > budget:
            break
        kept.append(term)
    return kept or list(frequencies)


def keyword_trust(frequencies: Sequence[int], total: int) -> float:
    """The IDF-weighted share of a question's terms that the index holds at all.

    An English question over Chinese passages shares only numbers and names with them, so
    keyword matches are chance; this share is then small and the dense side decides.
    """
    weights = dict(enumerate(idf(df, total) for df in frequencies))
    return weighted_share(weights, {i for i, df in enumerate(frequencies) if df > 0})


def weighted_share(weights: Mapping[K, float], held: AbstractSet[K]) -> float:
    """The share of the weights whose keys are in `held`: of a question's terms, each weighted
    by its IDF, how much a passage holds (the passage stage) or the index (keyword trust)."""
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in held) / total if total > 0 else 0.0


def pool_weighted(
    weights: Mapping[str, float], passages: Sequence[AbstractSet[str]]
) -> dict[str, float]:
    """The question's term weights, each times its IDF among the candidates' distinct
    `passages` (the terms each holds): a term every candidate passage holds weighs least."""
    held = {t: sum(t in terms for terms in passages) for t in weights}
    return {t: w * idf(held[t], len(passages)) for t, w in weights.items()}


def keyword_weight(trust: float, ranking: Ranking = DEFAULT) -> float:
    """The keyword side's weight for a question whose terms the index knows this well."""
    low, high = ranking.trust_ramp
    return ranking.keyword_weight * min(max((trust - low) / (high - low), 0.0), 1.0)


def fuse(
    cosines: np.ndarray,
    bm25: np.ndarray,
    weight: float,
    *,
    keyword_top: float,
    alike: np.ndarray | None = None,
    name_share: np.ndarray | None = None,
    passage_share: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    ranking: Ranking = DEFAULT,
) -> np.ndarray:
    """Hybrid scores: min-max normalised cosine and keyword evidence mixed by `weight`. The
    keyword evidence is BM25 divided by `keyword_top` (the best BM25 score of the question),
    averaged, with passage_words_weight, with `passage_share`: the share of the question's
    words the candidate's passage holds (divided by the best candidate's with share_relative).
    It stays within 0–1, so candidates written unlike the question, which have none, lose no
    more ground than before.

    Candidates not `alike` (written unlike the question) cannot share its words, so the dense
    side alone scores them rather than a keyword score of zero; they gain name_weight × the
    share of the question's names they write by sound.

    The cosines of the `reference` candidates (all when None or none) set the min-max range;
    others scale by the same range, below 0 or above 1 when they fall outside it.
    """
    if len(cosines) == 0:
        return np.zeros(0)
    span = cosines[reference] if reference is not None and reference.any() else cosines
    low, high = span.min(), span.max()
    dense = (cosines - low) / (high - low) if high > low else np.ones_like(cosines)
    kw = bm25 / keyword_top if keyword_top > 0 else np.zeros_like(bm25)
    if passage_share is not None:
        if ranking.share_relative and (top := passage_share.max(initial=0.0)) > 0:
            passage_share = passage_share / top
        weight_ = ranking.passage_words_weight
        kw = (kw + weight_ * passage_share) / (1 + weight_)
    share = np.full(len(cosines), weight) if alike is None else np.where(alike, weight, 0.0)
    names = np.zeros_like(cosines) if name_share is None else name_share
    return (1 - share) * dense + share * kw + ranking.name_weight * names


def best_first(scores: np.ndarray) -> np.ndarray:
    """Positions ordered by descending score, ties in input order."""
    return np.argsort(-scores, kind="stable")


def ranks(scores: dict[int, float]) -> dict[int, int]:
    """1-based rank of each id by descending score, ties in input order."""
    ordered = sorted(scores, key=lambda i: -scores[i])
    return {i: r for r, i in enumerate(ordered, 1)}


def distinct_places(
    ranked: list[Scored],
    rows: dict[int, SentenceRow],
    *,
    k: int,
    context: int,
) -> list[Scored]:
    """The first k candidates whose shown context does not overlap a better one's in the same
    file.

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
