"""A folder of hostile files, made by the test: every build finishes, every file is indexed or
reported with a one-line reason, memory stays flat, and nothing indexed is lost while unreadable.

Builds run as subprocesses of the real CLI, so that peak memory can be measured and, when the
tests run as root, file permissions can be enforced (setpriv drops root's override).
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

import indexer.build as build_module
from indexer import Index, formats
from indexer.build import BAD_NAME
from indexer.load import (
    BROKEN_LINK,
    LINK_LOOP,
    LINK_OUTSIDE,
    NOT_REGULAR,
    UNDECODABLE,
    WALKED_BEFORE,
)
from tests import assets
from tests.files import without_root_privileges, write

pytestmark = pytest.mark.slow

#: Sentences that must be found afterwards, by file.
GOOD = {
    "good/guide.md": "The staging server restarts every Sunday at midnight.",
    "good/sjis.txt": "経費の精算は毎月二十日までに申請してください。",
    "good/utf16-no-bom.txt": "The VPN gateway moved to a new address last week.",
    "good/page.html": "有給休暇は一年に二十日まで取得できます。",
    "good/report.pdf": "The backup job runs every night at two o'clock.",
    "good/policy.docx": "Questions go to the travel desk in building B.",
    "good/deck.pptx": "Quarterly numbers are published on the intranet.",
    "good/notes.odt": "The library closes early on public holidays.",
    "good/name with spaces.md": "File names with spaces are fine.",
    "good/new\nline.md": "Even a newline in a file name is fine.",
    "nested/" + "/".join(f"d{i}" for i in range(60)) + "/deep.md": "Sixty folders down.",
}
EXPECTED_SKIPS = {
    "bad/binary.txt": "binary file",
    "bad/invalid-utf8.md": UNDECODABLE,
    "pdf/encrypted.pdf": formats.ENCRYPTED_PDF,
    "pdf/corrupt.pdf": formats.CORRUPT_PDF,
    "pdf/scanned.pdf": formats.NO_TEXT_LAYER,
    "office/bomb.docx": formats.ZIP_BOMB,
    "office/old-word.docx": formats.LEGACY_OFFICE,
    "links/broken.md": BROKEN_LINK,
    "links/self.md": LINK_LOOP,
    "links/loop": WALKED_BEFORE,
    "caf\\udce9.md": BAD_NAME,
}
SECRET = "secret.md"

BUILD = """
import resource, subprocess, sys
cap, command = sys.argv[1], sys.argv[2:]
if cap != "default":
    at = command.index("-m")
    command[at : at + 2] = ["-c", "from indexer import config; "
        f"config.MAX_FILE_CHARS = {cap}; from indexer.cli import main; main()"]
result = subprocess.run(command, capture_output=True, text=True)
sys.stdout.write(result.stdout)
sys.stderr.write(result.stderr)
print(f"maxrss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(result.returncode)
"""


@dataclass
class Run:
    code: int
    report: dict
    stderr: str
    peak_mb: float


def build(root: Path, index: Path, model: Path, *options: str, cap: int | None = None) -> Run:
    """`index build --json` in a child process: exit code, report, stderr, peak memory.

    `cap` lowers config.MAX_FILE_CHARS in the child.
    """
    command = [
        *without_root_privileges(),
        sys.executable,
        "-m",
        "indexer",
        "build",
        str(root),
        "--index",
        str(index),
        "--model",
        str(model),
        "--json",
        *options,
    ]
    result = subprocess.run(
        [sys.executable, "-c", BUILD, str(cap or "default"), *command],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = result.stderr.strip().splitlines()
    peak = int(lines[-1].removeprefix("maxrss_kb=")) / 1024
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout) if result.stdout.strip() else {}
    return Run(result.returncode, report, "\n".join(lines[:-1]), peak)


def skipped(run: Run) -> dict[str, str]:
    return {entry["path"]: entry["reason"] for entry in run.report["skipped"]}


def make_corpus(root: Path) -> Path:
    """Every kind of file a real folder holds, good and bad."""
    write(root / "good/guide.md", f"# Operations\n\n{GOOD['good/guide.md']}\n")
    write(root / "good/sjis.txt", (GOOD["good/sjis.txt"] + "\r\n").encode("cp932"))
    write(root / "good/utf16-no-bom.txt", GOOD["good/utf16-no-bom.txt"].encode("utf-16-le"))
    page = f'<meta charset="shift_jis"><h1>休暇</h1><p>{GOOD["good/page.html"]}</p>'
    write(root / "good/page.html", page.encode("cp932"))
    write(
        root / "good/report.pdf",
        assets.pdf([[("Backups", 18)], [(GOOD["good/report.pdf"], 12)]]),
    )
    write(root / "good/policy.docx", assets.word())
    deck = [("Results", [GOOD["good/deck.pptx"]])]
    write(root / "good/deck.pptx", assets.slides(deck))
    write(root / "good/notes.odt", assets.odt(f"<text:p>{GOOD['good/notes.odt']}</text:p>"))
    for rel, sentence in GOOD.items():
        if rel.endswith(".md") and rel != "good/guide.md":
            write(root / rel, sentence + "\n")
    write(root / "good/empty.md", b"")
    rng = random.Random(7)
    write(root / "long/minified.txt", "var a=function(b){return b+1};if(a(1)){x=[1,2,3]}" * 4000)
    write(root / "long/base64.md", base64.b64encode(rng.randbytes(150_000)))
    mixed = "UTF-8: 日本語\n".encode() + "CP932: 日本語\n".encode("cp932") + "é\n".encode("latin-1")
    write(root / "bad/mixed-encodings.txt", mixed)
    write(root / "bad/binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    write(root / "bad/invalid-utf8.md", bytes(rng.randrange(128, 256) for _ in range(400)))
    write(
        root / "pdf/encrypted.pdf",
        assets.encrypted_pdf(assets.pdf([[("Top secret.", 12)]]), user_password="pw"),
    )
    write(root / "pdf/corrupt.pdf", b"%PDF-1.7\n" + rng.randbytes(5000))
    write(root / "pdf/scanned.pdf", assets.scanned_pdf())
    write(root / "office/bomb.docx", assets.zip_bomb(300 << 20))
    write(root / "office/old-word.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2000))
    (root / "links").mkdir()
    os.symlink(root / "links/missing.md", root / "links/broken.md")
    os.symlink("self.md", root / "links/self.md")
    os.symlink(root, root / "links/loop")
    with open(os.fsencode(root) + b"/caf\xe9.md", "wb") as odd:
        odd.write(b"A file name that is not UTF-8.")
    secret = write(root / SECRET, "Nobody may read this sentence.")
    secret.chmod(0)
    return root


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Run]:
    root = make_corpus(tmp_path_factory.mktemp("hostile") / "docs")
    index = root.parent / "idx"
    return index, build(root, index, tiny_model_dir)


def test_every_bad_file_is_reported_with_a_one_line_reason(hostile: tuple[Path, Run]) -> None:
    _, run = hostile
    assert run.code == 5, run.stderr  # the mode-000 file could not be read
    reasons = skipped(run)
    mixed = reasons.pop("bad/mixed-encodings.txt", None)
    assert mixed in (None, UNDECODABLE)
    assert reasons == {**EXPECTED_SKIPS, SECRET: "permission denied"}
    assert all("\n" not in reason for reason in reasons.values())
    assert run.report["skipped_by_reason"] == dict(
        Counter(entry["reason"] for entry in run.report["skipped"])
    )


def test_every_good_file_is_indexed_and_found(hostile: tuple[Path, Run]) -> None:
    index_path, run = hostile
    added = set(run.report["added"])
    assert set(GOOD) | {"good/empty.md", "long/minified.txt", "long/base64.md"} <= added
    assert run.report["truncated"] == []
    assert run.report["sentences"]["windowed"] > 0
    index = Index(index_path)
    for path, sentence in GOOD.items():
        hits = index.ask(sentence, k=3, mode="keyword")
        assert (path, sentence) in {(hit.path, hit.text) for hit in hits}, path
    assert index.verify().ok


def test_reports_and_exit_codes_on_stderr(hostile: tuple[Path, Run]) -> None:
    _, run = hostile
    assert run.stderr == ""  # --json: the report is the only output
    assert run.peak_mb < 400, f"peak memory {run.peak_mb:.0f} MB"


def test_unreadable_files_keep_their_indexed_version_until_gone(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root, index = tmp_path / "docs", tmp_path / "idx"
    write(root / "a.md", "Alpha document about the cafeteria menu.")
    write(root / "locked/b.md", "Bravo document about parking permits.")
    write(root / "c.md", "Charlie document about the fire drill.")
    assert build(root, index, tiny_model_dir).code == 0
    # Changed, so a build must read it again, and then unreadable.
    write(root / "a.md", "Alpha document, edited, about the cafeteria menu.").chmod(0)
    (root / "locked").chmod(0)
    try:
        run = build(root, index, tiny_model_dir)
        assert run.code == 5
        assert skipped(run) == {"a.md": "permission denied", "locked/": "permission denied"}
        assert sorted(run.report["kept_unreadable"]) == ["a.md", "locked/b.md"]
        assert run.report["deleted"] == []
        found = {hit.path for hit in Index(index).ask("document", k=10, mode="keyword")}
        assert found == {"a.md", "locked/b.md", "c.md"}
    finally:
        (root / "a.md").chmod(0o644)
        (root / "locked").chmod(0o755)
    (root / "a.md").unlink()
    shutil.rmtree(root / "locked")
    run = build(root, index, tiny_model_dir)
    assert run.code == 0 and sorted(run.report["deleted"]) == ["a.md", "locked/b.md"]


def test_files_that_vanish_or_shrink_between_listing_and_reading(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "docs"
    write(root / "gone.md", "This file is deleted while the build runs.")
    write(root / "shrunk.md", "This file is cut short. Everything after the first sentence goes.")
    write(root / "stays.md", "This file stays as it is.")
    read = build_module.read_document

    def racing(folder: Path, info: object, *args: object) -> object:
        if info.path == "gone.md":  # type: ignore[attr-defined]
            (folder / "gone.md").unlink()
        if info.path == "shrunk.md":  # type: ignore[attr-defined]
            (folder / "shrunk.md").write_text("This file is cut short.")
        return read(folder, info, *args)

    monkeypatch.setattr(build_module, "read_document", racing)
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    report = index.build(root)
    assert [(s.path, s.reason, s.transient) for s in report.skipped] == [
        ("gone.md", "file vanished while reading", True)
    ]
    assert sorted(report.added) == ["shrunk.md", "stays.md"]
    texts = {hit.text for hit in index.ask("file", k=10, mode="keyword")}
    assert "This file is cut short." in texts and not any("Everything" in t for t in texts)
    monkeypatch.undo()
    # The next build sees the file as it is now, with the size and time it really has.
    assert index.build(root).unchanged == 2


def test_200_mb_single_line_file_is_streamed_with_flat_memory(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    words = random.Random(3).choices(["alpha", "beta", "gamma", "delta", "kappa", "omega"], k=2000)
    block = (" ".join(words) + " ").encode()
    with open(root / "huge.txt", "wb") as out:
        for _ in range(200_000_000 // len(block) + 1):
            out.write(block)
    write(root / "small.md", "A small file next to a huge one.")
    run = build(root, tmp_path / "idx", tiny_model_dir, cap=2_000_000)
    assert run.code == 0, run.stderr
    assert run.report["truncated"] == ["huge.txt"]
    assert sorted(run.report["added"]) == ["huge.txt", "small.md"]
    # 200 MB were hashed; only the first 2 M characters (and their sentences) were held.
    assert run.peak_mb < 400, f"peak memory {run.peak_mb:.0f} MB"


def test_special_files_are_reported_and_a_fifo_indexignore_does_not_hang(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root, index = tmp_path / "docs", tmp_path / "idx"
    write(root / "good.md", "A plain document next to special files.")
    os.mkfifo(root / ".indexignore")  # opening it for reading would wait for a writer for ever
    os.mkfifo(root / "pipe.md")
    os.symlink("/dev/zero", root / "zero.txt")
    expected = {".indexignore": NOT_REGULAR, "pipe.md": NOT_REGULAR, "zero.txt": NOT_REGULAR}
    command = [sys.executable, "-m", "indexer", "build", str(root), "--index", str(index)]
    plain = subprocess.run(
        [*command, "--model", str(tiny_model_dir)], capture_output=True, text=True, timeout=300
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr.splitlines() == [f"skipped {path}: {why}" for path, why in expected.items()]
    assert "1 added" in plain.stdout and "3 skipped" in plain.stdout
    run = build(root, tmp_path / "idx-json", tiny_model_dir)
    assert (run.code, skipped(run), run.report["added"]) == (0, expected, ["good.md"])


def test_a_race_cannot_bring_in_an_outside_file(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document swapped for a link to an outside file between the walk and the read."""
    root = tmp_path / "docs"
    write(root / "doc.md", "The document as the walk saw it.")
    write(root / "other.md", "Another document.")
    secret = write(tmp_path / "secret.md", "The secret outside the folder.")
    read = build_module.read_document

    def racing(folder: Path, info: object, *args: object) -> object:
        if info.path == "doc.md":  # type: ignore[attr-defined]
            (folder / "doc.md").unlink()
            os.symlink(secret, folder / "doc.md")
        return read(folder, info, *args)

    monkeypatch.setattr(build_module, "read_document", racing)
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    report = index.build(root)
    assert [(s.path, s.reason) for s in report.skipped] == [("doc.md", LINK_OUTSIDE)]
    assert report.added == ["other.md"]
    assert not any("secret" in hit.text for hit in index.ask("secret outside", k=10))
