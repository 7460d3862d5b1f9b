"""Helpers the measurement scripts share: loading a sibling script as a module, and output."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import click

SCRIPTS = Path(__file__).resolve().parent
#: What the team provides beside the repository: eval sets and a document corpus.
SHARED = SCRIPTS.parent.parent / "shared"
DEFAULT_CORPUS = SHARED / "corpus"


#: The --corpus option of the scripts that sample or build the corpus.
corpus_option = click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=DEFAULT_CORPUS,
    show_default=True,
    help="Documents for the workload.",
)


def retrieval_sets() -> tuple[Path, ...]:
    """Every retrieval set in ../shared/eval (a folder with queries.jsonl), by name."""
    base = SHARED / "eval"
    return tuple(d for d in sorted(base.iterdir()) if (d / "queries.jsonl").exists())


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module, so one script reuses another's helpers (not a package)."""
    key = f"indexer_script_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def log(message: str) -> None:
    """A progress line on stderr."""
    click.echo(message, err=True)


def emit(record: dict[str, object], *, readable: bool = False) -> None:
    """One JSON line on stdout (and, if readable, a key=value line on stderr)."""
    click.echo(json.dumps(record, ensure_ascii=False))
    if readable:
        log("  ".join(f"{k}={v}" for k, v in record.items()))
