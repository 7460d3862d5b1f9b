"""Helpers the measurement scripts share: loading a sibling script as a module, the eval sets
and their query limits, and output."""

from __future__ import annotations

import fnmatch
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


#: Queries per eval set in the README's runs (the first N); sets not named here use all of them.
#: Limits keep a run tractable on 2 cores. scripts/eval_all.sh reads them through eval_limit.
EVAL_LIMITS = {"jsquad_valid": 1000, "tatoeba_*": 500}


def eval_limit(set_name: str) -> int | None:
    """The query limit for an eval set by its folder name (EVAL_LIMITS), None for all."""
    return next((n for p, n in EVAL_LIMITS.items() if fnmatch.fnmatchcase(set_name, p)), None)


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


if __name__ == "__main__":
    # scripts/eval_all.sh: `python scripts/_common.py limit SET_NAME` prints "--limit N" or nothing.
    if sys.argv[1:2] == ["limit"] and len(sys.argv) == 3:
        limit = eval_limit(sys.argv[2])
        print(f"--limit {limit}" if limit else "")
    else:
        sys.exit("usage: python scripts/_common.py limit SET_NAME")
