"""Writing test folders and running scripts/: one home for the helpers test modules share."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["run_script", "without_root_privileges", "write", "write_docs"]


def write(path: Path, data: bytes | str) -> Path:
    """Write bytes or UTF-8 text, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


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
