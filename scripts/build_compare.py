"""First builds of one folder by two commits of indexer, side by side in one run.

    python -m scripts.build_compare BEFORE AFTER [--corpus DIR] [--rounds 1] [--batch-size 32]
                                    [--threads N] [--model DIR]
                                    [--before-args "..."] [--after-args "..."]

Each commit is checked out in a temporary git worktree and `python -m indexer build` runs
from there: its own code, with the installed dependencies and the default model. Per round,
the two commits take turns (the order flips every round, so a machine that slows down or
speeds up during the run favours neither): a first build of a fresh copy of the corpus into a
fresh index, then a re-run after appending a paragraph to one file. BEFORE and AFTER may be the
same commit with different `index build` options (--after-args "--passage-precision int8").
Each build runs in its own process, which reports its peak RSS.

One stamped JSON row per commit and round on stdout, then a summary row: the median first
build and one-file edit of each commit and their ratio (after / before). Progress on stderr.
"""

from __future__ import annotations

import shlex
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from scripts.bench import build_once, edit_one_file
from scripts.common import ROOT, corpus_option, emit, log


def resolve(revision: str) -> str:
    """The full commit id of a revision of this repository."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise click.BadParameter(f"{revision} is not a commit of {ROOT}")
    return done.stdout.strip()


@contextmanager
def worktree(commit: str, where: Path) -> Iterator[Path]:
    """A detached checkout of `commit` at `where`, removed afterwards."""
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", "--quiet", str(where), commit], check=True)
    try:
        yield where
    finally:
        subprocess.run([*git, "remove", "--force", str(where)], check=False)


def one_round(
    code: Path, corpus: Path, work: Path, batch_size: int, flags: list[str]
) -> dict[str, Any]:
    """A first build of a fresh copy of the corpus with the code in `code`, then a re-run
    after one edit."""
    copy, index = work / "corpus", work / "index"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(corpus, copy)
    arguments = ["--index", str(index), *flags]
    first = build_once(copy, arguments, batch_size, cwd=code)
    log(f"  first build {first['seconds']} s, peak {first['peak_rss_mb']} MiB")
    edited = edit_one_file(copy)
    one_edit = build_once(copy, arguments, batch_size, cwd=code)
    log(f"  one-file edit {one_edit['seconds']} s")
    shutil.rmtree(work, ignore_errors=True)
    return {"first": first, "one_edit": {**one_edit, "file": edited}}


def median_of(rows: list[dict[str, Any]], step: str) -> float:
    return statistics.median(row[step]["seconds"] for row in rows)


@click.command()
@click.argument("before")
@click.argument("after")
@corpus_option
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Inference threads.")
@click.option(
    "--model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None
)
@click.option("--before-args", default="", help="More `index build` options for BEFORE.")
@click.option("--after-args", default="", help="More `index build` options for AFTER.")
def main(
    before: str,
    after: str,
    corpus: Path,
    rounds: int,
    batch_size: int,
    threads: int | None,
    model: Path | None,
    before_args: str,
    after_args: str,
) -> None:
    """Time first builds of CORPUS by commits BEFORE and AFTER, taking turns."""
    commits = {"before": resolve(before), "after": resolve(after)}
    common = ["--threads", str(threads)] if threads else []
    common += ["--model", str(model.resolve())] if model else []
    flags = {
        "before": [*common, *shlex.split(before_args)],
        "after": [*common, *shlex.split(after_args)],
    }
    rows: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="build-compare-") as tmp:
        scratch = Path(tmp)
        with (
            worktree(commits["before"], scratch / "before"),
            worktree(commits["after"], scratch / "after"),
        ):
            for number in range(rounds):
                order = ["before", "after"] if number % 2 == 0 else ["after", "before"]
                for side in order:
                    log(f"round {number + 1}: {side} ({commits[side][:7]})")
                    measured = one_round(
                        scratch / side, corpus, scratch / "work", batch_size, flags[side]
                    )
                    row = {"side": side, "built_by": commits[side][:7], "round": number + 1}
                    row["build_args"] = flags[side]
                    emit({**row, **measured})
                    rows[side].append(measured)
    summary: dict[str, Any] = {"summary": True, "corpus": str(corpus), "rounds": rounds}
    for step in ("first", "one_edit"):
        old, new = median_of(rows["before"], step), median_of(rows["after"], step)
        summary[step] = {"before_s": old, "after_s": new, "ratio": round(new / old, 3)}
    summary["peak_rss_mb"] = {
        side: max(row["first"]["peak_rss_mb"] or 0 for row in rows[side]) for side in rows
    }
    summary["commits"] = {side: commit[:7] for side, commit in commits.items()}
    summary["build_args"] = flags
    emit(summary, readable=True)


if __name__ == "__main__":
    main()
