"""What an operator's machine brings: read-only indexes, full disks, busy databases, model bit
rot, damaged vector data, odd questions, vanished folders, a umask of 000.

Real SQLite files, real FAISS files, real permissions (root's override dropped with setpriv),
a real small tmpfs for a full disk (skipped where it cannot be mounted).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer import Index, vectors
from indexer.errors import (
    ExitCode,
    IndexBusyError,
    IndexDamagedError,
    IndexerError,
    NotWritableError,
    from_sqlite,
)
from indexer.store import decode_vector, encode_vector
from tests.files import without_root_privileges, write_docs

pytestmark = pytest.mark.slow

DOCS = {
    "a.md": "# Backups\n\nThe backup job runs every night at two o'clock.\n",
    "b.md": "# VPN\n\nAsk your buddy about the VPN. The gateway moved last week.\n",
    "c.txt": "Expenses are claimed monthly through the travel desk.\n",
}


def cli(
    *args: object, prefix: list[str] | None = None, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `index` command in a child process."""
    command = [*(prefix or []), sys.executable, "-m", "indexer", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def one_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    return lines[0]


@pytest.fixture
def built(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path, Path]:
    docs = write_docs(tmp_path / "docs", DOCS)
    idx = tmp_path / "idx"
    done = cli("build", docs, "--index", idx, "--model", tiny_model_dir, "-q")
    assert done.returncode == 0, done.stderr
    return docs, idx, tiny_model_dir


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The index directory and its files without write permission, restored afterwards."""
    modes = {p: p.stat().st_mode for p in [path, *path.iterdir()]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(stat.S_IMODE(mode))


# ---------------------------------------------------------------- 1: read-only indexes


def test_a_read_only_index_answers_and_a_build_there_says_why_not(
    built: tuple[Path, Path, Path],
) -> None:
    docs, idx, _ = built
    prefix = without_root_privileges()
    with read_only(idx):
        asked = cli("ask", "backup job", "--index", idx, "--json", prefix=prefix)
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout.splitlines()[0])["path"] == "a.md"
        status = cli("status", "--index", idx, "--json", prefix=prefix)
        assert status.returncode == 0 and json.loads(status.stdout)["files"] == 3, status.stderr
        verify = cli("verify", "--index", idx, prefix=prefix)
        assert verify.returncode == 0, verify.stderr
        (docs / "d.md").write_text("A new page about parking.\n", encoding="utf-8")
        line = one_error(cli("build", docs, "--index", idx, prefix=prefix), ExitCode.CANNOT_WRITE)
        assert "cannot write" in line and "delete" not in line
        repair = cli("verify", "--repair", "--index", idx, prefix=prefix)
        assert repair.returncode in (0, ExitCode.CANNOT_WRITE), repair.stderr
        assert "Traceback" not in repair.stderr
    assert not list(idx.glob("vectors.*.tmp"))


# ---------------------------------------------------------------- 2: temporary conditions


def test_sqlite_failures_are_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    first = sqlite3.connect(path, isolation_level=None)
    first.execute("CREATE TABLE t (x)")
    first.execute("BEGIN IMMEDIATE")
    second = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as busy:
        second.execute("BEGIN IMMEDIATE")
    assert isinstance(from_sqlite(busy.value, path), IndexBusyError)
    first.execute("COMMIT")
    reader = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as readonly:
        reader.execute("INSERT INTO t VALUES (1)")
    assert isinstance(from_sqlite(readonly.value, path), NotWritableError)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(sqlite3.DatabaseError) as notadb:
        sqlite3.connect(garbage).execute("SELECT * FROM sqlite_master")
    assert isinstance(from_sqlite(notadb.value, garbage), IndexDamagedError)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, unmounted afterwards; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_reported_as_such_and_loses_nothing(
    small_disk: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    docs = write_docs(tmp_path / "docs", DOCS)
    idx = small_disk / "idx"
    assert cli("build", docs, "--index", idx, "--model", tiny_model_dir, "-q").returncode == 0
    filler = small_disk / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    write_docs(docs, {f"new{i}.md": f"Page {i} is about parking lot {i}.\n" for i in range(10)})
    line = one_error(cli("build", docs, "--index", idx), ExitCode.NO_SPACE)
    assert "no space" in line and "delete" not in line
    assert not list(idx.glob("vectors.*.tmp")), "temporary files are removed on failure"
    filler.unlink()
    assert cli("verify", "--index", idx).returncode == 0
    asked = cli("ask", "backup job", "--index", idx, "--json")
    assert asked.returncode == 0 and '"a.md"' in asked.stdout
    assert cli("build", docs, "--index", idx, "-q").returncode == 0, "the next run finishes"


def test_a_vector_file_that_cannot_be_written_leaves_no_temp_file(tmp_path: Path) -> None:
    ids = np.arange(10, dtype=np.int64)
    index = vectors.VectorIndex.from_blocks([(ids, np.eye(10, 8, dtype=np.float32))], 8)
    target = tmp_path / "missing-dir" / "vectors.1.faiss"
    with pytest.raises(OSError):
        index.save(target)
    assert not list(tmp_path.rglob("*.tmp"))


# ---------------------------------------------------------------- 3: model bit rot


def damaged_copy(model: Path, target: Path) -> Path:
    """A copy of the model with 4 KiB of 0xFF (NaN as float32) inside model.onnx, mtime kept."""
    shutil.copytree(model, target)
    onnx = target / "model.onnx"
    before = onnx.stat()
    data = bytearray(onnx.read_bytes())
    start = len(data) // 2
    data[start : start + 4096] = b"\xff" * min(4096, len(data) - start)
    onnx.write_bytes(bytes(data))
    os.utime(onnx, ns=(before.st_atime_ns, before.st_mtime_ns))
    return target


def test_model_bit_rot_is_found_and_never_stored(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    docs, idx, model = built
    rotten = damaged_copy(model, tmp_path / "rotten")
    verify = cli("verify", "--index", idx, "--model", rotten)
    assert verify.returncode == ExitCode.UNUSABLE
    assert "model.onnx" in verify.stderr and "differs from model.json" in verify.stderr
    # The same checksum is declared, so the index accepts the model; its vectors must not be.
    fresh = tmp_path / "idx2"
    line = one_error(cli("build", docs, "--index", fresh, "--model", rotten), 1)
    assert "damaged" in line
    assert not Index(fresh, model=rotten).store.exists() or not Index(fresh).store.files()
    asked = cli("ask", "backup job", "--index", idx, "--model", rotten, "--json")
    assert "Traceback" not in asked.stderr and "NaN" not in asked.stdout
    if asked.returncode == 0:
        for line in asked.stdout.splitlines():
            json.loads(line)


def test_vectors_stored_by_a_damaged_model_are_found_and_embedded_again(
    built: tuple[Path, Path, Path],
) -> None:
    docs, idx, _ = built
    with contextlib.closing(sqlite3.connect(idx / "index.sqlite")) as db:
        (vector_id, blob) = db.execute(
            "SELECT v.id, v.vector FROM vectors v JOIN sentences s ON s.vector_id = v.id "
            "JOIN files f ON f.id = s.file_id WHERE f.path = 'a.md' LIMIT 1"
        ).fetchone()
        nan = encode_vector(np.full(len(decode_vector(blob)), np.nan, dtype=np.float32))
        db.execute("UPDATE vectors SET vector = ? WHERE id = ?", [nan, vector_id])
        db.commit()
    asked = cli("ask", "backup job", "--index", idx, "--json")
    assert asked.returncode == 0 and "NaN" not in asked.stdout, asked.stderr
    verify = cli("verify", "--index", idx)
    assert verify.returncode == ExitCode.UNUSABLE and "not numbers" in verify.stderr
    repair = cli("verify", "--repair", "--index", idx)
    assert repair.returncode == 0, repair.stderr
    report = json.loads(cli("build", docs, "--index", idx, "--json").stdout)
    assert report["added"] == ["a.md"] and report["sentences"]["embedded"] > 0
    assert cli("verify", "--index", idx).returncode == 0


# ---------------------------------------------------------------- 5: vector data itself


def test_random_bytes_over_the_vector_data_are_found_and_repaired(
    built: tuple[Path, Path, Path],
) -> None:
    _, idx, _ = built
    (path,) = idx.glob("vectors.*.faiss")
    data = bytearray(path.read_bytes())
    # The flat codes sit before the id map at the end: overwrite their middle.
    start, length = len(data) // 4, len(data) // 3
    data[start : start + length] = np.random.default_rng(1).bytes(length)
    path.write_bytes(bytes(data))
    verify = cli("verify", "--index", idx)
    assert verify.returncode == ExitCode.UNUSABLE and "differ" in verify.stderr, verify.stderr
    asked = cli("ask", "backup job", "--index", idx, "--json")
    assert asked.returncode == 0, asked.stderr
    assert all(json.loads(line)["dense_score"] <= 1.01 for line in asked.stdout.splitlines())
    assert cli("verify", "--index", idx).returncode == 0, "the ask repaired it"


# ---------------------------------------------------------------- 6: every question is accepted


def test_odd_questions_get_answers_not_tracebacks(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, idx, model = built
    undecodable = subprocess.run(
        [sys.executable, "-m", "indexer", "ask", b"backup \xff\xfe job", "--index", str(idx)],
        capture_output=True,
        timeout=300,
    )
    assert undecodable.returncode == 0 and b"Traceback" not in undecodable.stderr
    long = "What time does the backup job run at night? " * 60
    asked = cli("ask", long, "--index", idx, "--json")
    assert asked.returncode == 0, asked.stderr
    assert "note: the question is longer than the model reads" in asked.stderr
    empty_docs = write_docs(tmp_path / "empty-docs", {"empty.md": ""})
    empty_idx = tmp_path / "empty-idx"
    cli("build", empty_docs, "--index", empty_idx, "--model", model, "-q")
    for mode in ("hybrid", "dense", "keyword"):
        done = cli("ask", "backup", "--index", empty_idx, "--mode", mode)
        assert "Traceback" not in done.stderr and done.returncode in (0, 1, 4), done.stderr


# ---------------------------------------------------------------- 10: vanished folders, umask


def test_an_emptied_folder_does_not_wipe_the_index_unasked(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    docs = write_docs(
        tmp_path / "docs", {f"f{i}.md": f"Page number {i} is here.\n" for i in range(12)}
    )
    idx = tmp_path / "idx"
    assert cli("build", docs, "--index", idx, "--model", tiny_model_dir, "-q").returncode == 0
    for path in docs.iterdir():
        path.unlink()
    line = one_error(cli("build", docs, "--index", idx), ExitCode.FOLDER_VANISHED)
    assert "--confirm-delete" in line
    assert json.loads(cli("status", "--index", idx, "--json").stdout)["files"] == 12
    done = cli("build", docs, "--index", idx, "--confirm-delete", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["files"]["deleted"] == 12


def test_modes_do_not_follow_a_umask_of_000(tmp_path: Path, tiny_model_dir: Path) -> None:
    docs = write_docs(tmp_path / "docs", DOCS)
    idx = tmp_path / "idx"
    code = (
        "import os, sys; os.umask(0); from indexer.cli import main; "
        "sys.argv = ['index', *sys.argv[1:]]; main()"
    )
    args = ["build", str(docs), "--index", str(idx), "--model", str(tiny_model_dir), "-q"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for path in [idx, *idx.iterdir()]:
        assert not path.stat().st_mode & stat.S_IWOTH, f"{path.name} is world-writable"


# ---------------------------------------------------------------- 11: a build confirms its commit


def test_a_build_whose_wal_vanishes_does_not_claim_success(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import indexer.build

    docs = write_docs(tmp_path / "docs", DOCS)
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    index.build(docs)
    write_docs(docs, {"d.md": "A new page about the parking garage.\n"})
    real = indexer.build.checkpoint

    def remove_wal(step: str) -> None:  # the crash-test hook, used to delete the WAL instead
        real(step)
        if step == "commit":
            (index.path / "index.sqlite-wal").unlink(missing_ok=True)

    monkeypatch.setattr(indexer.build, "checkpoint", remove_wal)
    with pytest.raises(IndexerError, match="could not confirm its commit"):
        index.build(docs)


def test_a_long_read_transaction_does_not_stall_a_deleting_build(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import indexer.store

    monkeypatch.setattr(indexer.store, "RECLAIM_MIN_PAGES", 8)  # small files, pages to give back
    words = " ".join(f"word{j}" for j in range(40))
    docs = write_docs(
        tmp_path / "docs", {f"f{i}.txt": f"File {i} {words}.\n" * 20 for i in range(40)}
    )
    Index(tmp_path / "idx", model=tiny_model_dir).build(docs)
    reader = sqlite3.connect(tmp_path / "idx" / "index.sqlite", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM sentences").fetchone()  # holds its snapshot
    for i in range(30):
        (docs / f"f{i}.txt").unlink()
    done = threading.Event()

    def build() -> None:  # its own Index: a SQLite connection stays in its thread
        Index(tmp_path / "idx", model=tiny_model_dir).build(docs, confirm_delete=True)
        done.set()

    worker = threading.Thread(target=build, daemon=True)
    worker.start()
    # The WAL checkpoint used to wait the whole busy timeout (30 s) for the reader.
    finished = done.wait(timeout=20)
    reader.execute("COMMIT")
    reader.close()
    worker.join()
    assert finished, "the build waited for a reader"
