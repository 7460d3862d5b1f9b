"""A first build embedded locally vs on a local Ray instance (indexer.distributed), on a sample of
the corpus; one stamped row per variant, then the throughput ratio of each Ray variant to the
local build and Ray's fixed cost (starting the instance and the workers, loading the model).

    python -m scripts.ray_bench                  # the first 60 files of ../shared/corpus
    python -m scripts.ray_bench --files 20 --model DIR

Each build is `index build SAMPLE --json` in a child process into a fresh index, so every variant
embeds every text. Results: docs/performance.md#ray.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import click

from indexer import config
from scripts.common import corpus_option, emit, log, run_python

#: name -> extra `index build` arguments. "local" is the build as it is today: one onnxruntime
#: session with 2 threads; the Ray variants run workers of 1 thread each.
VARIANTS = {
    "local-2-threads": ["--threads", "2"],
    "ray-1-worker": ["--ray", "local", "--workers", "1", "--threads", "1"],
    "ray-2-workers": ["--ray", "local", "--workers", "2", "--threads", "1"],
}


def sample(corpus: Path, files: int, dest: Path) -> int:
    """Copy the first `files` documents of the corpus (sorted paths) into dest; their bytes."""
    found = sorted(
        p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in config.TEXT_SUFFIXES
    )
    size = 0
    for path in found[:files]:
        target = dest / path.relative_to(corpus)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        size += path.stat().st_size
    return size


def build(folder: Path, index: Path, model: Path | None, extra: list[str]) -> dict:
    """One first build in a child process; its run report plus the child's wall time."""
    args = ["-m", "indexer", "build", str(folder), "--index", str(index), "--json", *extra]
    if model:
        args += ["--model", str(model)]
    done = run_python(args).check()
    return {**json.loads(done.stdout), "wall_seconds": round(done.seconds, 2)}


def row(name: str, report: dict) -> dict:
    """The measurements of one variant."""
    texts = report["sentences"]["embedded"] + report["sentences"]["passages_embedded"]
    ray = report.get("ray", {})
    return {
        "variant": name,
        "texts": texts,
        "build_seconds": report["seconds"],
        "wall_seconds": report["wall_seconds"],
        "texts_per_second": round(texts / report["seconds"], 1),
        **{f"ray_{k}": v for k, v in ray.items() if k != "per_worker"},
        **({"per_worker": ray["per_worker"]} if ray else {}),
    }


@click.command()
@corpus_option
@click.option("--files", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Default: e5-small.")
@click.option("--only", multiple=True, type=click.Choice(list(VARIANTS)), help="Repeatable.")
def main(corpus: Path, files: int, model: Path | None, only: tuple[str, ...]) -> None:
    """Local build vs --ray local with 1 and 2 workers on the first FILES files of the corpus."""
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        folder = Path(tmp) / "sample"
        size = sample(corpus, files, folder)
        log(f"sample: {files} files, {size / 1e6:.1f} MB")
        rows = {}
        for name in only or VARIANTS:
            log(f"building: {name}")
            report = build(folder, Path(tmp) / f"idx-{name}", model, VARIANTS[name])
            rows[name] = emit({**row(name, report), "files": files}, readable=True)
    local = rows.get("local-2-threads")
    for name, measured in rows.items():
        if local and measured is not local:
            emit(
                {
                    "variant": name,
                    "vs": "local-2-threads",
                    "throughput_ratio": round(
                        measured["texts_per_second"] / local["texts_per_second"], 3
                    ),
                    "fixed_seconds": measured["ray_first_vectors_seconds"],
                },
                readable=True,
            )


if __name__ == "__main__":
    main()
