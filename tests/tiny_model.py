"""A tiny but real model directory (sentencepiece + ONNX + model.json) for fast offline tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import sentencepiece as spm
from onnx import TensorProto, helper, numpy_helper

from indexer.models import e5_model_json, write_model_json

SPM_FILE = "spm.model"
MAX_TOKENS = 64
#: Prefix pieces embed to zero, so "query: X" and "passage: X" get the same direction (cosine 1),
#: roughly how a real retriever treats a question that repeats a sentence word for word.
PREFIX_PIECES = ["▁query:", "▁passage:"]

CORPUS = [
    "NNAPI経由でNPUを使うと、CPUより約15倍速くなりました。",
    "消費電力も大きく下がりました。",
    "一部の演算はCPUにフォールバックします。",
    "今日はいい天気ですね。明日は雨が降るそうです。",
    "東京は日本の首都で、人口が多い都市です。",
    "カタカナとひらがなと漢字を混ぜて書きます。",
    "コードレビューは一営業日以内に返してください。",
    "新しいノートパソコンは初日に届きます。",
    "経費は毎月まとめて申請します。",
    "モデルの推論速度を測定しました。",
    "The quick brown fox jumps over the lazy dog.",
    "Respond to code reviews within one working day.",
    "Keep pull requests small and focused.",
    "Reviewers check the tests first; style comments come last.",
    "Your laptop arrives on the first day.",
    "Ask your buddy about the VPN and the wiki.",
    "Expenses are claimed monthly through the portal.",
    "How fast is inference on the NPU compared with the CPU?",
    "The weather is nice today, but it may rain tomorrow.",
    "Tokyo is the capital of Japan and a very large city.",
    "Sentences are embedded and stored in an index for search.",
    "Numbers like 12345 and dates like 2024-05-01 appear in text.",
    "会議は午後三時から始まります。資料は前日までに共有してください。",
    "半角のｶﾀｶﾅは全角のカタカナに正規化されます。",
    "全角の数字１２３は半角の123と同じに扱われます。",
    "電車が遅れたので、会社に着くのが遅くなりました。",
    "この文書は検索のためのテストデータです。",
    "図書館で本を借りて、週末に読みました。",
    "ソフトウェアの更新は自動的に行われます。",
    "Please update your password every ninety days.",
    "The meeting starts at three in the afternoon; share the slides beforehand.",
    "Battery life improved after the firmware update.",
    "Search results show the file name, the line number and the sentence.",
    "Windows, macOS and Linux are all supported platforms.",
    "Small models are fast, large models are usually more accurate.",
    "We measured latency, throughput and memory use on every device.",
]


def train_tokenizer(texts: list[str]) -> bytes:
    """A small deterministic unigram model with XLM-R's normaliser and special ids."""
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts * 4),
        model_writer=out,
        model_type="unigram",
        vocab_size=400,
        hard_vocab_limit=False,
        byte_fallback=False,
        character_coverage=1.0,
        normalization_rule_name="nmt_nfkc",
        user_defined_symbols=PREFIX_PIECES,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return out.getvalue()


def build_graph(vocab: int, dim: int, zero_ids: list[int]) -> onnx.ModelProto:
    """token_embeddings = tanh(E[input_ids] @ W) * attention_mask, seeded and token-wise."""
    rng = np.random.default_rng(1234)
    table = rng.standard_normal((vocab, dim)).astype(np.float32)
    table[zero_ids] = 0.0
    weight = (rng.standard_normal((dim, dim)) / np.sqrt(dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["emb"]),
        helper.make_node("MatMul", ["emb", "weight"], ["proj"]),
        helper.make_node("Tanh", ["proj"], ["act"]),
        helper.make_node("Unsqueeze", ["attention_mask", "axis"], ["mask3"]),
        helper.make_node("Cast", ["mask3"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["act", "maskf"], ["token_embeddings"]),
    ]
    inits = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis"),
    ]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
        for n in ("input_ids", "attention_mask")
    ]
    output = helper.make_tensor_value_info(
        "token_embeddings", TensorProto.FLOAT, ["batch", "seq", dim]
    )
    graph = helper.make_graph(nodes, "tiny", inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def make_tiny_model(dest: Path, texts: list[str] | None = None, *, dim: int = 32) -> Path:
    """Write a tiny model directory at dest (tokenizer trained on CORPUS + texts) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / SPM_FILE).write_bytes(train_tokenizer(CORPUS + list(texts or [])))
    sp = spm.SentencePieceProcessor(model_file=str(dest / SPM_FILE))
    # XLM-R id rule: spm id i -> i + 1, so the table needs pieces + 1 rows (id 1 = <pad>).
    zero_ids = [sp.piece_to_id(p) + 1 for p in PREFIX_PIECES]
    onnx.save_model(build_graph(sp.get_piece_size() + 1, dim, zero_ids), dest / "model.onnx")
    make = e5_model_json(
        name=f"tiny-test-{dim}",
        dimension=dim,
        max_tokens=MAX_TOKENS,
        tokenizer_file=SPM_FILE,
        source="tests/tiny_model.py",
    )
    write_model_json(dest, ["model.onnx", SPM_FILE], make)
    return dest


def rewrite_json(model_dir: Path, **changes: object) -> Path:
    """Change fields of an existing model.json (for tests of other pooling or bad values)."""
    path = model_dir / "model.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return model_dir
