"""Names compared by sound across writing systems (indexer.names), and their place in hybrid."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer import Index, names
from indexer.ranking import DEFAULT, Ranking
from tests.files import write_docs


def question_keys(question: str) -> names.NameKeys:
    return names.question_keys(question, min_key=DEFAULT.name_min_key)


def shared(question: names.NameKeys, text: str) -> float:
    return names.shared(question, text, fuzzy_from=DEFAULT.name_fuzzy_from)


@pytest.mark.parametrize(
    ("latin", "by_sound"),
    [
        ("Trump", "トランプ"),
        ("Arrizabalaga", "アリザバラガ"),
        ("Marconi", "マルコーニ"),
        ("Instagram", "インスタグラム"),
        ("Dragons", "ドラゴンズ"),
        ("Peter", "ピーター"),
        ("Trump", "트럼프"),
    ],
)
def test_a_name_and_its_transliteration_share_a_key(latin: str, by_sound: str) -> None:
    question = question_keys(f"What did {latin} say?")
    assert question.latin and not question.sound
    assert shared(question, f"{by_sound}は言った。") == 1.0


def test_different_names_do_not_match() -> None:
    question = question_keys("What did Trump say?")
    assert shared(question, "ジョーンズは言った。") == 0.0
    assert shared(question, "アリザバラガは言った。") == 0.0


def test_a_japanese_question_finds_the_latin_spelling() -> None:
    question = question_keys("マルコーニはいつ実演した？")
    assert question.sound and not question.latin
    assert shared(question, "When did Marconi demonstrate the radio?") == 1.0


def test_which_words_count_as_names() -> None:
    assert not question_keys("Where is the station?"), "the first word is no name"
    assert not question_keys("What did Tom do?"), "keys under three letters match by chance"
    keys = question_keys("Did Kepa Arrizabalaga and Peter Jones meet?")
    assert keys.latin == {names.sound_key("Arrizabalaga"), names.sound_key("Jones"), "ptr"}
    assert shared(keys, "アリザバラガとピーター・ジョーンズ") == pytest.approx(3 / 3)
    assert shared(keys, "アリザバラガ") == pytest.approx(1 / 3)


def test_names_in_the_same_script_are_left_to_the_keyword_side() -> None:
    assert shared(question_keys("What did Trump say?"), "Trump said so.") == 0.0
    assert shared(question_keys("トランプは？"), "トランプ大統領") == 0.0


@pytest.fixture
def index(tmp_path: Path, tiny_model_dir: Path) -> Index:
    return Index(tmp_path / "idx", model=tiny_model_dir)


def test_hybrid_adds_the_name_share_to_passages_written_otherwise(
    index: Index, tmp_path: Path
) -> None:
    docs = {
        "a.md": "ボールはアリザバラガに当たり、ゴールになった。\n",
        "b.md": "ボールはゴールのはるか上を行った。\n",
        "c.md": "The ball went over the goal.\n",
    }
    index.build(write_docs(tmp_path / "docs", docs))
    question = "The ball dropped over a leaping Arrizabalaga."
    named = {h.path: h for h in index.ask(question, k=3, context=0)}
    assert named["a.md"].name_share == 1.0
    assert named["b.md"].name_share == 0.0
    assert named["c.md"].name_share is None, "written like the question"
    weight = DEFAULT.name_weight
    silent = Index(index.path, model=index.model.path, ranking=Ranking(name_weight=0.0))
    plain = {h.path: h for h in silent.ask(question, k=3, context=0)}
    gain = named["a.md"].score - plain["a.md"].score
    assert gain == pytest.approx(weight, abs=1e-3)
