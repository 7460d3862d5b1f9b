"""Builds whose embed step runs on a real local Ray instance (indexer.distributed).

One Ray instance per module (`ray.init(num_cpus=2)`); builds in this process use it, builds in
child processes join it by address. The Ray tests skip when ray is not installed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from indexer import Index, distributed
from indexer.cli import cli
from indexer.config import ChunkVectors, PassagePrecision, SectionVectors
from indexer.errors import ModelMismatchError
from tests.files import stored_vectors

WORDS = (
    "river stone cloud engine battery latency window garden paper signal market orange violet "
    "silver copper harbor meadow rocket planet forest winter summer autumn spring coffee kettle"
).split()
JAPANESE = "電車 会議 資料 推論 速度 図書館 週末 天気 東京 更新".split()
QUESTIONS = ("river engine battery", "会議 資料", "copper harbor number 42")


def write_folder(folder: Path, files: range, per_file: int = 50) -> Path:
    """Files of distinct sentences (English with a Japanese word), seeded."""
    rng = random.Random(7)
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        lines = [
            " ".join(rng.sample(WORDS, 6)).capitalize() + f" {rng.choice(JAPANESE)} number "
            f"{f * 1000 + i}."
            for i in range(per_file)
        ]
        (folder / f"doc{f:02d}.txt").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def answers(index: Path, model: Path) -> list[list[tuple[str, str]]]:
    idx = Index(index, model=model)
    try:
        return [[(h.path, h.text) for h in idx.ask(q, k=3)] for q in QUESTIONS]
    finally:
        idx.close()


def build_local(
    folder: Path,
    index: Path,
    model: Path,
    chunks: ChunkVectors | None = None,
    passages: PassagePrecision | None = None,
    sections: SectionVectors | None = None,
) -> None:
    idx = Index(index, model=model, threads=1, cache_dir=index.parent / "cache")
    try:
        idx.build(folder, chunks=chunks, passages=passages, sections=sections)
    finally:
        idx.close()


def build_on_ray(
    folder: Path,
    index: Path,
    model: Path,
    chunks: ChunkVectors | None = None,
    passages: PassagePrecision | None = None,
    sections: SectionVectors | None = None,
    **options: Any,
) -> dict[str, object]:
    idx = Index(index, model=model)
    try:
        step = distributed.RayEmbedding(workers=2, rows_per_call=32, **options)
        built = idx.build(folder, embed=step, chunks=chunks, passages=passages, sections=sections)
        return built.embedding
    finally:
        idx.close()


# ---------------------------------------------------------------- without a Ray instance


def test_without_ray_installed_the_build_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    folder = write_folder(tmp_path / "docs", range(1), per_file=3)
    result = run("build", folder, "--index", tmp_path / "idx", "--model", tiny_model_dir, "--ray")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'indexer[ray]'" in lines[0], result.stderr
    assert not (tmp_path / "idx").exists()


def test_an_unreachable_cluster_fails_in_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = write_folder(tmp_path / "docs", range(1), per_file=3)
    result = run(
        "build", folder, "--index", tmp_path / "idx", "--model", tiny_model_dir,
        "--ray", f"127.0.0.1:{port}",
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"no Ray cluster answers at 127.0.0.1:{port}" in lines[0]


# ---------------------------------------------------------------- on a local Ray instance


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray instance for the module; yields its address for child processes. Its
    workers make int8 copies of models in a cache of their own."""
    ray = pytest.importorskip("ray")
    cache = {"INDEXER_CACHE_DIR": str(tmp_path_factory.mktemp("ray-cache"))}
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": cache}
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("ray") / "docs", range(8))


@pytest.fixture(scope="module")
def local_index(
    tmp_path_factory: pytest.TempPathFactory, folder: Path, tiny_model_dir: Path
) -> Path:
    index = tmp_path_factory.mktemp("local") / "idx"
    build_local(folder, index, tiny_model_dir)
    return index


@pytest.mark.slow
def test_a_ray_build_equals_the_local_build(
    ray_address: str, folder: Path, local_index: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    report = build_on_ray(folder, tmp_path / "idx", tiny_model_dir)
    keys = assert_same_vectors(local_index, tmp_path / "idx")
    assert answers(tmp_path / "idx", tiny_model_dir) == answers(local_index, tiny_model_dir)
    assert report["workers"] == 2 and report["texts"] == len(keys)
    per_worker = report["per_worker"]
    assert isinstance(per_worker, list) and sum(w["texts"] for w in per_worker) == len(keys)


@pytest.fixture
def sections(tmp_path: Path) -> Path:
    """Six sections of seven short steps under a heading each: three chunks per section."""
    folder = tmp_path / "sections"
    folder.mkdir()
    for n in range(6):
        steps = " ".join(f"Step {n}{i} is done." for i in range(7))
        (folder / f"s{n}.md").write_text(f"# Part {n}\n\n{steps}\n", encoding="utf-8")
    return folder


def assert_same_vectors(local: Path, remote: Path, atol: float = 1e-5) -> set[str]:
    """Both indexes store the same keys with the same vectors (as float16); the keys."""
    here, there = stored_vectors(local), stored_vectors(remote)
    assert here.keys() == there.keys()
    for key, vector in here.items():
        np.testing.assert_allclose(there[key], vector, rtol=1e-3, atol=atol)
    return set(here)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "value", "status_key", "atol"),
    [
        ("chunks", "pooled", "chunk_vectors", 1e-5),
        # int8 activations are quantized with one scale per batch, so a vector moves a little
        # with the rows it ran beside, and the two builds batch passages differently.
        ("passages", "int8", "passage_precision", 1e-2),
        ("sections", "averaged", "section_vectors", 1e-3),  # means of float16 vectors
    ],
)
def test_passage_vectors_made_another_way_on_ray_equal_those_made_here(
    ray_address: str,
    sections: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    option: str,
    value: str,
    status_key: str,
    atol: float,
) -> None:
    other = {"chunks": "embedded", "passages": "fp32", "sections": "embedded"}[option]
    build_local(sections, tmp_path / "other", tiny_model_dir, **{option: other})
    build_local(sections, tmp_path / "local", tiny_model_dir, **{option: value})
    build_on_ray(sections, tmp_path / "idx", tiny_model_dir, **{option: value})
    keys = assert_same_vectors(tmp_path / "local", tmp_path / "idx", atol=atol)
    assert keys != set(stored_vectors(tmp_path / "other"))  # the key says how it was made
    assert Index(tmp_path / "idx").status()[status_key] == value


@pytest.mark.slow
def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(
    ray_address: str,
    folder: Path,
    local_index: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    died = tmp_path / "a-worker-died"
    monkeypatch.setenv(distributed.FAULT_ENV, f"3:{died}")
    report = build_on_ray(folder, tmp_path / "idx", tiny_model_dir)
    assert died.exists(), "no worker was killed"
    assert stored_vectors(tmp_path / "idx").keys() == stored_vectors(local_index).keys()
    assert report["texts"] == len(stored_vectors(local_index))
    assert run("verify", "--index", tmp_path / "idx").exit_code == 0


@pytest.mark.slow
def test_a_driver_killed_mid_build_keeps_the_index_and_the_rerun_embeds_only_the_rest(
    ray_address: str, tmp_path: Path, tiny_model_dir: Path, local_index: Path, folder: Path
) -> None:
    docs, index = tmp_path / "docs", tmp_path / "idx"
    write_folder(docs, range(2))
    build_local(docs, index, tiny_model_dir)
    before = answers(index, tiny_model_dir)
    write_folder(docs, range(8))  # the same files as `folder`: six more to embed
    command = [sys.executable, "-m", "indexer", "build", docs, "--index", index]
    command += ["--model", tiny_model_dir, "--ray", ray_address, "--workers", "2", "--json"]
    env = {**os.environ, "INDEXER_FAULT": "vectors:1"}  # SIGKILL after the first commit batch
    killed = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert run("verify", "--index", index).exit_code == 0
    assert answers(index, tiny_model_dir) == before  # the previous generation, unchanged
    kept = len(stored_vectors(index))

    rerun = subprocess.run(command, capture_output=True, timeout=300, check=True)
    report = json.loads(rerun.stdout)
    total = len(stored_vectors(local_index))
    assert 0 < report["ray"]["texts"] == total - kept
    assert stored_vectors(index).keys() == stored_vectors(local_index).keys()
    assert answers(index, tiny_model_dir) == answers(local_index, tiny_model_dir)


@pytest.mark.slow
def test_a_worker_with_another_model_is_refused(
    ray_address: str, folder: Path, tiny_model_dir: Path, other_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelMismatchError, match=r"Ray worker on .* has model"):
        build_on_ray(folder, tmp_path / "idx", tiny_model_dir, model_path=other_model)
    assert not stored_vectors(tmp_path / "idx")
    result = run(
        "build", folder, "--index", tmp_path / "idx", "--model", tiny_model_dir,
        "--ray", "--ray-model-path", other_model,
    )  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    failures = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(failures) == 1 and failures[0].startswith("error: Ray worker on"), result.stderr
