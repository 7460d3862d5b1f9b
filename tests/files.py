"""Writing test folders and running scripts/: one home for the helpers test modules share."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["DOCS", "run_script", "without_root_privileges", "write", "write_docs"]


#: Documents in English and Japanese that the tiny model's tokenizer knows (CLI and server tests).
DOCS = {
    "ja/npu.md": "# NPUの測定\n\nNNAPI経由でNPUを使うと、CPUより約15倍速くなりました。\n"
    "消費電力も大きく下がりました。\n\n## 注意\n\n一部の演算はCPUにフォールバックします。\n",
    "ja/weather.txt": "今日はいい天気ですね。明日は雨が降るそうです。\n\n東京は日本の首都です。\n",
    "en/faq.txt": "How fast is inference on the NPU compared with the CPU?\n\n"
    "Your laptop arrives on the first day. Ask your buddy about the VPN.\n",
    "en/review.md": "# Code review\n\nRespond to code reviews within one working day.\n\n"
    "Keep pull requests small and focused.\n",
}


def write(path: Path, data: bytes | str) -> Path:
    """Write bytes or UTF-8 text, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def store_vectors_as_float32(index_dir: Path) -> int:
    """Write every stored vector of an index back as float32, as indexes stored them before
    float16 (store.encode_vector); how many there are."""
    from indexer.store import decode_vector

    with contextlib.closing(sqlite3.connect(index_dir / "index.sqlite")) as db, db:
        rows = db.execute("SELECT id, vector FROM vectors").fetchall()
        db.executemany(
            "UPDATE vectors SET vector = ? WHERE id = ?",
            [(decode_vector(blob).tobytes(), vector_id) for vector_id, blob in rows],
        )
    return len(rows)


def stored_vectors(index_dir: Path) -> dict[str, np.ndarray]:
    """Every stored vector of an index by key, as float32."""
    from indexer.store import decode_vector

    with contextlib.closing(sqlite3.connect(index_dir / "index.sqlite")) as db:
        rows = db.execute("SELECT key, vector FROM vectors").fetchall()
    return {key: decode_vector(blob) for key, blob in rows}


def write_docs(root: Path, docs: dict[str, str]) -> Path:
    """Write {relative path: text} under root; return root."""
    for rel, text in docs.items():
        write(root / rel, text)
    return root


def run_script(name: str, *args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m scripts.<name>` run from the repository root as a user runs it, output
    captured as text."""
    return subprocess.run(
        [sys.executable, "-m", f"scripts.{name}", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def without_root_privileges() -> list[str]:
    """A command prefix that makes file permissions count even for root (who ignores them)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
