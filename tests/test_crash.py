"""A build killed with SIGKILL at any moment leaves an index that is either the old or the new one.

Real `python -m indexer build` subprocesses over a generated folder big enough for several commit
chunks; killed by the crash-test hook (INDEXER_FAULT) at each named step, and by the test itself
at spread-out delays. After every kill: verify, ask, a completing build, and a content check
against a from-scratch build of the same folder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from indexer import Index, config
from indexer.cli import cli

pytestmark = pytest.mark.slow

WORDS = (
    "river stone cloud engine battery latency window garden paper signal market orange violet "
    "silver copper harbor meadow rocket planet forest winter summer autumn spring coffee kettle "
    "ladder mirror pencil marble candle tunnel bridge castle valley desert island quiet rapid "
    "gentle bright narrow hollow distant frozen golden humble clever ancient modern measure "
    "compile deliver collect observe compare assemble polish borrow repair whisper gather"
).split()
JAPANESE = "電車 会議 資料 推論 速度 図書館 週末 天気 東京 更新".split()
FILES, PER_FILE = 40, 30
#: In state B: files rewritten, deleted and renamed (by index into the sorted file list).
CHANGED, DELETED, RENAMED = range(0, 28), range(28, 31), range(31, 34)
ADDED = 2

Content = list[tuple[str, int, str]]


# ---------------------------------------------------------------- the folder


def sentence(rng: random.Random, number: int) -> str:
    """A distinct sentence of varied words (English with a Japanese word)."""
    w = rng.sample(WORDS, 7)
    return (
        f"{w[0].capitalize()} {w[1]} {w[2]} {w[3]} {rng.choice(JAPANESE)} "
        f"{w[4]} {w[5]} {w[6]} number {number}."
    )


def document(rng: random.Random, first: int, count: int = PER_FILE, tag: str = "") -> str:
    return "\n\n".join(sentence(rng, first + i) + tag for i in range(count)) + "\n"


def file_name(i: int) -> str:
    return f"d{i % 4}/f{i:03}.{'md' if i % 2 else 'txt'}"


def write_corpus(root: Path, files: int = FILES, *, seed: int = 0, tag: str = "") -> Path:
    """files × PER_FILE distinct sentences in four folders, .txt and .md."""
    rng = random.Random(seed)
    for i in range(files):
        path = root / file_name(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document(rng, 100_000 * seed + i * PER_FILE, tag=tag), encoding="utf-8")
    return root


def mutate(root: Path) -> Path:
    """State A → state B: rewrite, delete, rename and add files (> 3 commit chunks of new text)."""
    rng = random.Random(99)
    for i in CHANGED:
        path = root / file_name(i)
        old_size = path.stat().st_size
        path.write_text(document(rng, 500_000 + i * PER_FILE, tag=" (v2)"), encoding="utf-8")
        assert path.stat().st_size != old_size
    for i in DELETED:
        (root / file_name(i)).unlink()
    for i in RENAMED:
        target = root / "moved" / Path(file_name(i)).name
        target.parent.mkdir(exist_ok=True)
        (root / file_name(i)).rename(target)
    for i in range(ADDED):
        (root / f"new/added{i}.md").parent.mkdir(exist_ok=True)
        (root / f"new/added{i}.md").write_text(document(rng, 900_000 + i * PER_FILE))
    return root


def copy_tree(source: Path, target: Path) -> Path:
    """A copy that keeps modification times, as a user's unchanged files would."""
    shutil.copytree(source, target, dirs_exist_ok=False)
    return target


# ---------------------------------------------------------------- running and reading


def build_command(docs: Path, idx: Path, model: Path, *extra: str) -> list[str]:
    args = ["build", docs, "--index", idx, "--model", model, *extra]
    return [sys.executable, "-m", "indexer", *map(str, args)]


def run_build(
    docs: Path, idx: Path, model: Path, fault: str | None = None, options: Sequence[str] = ()
) -> subprocess.Popen:
    """`index build --json` in a child process (`options` added), killed at `fault`."""
    env = {k: v for k, v in os.environ.items() if k != "INDEXER_FAULT"}
    if fault:
        env["INDEXER_FAULT"] = fault
    return subprocess.Popen(
        build_command(docs, idx, model, "--json", *options),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli_run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def completing_build(docs: Path, idx: Path, model: Path, options: Sequence[str] = ()) -> dict:
    """A normal build that must finish (`options` added); its JSON report."""
    result = cli_run("build", docs, "--index", idx, "--model", model, "--json", *options)
    assert result.exit_code == 0, (result.stderr, result.exception)
    return json.loads(result.stdout)


def planned_embeddings(docs: Path, idx: Path, model: Path) -> int:
    result = cli_run("build", docs, "--index", idx, "--model", model, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["sentences"]["embedded"]


def contents(idx: Path) -> Content | None:
    """Every committed sentence as sorted (path, line, text); None before a first finished build."""
    path = idx / "index.sqlite"
    if not path.is_file():
        return None
    db = sqlite3.connect(path)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            return None
        if not db.execute("SELECT 1 FROM meta WHERE key = 'generation'").fetchone():
            return None
        rows = db.execute(
            "SELECT f.path, s.line_start, s.text FROM sentences s JOIN files f ON f.id = s.file_id"
        ).fetchall()
    finally:
        db.close()
    return sorted(rows)


def assert_clean_failure(result: Result, *needles: str) -> None:
    assert result.exit_code not in (0, None), result.stdout
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert any(n in lines[0] for n in needles), lines[0]


def assert_usable(idx: Path, expected: Content) -> None:
    """verify passes and ask answers only with sentences of the expected state."""
    verify = cli_run("verify", "--index", idx)
    assert verify.exit_code == 0, (verify.stdout, verify.stderr)
    question = expected[len(expected) // 2][2]
    result = cli_run("ask", question, "--index", idx, "--json", "-k", "40", "--context", "1")
    assert result.exit_code == 0, (result.stderr, result.exception)
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert hits and hits[0]["text"] == question
    by_file: dict[str, set[str]] = {}
    for path, _, text in expected:
        by_file.setdefault(path, set()).add(text)
    for hit in hits:
        shown = [*hit["before"], hit["text"], *hit["after"]]
        assert set(shown) <= by_file.get(hit["path"], set()), f"{hit} is not in this state"


def assert_journal_is_wal(idx: Path) -> None:
    db = sqlite3.connect(idx / "index.sqlite")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


# ---------------------------------------------------------------- fixtures


@dataclass
class World:
    """Template folders A and B, their from-scratch contents, an index of A, a build's duration."""

    root: Path
    model: Path
    docs_a: Path
    docs_b: Path
    index_a: Path
    content_a: Content
    content_b: Content
    full_build_seconds: float


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> World:
    root = tmp_path_factory.mktemp("crash")
    docs_a = write_corpus(root / "template_a")
    docs_b = mutate(copy_tree(docs_a, root / "template_b"))
    started = time.perf_counter()
    first = run_build(docs_a, root / "index_a", tiny_model_dir)
    out, err = first.communicate(timeout=120)
    seconds = time.perf_counter() - started
    assert first.returncode == 0, err
    assert json.loads(out)["sentences"]["embedded"] > 3 * config.COMMIT_EVERY
    scratch_b = root / "scratch_b"
    assert cli_run("build", docs_b, "--index", scratch_b, "--model", tiny_model_dir).exit_code == 0
    content_a, content_b = contents(root / "index_a"), contents(scratch_b)
    assert content_a and content_b and content_a != content_b
    return World(
        root, tiny_model_dir, docs_a, docs_b, root / "index_a", content_a, content_b, seconds
    )


# ---------------------------------------------------------------- fault injection

STEPS = ["vectors:1", "vectors:2", "vectors:3", "faiss", "commit"]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("scenario", ["first", "rebuild"])
def test_killed_at_step(world: World, tmp_path: Path, scenario: str, step: str) -> None:
    docs, idx = copy_tree(world.docs_a, tmp_path / "docs"), tmp_path / "idx"
    old: Content | None = None
    if scenario == "rebuild":
        copy_tree(world.index_a, idx)
        old = world.content_a
        mutate(docs)
    new = world.content_a if scenario == "first" else world.content_b
    planned = planned_embeddings(docs, idx, world.model)
    assert planned > 3 * config.COMMIT_EVERY

    killed = run_build(docs, idx, world.model, fault=step)
    _, err = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, err

    committed = step == "commit"
    if old is None and not committed:
        assert contents(idx) is None
        assert_clean_failure(
            cli_run("ask", "river", "--index", idx), "no finished build", "no index"
        )
        assert_clean_failure(cli_run("verify", "--index", idx), "no finished build", "no index")
    else:
        state = new if committed else old
        assert state is not None
        assert contents(idx) == state, "the kill left a mix of old and new"
        assert_usable(idx, state)

    report = completing_build(docs, idx, world.model)
    # vectors:N kept N committed chunks; at faiss and commit every vector was already stored.
    kept = planned
    if step.startswith("vectors"):
        kept = int(step.partition(":")[2]) * config.COMMIT_EVERY
    assert report["sentences"]["embedded"] == planned - kept
    assert contents(idx) == new, "differs from a from-scratch build of the same folder"
    assert_usable(idx, new)
    assert_journal_is_wal(idx)


def test_build_killed_before_wal_mode_was_set(world: World, tmp_path: Path) -> None:
    """A kill right after SQLite created the file leaves it empty; the next build must still
    switch the database to WAL so readers never wait for a build."""
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "index.sqlite").touch()
    docs = copy_tree(world.docs_a, tmp_path / "docs")
    assert completing_build(docs, idx, world.model)["files"]["added"] == FILES
    assert contents(idx) == world.content_a
    assert_journal_is_wal(idx)


SETUP_SENTENCES = [
    "Plug in the cable.",
    "Turn on the power.",
    "Wait for the light.",
    "Open the app.",
]


def killed_first_build(
    tmp_path: Path, model: Path, fault: str, options: Sequence[str] = ()
) -> tuple[Path, Path]:
    """A first build of one four-sentence section (two chunks; every pass fits one batch),
    killed at `fault`; the folder and the index."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(f"# Setup\n\n{' '.join(SETUP_SENTENCES)}\n", encoding="utf-8")
    idx = tmp_path / "idx"
    killed = run_build(docs, idx, model, fault=fault, options=options)
    _, err = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, err
    return docs, idx


def test_a_killed_first_build_resumes_with_the_int8_passages_it_committed(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The int8 passage passes commit first, the sentences' second.
    docs, idx = killed_first_build(tmp_path, tiny_model_dir, "vectors:2")
    report = completing_build(docs, idx, tiny_model_dir)
    assert report["sentences"]["passages_embedded"] == 0  # the int8 passages were kept, not redone
    assert Index(idx, model=tiny_model_dir).status()["passage_precision"] == "int8"


def test_a_build_killed_after_averaging_keeps_the_averaged_vectors(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    options = ("--sections", "averaged", "--passage-precision", "fp32")
    # The second vector commit is the averaged section's (with fp32 passages, one model runs
    # every pass).
    docs, idx = killed_first_build(tmp_path, tiny_model_dir, "vectors:2", options)
    index = Index(idx, model=tiny_model_dir)
    assert index.store.generation() == 0  # nothing committed: no half-made index
    sentences = completing_build(docs, idx, tiny_model_dir, options)["sentences"]
    assert (sentences["embedded"], sentences["sections_averaged"]) == (0, 0)  # all were kept
    assert index.status()["section_vectors"] == "averaged"
    assert index.ask(SETUP_SENTENCES[1], k=1)[0].text == SETUP_SENTENCES[1]


# ---------------------------------------------------------------- random kills

RANDOM_KILLS = 20


def set_state(docs: Path, world: World, state: str) -> Content:
    shutil.rmtree(docs, ignore_errors=True)
    copy_tree(world.docs_a if state == "a" else world.docs_b, docs)
    return world.content_a if state == "a" else world.content_b


def test_random_kills(world: World, tmp_path: Path) -> None:
    """SIGKILL at delays spread over a whole build; every fourth run starts a fresh index."""
    rng = random.Random(7)
    span = world.full_build_seconds
    # Square roots put more kills late, where the build embeds and commits (imports come first).
    spots = [((i + rng.random()) / RANDOM_KILLS) ** 0.5 for i in range(RANDOM_KILLS)]
    delays = [0.05 + (span - 0.05) * spot for spot in spots]
    rng.shuffle(delays)
    docs, idx = tmp_path / "docs", tmp_path / "idx"
    outcomes: list[str] = []
    state = "b"
    for run, delay in enumerate(delays):
        if run % 4 == 0:
            shutil.rmtree(idx, ignore_errors=True)
        state = "a" if state == "b" else "b"
        new = set_state(docs, world, state)
        old = contents(idx)

        build = run_build(docs, idx, world.model)
        try:
            build.wait(timeout=delay)  # killed at `delay` unless it ended before
        except subprocess.TimeoutExpired:
            build.send_signal(signal.SIGKILL)
        _, err = build.communicate(timeout=120)
        assert build.returncode in (0, -signal.SIGKILL), err
        assert "Traceback" not in err

        now = contents(idx)
        assert now in (old, new), f"run {run} (kill after {delay:.2f} s) left a mixed index"
        outcomes.append("old" if now == old else "new")
        if now is None:
            result = cli_run("ask", "river", "--index", idx)
            # A kill before the schema exists reads as "not a usable index" (still one line).
            needles = ("no finished build", "no index", "older schema", "not a usable index")
            assert_clean_failure(result, *needles)
        else:
            assert_usable(idx, now)

        completing_build(docs, idx, world.model)
        assert contents(idx) == new, f"run {run}: differs from a from-scratch build"
    # Which side of the commit each kill lands on depends on machine load; the fault-injection
    # tests above pin both sides deterministically, so only the invariants are asserted here.
    assert len(outcomes) == RANDOM_KILLS
