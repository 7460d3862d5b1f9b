"""Writing test folders and running scripts/: one home for the helpers test modules share."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


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


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def run_script(name: str, *args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """scripts/<name>.py run as a user runs it, output captured as text."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
