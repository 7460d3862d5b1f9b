"""Writing test folders and running scripts/: one home for the helpers test modules share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))  # as the scripts themselves find scripts/_common.py
from _common import load_script  # noqa: E402  (scripts/<name>.py as a module, for the tests)

__all__ = ["SCRIPTS", "load_script", "run_script", "write", "write_docs"]


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
    """scripts/<name>.py run as a user runs it, output captured as text."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
