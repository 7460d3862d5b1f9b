"""Walking folders and decoding files: encodings, skipped entries, symlinks, odd names."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import config
from indexer.errors import FileSkipped
from indexer.load import (
    BROKEN_LINK,
    LINK_LOOP,
    LINK_NOT_FOLLOWED,
    LINK_OUTSIDE,
    NOT_REGULAR,
    UNDECODABLE,
    WALKED_BEFORE,
    FileInfo,
    Selection,
    Symlinks,
    decode,
    read_document,
    walk,
)
from tests.files import write

JAPANESE = (
    "吾輩は猫である。名前はまだ無い。\r\n"
    "どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所でニャーニャー泣いていた。\r\n"
)
EXPECTED = JAPANESE.replace("\r\n", "\n")
ENCODED = {
    "utf8.md": JAPANESE.encode("utf-8"),
    "bom.md": b"\xef\xbb\xbf" + JAPANESE.encode("utf-8"),
    "utf16le.txt": b"\xff\xfe" + JAPANESE.encode("utf-16-le"),
    "utf16be.txt": b"\xfe\xff" + JAPANESE.encode("utf-16-be"),
    "sjis.txt": JAPANESE.encode("cp932"),
    "eucjp.rst": JAPANESE.encode("euc-jp"),
}
ENCODINGS = {
    "utf8.md": "utf-8",
    "bom.md": "utf-8-sig",
    "utf16le.txt": "utf-16",
    "utf16be.txt": "utf-16",
    "sjis.txt": "cp932",
    "eucjp.rst": "euc-jp",
}
_RANDOM = random.Random(1)
UNDECODABLE_BYTES = bytes(_RANDOM.randrange(128, 256) for _ in range(300))
BINARY_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder with every kind of file and folder the walker must handle."""
    root = tmp_path / "root"
    for name, data in ENCODED.items():
        write(root / "enc" / name, data)
    write(root / "bad" / "undecodable.txt", UNDECODABLE_BYTES)
    write(root / "bad" / "binary.txt", BINARY_BYTES)
    write(root / "empty.md", b"")
    write(root / "name with spaces.md", "Spaces are fine in file names.")
    write(root / "UPPER.MD", "Suffixes are matched without case.")
    write(root / "notes.markdown", "A markdown file with the long suffix.")
    write(root / "image.png", "not a text suffix")
    write(root / ".hidden.md", "hidden file")
    write(root / ".hidden" / "secret.md", "hidden folder")
    write(root / ".git" / "config.md", "git internals")
    write(root / "node_modules" / "pkg" / "README.md", "dependency docs")
    write(root / "env" / "pyvenv.cfg", "home = /usr/bin")
    write(root / "env" / "lib" / "README.md", "a virtual environment")
    write(tmp_path / "outside" / "secret.md", "outside the root")
    os.symlink(root / "enc", root / "enc" / "loop")
    os.symlink(root / "missing.md", root / "broken.md")
    os.symlink(tmp_path / "outside", root / "escape")
    os.symlink(tmp_path / "outside" / "secret.md", root / "escape.md")
    os.symlink(root / "empty.md", root / "link-to-empty.md")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.md"), "wb") as handle:
        handle.write(b"A file name that is not UTF-8.")
    return root


# ---------------------------------------------------------------- walk


def test_walk_lists_only_indexable_files_in_sorted_order(tree: Path) -> None:
    paths = [info.path for info in walk(tree)]
    expected = [
        "UPPER.MD",
        "bad/binary.txt",
        "bad/undecodable.txt",
        os.fsdecode(b"caf\xe9.md"),
        "empty.md",
        "enc/bom.md",
        "enc/eucjp.rst",
        "enc/sjis.txt",
        "enc/utf16be.txt",
        "enc/utf16le.txt",
        "enc/utf8.md",
        "link-to-empty.md",
        "name with spaces.md",
        "notes.markdown",
    ]
    assert paths == sorted(expected)
    assert paths == expected


def test_walk_reports_stat_values(tree: Path) -> None:
    info = next(info for info in walk(tree) if info.path == "enc/utf8.md")
    status = (tree / "enc" / "utf8.md").stat()
    stat_values = (status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino)
    assert info == FileInfo("enc/utf8.md", *stat_values)


def test_walk_is_deterministic_and_only_stats(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = list(walk(tree))

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("walk must not open files")

    monkeypatch.setattr(os, "open", no_open)
    monkeypatch.setattr("builtins.open", no_open)
    assert list(walk(tree)) == first


def test_walk_follows_symlinked_folders_inside_the_root(tmp_path: Path) -> None:
    write(tmp_path / "real" / "doc.md", "A document in a real folder.")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    # The same folder reached twice is listed once, under the first path in sorted order.
    assert [info.path for info in walk(tmp_path)] == ["alias/doc.md"]


def test_walk_of_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(walk(tmp_path / "nope"))


def test_walk_skips_unreadable_folder(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read any folder")
    write(tmp_path / "locked" / "doc.md", "Locked away.")
    write(tmp_path / "open.md", "Readable.")
    (tmp_path / "locked").chmod(0)
    try:
        assert [info.path for info in walk(tmp_path)] == ["open.md"]
    finally:
        (tmp_path / "locked").chmod(0o755)


# ---------------------------------------------------------------- read_document


@pytest.mark.parametrize("name", sorted(ENCODED))
def test_every_encoding_decodes_to_the_same_text(tree: Path, name: str) -> None:
    doc = read_document(tree, next(i for i in walk(tree) if i.path == f"enc/{name}"))
    assert doc.text == EXPECTED
    assert doc.encoding == ENCODINGS[name]
    assert doc.sha256 == hashlib.sha256(ENCODED[name]).hexdigest()
    assert doc.size == len(ENCODED[name])
    assert doc.truncated is False


def test_formats_come_from_the_suffix(tree: Path) -> None:
    formats = {
        info.path: read_document(tree, info).format
        for info in walk(tree)
        if not info.path.startswith("bad/")
    }
    assert formats["enc/eucjp.rst"] == "rst"
    assert formats["enc/sjis.txt"] == "text"
    assert formats["UPPER.MD"] == "markdown"
    assert formats["notes.markdown"] == "markdown"


def test_empty_and_oddly_named_files_read_fine(tree: Path) -> None:
    empty = read_document(tree, FileInfo("empty.md", 0, 0))
    assert (empty.text, empty.encoding) == ("", "utf-8")
    odd = read_document(tree, FileInfo(os.fsdecode(b"caf\xe9.md"), 0, 0))
    assert odd.text == "A file name that is not UTF-8."
    assert read_document(tree, FileInfo("name with spaces.md", 0, 0)).text.startswith("Spaces")


def test_binary_and_undecodable_files_are_skipped(tree: Path) -> None:
    with pytest.raises(FileSkipped) as binary:
        read_document(tree, FileInfo("bad/binary.txt", 0, 0))
    assert binary.value.reason == "binary file"
    assert binary.value.path == "bad/binary.txt"
    with pytest.raises(FileSkipped) as undecodable:
        read_document(tree, FileInfo("bad/undecodable.txt", 0, 0))
    assert undecodable.value.reason == UNDECODABLE


def test_vanished_file_and_directory_are_skipped(tree: Path) -> None:
    with pytest.raises(FileSkipped, match="file vanished while reading"):
        read_document(tree, FileInfo("gone.md", 0, 0))
    with pytest.raises(FileSkipped, match="not a regular file"):
        read_document(tree, FileInfo("enc", 0, 0))


def test_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.md")
    assert list(walk(tmp_path)) == []
    with pytest.raises(FileSkipped, match="not a regular file"):
        read_document(tmp_path, FileInfo("pipe.md", 0, 0))


def test_permission_denied(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read a mode-000 file")
    path = write(tmp_path / "secret.md", "Nobody may read this.")
    path.chmod(0)
    try:
        assert [info.path for info in walk(tmp_path)] == ["secret.md"]
        with pytest.raises(FileSkipped, match="permission denied"):
            read_document(tmp_path, FileInfo("secret.md", 0, 0))
    finally:
        path.chmod(0o644)


def test_permission_error_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "doc.md", "Readable by root, so the error is simulated.")

    def denied(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(FileSkipped, match="permission denied"):
        read_document(tmp_path, FileInfo("doc.md", 0, 0))


def test_newlines_are_normalised(tmp_path: Path) -> None:
    write(tmp_path / "mixed.txt", b"one\r\ntwo\rthree\n")
    assert read_document(tmp_path, FileInfo("mixed.txt", 0, 0)).text == "one\ntwo\nthree\n"


def test_long_text_is_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "MAX_FILE_CHARS", 10)
    data = ("あいうえお" * 30).encode("utf-8")
    write(tmp_path / "long.txt", data)
    doc = read_document(tmp_path, FileInfo("long.txt", 0, 0))
    assert doc.text == "あいうえおあいうえお"
    assert doc.truncated is True
    assert doc.sha256 == hashlib.sha256(data).hexdigest()  # of all bytes, not the prefix


# ---------------------------------------------------------------- decode


def test_euc_jp_and_cp932_are_told_apart() -> None:
    text = "本日は晴天なり。カタカナとひらがなと漢字が混ざった普通の日本語の文章です。"
    assert decode(text.encode("euc-jp")) == (text, "euc-jp")
    assert decode(text.encode("cp932")) == (text, "cp932")
    # Bytes valid in both: EUC-JP "あいう" also reads as half-width kana in CP932.
    assert "あいう".encode("euc-jp").decode("cp932") == "､｢､､､ｦ"
    assert decode("あいう".encode("euc-jp")) == ("あいう", "euc-jp")


def test_half_width_katakana_in_cp932_still_decodes() -> None:
    text = "申請はｷﾝﾀｲｼｽﾃﾑから行ってください。前日の17時までに申請すること。"
    assert decode(text.encode("cp932")) == (text, "cp932")


def test_utf16_without_bom_is_recognised() -> None:
    text = "Plain English text saved as UTF-16 without a byte order mark."
    assert decode(text.encode("utf-16-le")) == (text, "utf-16-le")
    assert decode(text.encode("utf-16-be")) == (text, "utf-16-be")


def test_latin1_comes_from_a_confident_guess() -> None:
    text = "Müller sagt, die Straße ist schön. Übermäßig viel Käse gab es über die Jahre."
    decoded, _ = decode(text.encode("latin-1"))
    assert decoded == text


def test_cp1252_is_not_mistaken_for_japanese() -> None:
    data = "Ceci est un texte en français, très élégant, à l'école.".encode("cp1252")
    with pytest.raises(ValueError):
        decode(data)


def test_undecodable_bytes_raise() -> None:
    with pytest.raises(ValueError):
        decode(UNDECODABLE_BYTES)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512))
def test_decode_never_crashes(data: bytes) -> None:
    try:
        text, encoding = decode(data)
    except ValueError:
        return
    assert isinstance(text, str)
    assert isinstance(encoding, str)


# ---------------------------------------------------------------- selecting files


def listed(root: Path, selection: Selection | None = None) -> tuple[list[str], list[tuple]]:
    """Paths a walk lists, and what it reported passing by."""
    skipped: list[tuple[str, str]] = []
    paths = [
        info.path
        for info in walk(
            root, selection or Selection(), on_skip=lambda s: skipped.append((s.path, s.reason))
        )
    ]
    return paths, skipped


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for rel in (
        "README.md",
        "docs/guide.md",
        "docs/api.rst",
        "docs/drafts/todo.md",
        "docs/drafts/keep.md",
        "build/out.html",
        "notes/a.txt",
        "notes/b.pdf",
        "notes/deep/c.txt",
    ):
        write(root / rel, "Some text.")
    return root


def test_indexignore_files_use_gitignore_syntax(project: Path) -> None:
    write(project / ".indexignore", "build/\n*.pdf\n# a comment\n")
    write(project / "docs" / ".indexignore", "drafts/*\n!drafts/keep.md\n")
    paths, skipped = listed(project)
    assert paths == [
        "README.md",
        "docs/api.rst",
        "docs/drafts/keep.md",
        "docs/guide.md",
        "notes/a.txt",
        "notes/deep/c.txt",
    ]
    assert skipped == []


def test_exclude_and_include_patterns(project: Path) -> None:
    paths, _ = listed(project, Selection(exclude=("docs/", "deep")))
    assert paths == ["README.md", "build/out.html", "notes/a.txt", "notes/b.pdf"]
    paths, _ = listed(project, Selection(include=("*.txt", "/README.md")))
    assert paths == ["README.md", "notes/a.txt", "notes/deep/c.txt"]
    paths, _ = listed(project, Selection(include=("docs/",), exclude=("drafts/",)))
    assert paths == ["docs/api.rst", "docs/guide.md"]


def test_command_line_exclude_wins_over_indexignore(project: Path) -> None:
    write(project / ".indexignore", "!notes/a.txt\n")
    paths, _ = listed(project, Selection(exclude=("notes/",)))
    assert not any(path.startswith("notes/") for path in paths)


def test_bad_lines_in_indexignore_are_dropped(project: Path) -> None:
    write(project / ".indexignore", "notes/\n!\n")
    paths, _ = listed(project)
    assert "notes/a.txt" not in paths and "README.md" in paths


def test_symlink_options_and_reports(tree: Path) -> None:
    paths, skipped = listed(tree)
    assert dict(skipped) == {
        "broken.md": BROKEN_LINK,
        "enc/loop": WALKED_BEFORE,
        "escape": LINK_OUTSIDE,
        "escape.md": LINK_OUTSIDE,
    }
    everything, _ = listed(tree, Selection(symlinks="all"))
    assert set(everything) - set(paths) == {"escape.md", "escape/secret.md"}
    no_links, skipped = listed(tree, Selection(symlinks="none"))
    assert set(paths) - set(no_links) == {"link-to-empty.md"}
    assert skipped == []
    # What .indexignore leaves out is not reported.
    write(tree / ".indexignore", "escape*\nbroken.md\n")
    assert dict(listed(tree)[1]) == {"enc/loop": WALKED_BEFORE}


def test_self_referencing_symlink_is_a_loop(tmp_path: Path) -> None:
    os.symlink("self.md", tmp_path / "self.md")
    assert listed(tmp_path) == ([], [("self.md", LINK_LOOP)])


def test_unreadable_folder_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read any folder")
    write(tmp_path / "locked" / "doc.md", "Locked away.")
    (tmp_path / "locked").chmod(0)
    try:
        assert listed(tmp_path) == ([], [("locked/", "permission denied")])
    finally:
        (tmp_path / "locked").chmod(0o755)


# ---------------------------------------------------------------- large files


def test_large_file_is_hashed_whole_and_read_up_to_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "MAX_FILE_CHARS", 1000)
    data = b"word " * 1_000_000  # 5 MB, one line
    write(tmp_path / "big.txt", data)
    doc = read_document(tmp_path, FileInfo("big.txt", 0, 0))
    assert doc.truncated and len(doc.text) == 1000
    assert doc.sha256 == hashlib.sha256(data).hexdigest() and doc.size == len(data)


def test_large_html_is_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "MAX_FILE_CHARS", 5000)
    data = b"<html><body>" + b"<p>A paragraph of a very large page.</p>\n" * 200_000
    write(tmp_path / "big.html", data)
    doc = read_document(tmp_path, FileInfo("big.html", 0, 0))
    assert doc.truncated and len(doc.text) <= 5000 and doc.encoding == "utf-8"
    assert doc.sha256 == hashlib.sha256(data).hexdigest()


def test_file_changed_between_hash_and_parse_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer import formats

    write(tmp_path / "doc.pdf", b"%PDF-1.4 placeholder")

    def grow(fmt: str, handle: object, *, max_chars: int) -> formats.Extracted:
        with open(tmp_path / "doc.pdf", "ab") as out:
            out.write(b"appended while the build read the file")
        return formats.Extracted("text", False)

    monkeypatch.setattr(formats, "extract", grow)
    with pytest.raises(FileSkipped, match="changed while reading"):
        read_document(tmp_path, FileInfo("doc.pdf", 0, 0))


# ---------------------------------------------------------------- races and special files

OUTSIDE_TEXT = "Outside the folder: this text must never be indexed."


@pytest.fixture
def raced(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of two documents and, beside it, a folder of outside ones of the same names."""
    root = tmp_path / "docs"
    write(root / "doc.md", "Inside the folder.")
    write(root / "sub" / "deep.md", "Inside, one folder down.")
    outside = tmp_path / "outside"
    write(outside / "doc.md", OUTSIDE_TEXT)
    write(outside / "deep.md", OUTSIDE_TEXT)
    return root, outside


def swap_for_links(root: Path, outside: Path) -> None:
    """What a race does between the walk and the read: the file, and the folder above the
    other file, become links leading outside."""
    (root / "doc.md").unlink()
    os.symlink(outside / "doc.md", root / "doc.md")
    shutil.rmtree(root / "sub")
    os.symlink(outside, root / "sub")


@pytest.mark.parametrize(
    ("symlinks", "reason"), [("inside", LINK_OUTSIDE), ("none", LINK_NOT_FOLLOWED)]
)
def test_a_file_swapped_for_a_link_after_the_walk_is_not_read(
    raced: tuple[Path, Path], symlinks: Symlinks, reason: str
) -> None:
    root, outside = raced
    listing = list(walk(root, Selection(symlinks=symlinks)))
    assert [info.path for info in listing] == ["doc.md", "sub/deep.md"]
    swap_for_links(root, outside)
    for info in listing:
        with pytest.raises(FileSkipped) as skipped:
            read_document(root, info, symlinks)
        assert (skipped.value.reason, skipped.value.transient) == (reason, False)


def test_all_follows_a_link_that_appeared_after_the_walk(raced: tuple[Path, Path]) -> None:
    root, outside = raced
    listing = list(walk(root, Selection(symlinks="all")))
    swap_for_links(root, outside)
    assert {read_document(root, info, "all").text for info in listing} == {OUTSIDE_TEXT}


def test_a_link_swapped_in_that_stays_inside_is_read_with_inside(tmp_path: Path) -> None:
    write(tmp_path / "doc.md", "The first version.")
    write(tmp_path / "other.md", "Another document in the same folder.")
    (info,) = (i for i in walk(tmp_path) if i.path == "doc.md")
    (tmp_path / "doc.md").unlink()
    os.symlink("other.md", tmp_path / "doc.md")
    assert read_document(tmp_path, info).text == "Another document in the same folder."
    with pytest.raises(FileSkipped, match="--symlinks none"):
        read_document(tmp_path, info, "none")


def test_special_files_named_like_documents_are_reported(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.md")
    os.symlink("/dev/zero", tmp_path / "zero.txt")
    os.symlink("pipe.md", tmp_path / "link-to-pipe.md")
    os.mkfifo(tmp_path / "pipe.png")  # not named like a document: passed by in silence
    expected = [("link-to-pipe.md", NOT_REGULAR), ("pipe.md", NOT_REGULAR)]
    expected.append(("zero.txt", NOT_REGULAR))
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as sock:
        with contextlib.suppress(OSError):  # a socket path may not be longer than ~100 bytes
            sock.bind(os.fspath(tmp_path / "sock.md"))
            expected.insert(2, ("sock.md", NOT_REGULAR))
        for symlinks in ("inside", "all"):
            assert listed(tmp_path, Selection(symlinks=symlinks)) == ([], expected)
        # Links are not looked at with "none"; the FIFO and the socket are still reported.
        assert listed(tmp_path, Selection(symlinks="none"))[1] == [
            entry for entry in expected if entry[0] in ("pipe.md", "sock.md")
        ]


def in_thread(func: Callable[[], object], seconds: float = 60) -> object:
    """func's result, or a failure when it is still running after `seconds` (a hang)."""
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(func()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return results[0]


def test_fifo_indexignore_is_reported_and_does_not_hang(project: Path) -> None:
    os.mkfifo(project / ".indexignore")
    write(project / "docs" / ".indexignore", "drafts/\n")
    paths, skipped = in_thread(lambda: listed(project))  # type: ignore[misc]
    assert skipped == [(".indexignore", NOT_REGULAR)]
    assert "build/out.html" in paths and "docs/drafts/todo.md" not in paths


def test_indexignore_that_is_a_folder_or_a_device_is_reported(project: Path) -> None:
    (project / ".indexignore").mkdir()
    os.symlink("/dev/zero", project / "docs" / ".indexignore")
    assert in_thread(lambda: listed(project)[1]) == [
        (".indexignore", NOT_REGULAR),
        ("docs/.indexignore", NOT_REGULAR),
    ]
