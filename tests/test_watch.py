"""`index watch`: real folders changed under a watcher run as a child process."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import filelock
import pytest
from click.testing import CliRunner

from indexer import Index
from indexer.cli import cli
from indexer.watch import Burst, Watcher
from tests.files import write, write_docs

DOCS = {
    "animals.md": "# Animals\n\nThe cat sat on the mat.\n\nDogs bark loudly at night.\n",
    "notes/plants.txt": "Remember to water the plants on Sunday.\n",
}
#: Generous: the machine running the tests may be busy.
DEADLINE = 120.0


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


class Watching:
    """`python -m indexer watch` as a child process; its stdout reports and stderr lines are
    read as they come, and waited for with a deadline."""

    def __init__(self, docs: Path, idx: Path, model: Path, *extra: str) -> None:
        args = ["watch", docs, "--index", idx, "--model", model, "--debounce", "0.3", *extra]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "indexer", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self.errors: list[str] = []
        for stream, into in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=_lines, args=(stream, into), daemon=True).start()

    def report(self, timeout: float = DEADLINE) -> dict[str, Any]:
        """The next build's run report."""
        return json.loads(self.out.get(timeout=timeout))

    def reports_until(self, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """Reports until `done` says they are enough."""
        reports: list[dict[str, Any]] = []
        while not done(reports):
            reports.append(self.report())
        return reports

    def said(self, words: str, timeout: float = DEADLINE) -> str:
        """Wait for a stderr line containing `words`."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.err.get(timeout=max(0.0, deadline - time.monotonic()))
            self.errors.append(line)
            if words in line:
                return line

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        """Send a signal; the exit code and the rest of stderr."""
        self.process.send_signal(signum)
        code = self.process.wait(timeout=DEADLINE)
        time.sleep(0)  # let the reader threads see the end of the streams
        rest = []
        while True:
            try:
                rest.append(self.err.get(timeout=5))
            except queue.Empty:
                break
        return code, "\n".join(self.errors + rest)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_docs(tmp_path / "docs", DOCS)


@pytest.fixture
def watching(docs: Path, tmp_path: Path, tiny_model_dir: Path) -> Iterator[Watching]:
    watcher = Watching(docs, tmp_path / "idx", tiny_model_dir, "--json")
    yield watcher
    watcher.kill()


def ask(idx: Path, question: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["ask", question, "--index", str(idx), "--json", "-k", "1"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def added(reports: list[dict[str, Any]]) -> list[str]:
    return sorted(path for report in reports for path in report["added"])


# ---------------------------------------------------------------- slow: a watcher at work


@pytest.mark.slow
def test_each_change_is_built_and_a_burst_is_one_build(
    watching: Watching, docs: Path, tmp_path: Path
) -> None:
    first = watching.report()
    assert first["files"]["added"] == 2

    write(docs / "volcano.md", "Volcanoes erupt with molten lava.\n")
    assert watching.report()["added"] == ["volcano.md"]
    assert ask(tmp_path / "idx", "volcano lava")[0]["path"] == "volcano.md"

    burst = {f"burst/file{i:02}.txt": f"Burst file {i} mentions topic {i}.\n" for i in range(50)}
    write_docs(docs, burst)
    reports = watching.reports_until(lambda got: len(added(got)) >= 50)
    assert added(reports) == sorted(burst)
    assert len(reports) <= 2, [r["files"] for r in reports]  # not one build per file

    (docs / "volcano.md").unlink()
    assert watching.report()["deleted"] == ["volcano.md"]
    assert ask(tmp_path / "idx", "volcano lava")[0]["path"] != "volcano.md"

    code, err = watching.stop()
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.slow
def test_the_watcher_waits_for_a_build_holding_the_lock(
    watching: Watching, docs: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    idx = tmp_path / "idx"
    watching.report()
    with filelock.FileLock(idx / "build.lock"):  # a build by hand, at its slowest
        write(docs / "late.md", "A file written while another build runs.\n")
        watching.said("another build is writing")
        args = ["build", docs, "--index", idx, "--model", tiny_model_dir, "--wait", DEADLINE]
        by_hand = subprocess.Popen(
            [sys.executable, "-m", "indexer", *map(str, args), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    out, err = by_hand.communicate(timeout=DEADLINE)
    assert by_hand.returncode == 0, err
    report = watching.report()
    assert added([json.loads(out), report]) == ["late.md"]  # whichever ran first added it
    verify = CliRunner().invoke(cli, ["verify", "--index", str(idx)])
    assert verify.exit_code == 0 and "ok" in verify.stdout, verify.output
    code, err = watching.stop()
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.slow
def test_a_vanished_folder_keeps_the_index_and_is_built_when_back(
    watching: Watching, docs: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    watching.report()
    away = docs.rename(tmp_path / "away")
    watching.said("is missing or empty")
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    assert index.status()["files"] == 2
    index.close()
    away.rename(docs)
    watching.said("is back")
    assert watching.report()["files"]["unchanged"] == 2
    write(docs / "after.md", "Written after the folder came back.\n")
    assert watching.report()["added"] == ["after.md"]  # the new folder is watched


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_between_builds_stops_it_cleanly(watching: Watching, signum: int) -> None:
    watching.report()
    code, err = watching.stop(signum)
    assert code == 0, err
    assert "stopped watching" in err and "Traceback" not in err, err


@pytest.mark.slow
def test_a_signal_while_waiting_for_the_lock_exits_130(
    docs: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    idx = tmp_path / "idx"
    idx.mkdir()
    with filelock.FileLock(idx / "build.lock"):
        watching = Watching(docs, idx, tiny_model_dir, "--json")
        try:
            watching.said("another build is writing")
            code, err = watching.stop()
        finally:
            watching.kill()
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert not (idx / "index.sqlite").exists()


# ---------------------------------------------------------------- fast: which changes count


@pytest.fixture
def watcher(tmp_path: Path) -> Watcher:
    folder = tmp_path / "docs"
    folder.mkdir()
    index = Index(folder / "idx")  # an index inside the folder it indexes
    return Watcher(index, folder, 0.3, show=lambda report: None, echo=print, build_options={})


@pytest.mark.parametrize(
    ("name", "relevant"),
    [
        ("a.md", True),
        ("deep/er/b.PDF", True),
        (".indexignore", True),
        ("sub/.indexignore", True),
        ("folder", True),
        ("idx/index.sqlite", False),
        ("idx/vectors.3.faiss", False),
        (".git/index", False),
        ("sub/.hidden.md", False),
        ("node_modules/x/readme.md", False),
        ("photo.jpg", False),
        ("notes.md.swp", False),
    ],
)
def test_which_changes_lead_to_a_build(watcher: Watcher, name: str, relevant: bool) -> None:
    from watchfiles import Change

    path = str(watcher.root / name)
    assert watcher.relevant(Change.modified, path) is relevant


def test_a_deleted_name_with_a_suffix_may_have_been_a_folder(watcher: Watcher) -> None:
    from watchfiles import Change

    assert watcher.relevant(Change.deleted, str(watcher.root / "release-1.2"))
    assert not watcher.relevant(Change.added, str(watcher.root / "release-1.2"))
    (watcher.root / "v2.0").mkdir()
    assert watcher.relevant(Change.added, str(watcher.root / "v2.0"))


def test_a_burst_is_over_after_a_quiet_spell_or_at_the_latest_after_the_longest_wait() -> None:
    burst = Burst(quiet=2.0, longest=30.0)
    assert not burst.over(0.0)
    for t in range(0, 100):  # one change every half second: never quiet for two seconds
        now = t / 2
        if burst.over(now):
            break
        burst.add(now)
    assert now == 30.0
    burst.clear()
    burst.add(100.0)
    burst.add(101.0)
    assert not burst.over(102.9) and burst.over(103.0)
