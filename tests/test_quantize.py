"""The int8 copy of a model (indexer.models.quantize) made from the tiny real ONNX model."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from indexer import Index
from indexer.embed import Model
from indexer.errors import ModelPrepareError
from indexer.models import load_info, sha256_file
from indexer.models.quantize import SIDECAR, int8_model, quantize
from tests.files import write_docs
from tests.tiny_model import CORPUS


def test_the_int8_copy_is_made_once_and_made_again_when_damaged(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    info = load_info(tiny_model_dir)
    path = int8_model(info, tmp_path)
    assert path.is_relative_to(tmp_path)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "MatMul" not in ops and ops & {"DynamicQuantizeMatMul", "MatMulInteger"}
    made = path.stat().st_mtime_ns
    assert int8_model(info, tmp_path) == path and path.stat().st_mtime_ns == made  # reused
    path.write_bytes(b"bit rot")
    assert int8_model(info, tmp_path) == path
    assert '"sha256": "' + sha256_file(path) in path.with_suffix(SIDECAR).read_text()
    assert {n.op_type for n in onnx.load(path).graph.node} == ops


def test_int8_vectors_stay_close_to_the_models(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = Model(tiny_model_dir, threads=1, cache=tmp_path)
    texts = [model.embedder.passage_text(t) for t in CORPUS]
    fp32 = model.embedder_for("fp32").embed(texts)
    int8 = model.embedder_for("int8").embed(texts)
    cosines = (fp32 * int8).sum(axis=1)
    assert cosines.min() > 0.95 and not np.array_equal(fp32, int8)


def test_a_model_the_quantiser_cannot_read_is_a_prepare_error(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.onnx").write_bytes(b"not a graph")
    info = dataclasses.replace(load_info(tiny_model_dir), path=broken)
    with pytest.raises(ModelPrepareError, match="--passage-precision fp32"):
        int8_model(info, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.onnx"))  # nothing half-made left behind


def test_verify_finds_a_damaged_int8_copy_and_repair_removes_it(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = write_docs(tmp_path / "docs", {"a.md": "# Setup\n\n" + " ".join(CORPUS[:4]) + "\n"})
    index = Index(tmp_path / "idx", model=tiny_model_dir, cache_dir=tmp_path / "cache")
    index.build(folder, passages="int8")
    assert not index.verify().problems
    copy = int8_model(load_info(tiny_model_dir), tmp_path / "cache")
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # bit rot: same size, same mtime class of damage
    copy.write_bytes(bytes(data))
    assert any("int8 copy" in p for p in index.verify().problems)
    repaired = index.verify(repair=True)
    assert repaired.repaired and not copy.exists()
    more = {"b.md": "# More\n\n" + " ".join(CORPUS[4:8]) + "\n"}
    index.build(write_docs(folder, more))  # its passages make the copy again
    assert copy.exists() and not index.verify().problems


def test_the_int8_copy_keeps_down_projections_fp32(tmp_path: Path) -> None:
    """A feed-forward block (4 → 16 → 4): the copy quantises the layer that widens and keeps
    the one that projects down, whose inputs after the activation hold the outliers."""
    rng = np.random.default_rng(3)
    up, down = rng.standard_normal((4, 16)), rng.standard_normal((16, 4))
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "up"], ["h"]),
            helper.make_node("Relu", ["h"], ["a"]),
            helper.make_node("MatMul", ["a", "down"], ["y"]),
        ],
        "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(w.astype(np.float32), n) for w, n in ((up, "up"), (down, "down"))],
    )
    src, dest = tmp_path / "ffn.onnx", tmp_path / "int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    quantize(src, dest)
    nodes = onnx.load(dest).graph.node
    assert [n.input[1] for n in nodes if n.op_type == "MatMul"] == ["down"]
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in nodes)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    (y,) = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(y, np.maximum(x @ up, 0) @ down, rtol=0.05, atol=0.1)
