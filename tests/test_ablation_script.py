"""The simple baseline of scripts/ablation.py (--measure baseline), on hand-worked inputs."""

from __future__ import annotations

import math

import numpy as np

from scripts import ablation


def test_baseline_terms_are_character_pairs_without_case_or_spaces() -> None:
    assert ablation.baseline_terms("Ab c\n東京") == ["ab", "bc", "c東", "東京"]
    assert ablation.baseline_terms("x") == []


def test_bm25_counts_the_questions_terms_as_often_as_they_occur() -> None:
    passages = ["東京都", "京都府京都"]  # terms: 東京 京都 | 京都 都府 府京 京都
    scores = ablation.bm25_scores(passages, ["東京", "京都京都", "大阪"])
    k1, b, mean = 1.2, 0.75, 3.0
    norm = [k1 * (1 - b + b * n / mean) for n in (2, 4)]

    def term(tf: int, df: int, column: int) -> float:
        idf = math.log(1 + (2 - df + 0.5) / (df + 0.5))
        return idf * tf * (k1 + 1) / (tf + norm[column])

    assert np.allclose(scores[0], [term(1, 1, 0), 0.0])
    # 京都 is in both passages, twice in the second; the question holds it twice ("都京" once).
    assert np.allclose(scores[1], [2 * term(1, 2, 0), 2 * term(2, 2, 1)])
    assert not scores[2].any()


def test_fusion_scales_each_question_to_zero_one() -> None:
    scaled = ablation.min_max(np.array([[2.0, 4.0, 3.0], [5.0, 5.0, 5.0]]))
    assert np.allclose(scaled, [[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]])


def test_passages_rank_by_score_for_recall_and_mrr() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [0.8, 0.2, 0.3]])
    ranked = ablation.ranked_scores(scores, ["a", "b", "c"], ["c", "a"])
    assert ranked == {"recall@1": 0.5, "mrr@10": 0.75}
