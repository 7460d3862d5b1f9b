"""scripts/eval.py: metric functions, and the real script on tiny sets with the tiny model; the
mixed and reversed sets; the stamp on every result row."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from indexer import Index
from scripts import common, reverse_set
from scripts import eval as ev
from tests.files import run_script

#: Passages in English and Japanese; every question below is one exact sentence of its passage.
PASSAGES = {
    "p-en-1": ("Onboarding", "Your laptop arrives on the first day. Ask your buddy about the VPN."),
    "p-en-2": ("Reviews", "Keep pull requests small and focused. Respond within one working day."),
    "p-en-3": ("Weather", "The weather is nice today, but it may rain tomorrow."),
    "p-ja-1": ("東京", "東京は日本の首都で、人口が多い都市です。電車が遅れました。"),
    "p-ja-2": ("経費", "経費は毎月まとめて申請します。会議は午後三時から始まります。"),
}
QUERIES = [
    ("q1", "Your laptop arrives on the first day.", "p-en-1"),
    ("q2", "Keep pull requests small and focused.", "p-en-2"),
    ("q3", "The weather is nice today, but it may rain tomorrow.", "p-en-3"),
    ("q4", "東京は日本の首都で、人口が多い都市です。", "p-ja-1"),
    ("q5", "経費は毎月まとめて申請します。", "p-ja-2"),
]
STS = [
    ("今日はいい天気ですね。", "今日はいい天気ですね。", 5.0),
    ("東京は日本の首都です。", "東京は大きな都市です。", 3.0),
    ("経費は毎月申請します。", "モデルの推論速度を測定しました。", 0.0),
    ("The weather is nice today.", "It may rain tomorrow.", 1.0),
    ("Keep pull requests small.", "Respond to code reviews quickly.", 1.0),
]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")


def write_set(root: Path, passages: dict[str, tuple[str, str]], queries: list) -> Path:
    """A retrieval set at root: passages.jsonl, queries.jsonl and docs/<passage id>.txt."""
    (root / "docs").mkdir(parents=True)
    write_jsonl(
        root / "passages.jsonl",
        [
            {"id": pid, "lang": "ja" if "-ja-" in pid else "en", "title": t, "text": x}
            for pid, (t, x) in passages.items()
        ],
    )
    write_jsonl(
        root / "queries.jsonl",
        [{"id": qid, "lang": "xx", "question": q, "passage_id": p} for qid, q, p in queries],
    )
    for pid, (title, text) in passages.items():
        (root / "docs" / f"{pid}.txt").write_text(f"{title}\n\n{text}\n", "utf-8")
    return root


@pytest.fixture
def retrieval_set(tmp_path: Path) -> Path:
    return write_set(tmp_path / "tiny_qa", PASSAGES, QUERIES)


@pytest.fixture
def sts_set(tmp_path: Path) -> Path:
    root = tmp_path / "tiny_sts"
    root.mkdir()
    write_jsonl(root / "sts.jsonl", [{"s1": a, "s2": b, "score": s} for a, b, s in STS])
    return root


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return run_script("eval", *args)


def last_json(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- metrics


def test_passage_ranking_keeps_each_stem_once_at_its_best_rank() -> None:
    paths = ["a.txt", "sub/b.txt", "a.txt", "c.txt", "b.txt", "d.txt"]
    assert ev.passage_ranking(paths, k=3) == ["a", "b", "c"]
    assert ev.passage_ranking(paths, k=10) == ["a", "b", "c", "d"]


def test_recall_and_reciprocal_rank() -> None:
    ranking = ["x", "y", "gold", "z"]
    assert ev.recall_at(ranking, "gold", 1) == 0.0
    assert ev.recall_at(ranking, "gold", 3) == 1.0
    assert ev.reciprocal_rank(ranking, "gold") == pytest.approx(1 / 3)
    assert ev.reciprocal_rank(ranking, "gold", 2) == 0.0
    assert ev.reciprocal_rank(ranking, "missing") == 0.0


def test_retrieval_scores_average_over_queries() -> None:
    scores = ev.retrieval_scores([["a"], ["x", "b"], ["x"] * 10 + ["c"]], ["a", "b", "c"])
    assert scores == pytest.approx(
        {"recall@1": 1 / 3, "recall@5": 2 / 3, "recall@10": 2 / 3, "mrr@10": (1 + 0.5) / 3}
    )


def test_average_ranks_share_ties() -> None:
    assert ev.average_ranks([10, 20, 20, 5, 20]).tolist() == [2, 4, 4, 1, 4]


def test_spearman_matches_hand_computed_value_with_ties() -> None:
    # ranks a = [1, 2.5, 2.5, 4], b = [1, 3, 2, 4]: cov 4.5, var 4.5 and 5 → rho = sqrt(0.9)
    assert ev.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(np.sqrt(0.9))
    assert ev.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert ev.spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_results_table_lists_retrieval_and_sts_under_their_commit() -> None:
    stamp = {"commit": "abc123", "date": "2025-01-01T10:00:00+00:00"}
    results = [
        {"set": "s", "mode": "dense", "queries": 3, "recall@1": 0.5, "recall@5": 1.0,
         "recall@10": 1.0, "mrr@10": 0.75, **stamp},
        {"set": "sts", "pairs": 4, "spearman": 0.8123, **stamp},
    ]  # fmt: skip
    table = ev.results_table(results)
    assert table.startswith("Commit `abc123`, 2025-01-01.")
    assert "| s | dense | 3 | 0.500 | 1.000 | 1.000 | 0.750 |" in table
    assert "sts: Spearman 0.812 over 4 pairs." in table
    later = {**results[1], "commit": "def456", "dirty": True, "date": "2025-01-03T09:00:00+00:00"}
    assert ev.results_table([results[0], later]).startswith(
        "Commits `abc123`, `def456` with uncommitted changes, 2025-01-01 to 2025-01-03."
    )


# -- the script, end to end


@pytest.mark.slow
def test_retrieval_set_scores_exact_sentences_first(
    retrieval_set: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    args = [retrieval_set, "--model", tiny_model_dir, "--index-dir", tmp_path / "i"]
    result = last_json(run(*args))
    keys = {"set", "mode", "queries", "passages", "recall@1", "recall@5", "recall@10", "mrr@10"}
    assert keys | {"seconds", "build_seconds"} <= result.keys()
    assert result["args"] == [str(a) for a in args]
    assert result["commit"] == common.SOURCE["commit"] and result["machine"]
    assert result["set"] == "tiny_qa"
    assert (result["queries"], result["passages"]) == (5, 5)
    for metric in ("recall@1", "recall@5", "recall@10", "mrr@10"):
        assert 0.0 <= result[metric] <= 1.0
    assert result["recall@1"] == result["mrr@10"] == 1.0
    assert result["seconds"] >= 0 and result["build_seconds"] >= 0


@pytest.mark.slow
def test_limit_and_index_reuse(retrieval_set: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    args = (retrieval_set, "--model", tiny_model_dir, "--index-dir", tmp_path / "i", "--limit", 2)
    assert last_json(run(*args))["queries"] == 2
    again = run(*args)
    assert last_json(again)["queries"] == 2
    assert "5 unchanged files; 0 sentences embedded" in again.stderr


@pytest.mark.slow
def test_ann_always_scores_a_copy_with_an_approximate_base(
    retrieval_set: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    exact_dir = tmp_path / "i"
    args = (retrieval_set, "--model", tiny_model_dir, "--index-dir", exact_dir)
    exact = last_json(run(*args))
    done = run(*args, "--ann", "always")
    approximate = last_json(done)
    # The copy re-embeds nothing; the exact index keeps its flat base.
    assert "5 unchanged files; 0 sentences embedded" in done.stderr
    assert approximate["vector_index"].startswith("ivf-sq8")
    assert "vector_index" not in exact
    assert Index(exact_dir).status()["vector_index"].startswith("flat")
    assert Index(tmp_path / "i-ann-always").status()["vector_index"].startswith("ivf-sq8")
    assert approximate["recall@1"] == exact["recall@1"] == 1.0


def test_the_set_an_index_was_kept_for_is_read_back_from_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INDEXER_CACHE_DIR", str(tmp_path / "cache"))
    kept = ev.default_index_dir(tmp_path / "jsquad_valid", None)
    assert ev.set_name_of(kept) == "jsquad_valid"
    assert ev.set_name_of(ev.variant_index_dir(kept, "chunks-pooled")) is None
    assert ev.set_name_of(tmp_path / "my-index") is None


@pytest.mark.slow
def test_each_passage_option_scores_a_copy_built_that_way(
    retrieval_set: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INDEXER_CACHE_DIR", str(tmp_path / "cache"))  # the int8 copy goes here
    args = (retrieval_set, "--model", tiny_model_dir, "--index-dir", tmp_path / "i")
    last_json(run(*args))
    pooled = last_json(run(*args, "--chunks", "pooled"))
    assert pooled["chunk_vectors"] == "pooled"
    assert Index(tmp_path / "i").status()["chunk_vectors"] == "embedded"
    assert Index(tmp_path / "i-chunks-pooled").status()["chunk_vectors"] == "pooled"
    both = last_json(run(*args, "--chunks", "pooled", "--passages", "int8"))
    assert both["chunk_vectors"] == "pooled" and both["passage_precision"] == "int8"
    copy = Index(tmp_path / "i-chunks-pooled-passages-int8").status()
    assert (copy["chunk_vectors"], copy["passage_precision"]) == ("pooled", "int8")
    averaged = last_json(run(*args, "--sections", "averaged"))
    assert averaged["section_vectors"] == "averaged"
    assert Index(tmp_path / "i-sections-averaged").status()["section_vectors"] == "averaged"


@pytest.mark.slow
def test_every_mode_gives_one_line(
    retrieval_set: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    if not ev.supports_mode(Index(tmp_path / "unused")):
        pytest.skip("Index.ask has no mode yet")
    done = run(
        retrieval_set, "--model", tiny_model_dir, "--index-dir", tmp_path / "i", "--mode", "all"
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["mode"] for r in lines] == list(ev.MODES)
    for r in lines:
        assert 0.0 <= r["recall@1"] <= r["recall@5"] <= r["recall@10"] <= 1.0


@pytest.mark.slow
def test_sts_set_spearman_of_query_prefixed_cosines(
    sts_set: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = last_json(run(sts_set, "--model", tiny_model_dir, "--index-dir", tmp_path / "i"))
    assert set(common.unstamped(result)) == {"set", "pairs", "spearman", "seconds"}
    assert result["pairs"] == len(STS)
    embedder = Index(sts_set / "unused", model=tiny_model_dir).embedder
    left = embedder.embed([embedder.query_text(a) for a, _, _ in STS])
    right = embedder.embed([embedder.query_text(b) for _, b, _ in STS])
    expected = ev.spearman(np.sum(left * right, axis=1).tolist(), [s for _, _, s in STS])
    assert result["spearman"] == pytest.approx(expected, abs=1e-4)
    assert -1.0 <= result["spearman"] <= 1.0


@pytest.mark.slow
def test_a_folder_that_is_no_set_fails_in_one_line(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "is not an eval set" in done.stderr
    assert "Traceback" not in done.stderr


# -- scripts/mixed_set.py


def one_language_set(root: Path, lang: str) -> Path:
    """The part of the tiny set whose passages are in `lang`, with their questions."""
    chosen = {pid: v for pid, v in PASSAGES.items() if f"-{lang}-" in pid}
    return write_set(root, chosen, [q for q in QUERIES if q[2] in chosen])


def mixed(*args: object) -> subprocess.CompletedProcess[str]:
    return run_script("mixed_set", *args, timeout=60)


@pytest.mark.slow
def test_mixed_set_adds_the_other_sets_documents_as_distractors(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    english = one_language_set(tmp_path / "en", "en")
    japanese = one_language_set(tmp_path / "ja", "ja")
    done = mixed(english, japanese, "--out", tmp_path / "mixed")
    assert done.returncode == 0, done.stderr
    out = Path(done.stdout.strip())
    assert sorted(p.stem for p in (out / "docs").iterdir()) == sorted(PASSAGES)
    result = last_json(run(out, "--model", tiny_model_dir, "--index-dir", tmp_path / "i"))
    assert (result["queries"], result["passages"]) == (3, 5)
    assert result["recall@1"] == 1.0


@pytest.mark.slow
def test_mixed_set_refuses_documents_of_the_same_name(tmp_path: Path) -> None:
    english = one_language_set(tmp_path / "en", "en")
    done = mixed(english, english, "--out", tmp_path / "mixed")
    assert done.returncode == 1
    assert "two sets" in done.stderr and "Traceback" not in done.stderr


# -- scripts/reverse_set.py


def reverse(*args: object) -> subprocess.CompletedProcess[str]:
    return run_script("reverse_set", *args, timeout=60)


@pytest.mark.slow
def test_reversed_set_asks_the_passages_over_the_questions(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    pairs = {f"pair-ja-{i}": ("", question) for i, (_, question, _) in enumerate(QUERIES)}
    queries = [(f"pair-en-{i}", q, pid) for i, (pid, (_, q)) in enumerate(pairs.items())]
    done = reverse(write_set(tmp_path / "pairs_en-ja", pairs, queries), "--out", tmp_path / "r")
    assert done.returncode == 0, done.stderr
    out = Path(done.stdout.strip())
    assert sorted(p.stem for p in (out / "docs").iterdir()) == [q[0] for q in queries]
    asked = list(common.read_jsonl(out / "queries.jsonl"))
    assert [(q["id"], q["passage_id"], q["lang"]) for q in asked[:1]] == [
        ("pair-ja-0", "pair-en-0", "ja")
    ]
    result = last_json(run(out, "--model", tiny_model_dir, "--index-dir", tmp_path / "i"))
    assert (result["queries"], result["passages"]) == (5, 5)
    assert result["recall@1"] == 1.0


def test_reversed_set_names_swap_the_language_pair() -> None:
    assert reverse_set.reversed_name("tatoeba_en-ja") == "tatoeba_ja-en"
    assert reverse_set.reversed_name("jsquad") == "jsquad-reversed"


@pytest.mark.slow
def test_only_sentence_pair_sets_can_be_reversed(tmp_path: Path) -> None:
    two_questions = write_set(tmp_path / "two", PASSAGES, [*QUERIES, ("q6", "VPN", "p-en-1")])
    unasked = write_set(tmp_path / "unasked", PASSAGES, QUERIES[:4])
    for set_dir in (two_questions, unasked):
        done = reverse(set_dir, "--out", tmp_path / "r")
        assert done.returncode == 1
        assert "exactly one question" in done.stderr and "Traceback" not in done.stderr


def test_eval_limits_have_one_home_for_python_and_eval_all() -> None:
    assert common.eval_limit("jsquad_valid") == 1000
    assert common.eval_limit("tatoeba_en-ja") == common.eval_limit("tatoeba_ja-en") == 500
    assert common.eval_limit("xquad_en") is None
    done = run_script("common", "limit", "tatoeba_ja-en", timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "--limit 500"
    assert run_script("common", "limit", "xquad_en", timeout=60).stdout.strip() == ""


# -- stamped result rows


def test_emit_stamps_a_row_with_commit_date_args_and_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    row = common.emit({"set": "s", "recall@1": 0.5}, args=["s", "--limit", "2"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == row
    assert row["set"] == "s" and row["args"] == ["s", "--limit", "2"]
    assert {k: row[k] for k in common.SOURCE} == common.SOURCE
    assert row["date"].endswith("+00:00") and "cores" in row["machine"]
    assert common.unstamped(row) == {"set": "s", "recall@1": 0.5}


@pytest.mark.parametrize("path", sorted(common.SCRIPTS.glob("*_results.jsonl")), ids=str)
def test_every_checked_in_result_row_is_stamped(path: Path) -> None:
    for row in common.read_jsonl(path):
        assert {"commit", "date", "args", "machine"} <= row.keys()
        assert row["commit"] and row["date"]
