"""Build and ask through the Python API on a tiny real model: incremental behaviour, consistency."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from indexer import Index, ranking
from indexer.config import ChunkVectors
from indexer.errors import (
    EmptyFolderError,
    EmptyQuestionError,
    FolderVanishedError,
    IndexerError,
    ModelMismatchError,
    ModelPrepareError,
    NoIndexError,
)
from tests.files import store_vectors_as_float32, stored_vectors, write_docs

DOCS = {
    "ja/npu.md": "# NPUの測定\n\nNNAPI経由でNPUを使うと、CPUより約15倍速くなりました。\n"
    "消費電力も大きく下がりました。\n\n## 注意\n\n一部の演算はCPUにフォールバックします。\n",
    "en/review.md": "# Code review\n\n- Respond within one working day.\n"
    "- Keep pull requests small.\n\n"
    "Reviewers check tests first. Style comments come last.\n",
    "en/faq.txt": "Welcome to the team.\n\nYour laptop arrives on the first day. Ask your buddy "
    "about the VPN. Expenses are claimed monthly.\n",
}


def database_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("index.sqlite*"))


def all_hits(index: Index, question: str) -> list:
    return index.ask(question, k=100, context=0)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_docs(tmp_path / "docs", DOCS)


@pytest.fixture
def index(tmp_path: Path, tiny_model_dir: Path) -> Index:
    return Index(tmp_path / "idx", model=tiny_model_dir)


def test_build_then_ask_finds_sentence_with_place(index: Index, docs: Path) -> None:
    report = index.build(docs)
    assert len(report.added) == 3 and report.sentences > 5 and report.embedded > 0
    question = "NNAPI経由でNPUを使うと、CPUより約15倍速くなりました。"
    for mode in ("hybrid", "dense", "keyword"):
        hits = index.ask(question, k=3, mode=mode)
        assert (hits[0].path, hits[0].line) == ("ja/npu.md", 3), mode
        assert "15倍" in hits[0].text
        assert hits[0].before == ["NPUの測定"]
    dense = index.ask(question, k=1, mode="dense")[0]
    # The dense score is the mean of the sentence's own cosine (1.0 here) and its chunk's.
    assert 0.5 < dense.score <= 1.0 + 1e-4 and dense.dense_rank == 1


def test_hybrid_reports_both_sides(index: Index, docs: Path) -> None:
    index.build(docs)
    hit = index.ask("Reviewers check tests first.", k=1)[0]
    assert hit.dense_rank == 1 and hit.keyword_rank == 1
    assert hit.dense_score is not None and hit.keyword_score is not None


def test_a_question_is_embedded_beside_its_keyword_search_and_ranked_the_same(
    index: Index, docs: Path
) -> None:
    index.build(docs)
    question = "Reviewers check tests first."
    hits = index.ask(question, k=3)
    assert [t.name for t in threading.enumerate() if t.name.startswith("indexer-embed")]
    searcher = index.searcher
    with index.store.snapshot():  # the same ranking, done one step after the other
        vector = searcher.question_vector(question)
        ranked = searcher.rank(question, vector, mode="hybrid", pool=searcher.ranking.pool(3))
        rows = index.store.sentences([s.id for s in ranked])
    chosen = ranking.distinct_places(ranked, rows, k=3, context=1)
    assert [(h.sentence_id, h.score) for h in hits] == [(s.id, round(s.score, 4)) for s in chosen]
    index.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("indexer-embed")]


def test_asking_for_more_hits_keeps_the_first_ones_and_their_scores(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # A pool of 4 candidates per hit from 4 up: k=1 scores 4 vector hits, k=10 scores 40.
    docs = {
        f"notes/{n}.md": f"# Topic {n}\n\n"
        + " ".join(f"Item {n}.{i} covers {word} and {other}." for i, (word, other) in enumerate(
            zip(("tests", "reviews", "NNAPI", "laptops", "expenses"),
                ("speed", "the VPN", "style", "power", "the buddy"), strict=True)))
        + "\n\nNPUの測定では約15倍速くなりました。\n"
        for n in range(8)
    }  # fmt: skip
    narrow = dataclasses.replace(ranking.DEFAULT, min_pool=4, overfetch=4)
    index = Index(tmp_path / "idx", model=tiny_model_dir, ranking=narrow)
    index.build(write_docs(tmp_path / "docs", docs))
    for question in ("Who checks the tests for speed?", "NNAPI style", "NPUの測定"):
        many = [(h.sentence_id, h.score) for h in index.ask(question, k=10, context=0)]
        for k in (1, 2, 3):
            few = [(h.sentence_id, h.score) for h in index.ask(question, k=k, context=0)]
            assert few == many[:k], (question, k)


def test_how_a_text_is_written() -> None:
    from indexer import keyword

    assert keyword.writing("How fast nnapi?") == "spaced"
    assert keyword.writing("NNAPIの速度") == "unspaced"
    assert keyword.writing("NNAPI経由でNPUを使うと、CPUより速い。") == "unspaced"
    assert keyword.writing("?!") is None


def test_only_candidates_written_like_the_question_take_keyword_evidence(
    index: Index, tmp_path: Path
) -> None:
    docs = {"en.md": "Rate limits apply to every key.\n", "ja.md": "上限を超えたら429を返す。\n"}
    index.build(write_docs(tmp_path / "mixed", docs))
    searcher = index.searcher
    rows = dict(index.store.db.execute("SELECT id, text FROM sentences").fetchall())
    english = {i for i, text in rows.items() if text.startswith("Rate")}
    around = searcher._passages(list(rows), [])
    assert searcher._written_alike("What is the rate limit?", rows, around) == english
    assert searcher._written_alike("上限は？", rows, around) == set(rows) - english


def test_a_heading_is_written_like_the_passage_it_opens(index: Index, tmp_path: Path) -> None:
    docs = {"bowl.md": "# Super_Bowl_50\n\n第50屆超級盃在2016年2月7日舉行。丹佛野馬隊獲勝。\n"}
    index.build(write_docs(tmp_path / "zh", docs))
    searcher = index.searcher
    rows = dict(index.store.db.execute("SELECT id, text FROM sentences").fetchall())
    heading = next(i for i, text in rows.items() if text.startswith("Super"))
    around = searcher._passages(list(rows), [])
    assert around[heading].heading and "舉行" in around[heading].text
    assert heading in searcher._written_alike("超級盃在哪一年舉行？", rows, around)
    assert heading not in searcher._written_alike("超級盃在哪一年舉行？", rows, {})


def test_a_candidate_is_scored_with_the_words_of_its_whole_section(
    index: Index, tmp_path: Path
) -> None:
    text = "# Tea\n\nGreen tea grows in Shizuoka.\n\nIt is picked in May.\n\n# Coffee\n\nBeans.\n"
    index.build(write_docs(tmp_path / "drinks", {"drinks.md": text}))
    searcher = index.searcher
    rows = dict(index.store.db.execute("SELECT id, text FROM sentences").fetchall())
    wanted = ["green", "shizuoka", "picked", "may", "coffee"]
    around = searcher._passages(list(rows), wanted)
    picked = next(i for i, t in rows.items() if t.startswith("It is picked"))
    beans = next(i for i, t in rows.items() if t == "Beans.")
    assert around[picked].terms == {"green", "shizuoka", "picked", "may"}
    assert around[beans].terms == {"coffee"}


@pytest.mark.parametrize("question", ['"unbalanced', "NEAR(a b)", "*", "a OR", "AND NOT -", "()"])
def test_any_text_is_a_safe_keyword_query(index: Index, docs: Path, question: str) -> None:
    index.build(docs)
    assert isinstance(index.ask(question, mode="keyword"), list)
    assert isinstance(index.ask(question), list)


def test_hits_are_distinct_places(index: Index, docs: Path) -> None:
    index.build(docs)
    hits = index.ask("Reviewers check tests first.", k=5, context=1)
    shown = [(h.path, text) for h in hits for text in [*h.before, h.text, *h.after]]
    assert len(shown) == len(set(shown)), "two hits show the same sentence"
    assert len({h.sentence_id for h in hits}) == len(hits)


def test_unchanged_rerun_embeds_nothing_and_reads_no_file(
    index: Index, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index.build(docs)
    import indexer.build as build_module

    def refuse(*args: object) -> None:
        raise AssertionError("an unchanged file was read")

    monkeypatch.setattr(build_module, "read_document", refuse)
    report = index.build(docs)
    assert report.unchanged == 3 and report.embedded == 0 and not report.touched


def test_add_change_delete_rename_follow_exactly(index: Index, docs: Path) -> None:
    index.build(docs)
    (docs / "en/new.md").write_text("A brand new document about kittens.\n", encoding="utf-8")
    (docs / "en/faq.txt").write_text("Welcome aboard.\n\nExpenses are claimed weekly now.\n")
    (docs / "en/review.md").unlink()
    (docs / "ja/npu.md").rename(docs / "moved.md")
    report = index.build(docs)
    assert report.added == ["en/new.md"]
    assert report.changed == ["en/faq.txt"]
    assert report.deleted == ["en/review.md"]
    assert report.renamed == [("ja/npu.md", "moved.md")]
    texts = {(h.path, h.text) for h in all_hits(index, "anything")}
    assert not any(p == "en/review.md" for p, _ in texts), "ghost hit from a deleted file"
    assert not any(p == "ja/npu.md" for p, _ in texts), "ghost hit from the old path"
    assert ("moved.md", "NNAPI経由でNPUを使うと、CPUより約15倍速くなりました。") in texts
    assert ("en/faq.txt", "Expenses are claimed weekly now.") in texts
    assert ("en/faq.txt", "Expenses are claimed monthly.") not in texts
    assert len(texts) == len(all_hits(index, "anything")), "duplicate hits"
    assert index.verify().ok


def test_editing_one_sentence_embeds_one(index: Index, tmp_path: Path) -> None:
    root = tmp_path / "big"
    lines = [f"Sentence number {i} talks about topic {i * 7 % 13}." for i in range(300)]
    write_docs(root, {"big.txt": "\n\n".join(lines)})
    first = index.build(root)
    assert first.embedded == 300
    lines[150] = "This sentence was edited by hand today."
    write_docs(root, {"big.txt": "\n\n".join(lines)})
    second = index.build(root)
    assert second.changed == ["big.txt"]
    assert second.embedded == 1 and second.reused == 299
    assert second.passages_embedded == 1, "only the chunk holding the edited sentence"


def test_identical_text_embedded_once(index: Index, tmp_path: Path) -> None:
    root = write_docs(
        tmp_path / "dup", {"a.txt": "Same words here.\n", "b.txt": "Same words here.\n"}
    )
    report = index.build(root)
    assert report.sentences == 2 and report.embedded == 1
    assert {h.path for h in all_hits(index, "Same words here.")} == {"a.txt", "b.txt"}


def test_dry_run_changes_nothing(index: Index, docs: Path) -> None:
    report = index.build(docs, dry_run=True)
    assert report.dry_run and len(report.added) == 3 and report.embedded > 0
    assert not index.path.exists()
    index.build(docs)
    (docs / "en/faq.txt").unlink()
    assert index.build(docs, dry_run=True).deleted == ["en/faq.txt"]
    assert any(h.path == "en/faq.txt" for h in all_hits(index, "VPN"))


def test_deleting_files_shrinks_the_index(
    index: Index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import indexer.store

    monkeypatch.setattr(indexer.store, "RECLAIM_MIN_PAGES", 8)
    root = tmp_path / "many"
    words = " ".join(f"word{j}" for j in range(40))
    write_docs(root, {f"f{i}.txt": f"File {i} says {words} {i * 31}.\n" * 20 for i in range(60)})
    index.build(root)
    vectors_before = index.status()["vectors"]
    size_before = database_bytes(index.path)
    for i in range(50):
        (root / f"f{i}.txt").unlink()
    with pytest.raises(FolderVanishedError, match="--confirm-delete"):
        index.build(root)
    assert index.status()["files"] == 60, "nothing dropped without confirmation"
    index.build(root, confirm_delete=True)
    status = index.status()
    assert status["files"] == 10 and status["vectors"] < vectors_before
    assert database_bytes(index.path) < size_before / 2, "deleted files' space not given back"


def test_unreadable_file_keeps_previous_version(index: Index, docs: Path) -> None:
    index.build(docs)
    (docs / "en/faq.txt").write_bytes(b"\x00\x01binary now\x00" * 10)
    report = index.build(docs)
    assert report.kept == ["en/faq.txt"] and report.skipped
    assert any(h.path == "en/faq.txt" for h in all_hits(index, "VPN"))


def test_model_mismatch_is_refused(index: Index, docs: Path, other_model: Path) -> None:
    index.build(docs)
    with pytest.raises(ModelMismatchError, match="built with model"):
        Index(index.path, model=other_model).ask("VPN")
    with pytest.raises(ModelMismatchError):
        Index(index.path, model=other_model).build(docs)


def test_ask_without_model_flag_uses_the_recorded_model(index: Index, docs: Path) -> None:
    index.build(docs)
    again = Index(index.path)
    assert again.ask("VPN", k=1)[0].path


def test_expected_failures_are_named(index: Index, tmp_path: Path, docs: Path) -> None:
    with pytest.raises(NoIndexError, match="index build"):
        index.ask("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyFolderError):
        index.build(empty)
    index.build(docs)
    with pytest.raises(EmptyQuestionError):
        index.ask("   ")


def test_mismatched_faiss_is_rebuilt_on_open(index: Index, docs: Path) -> None:
    index.build(docs)
    generation = index.status()["generation"]
    faiss_file = index.path / f"vectors.{generation}.faiss"
    faiss_file.unlink()
    assert not index.verify().ok
    messages: list[str] = []
    reader = Index(index.path, echo=messages.append)
    assert reader.ask("VPN", k=1)
    assert any("rebuilding" in m for m in messages)
    assert faiss_file.exists() and index.verify().ok


def test_verify_repair(index: Index, docs: Path) -> None:
    index.build(docs)
    generation = index.status()["generation"]
    (index.path / f"vectors.{generation}.faiss").write_bytes(b"garbage")
    report = index.verify(repair=True)
    assert report.repaired and report.ok
    assert index.verify().ok


def fts5_term_rows(index: Index) -> dict[str, int]:
    """Each term's keyword rows as FTS5 itself counts them (its vocabulary table)."""
    db = index.store.db
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.v USING fts5vocab(main, sentences_fts, row)"
    )
    return dict(db.execute("SELECT term, doc FROM temp.v").fetchall())


def test_term_row_counts_follow_every_change_and_verify_repairs_them(
    index: Index, docs: Path
) -> None:
    index.build(docs)
    kept = dict(index.store.db.execute("SELECT term, rows FROM term_rows").fetchall())
    assert kept == fts5_term_rows(index) and kept["npu"] >= 2
    (docs / "en" / "faq.txt").unlink()
    (docs / "ja" / "npu.md").write_text("# NPU\n\nNPUは速い。CPUは遅い。\n", encoding="utf-8")
    (docs / "en" / "new.txt").write_text("The VPN needs a token. Ask IT.\n", encoding="utf-8")
    index.build(docs)
    kept = dict(index.store.db.execute("SELECT term, rows FROM term_rows").fetchall())
    assert kept == fts5_term_rows(index)
    assert "laptop" not in kept and kept["vpn"] == 1
    assert index.store.term_frequencies(["vpn", "laptop"]) == (
        {"vpn": 1},
        index.status()["sentences"],
    )

    with index.store.transaction():
        index.store.db.execute("UPDATE term_rows SET rows = rows + 7 WHERE term = 'vpn'")
        index.store.db.execute("INSERT INTO term_rows VALUES ('nowhere', 3)")
    report = index.verify()
    assert report.problems == ["2 keyword terms have a wrong row count (they weigh words wrongly) "
                               "— run `index verify --repair`"]  # fmt: skip
    assert index.verify(repair=True).repaired
    assert dict(index.store.db.execute("SELECT term, rows FROM term_rows").fetchall()) == kept


def test_a_keyword_term_is_stored_and_searched_as_made(index: Index, tmp_path: Path) -> None:
    # Thai vowel signs are marks and the Katakana middle dot is punctuation: a tokenizer that
    # splits there stored the pair กั as ก, so ฉันกินข้าว (no กั) matched it too.
    texts = ["ฉันกันข้าว", "ฉันกินข้าว", "パ・リーグの試合", "パンの話"]
    docs = write_docs(
        tmp_path / "th", {f"{n}.txt": f"{t}\n" for n, t in zip("abcd", texts, strict=True)}
    )
    index.build(docs)
    for term, path in (("กั", "a.txt"), ("パ・", "c.txt")):
        found = index.store.keyword_search(f'"{term}"', 10, (1.0, 0.5))
        assert [index.store.sentences([i])[i].path for i, _ in found] == [path]
        assert index.store.term_frequencies([term])[0] == {term: 1}
    # A Hindi word keeps its vowel signs: परीक्षा is not प र क ष, which पर्यटक also held.
    hindi = {"e.txt": "कल परीक्षा है।\n", "f.txt": "पर्यटक यहाँ आते हैं।\n"}
    index.build(write_docs(tmp_path / "hi", hindi))
    assert [h.path for h in index.ask("परीक्षा", k=5, mode="keyword")] == ["e.txt"]


def test_a_passage_holds_the_terms_its_text_makes(index: Index, tmp_path: Path) -> None:
    from indexer import keyword

    texts = {
        "ja.md": "# 梅雨\n\n梅雨の期間はふつう1か月から1か月半程度である。ＮＮＡＰＩ経由で速い。\n",
        "en.md": "# Limits\n\nRate limits apply to every key. The API returns 429.\n\nAsk.\n",
        "hi.txt": "हिन्दी भाषा की परीक्षा कल है। पर्यटक आते हैं।\n",
    }
    index.build(write_docs(tmp_path / "mixed", texts))
    ids = [r[0] for r in index.store.db.execute("SELECT id FROM passages").fetchall()]
    made = index.store.passage_terms(ids)
    assert len(made) == len(ids) >= 3
    for passage, text in index.store.passage_texts(ids).items():
        assert set(made[passage].split()) == set(keyword.terms(text))
        assert made[passage].startswith(" ") and made[passage].endswith(" ")


def test_an_index_from_before_term_counts_gains_them_on_the_next_build(
    index: Index, docs: Path
) -> None:
    index.build(docs)
    counted = fts5_term_rows(index)
    db = index.store.db
    with db.atomic():  # back to schema 7
        db.execute("DROP TABLE term_rows")
        db.execute("CREATE VIRTUAL TABLE sentences_vocab USING fts5vocab('sentences_fts', 'row')")
        db.execute("DELETE FROM _migrations WHERE name = '0008_term_rows'")
    index.close()
    again = Index(index.path, model=index.embedder.info.path)
    assert again.build(docs).unchanged == 3
    assert dict(again.store.db.execute("SELECT term, rows FROM term_rows").fetchall()) == counted
    assert again.verify().ok


def test_vectors_are_stored_as_float16_under_a_schema_older_versions_refuse(
    index: Index, docs: Path
) -> None:
    index.build(docs)
    db = index.store.db
    names = {r[0] for r in db.execute("SELECT name FROM _migrations")}
    assert "0009_float16_vectors" in names  # a version that reads float32 only says "newer"
    dim = index.embedder.info.dimension
    widths = {r[0] for r in db.execute("SELECT DISTINCT length(vector) FROM vectors")}
    assert widths == {2 * dim + 1}


def test_an_index_from_before_float16_vectors_is_still_asked(index: Index, docs: Path) -> None:
    index.build(docs)
    with index.store.db.atomic():  # back to schema 8, its vectors float32
        index.store.db.execute("DELETE FROM _migrations WHERE name = '0009_float16_vectors'")
    model = index.embedder.info.path
    index.close()
    store_vectors_as_float32(index.path)
    older = Index(index.path, model=model)
    assert older.ask("backup", k=2)  # read as it is: no build needed first
    assert older.verify().ok
    older.build(docs)
    names = {r[0] for r in older.store.db.execute("SELECT name FROM _migrations")}
    assert "0009_float16_vectors" in names


def test_status_reports_counts(index: Index, docs: Path) -> None:
    index.build(docs)
    status = index.status()
    assert status["files"] == 3 and status["sentences"] > 5
    assert status["size_bytes"] > 0 and status["last_build"]
    assert os.fspath(index.path) == status["index"]


def test_new_split_version_resplits_without_reembedding(index: Index, docs: Path) -> None:
    first = index.build(docs)
    with index.store.transaction():
        index.store.set_split_version("0")
    report = index.build(docs)
    assert sorted(report.changed) == sorted(first.added)
    assert report.embedded == 0 and report.reused == first.sentences
    assert index.build(docs).unchanged == 3


def test_an_index_from_before_sections_gains_them_on_the_next_build(
    index: Index, docs: Path
) -> None:
    first = index.build(docs)
    # Take the index back to schema 4 and split version 4, as the release before sections left it.
    db = index.store.db
    with db.atomic():
        db.execute("DELETE FROM passages WHERE kind = 'section'")
        db.execute("DROP INDEX passages_file")
        db.execute("DROP INDEX passages_vector")
        db.execute("ALTER TABLE passages DROP COLUMN kind")
        db.execute("ALTER TABLE passages RENAME TO chunks")
        db.execute("CREATE INDEX chunks_file ON chunks(file_id, first)")
        db.execute("CREATE INDEX chunks_vector ON chunks(vector_id)")
        db.execute("DELETE FROM _migrations WHERE name IN ('0005_sections', '0006_passages')")
        index.store.set_split_version("4")
    index.close()
    again = Index(index.path, model=index.embedder.info.path)
    report = again.build(docs)
    assert sorted(report.changed) == sorted(first.added)
    assert report.embedded == 0, "sentence vectors are reused"
    spans = dict(again.store.db.execute("SELECT kind, COUNT(*) FROM passages GROUP BY kind"))
    assert spans["section"] > 0 and spans["chunk"] > 0
    assert again.verify().ok
    assert again.ask("Reviewers check tests first.", k=1)[0].path == "en/review.md"


def test_include_exclude_and_indexignore_select_files(index: Index, docs: Path) -> None:
    (docs / ".indexignore").write_text("en/faq.txt\n", encoding="utf-8")
    report = index.build(docs, exclude=["ja/"])
    assert report.added == ["en/review.md"]
    # Dropping a pattern brings files in; a new pattern takes them out of the index.
    report = index.build(docs, include=["*.md"])
    assert report.added == ["ja/npu.md"] and report.deleted == []
    report = index.build(docs, include=["ja/**"])
    assert report.deleted == ["en/review.md"]
    assert {h.path for h in all_hits(index, "NPU")} == {"ja/npu.md"}


def test_bad_pattern_is_a_named_error(index: Index, docs: Path) -> None:
    from indexer.errors import BadPatternError

    with pytest.raises(BadPatternError, match="--exclude"):
        index.build(docs, exclude=["!"])


STEPS = [
    "Plug in the cable.",
    "Turn on the power.",
    "Wait for the light.",
    "Open the app.",
]


@pytest.mark.parametrize("chunks", ["embedded", "pooled"])
def test_dense_score_mixes_sentence_chunk_and_section(
    index: Index, tmp_path: Path, chunks: ChunkVectors
) -> None:
    from indexer.passages import Pass
    from indexer.ranking import DEFAULT

    steps = STEPS
    folder = write_docs(tmp_path / "s", {"a.md": "# Setup\n\n" + " ".join(steps) + "\n"})
    index.build(folder, chunks=chunks)
    assert index.status()["chunk_vectors"] == chunks
    question = steps[3]
    hit = next(h for h in all_hits(index, question) if h.text == steps[3])
    embedder = index.embedder
    query = index.searcher.question_vector(question)
    # Units: the heading and four steps. Chunks: heading + steps 0-1, then steps 2-3; the
    # section is the heading and every step, embedded in one pass.
    section_pass = Pass(
        [embedder.passage_text("").rstrip(), "Setup", *steps], [("s", None), ("c", (4, 5))]
    )
    section_vector, pooled_chunk = embedder.embed_passes([section_pass])[0]
    own_vector, embedded_chunk = embedder.embed(
        [embedder.passage_text(t) for t in (steps[3], "Setup\n" + " ".join(steps[2:]))]
    )
    chunk_vector = pooled_chunk if chunks == "pooled" else embedded_chunk
    own, chunk, section = (float(v @ query) for v in (own_vector, chunk_vector, section_vector))
    local = DEFAULT.own_weight * own + (1 - DEFAULT.own_weight) * chunk
    expected = (1 - DEFAULT.section_weight) * local + DEFAULT.section_weight * section
    assert hit.dense_score == pytest.approx(expected, abs=1e-3)


def test_changing_how_chunks_are_made_resplits_once_and_is_remembered(
    index: Index, tmp_path: Path
) -> None:
    folder = write_docs(tmp_path / "s", {"a.md": "# Setup\n\n" + " ".join(STEPS) + "\n"})
    first = index.build(folder)
    assert index.status()["chunk_vectors"] == "embedded" and first.passages_embedded == 3
    pooled = index.build(folder, chunks="pooled")
    # Re-split: the sentences and the section keep their vectors, both chunks are pooled.
    assert pooled.changed == ["a.md"] and pooled.embedded == 0
    assert pooled.passages_embedded == 3  # the section's pass makes it and the two chunks
    assert index.status()["chunk_vectors"] == "pooled"
    again = index.build(folder)  # no flag: the index's choice stands, nothing to do
    assert again.changed == [] and again.passages_embedded == 0
    assert index.status()["chunk_vectors"] == "pooled"


def test_int8_passages_change_only_passage_vectors_and_switch_back(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    folder = write_docs(
        tmp_path / "s",
        {"a.md": "# Setup\n\n" + " ".join(STEPS) + "\n", "b.md": "Just one short line.\n"},
    )
    fp32 = Index(tmp_path / "fp32", model=tiny_model_dir, cache_dir=tmp_path / "cache")
    int8 = Index(tmp_path / "int8", model=tiny_model_dir, cache_dir=tmp_path / "cache")
    fp32.build(folder, passages="fp32")
    first = int8.build(folder, passages="int8")
    assert int8.status()["passage_precision"] == "int8"
    assert fp32.status()["passage_precision"] == "fp32"
    before, after = stored_vectors(fp32.path), stored_vectors(int8.path)
    sentences = set(fp32.store.db.execute("SELECT DISTINCT key FROM vectors v JOIN sentences s "
                                          "ON s.vector_id = v.id").fetchall())  # fmt: skip
    shared = before.keys() & after.keys()
    assert {k for (k,) in sentences} == shared  # sentence vectors alone are the same keys ...
    for key in shared:
        np.testing.assert_array_equal(after[key], before[key])  # ... and the same vectors
    assert len(after) == len(before) and first.passages_embedded == len(after) - len(shared)
    assert int8.ask(STEPS[2], k=1)[0].text == STEPS[2]
    back = int8.build(folder, passages="fp32")  # re-split; sentences keep their vectors
    assert back.changed == ["a.md", "b.md"] and back.embedded == 0
    assert int8.status()["passage_precision"] == "fp32"
    assert stored_vectors(int8.path).keys() == before.keys()
    again = int8.build(folder)  # the index's choice stands
    assert again.changed == [] and again.passages_embedded == 0


def test_new_indexes_take_int8_passages_and_older_ones_keep_theirs(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    folder = write_docs(tmp_path / "s", {"a.md": "# Setup\n\n" + " ".join(STEPS) + "\n"})
    new = Index(tmp_path / "new", model=tiny_model_dir, cache_dir=tmp_path / "cache")
    assert new.build(folder).notes == []
    assert new.status()["passage_precision"] == "int8"
    older = Index(tmp_path / "older", model=tiny_model_dir, cache_dir=tmp_path / "cache")
    older.build(folder, passages="fp32")  # as every index built before int8 was the default
    again = older.build(folder)
    assert again.changed == [] and again.passages_embedded == 0
    assert older.status()["passage_precision"] == "fp32"


def test_a_default_int8_copy_that_cannot_be_made_leaves_passages_fp32(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    folder = write_docs(tmp_path / "s", {"a.md": "# Setup\n\n" + " ".join(STEPS) + "\n"})
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the model cache would be\n", encoding="utf-8")
    index = Index(tmp_path / "i", model=tiny_model_dir, cache_dir=blocked)
    report = index.build(folder)  # the default cannot be followed: the build still finishes
    assert index.status()["passage_precision"] == "fp32" and report.passages_embedded > 0
    assert len(report.notes) == 1 and "fp32 model" in report.notes[0]
    assert "--cache-dir" in report.notes[0]  # what to do about it
    assert index.ask(STEPS[2], k=1)[0].text == STEPS[2]
    chosen = Index(tmp_path / "j", model=tiny_model_dir, cache_dir=blocked)
    with pytest.raises(ModelPrepareError, match="cannot write the model cache"):
        chosen.build(folder, passages="int8")  # asked for by name: an error, not a fallback
    assert not (tmp_path / "j" / "index.db").exists() or chosen.status()["files"] == 0


def test_an_empty_folder_is_reported_before_the_int8_copy_is_made(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cache = tmp_path / "cache"
    index = Index(tmp_path / "i", model=tiny_model_dir, cache_dir=cache)
    with pytest.raises(EmptyFolderError):
        index.build(empty)
    assert not (cache / "models" / "int8").exists()  # nothing to embed: no copy made
    index.build(write_docs(tmp_path / "s", {"a.md": "# Setup\n\n" + " ".join(STEPS) + "\n"}))
    assert index.status()["passage_precision"] == "int8"
    assert any((cache / "models" / "int8").glob("*.onnx"))


def test_averaged_sections_are_their_chunks_mean_and_switch_back(
    index: Index, tmp_path: Path
) -> None:
    from indexer.embed import normalize

    folder = write_docs(tmp_path / "s", {"a.md": "# Setup\n\n" + " ".join(STEPS) + "\n"})
    first = index.build(folder, sections="averaged")
    assert index.status()["section_vectors"] == "averaged"
    # Two chunks run through the model; the section is averaged from them, not run.
    assert first.passages_embedded == 2 and first.averaged == 1
    stored = {
        kind: v for _, _, _, kind, v in index.store.passages_with_vectors() if kind != "chunk"
    }
    chunks = [v for _, _, _, kind, v in index.store.passages_with_vectors() if kind == "chunk"]
    prefix = index.embedder.info.passage_prefix
    texts = ["Setup " + " ".join(STEPS[:2]), "Setup\n" + " ".join(STEPS[2:])]
    weights = [index.embedder.token_count(prefix + t) for t in texts]
    expected = normalize((weights[0] * chunks[0] + weights[1] * chunks[1])[None])[0]
    np.testing.assert_allclose(stored["section"], expected, atol=2e-3)  # stored as float16
    assert index.ask(STEPS[2], k=1)[0].text == STEPS[2]

    back = index.build(folder, sections="embedded")  # re-split: only the section runs
    assert back.changed == ["a.md"] and back.embedded == 0
    assert back.passages_embedded == 1 and back.averaged == 0
    assert index.status()["section_vectors"] == "embedded"
    again = index.build(folder)  # the index's choice stands
    assert again.changed == [] and again.passages_embedded == 0
    # Back to averaged: no run of the model, the section is averaged again.
    averaged = index.build(folder, sections="averaged")
    assert (averaged.embedded, averaged.passages_embedded, averaged.averaged) == (0, 0, 1)


def test_pooled_chunks_and_averaged_sections_exclude_each_other(
    index: Index, tmp_path: Path
) -> None:
    folder = write_docs(tmp_path / "s", {"a.md": "# Setup\n\n" + " ".join(STEPS) + "\n"})
    with pytest.raises(IndexerError, match="choose one"):
        index.build(folder, chunks="pooled", sections="averaged")
    assert not index.store.exists() or index.store.generation() == 0
    index.build(folder, sections="averaged")
    index.build(folder, chunks="pooled")  # the chunks' choice given now: sections are embedded
    assert (index.status()["chunk_vectors"], index.status()["section_vectors"]) == (
        "pooled",
        "embedded",
    )
    index.build(folder, sections="averaged")  # and the other way round
    assert (index.status()["chunk_vectors"], index.status()["section_vectors"]) == (
        "embedded",
        "averaged",
    )


def test_an_index_that_recorded_no_precision_is_fp32_and_not_resplit(
    index: Index, tmp_path: Path
) -> None:
    folder = write_docs(tmp_path / "s", {"a.md": "# Setup\n\n" + " ".join(STEPS) + "\n"})
    index.build(folder)
    with index.store.db.conn:  # as an index built before the choice existed
        index.store.db.execute("DELETE FROM meta WHERE key = 'passage_precision'")
    assert index.status()["passage_precision"] == "fp32"
    assert index.build(folder).changed == []


def test_a_heading_scores_as_the_chunk_it_opens(index: Index, tmp_path: Path) -> None:
    heading = "# Keep pull requests small and focused."
    body = "Your laptop arrives on the first day."
    index.build(write_docs(tmp_path / "h", {"a.md": f"{heading}\n\n{body}\n"}))
    question = "Keep pull requests small and focused."
    hit = next(h for h in all_hits(index, question) if h.kind == "heading")
    embedder = index.embedder
    query = index.searcher.question_vector(question)
    texts = (f"{hit.text} {body}", hit.text)  # as stored: without the Markdown marker
    chunk, own = embedder.embed([embedder.passage_text(t) for t in texts])
    assert hit.dense_score == pytest.approx(float(chunk @ query), abs=1e-3)
    assert abs(float(own @ query) - float(chunk @ query)) > 0.01, "own vector would differ"


def test_a_document_is_shown_from_the_index_only(index: Index, docs: Path) -> None:
    from indexer.errors import NoSuchDocumentError

    index.build(docs)
    rows = index.document("en/review.md")
    assert rows[0].text == "Code review" and rows[-1].text == "Style comments come last."
    for outside in ("../docs/en/review.md", "/etc/passwd", "en"):
        with pytest.raises(NoSuchDocumentError):
            index.document(outside)


def test_an_edit_that_keeps_size_and_mtime_is_seen(index: Index, docs: Path) -> None:
    first = index.build(docs)
    path = docs / "en/faq.txt"
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    edited = text.replace("monthly", "weekly!")  # same length
    assert len(edited.encode()) == len(text.encode())
    path.write_text(edited, encoding="utf-8")  # as `cp -p` or `rsync -t` leave it:
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime
    report = index.build(docs)
    assert report.changed == ["en/faq.txt"] and report.unchanged == len(first.added) - 1
    assert any("weekly!" in h.text for h in all_hits(index, "Expenses are claimed weekly!"))
    again = index.build(docs)
    assert again.unchanged == 3 and not again.touched, "the new stat is remembered"


def test_a_file_made_again_with_the_same_content_is_only_touched(index: Index, docs: Path) -> None:
    index.build(docs)
    path = docs / "en/review.md"
    data, before = path.read_bytes(), path.stat()
    path.unlink()
    path.write_bytes(data)  # a new inode, as an unzip or a checkout makes
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = index.build(docs)
    assert report.unchanged == 3 and report.embedded == 0 and not report.touched


def test_keyword_search_leaves_out_terms_bm25_does_not_weigh(tmp_path: Path, index: Index) -> None:
    from indexer import keyword
    from indexer.ranking import DEFAULT

    notes = [f"Item {n} of the wiki lists step {n}." for n in range(12)]
    docs = write_docs(tmp_path / "docs", {"wiki.md": "\n\n".join([*notes, "The VPN wiki moved."])})
    index.build(docs)
    hits = index.ask("VPN wiki", k=20, context=0, mode="keyword")
    with index.store.snapshot():
        match = keyword.match_any(["vpn", "wiki"]) or ""
        searched = dict(index.store.keyword_search(match, 20, DEFAULT.bm25_weights))
    # "wiki" is in every row: FTS5 gives it no weight, so the rows holding it alone, which
    # scored about zero, are no longer found; those with "vpn" (or a neighbour with it)
    # score as before.
    assert len(searched) == 13 and sorted(searched.values())[-4] < 1e-3
    assert hits[0].text == "The VPN wiki moved." and 0 < len(hits) < 4
    for hit in hits:
        assert hit.keyword_score == pytest.approx(searched[hit.sentence_id], abs=1e-4)
        assert hit.keyword_score > 1e-3
    # A question of such terms alone still finds the rows that hold them.
    assert len(index.ask("wiki", k=5, context=0, mode="keyword")) == 5


def test_a_rarest_term_held_by_too_many_rows_is_searched_with_the_next_rarest(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from dataclasses import replace

    from indexer.ranking import DEFAULT

    # Budget 3 rows; "deploy" (the rarest term) is in 4 rows, 1 of which also holds "staging"
    # (in 5 rows) and "tuesday" is in none: the search is for rows holding both.
    texts = [f"Deploy {w} {n}." for n, w in enumerate(["alpha", "beta", "gamma"])]
    texts += ["Deploy to staging on friday."] + [f"The staging {n} host." for n in range(4)]
    texts += [f"Unrelated note {n}." for n in range(20)]
    docs = write_docs(tmp_path / "docs", {f"{n}.txt": f"{t}\n" for n, t in enumerate(texts)})
    index = Index(tmp_path / "idx", model=tiny_model_dir, ranking=replace(DEFAULT, keyword_rows=3))
    index.build(docs)
    searcher = index.searcher
    with index.store.snapshot():
        assert searcher.keyword_match("deploy staging tuesday") == '"deploy" AND "staging"'
        # No row holds "deploy" with "host" (in 4 rows): the rarest alone.
        assert searcher.keyword_match("deploy host") == '"deploy"'
        # Within the budget, the rarest terms as before.
        assert searcher.keyword_match("alpha beta staging") == '"alpha" OR "beta"'
    hits = index.ask("deploy staging tuesday", k=5, context=0, mode="keyword")
    assert [h.text for h in hits] == ["Deploy to staging on friday."]


def test_a_section_the_vector_search_finds_lends_its_score_not_its_sentences(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from dataclasses import replace

    from indexer.ranking import DEFAULT

    body = "The cat sat down. The dog ran off. A bird sang loudly. The sun came up. Rain fell."
    docs = write_docs(tmp_path / "docs", {"a.md": f"# Title\n\n{body}\n"})
    Index(tmp_path / "idx", model=tiny_model_dir).build(docs)
    found: dict[bool, set[int]] = {}
    for expand in (True, False):
        index = Index(tmp_path / "idx", ranking=replace(DEFAULT, expand_sections=expand))
        store = index.store
        with store.snapshot():
            sql = "SELECT id FROM passages WHERE kind = 'section' ORDER BY first LIMIT 1"
            (section,) = store.db.execute(sql).fetchone()
            members = store.passage_members([section])[section]
            # The section's own vector: the vector search's first hit is the section.
            vector = store.passage_vectors([section])[section]
            found[expand] = {i for i, _ in index.searcher.dense(vector, 2)}
        index.close()
    # The tiny model reads 64 tokens: the heading and four sentences make the first section.
    assert len(members) >= 4
    # Expanded, the section brings every sentence it holds; otherwise only the second hit
    # does (a chunk: at most three sentences).
    assert set(members) <= found[True]
    assert found[False] < found[True] and len(found[False]) <= 3
