"""The ranking functions on seeded arrays: pure, no index needed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from indexer import ranking
from indexer.ranking import DEFAULT, Ranking, Scored
from indexer.store import SentenceRow


def test_fuse_scores_a_candidate_written_otherwise_on_its_dense_side() -> None:
    cosines, bm25 = np.array([0.9, 0.8, 0.5]), np.array([0.0, 4.0, 0.0])
    alike = np.array([False, True, True])
    fused = ranking.fuse(cosines, bm25, 0.5, keyword_top=4.0, alike=alike)
    assert fused[0] == pytest.approx(1.0), "no keyword share, so no penalty for lacking one"
    assert fused[1] == pytest.approx(0.5 * 0.75 + 0.5 * 1.0)
    assert fused[2] == pytest.approx(0.0)
    plain = ranking.fuse(cosines, bm25, 0.5, keyword_top=4.0)
    assert plain[0] == pytest.approx(0.5)


def test_fuse_adds_the_share_of_names_written_by_sound() -> None:
    cosines = np.array([0.9, 0.8, 0.5])
    names = np.array([0.0, 0.5, 0.0])
    alike = np.array([True, False, False])
    fused = ranking.fuse(cosines, np.zeros(3), 0.0, keyword_top=0.0, alike=alike, name_share=names)
    assert fused[0] == pytest.approx(1.0)
    assert fused[1] == pytest.approx(0.75 + DEFAULT.name_weight * 0.5)
    assert fused[2] == pytest.approx(0.0)
    louder = Ranking(name_weight=1.0)
    again = ranking.fuse(
        cosines, np.zeros(3), 0.0, keyword_top=0.0, alike=alike, name_share=names, ranking=louder
    )
    assert again[1] == pytest.approx(0.75 + 0.5)


def test_words_keep_their_combining_marks() -> None:
    from indexer import keyword

    # Vowel signs and viramas are marks, which Python's \\w leaves out: हिन्दी became ह न द.
    assert keyword.terms("हिन्दी भाषा की परीक्षा।") == ["हिन्दी", "भाषा", "की", "परीक्षा"]
    assert keyword.terms("الْمَدْرَسَةُ كبيرة") == ["الْمَدْرَسَةُ", "كبيرة"]
    assert keyword.terms("தமிழ் மொழி") == ["தமிழ்", "மொழி"]
    assert keyword.writing("हिन्दी भाषा") == "spaced"
    # Marks inside the scripts written without spaces stay inside their character pairs.
    assert keyword.terms("ภาษา") == ["ภา", "าษ", "ษา"]


def test_weighted_share_weighs_the_question_terms_a_passage_holds() -> None:
    weights = {"rare": 3.0, "common": 1.0}
    assert ranking.weighted_share(weights, {"rare", "common", "other"}) == 1.0
    assert ranking.weighted_share(weights, {"rare"}) == pytest.approx(0.75)
    assert ranking.weighted_share(weights, set()) == 0.0
    assert ranking.weighted_share({}, {"rare"}) == 0.0


def test_fuse_adds_the_passage_share_to_the_keyword_side_of_alike_candidates() -> None:
    cosines, bm25 = np.full(3, 0.5), np.array([2.0, 2.0, 0.0])
    alike, share = np.array([True, True, False]), np.array([1.0, 0.5, 1.0])
    fused = ranking.fuse(cosines, bm25, 0.5, keyword_top=2.0, alike=alike, passage_share=share)
    weight = DEFAULT.passage_words_weight
    assert fused.tolist() == pytest.approx(
        [1.0, 0.5 + 0.5 * (1 + weight * 0.5) / (1 + weight), 1.0]
    ), "keyword evidence stays within 0-1: a candidate written unlike the question loses no ground"
    off = ranking.fuse(
        cosines, bm25, 0.5, keyword_top=2.0, alike=alike, passage_share=share,
        ranking=Ranking(passage_words_weight=0.0),
    )  # fmt: skip
    assert off[0] == off[1]


def test_pool_weighted_weighs_down_the_terms_every_candidate_passage_holds() -> None:
    # Two paragraphs of one article both hold its title; only one holds the question's
    # other word, which then decides between them.
    weights = {"title": 2.0, "brothers": 2.0, "nowhere": 2.0}
    passages = [frozenset({"title", "brothers"}), frozenset({"title"}), frozenset({"title"})]
    pooled = ranking.pool_weighted(weights, passages)
    assert pooled["title"] < pooled["brothers"] < pooled["nowhere"]
    assert pooled["brothers"] == pytest.approx(2.0 * ranking.idf(1, 3))
    share = [ranking.weighted_share(pooled, p) for p in passages]
    plain = [ranking.weighted_share(weights, p) for p in passages]
    assert share[0] / share[1] > 4 * plain[0] / plain[1], (
        "relative to each other, the paragraph holding the distinctive word stands further apart"
    )
    assert ranking.pool_weighted(weights, []) == {t: 2.0 * ranking.idf(0, 0) for t in weights}


def test_fuse_counts_the_passage_share_as_it_is_or_relative_to_the_best_candidates() -> None:
    cosines, bm25 = np.full(3, 0.5), np.array([2.0, 2.0, 2.0])
    share = np.array([0.4, 0.2, 0.0])
    weight = DEFAULT.passage_words_weight

    def expected(shares: tuple[float, ...]) -> list[float]:
        return [0.5 + 0.5 * (1 + weight * s) / (1 + weight) for s in shares]

    fused = ranking.fuse(cosines, bm25, 0.5, keyword_top=2.0, passage_share=share)
    assert fused.tolist() == pytest.approx(expected((0.4, 0.2, 0.0))), "how much it holds"
    relative = ranking.fuse(
        cosines, bm25, 0.5, keyword_top=2.0, passage_share=share,
        ranking=Ranking(share_relative=True),
    )  # fmt: skip
    assert relative.tolist() == pytest.approx(expected((1.0, 0.5, 0.0)))
    nothing = ranking.fuse(
        cosines, bm25, 0.5, keyword_top=2.0, passage_share=np.zeros(3),
        ranking=Ranking(share_relative=True),
    )  # fmt: skip
    assert nothing.tolist() == pytest.approx(expected((0.0, 0.0, 0.0)))


def test_fuse_of_no_candidates_is_empty() -> None:
    assert ranking.fuse(np.zeros(0), np.zeros(0), 0.5, keyword_top=0.0).shape == (0,)


def test_fuse_with_equal_cosines_keeps_the_dense_side_whole() -> None:
    fused = ranking.fuse(np.full(3, 0.4), np.array([2.0, 0.0, 1.0]), 0.5, keyword_top=2.0)
    assert fused.tolist() == pytest.approx([1.0, 0.5, 0.75])


def test_fuse_scales_every_candidate_by_the_reference_candidates_range() -> None:
    cosines, bm25 = np.array([0.9, 0.5, 0.7, 0.1]), np.zeros(4)
    reference = np.array([True, True, True, False])
    fused = ranking.fuse(cosines, bm25, 0.0, keyword_top=0.0, reference=reference)
    # 0.5–0.9 is the range; the fourth candidate, outside it, falls below 0.
    assert fused.tolist() == pytest.approx([1.0, 0.0, 0.5, -1.0])
    first = ranking.fuse(cosines[:3], bm25[:3], 0.0, keyword_top=0.0)
    assert fused[:3].tolist() == pytest.approx(first.tolist())


def test_dense_mix_against_the_formula_on_seeded_arrays() -> None:
    rng = np.random.default_rng(7)
    own, chunk, section = rng.uniform(-1, 1, (3, 50))
    heading = rng.random(50) < 0.2
    chunk[:5] = np.nan  # sentences no passage holds keep their own cosine
    mixed = ranking.dense_mix(own, chunk, section, heading)
    for i in range(50):
        if i < 5:
            assert mixed[i] == own[i]
            continue
        weight = DEFAULT.heading_own_weight if heading[i] else DEFAULT.own_weight
        local = weight * own[i] + (1 - weight) * chunk[i]
        expected = (1 - DEFAULT.section_weight) * local + DEFAULT.section_weight * section[i]
        assert mixed[i] == pytest.approx(expected, abs=1e-12)


def test_a_heading_scores_as_its_chunk_and_section() -> None:
    mixed = ranking.dense_mix(np.array([0.99]), np.array([0.3]), np.array([0.3]), np.array([True]))
    assert mixed[0] == pytest.approx(0.3)


def test_keyword_weight_follows_the_trust_ramp() -> None:
    low, high = DEFAULT.trust_ramp
    assert ranking.keyword_weight(low - 0.01) == 0.0
    assert ranking.keyword_weight(high) == DEFAULT.keyword_weight
    assert ranking.keyword_weight((low + high) / 2) == pytest.approx(DEFAULT.keyword_weight / 2)
    assert ranking.keyword_weight(1.0, Ranking(keyword_weight=0.0)) == 0.0


def test_keyword_trust_weighs_terms_by_rarity() -> None:
    assert ranking.keyword_trust([], 100) == 0.0
    assert ranking.keyword_trust([3, 9], 100) == 1.0
    assert ranking.keyword_trust([0, 0], 100) == 0.0
    rare_known = ranking.keyword_trust([1, 0], 100)
    common_known = ranking.keyword_trust([0, 90], 100)
    assert 0.0 < common_known < 0.1 < rare_known < 1.0, "a known rare term counts far more"


def test_ranks_and_best_first_keep_ties_in_input_order() -> None:
    assert ranking.ranks({5: 0.1, 7: 0.3, 9: 0.3}) == {7: 1, 9: 2, 5: 3}
    assert ranking.best_first(np.array([0.1, 0.3, 0.3])).tolist() == [1, 2, 0]


def row(i: int, file_id: int, position: int, kind: str = "text") -> SentenceRow:
    return SentenceRow(i, file_id, f"f{file_id}", position, f"s{i}", kind, 1, 1, 0, 1)


def test_distinct_places_drops_overlapping_context_and_bare_code() -> None:
    rows = {1: row(1, 1, 10), 2: row(2, 1, 11), 3: row(3, 1, 20), 4: row(4, 2, 0, "code")}
    ranked = [Scored(i, 1.0 - i / 10) for i in (1, 2, 3, 4)]
    chosen = ranking.distinct_places(ranked, rows, k=5, context=1)
    assert [s.id for s in chosen] == [1, 3], "2 overlaps 1; code needs keyword evidence"
    ranked[3].keyword_rank = 1
    assert [s.id for s in ranking.distinct_places(ranked, rows, k=5, context=0)] == [1, 2, 3, 4]
    assert len(ranking.distinct_places(ranked, rows, k=2, context=0)) == 2


def test_the_record_is_frozen_and_variants_are_made_by_replace() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.own_weight = 0.5  # type: ignore[misc]
    variant = dataclasses.replace(DEFAULT, own_weight=0.5)
    assert variant.own_weight == 0.5 and DEFAULT.own_weight != 0.5
    assert DEFAULT.pool(5) == DEFAULT.min_pool and DEFAULT.pool(100) == 100 * DEFAULT.overfetch


def test_bm25_weighs_what_fts5_does_not_clamp() -> None:
    assert ranking.bm25_weighs(49, 100) and ranking.bm25_weighs(1, 100)
    assert not ranking.bm25_weighs(50, 100) and not ranking.bm25_weighs(100, 100)
    assert not ranking.bm25_weighs(0, 100), "a term no row holds finds nothing"


def test_searched_terms_are_the_rarest_within_the_row_budget() -> None:
    counted = {"a": 40, "b": 3, "c": 10, "d": 0, "e": 60}
    assert ranking.searched_terms(counted, 100, 13) == ["b", "c"]
    assert ranking.searched_terms(counted, 100, 2) == ["b"], "always the rarest"
    # d is in no row, e in half of them or more (no BM25 weight): neither is searched.
    assert ranking.searched_terms(counted, 100, 1000) == ["b", "c", "a"]
    assert ranking.searched_terms({"x": 70, "y": 90}, 100, 1000) == ["x", "y"], "none weighed"
