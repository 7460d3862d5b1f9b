"""int8 copies of a model for passage vectors (`index build --passage-precision int8`).

onnxruntime's dynamic quantisation stores the linear layers' weights as int8 (one scale per
output column) and quantises activations per run: faster, at a measured cost in retrieval
(docs/performance.md, "int8 passage vectors"). Layers that project down (more inputs than
outputs: a transformer's feed-forward output, whose GELU inputs hold the outliers one scale per
run rounds away) stay fp32: they carried most of the int8 copy's error for little of its
speed (docs/performance.md, "Which layers stay fp32"). Sentence
vectors, the main evidence of a hit, stay fp32; chunks and sections, which add context to a
sentence's score, may come from the int8 copy.

The copy is made once per model from its model.onnx into the cache, in a child process (the
quantiser holds several copies of the graph, more memory than a build itself needs), and
written atomically under a lock so concurrent builds make it once.

    python -m indexer.models.quantize SOURCE.onnx DEST.onnx   (what the child runs)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from indexer import config
from indexer.errors import ModelPrepareError
from indexer.models import ModelInfo, preparing, sha256_file

#: Changing how the copy is made changes its file name, so copies made before are not reused.
RECIPE = "dynamic-int8-matmul-fp32-down-v2"
#: Beside the copy: what it was made from and its sha256 (a cheap check before each use).
SIDECAR = ".json"


def int8_path(info: ModelInfo, cache: Path | None = None) -> Path:
    """Where the int8 copy of a model lives: one file per model checksum and recipe."""
    name = f"{info.checksum[:16]}-{RECIPE}.onnx"
    return config.cache_dir(cache) / "models" / "int8" / name


def int8_model(info: ModelInfo, cache: Path | None = None) -> Path:
    """The int8 copy of a model, made first if missing or damaged (ModelPrepareError when it
    cannot be)."""
    dest = int8_path(info, cache)
    if _intact(dest, info):
        return dest
    with preparing(dest):
        if not _intact(dest, info, hash_it=True):
            _make(info, dest)
    return dest


def damaged_copy(info: ModelInfo, cache: Path | None = None) -> Path | None:
    """The int8 copy of a model when it is there but no longer what was made (bit rot, a
    partial copy): `index verify` reports it, `--repair` removes it for the next build."""
    dest = int8_path(info, cache)
    return dest if dest.exists() and not _intact(dest, info, hash_it=True) else None


def _intact(dest: Path, info: ModelInfo, *, hash_it: bool = False) -> bool:
    """Whether the copy exists for this model with its recorded size (and sha256 when
    `hash_it`: the look under the lock, before deciding to make it again)."""
    try:
        made = json.loads(dest.with_suffix(SIDECAR).read_text(encoding="utf-8"))
        if made.get("source") != info.checksum or made.get("size") != dest.stat().st_size:
            return False
        return not hash_it or made.get("sha256") == sha256_file(dest)
    except (OSError, ValueError, AttributeError):
        return False


def _make(info: ModelInfo, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".onnx", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "indexer.models.quantize", str(info.onnx_path), str(tmp)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["no message"]
            raise ModelPrepareError(
                f"could not make the int8 copy of {info.path}: {lines[-1]} — build with "
                "--passage-precision fp32, or check free space in the cache"
            )
        tmp.chmod(0o644)  # mkstemp makes 0600; the cache's other model files are readable
        sidecar: dict[str, object] = {"source": info.checksum, "recipe": RECIPE}
        sidecar.update(reduce_range=not has_vnni(), size=tmp.stat().st_size)
        sidecar["sha256"] = sha256_file(tmp)
        dest.with_suffix(SIDECAR).write_text(json.dumps(sidecar), encoding="utf-8")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def cpu_field(name: str) -> str | None:
    """The first value of a /proc/cpuinfo field ("model name", "flags"), or None."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        field, _, value = line.partition(":")
        if field.strip() == name:
            return value.strip()
    return None


def has_vnni() -> bool:
    """Whether the CPU has int8 dot-product instructions (AVX512-VNNI or AVX-VNNI)."""
    return bool({"avx512_vnni", "avx_vnni"} & set((cpu_field("flags") or "").split()))


#: Which MatMuls stay fp32, by their stored weight's name and shape ([inputs, outputs]).
KeepFp32 = Callable[[str, Sequence[int]], bool]


def projects_down(name: str, shape: Sequence[int]) -> bool:
    """Whether a weight maps more inputs to fewer outputs (a feed-forward output projection):
    what the index's int8 copy keeps fp32."""
    return len(shape) == 2 and shape[0] > shape[1]


def quantize(source: Path, dest: Path, *, keep_fp32: KeepFp32 = projects_down) -> None:
    """Write `dest`: `source` with every MatMul on a stored weight in int8, except those
    `keep_fp32` picks (scripts/quantize_eval.py measures such choices)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(source)
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    kept = []
    for node in model.graph.node:  # quantize_dynamic excludes nodes by name: name them
        if node.op_type == "MatMul" and node.input[1] in shapes:
            node.name = node.input[1]
            kept += [node.name] if keep_fp32(node.name, shapes[node.name]) else []
    named = dest.with_name(dest.name + ".named.onnx")
    onnx.save(model, named)
    del model
    try:
        quantize_dynamic(
            named,
            dest,
            weight_type=QuantType.QInt8,
            per_channel=True,
            # Without VNNI, onnxruntime's u8×s8 kernels can saturate (errors of 0.5 on a tiny
            # model here); 7-bit weights avoid it, as onnxruntime's documentation advises.
            reduce_range=not has_vnni(),
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=kept,
        )
    finally:
        named.unlink(missing_ok=True)


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)  # the quantiser's advice to pre-process the graph
    quantize(Path(sys.argv[1]), Path(sys.argv[2]))
