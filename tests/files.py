"""Writing test folders: one home for the helpers every test module needs."""

from __future__ import annotations

from pathlib import Path


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
