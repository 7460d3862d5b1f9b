"""Time cron-style re-indexing with the real CLI: first build, then no-change and one-file re-runs.

    python -m scripts.reindex_bench [CORPUS] [--index-dir DIR] [--model DIR] [--threads N]

CORPUS (default ../shared/corpus from the repository root) is copied to a temporary folder, so the
edits, deletions and renames below never touch it. Each step runs `python -m indexer build --json`
as a child process and records its wall time, the peak RSS the child reports itself
(scripts.common.run_python) and its JSON report:

    first       a build from nothing
    no-change   a re-run with nothing changed (target: under 1 s)
    edit        one sentence edited in one file
    delete      one file deleted
    rename      one file renamed

A table goes to stderr and one stamped JSON row to stdout. Without --model the default model is
used.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from indexer import config
from scripts.common import CHILD_ENV, DEFAULT_CORPUS, emit, run_python

NO_CHANGE_TARGET_SECONDS = 1.0
#: Settings that would change what the child builds; the flags given here decide instead.
CLEARED_ENV = ("INDEXER_FAULT", config.ENV_INDEX, config.ENV_MODEL)
#: Prose lines end like this; an edit goes just before the final mark.
SENTENCE_ENDS = (".", "。", "!", "?", "！", "？")
#: Exit codes of a build that count as done (5: some files unreadable, everything else indexed).
DONE = (0, 5)


@dataclass
class Step:
    """One timed build."""

    name: str
    seconds: float
    peak_rss_mib: float | None
    embedded: int
    reused: int
    files: dict[str, int]
    note: str = ""


def child_env() -> dict[str, str]:
    return {k: v for k, v in CHILD_ENV.items() if k not in CLEARED_ENV}


def documents(folder: Path) -> list[Path]:
    """The files a build reads, in a stable order."""
    found = (p for p in folder.rglob("*") if p.suffix.lower() in config.TEXT_SUFFIXES)
    visible = (p for p in found if not any(x.startswith(".") for x in p.relative_to(folder).parts))
    return sorted(p for p in visible if p.is_file())


def edit_one_sentence(folder: Path) -> str:
    """Change one prose line of one file by a word; the file's relative path."""
    for path in documents(folder):
        try:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(lines):
            text = line.rstrip("\n")
            if len(text) > 30 and text[0].isalpha() and text.endswith(SENTENCE_ENDS):
                lines[number] = f"{text[:-1]} (edited){text[-1]}\n"
                path.write_text("".join(lines), encoding="utf-8")
                return str(path.relative_to(folder))
    sys.exit(f"error: no prose line to edit in {folder}")


def delete_one_file(folder: Path) -> str:
    path = documents(folder)[-1]
    path.unlink()
    return str(path.relative_to(folder))


def rename_one_file(folder: Path) -> str:
    path = documents(folder)[len(documents(folder)) // 2]
    target = path.with_name(f"renamed-{path.name}")
    path.rename(target)
    return f"{path.relative_to(folder)} → {target.relative_to(folder)}"


def measure(name: str, command: list[str], change: Callable[[], str] | None = None) -> Step:
    """Run one build (after `change`, if given) as a child process; its time, memory and report."""
    note = change() if change else ""
    done = run_python(command, peak=True, env=child_env()).check(DONE)
    report = json.loads(done.stdout)
    sentences = report["sentences"]
    return Step(
        name,
        done.seconds,
        done.peak_rss_mib,
        sentences["embedded"],
        sentences["reused"],
        report["files"],
        note,
    )


def print_table(steps: list[Step]) -> None:
    echo = functools.partial(click.echo, err=True)
    echo(f"{'step':<10} {'seconds':>8} {'peak MiB':>9} {'embedded':>9} {'reused':>7}  files")
    for s in steps:
        files = ", ".join(f"{v} {k}" for k, v in s.files.items() if v)
        peak = "?" if s.peak_rss_mib is None else f"{s.peak_rss_mib:.0f}"
        numbers = f"{s.seconds:>8.2f} {peak:>9} {s.embedded:>9} {s.reused:>7}"
        echo(f"{s.name:<10} {numbers}  {files}")
        if s.note:
            echo(f"{'':<10} {s.note}")


def check_index_dir(index_dir: Path | None, work: Path) -> Path:
    if index_dir is None:
        return work / "index"
    if index_dir.exists() and any(index_dir.iterdir()):
        sys.exit(f"error: --index-dir {index_dir} is not empty — a first build needs an empty one")
    return index_dir


@click.command()
@click.argument("corpus", type=click.Path(path_type=Path), default=DEFAULT_CORPUS)
@click.option(
    "--index-dir",
    type=click.Path(path_type=Path),
    help="Where the index is written "
    "(must be empty; default: a temporary folder, removed afterwards).",
)
@click.option("--model", type=click.Path(path_type=Path), help="Model directory [default model].")
@click.option("--threads", type=click.IntRange(min=1), help="Inference threads [all cores].")
def main(corpus: Path, index_dir: Path | None, model: Path | None, threads: int | None) -> None:
    """Time first build, no-change, one-edit, one-delete and one-rename re-runs of CORPUS."""
    if not corpus.is_dir():
        sys.exit(f"error: no corpus at {corpus} — pass a folder of documents as CORPUS")
    with tempfile.TemporaryDirectory(prefix="reindex-bench-") as work_dir:
        work = Path(work_dir)
        docs = work / "docs"
        shutil.copytree(corpus, docs)
        index = check_index_dir(index_dir, work)
        command = ["-m", "indexer", "build", str(docs), "--index", str(index)]
        command += ["--json", *(["--model", str(model)] if model else [])]
        command += ["--threads", str(threads)] if threads else []
        steps = [
            measure("first", command),
            measure("no-change", command),
            measure("edit", command, lambda: edit_one_sentence(docs)),
            measure("delete", command, lambda: delete_one_file(docs)),
            measure("rename", command, lambda: rename_one_file(docs)),
        ]
    print_table(steps)
    no_change = steps[1].seconds
    click.echo(
        f"no-change re-run: {no_change:.2f} s (target < {NO_CHANGE_TARGET_SECONDS:.0f} s: "
        f"{'met' if no_change < NO_CHANGE_TARGET_SECONDS else 'MISSED'})",
        err=True,
    )
    result = {
        "corpus": str(corpus),
        "files": steps[0].files["added"],
        "model": str(model) if model else "default",
        "steps": {s.name: asdict(s) for s in steps},
        "no_change_target_seconds": NO_CHANGE_TARGET_SECONDS,
        "no_change_target_met": no_change < NO_CHANGE_TARGET_SECONDS,
    }
    emit(result)


if __name__ == "__main__":
    main()
