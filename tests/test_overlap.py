"""Concurrent use of one index: two builds at once, asks during a build, a lock left by a kill."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import filelock
import pytest
from click.testing import CliRunner

from indexer import Index
from indexer.cli import cli
from tests.test_crash import build_command, contents, run_build, write_corpus

pytestmark = pytest.mark.slow

FILES = 120  # 3,600 sentences: about a second of embedding with the tiny model
LOCK_NAME = "build.lock"


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def finish(process: subprocess.Popen) -> tuple[int, dict | None, str]:
    out, err = process.communicate(timeout=180)
    report = json.loads(out) if out.strip() else None
    return process.returncode, report, err


def holding_lock(idx: Path) -> bool:
    """A build creates the database only after it took the lock."""
    return (idx / "index.sqlite").exists()


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("overlap") / "docs", FILES)


def test_two_builds_at_once_one_writes_the_other_exits_3(
    docs: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    for attempt in range(3):
        idx = tmp_path / f"idx{attempt}"
        first = run_build(docs, idx, tiny_model_dir)
        second = run_build(docs, idx, tiny_model_dir)
        results = sorted([finish(first), finish(second)], key=lambda r: r[0])
        (code_a, report_a, _), (code_b, report_b, err_b) = results
        assert code_a == 0 and report_a["sentences"]["embedded"] == FILES * 30
        if code_b == 0:  # the second started after the first had finished: no overlap, retry
            assert report_b["sentences"]["embedded"] == 0
            continue
        assert code_b == 3, err_b
        lines = err_b.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), err_b
        assert "--wait" in lines[0]
        assert contents(idx) is not None and len(contents(idx)) == FILES * 30
        return
    pytest.fail("the two builds never overlapped")


def test_second_build_with_wait_succeeds_after_the_first(
    docs: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    idx = tmp_path / "idx"
    first = run_build(docs, idx, tiny_model_dir)
    wait_for(lambda: holding_lock(idx) or first.poll() is not None)
    second = subprocess.Popen(
        build_command(docs, idx, tiny_model_dir, "--wait", "60", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    code_a, report_a, err_a = finish(first)
    code_b, report_b, err_b = finish(second)
    assert code_a == 0, err_a
    assert code_b == 0, err_b
    assert report_a["sentences"]["embedded"] == FILES * 30
    assert report_b["sentences"]["embedded"] == 0 and report_b["files"]["unchanged"] == FILES


def test_wait_blocks_while_the_lock_is_held(
    docs: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Deterministic: the test holds build.lock itself (the documented writer lock)."""
    idx = tmp_path / "idx"
    idx.mkdir()
    lock = filelock.FileLock(idx / LOCK_NAME)
    with lock:
        started = time.monotonic()
        refused = subprocess.run(
            build_command(docs, idx, tiny_model_dir), capture_output=True, text=True, timeout=60
        )
        to_the_lock = time.monotonic() - started  # how long a build takes to reach the lock
        assert refused.returncode == 3, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert "Traceback" not in refused.stderr
        waiting = subprocess.Popen(
            build_command(docs, idx, tiny_model_dir, "--wait", "60", "-q"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Twice what the refused build needed to reach the lock and give up, however loaded the
        # machine is: a build that ignored --wait would have exited or written by then.
        with contextlib.suppress(subprocess.TimeoutExpired):
            waiting.wait(timeout=max(2.0, 2 * to_the_lock))
        assert waiting.poll() is None, "the build did not wait for the lock"
        assert not (idx / "index.sqlite").exists(), "a waiting build wrote to the index"
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert out == "" and err == ""
    assert len(contents(idx) or []) == FILES * 30


def test_wait_gives_up_after_the_timeout(docs: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    idx = tmp_path / "idx"
    idx.mkdir()
    with filelock.FileLock(idx / LOCK_NAME):
        started = time.monotonic()
        result = subprocess.run(
            build_command(docs, idx, tiny_model_dir, "--wait", "1.5"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 3 and time.monotonic() - started >= 1.5


Shown = list[tuple[str, frozenset[str]]]


def shown(hits: list[dict]) -> Shown:
    """Each hit's file and the sentences shown with it (the hit and its context)."""
    return [(h["path"], frozenset([*h["before"], h["text"], *h["after"]])) for h in hits]


def agreeing_states(answer: Shown, states: dict[str, dict[str, set[str]]]) -> set[str]:
    """The states every shown sentence of one answer belongs to; empty means a mix."""
    return {
        name
        for name, files in states.items()
        if all(texts <= files.get(path, set()) for path, texts in answer)
    }


def by_file(content: list[tuple[str, int, str]] | None) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for path, _, text in content or []:
        grouped.setdefault(path, set()).add(text)
    return grouped


def ask_somehow(number: int, idx: Path, reader: Index, question: str) -> list[dict]:
    """Through the CLI, a long-lived reader (cached FAISS) or a fresh one, in turn."""
    if number % 3 == 0:
        result = CliRunner().invoke(cli, ["ask", question, "--index", str(idx), "--json"])
        assert result.exit_code == 0, (result.stderr, result.exception)
        return [json.loads(line) for line in result.stdout.splitlines()]
    index = reader if number % 3 == 1 else Index(idx)
    return [hit.to_dict() for hit in index.ask(question, k=10, context=1)]


def test_asks_during_a_rebuild_always_see_one_whole_state(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    folder, idx = tmp_path / "docs", tmp_path / "idx"
    write_corpus(folder, FILES)
    code, _, err = finish(run_build(folder, idx, tiny_model_dir))
    assert code == 0, err
    old = contents(idx)
    assert old
    write_corpus(folder, FILES, seed=1, tag=" (v2)")  # every sentence of every file changes

    build = run_build(folder, idx, tiny_model_dir)
    questions = [old[i][2] for i in range(0, len(old), 97)]
    reader = Index(idx)
    answers: list[tuple[bool, Shown]] = []
    while build.poll() is None or len(answers) < 30:
        running = build.poll() is None
        hits = ask_somehow(len(answers), idx, reader, questions[len(answers) % len(questions)])
        assert hits, "no hits although a finished build exists"
        answers.append((running and build.poll() is None, shown(hits)))
    code, report, err = finish(build)
    assert code == 0, err
    assert report["sentences"]["embedded"] == FILES * 30

    states = {"old": by_file(old), "new": by_file(contents(idx))}
    seen = [agreeing_states(answer, states) for _, answer in answers]
    assert all(seen), "an answer mixed the old and the new index"
    assert sum(running for running, _ in answers) >= 10, "too few asks during the build"
    assert {"old"} in seen
    after = [
        agreeing_states(shown(ask_somehow(n, idx, reader, q)), states)
        for n, q in enumerate(questions[:6])
    ]
    assert all(state == {"new"} for state in after), "a reader kept an outdated index"


def test_stale_lock_from_a_killed_build_does_not_block(
    docs: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    idx = tmp_path / "idx"
    build = run_build(docs, idx, tiny_model_dir)
    wait_for(lambda: holding_lock(idx) or build.poll() is not None)
    build.send_signal(signal.SIGKILL)
    build.wait(timeout=60)
    assert (idx / LOCK_NAME).exists(), "the lock file is left behind"
    code, report, err = finish(run_build(docs, idx, tiny_model_dir))
    assert code == 0, err
    assert report["files"]["added"] == FILES
    repaired = CliRunner().invoke(cli, ["verify", "--index", str(idx), "--repair"])
    assert repaired.exit_code == 0, repaired.stderr
