"""Folders → documents: walk a tree safely, read bytes, reject binary files, decode text."""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import charset_normalizer

from indexer import config
from indexer.errors import FileSkipped

UNDECODABLE = "undecodable text (not UTF-8, UTF-16, CP932 or EUC-JP)"


@dataclass(frozen=True)
class FileInfo:
    """What `stat` says about one file; cheap, used for incremental change detection."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Document:
    """One decoded file, ready to split."""

    path: str
    text: str
    encoding: str
    format: str
    size: int
    mtime_ns: int
    sha256: str
    truncated: bool


# ---------------------------------------------------------------- walking


def walk(root: Path) -> Iterator[FileInfo]:
    """Indexable files under root in sorted path order; unreadable entries are left out.

    Raises OSError only when root itself cannot be listed.
    """
    root_real = os.path.realpath(root)
    top = os.stat(root)
    visited = {(top.st_dev, top.st_ino)}
    stack = _children(os.fspath(root), "", strict=True)
    while stack:
        entry, rel = stack.pop()
        kind = _entry_kind(entry, root_real)
        if kind == "file":
            info = _file_info(entry, rel)
            if info is not None:
                yield info
        elif kind == "dir" and _first_visit(entry, visited):
            stack.extend(_children(entry.path, rel + "/"))


_Entry = tuple[os.DirEntry[str], str]


def _children(path: str, prefix: str, *, strict: bool = False) -> list[_Entry]:
    """Directory entries with their relative paths, reversed so that popping yields sorted order."""
    try:
        with os.scandir(path) as scan:
            entries = sorted(scan, key=_sort_key, reverse=True)
    except OSError:
        if strict:
            raise
        return []
    return [(entry, prefix + entry.name) for entry in entries]


def _sort_key(entry: os.DirEntry[str]) -> str:
    """Sort a folder as "name/" so a depth-first walk lists paths in plain string order."""
    try:
        return entry.name + "/" if entry.is_dir() else entry.name
    except OSError:
        return entry.name


def _entry_kind(entry: os.DirEntry[str], root_real: str) -> Literal["file", "dir", "skip"]:
    """Whether to read an entry, descend into it, or pass it by."""
    if entry.name.startswith("."):
        return "skip"
    try:
        if entry.is_symlink() and not _inside(os.path.realpath(entry.path), root_real):
            return "skip"
        if entry.is_dir():
            return "skip" if _skipped_dir(entry) else "dir"
        if entry.is_file() and os.path.splitext(entry.name)[1].lower() in config.TEXT_SUFFIXES:
            return "file"
    except OSError:
        pass
    return "skip"


def _inside(path: str, root_real: str) -> bool:
    """Whether a resolved path lies within the resolved root."""
    return os.path.commonpath([path, root_real]) == root_real


def _skipped_dir(entry: os.DirEntry[str]) -> bool:
    """Tool folders (.git, node_modules, ...) and virtual environments."""
    if entry.name in config.SKIP_DIRS:
        return True
    return os.path.isfile(os.path.join(entry.path, "pyvenv.cfg"))


def _first_visit(entry: os.DirEntry[str], visited: set[tuple[int, int]]) -> bool:
    """Record a folder by device and inode; False when seen before (a symlink loop or alias)."""
    try:
        info = entry.stat()
    except OSError:
        return False
    key = (info.st_dev, info.st_ino)
    if key in visited:
        return False
    visited.add(key)
    return True


def _file_info(entry: os.DirEntry[str], rel: str) -> FileInfo | None:
    """Size and modification time, or None when the file vanished meanwhile."""
    try:
        info = entry.stat()
    except OSError:
        return None
    return FileInfo(path=rel, size=info.st_size, mtime_ns=info.st_mtime_ns)


# ---------------------------------------------------------------- reading


def read_document(root: Path, info: FileInfo) -> Document:
    """Read and decode one file listed by `walk`; raises FileSkipped when it cannot be indexed."""
    data, digest, complete, status = _read_bytes(Path(root, info.path), info.path)
    if _looks_binary(data):
        raise FileSkipped(info.path, "binary file")
    try:
        text, encoding = decode(data) if complete else _decode_prefix(data)
    except ValueError:
        raise FileSkipped(info.path, UNDECODABLE) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    truncated = not complete or len(text) > config.MAX_FILE_CHARS
    return Document(
        path=info.path,
        text=text[: config.MAX_FILE_CHARS],
        encoding=encoding,
        format=config.TEXT_SUFFIXES.get(Path(info.path).suffix.lower(), "text"),
        size=status.st_size,
        mtime_ns=status.st_mtime_ns,
        sha256=digest,
        truncated=truncated,
    )


def _read_bytes(path: Path, rel: str) -> tuple[bytes, str, bool, os.stat_result]:
    """The file's bytes (up to the cap), the SHA-256 of all of them, whether all fit, and fstat."""
    try:
        # O_NONBLOCK: a FIFO that replaced the file must not hang the build.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise FileSkipped(rel, "not a regular file")
            # Enough bytes for MAX_FILE_CHARS characters of UTF-8.
            data = handle.read(config.MAX_FILE_CHARS * 4)
            digest = hashlib.sha256(data)
            complete = True
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                complete = False
    except OSError as error:
        raise FileSkipped(rel, _reason(error)) from None
    return data, digest.hexdigest(), complete, status


def _reason(error: OSError) -> str:
    """A short lower-case phrase for FileSkipped."""
    if isinstance(error, FileNotFoundError):
        return "file vanished while reading"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, IsADirectoryError):
        return "not a regular file"
    return f"read error ({(error.strerror or type(error).__name__).lower()})"


def _decode_prefix(data: bytes) -> tuple[str, str]:
    """Decode the first part of an over-long file, which may end inside a character."""
    for cut in range(4):
        try:
            return decode(data[: len(data) - cut])
        except ValueError:
            continue
    raise ValueError("undecodable")


def _looks_binary(data: bytes) -> bool:
    """NUL bytes near the start, unless the text is UTF-16."""
    head = data[:8192]
    if b"\0" not in head or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    return _decode_utf16_without_bom(data) is None


# ---------------------------------------------------------------- decoding


def decode(data: bytes) -> tuple[str, str]:
    """Decode bytes as UTF-8 (BOM or not), UTF-16, CP932 or EUC-JP, else a confident guess.

    Raises ValueError when none of them fits.
    """
    for attempt in (_decode_bom, _decode_utf16_without_bom, _decode_utf8, _decode_japanese):
        result = attempt(data)
        if result is not None:
            return result
    result = _decode_guess(data)
    if result is None:
        raise ValueError("undecodable bytes")
    return result


def _decode_bom(data: bytes) -> tuple[str, str] | None:
    """UTF-8 or UTF-16 announced by a byte order mark."""
    if data.startswith(codecs.BOM_UTF8):
        return _strict(data, "utf-8-sig")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(data, "utf-16")
    return None


def _decode_utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """UTF-16 without BOM: NUL bytes all on one side of each byte pair, and clean text."""
    head = data[:8192]
    odd, even = head[1::2].count(0), head[0::2].count(0)
    if (odd == 0) == (even == 0):
        return None
    result = _strict(data, "utf-16-le" if even == 0 else "utf-16-be")
    if result is None or _control_share(result[0][:8192]) > 0.01:
        return None
    return result


def _decode_utf8(data: bytes) -> tuple[str, str] | None:
    """Strict UTF-8 (plain ASCII included)."""
    return _strict(data, "utf-8")


_KANA = re.compile(r"[\u3041-\u30ff]")
_JAPANESE = re.compile(r"[\u3000-\u30ff\u4e00-\u9fff\uff01-\uff5e]")
_UNLIKELY = re.compile(r"[\uff61-\uff9f\ue000-\uf8ff\x80-\x9f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
#: Below this score a legacy Japanese decoding is a coincidence (Latin-1 bytes read as kanji).
_MIN_JAPANESE_SCORE = 0.3


def _decode_japanese(data: bytes) -> tuple[str, str] | None:
    """CP932 or EUC-JP, whichever reads as more plausible Japanese when both decode."""
    candidates = [_strict(data, encoding) for encoding in ("cp932", "euc-jp")]
    scored = [(_japanese_score(text), text, name) for text, name in filter(None, candidates)]
    if not scored:
        return None
    score, text, name = max(scored, key=lambda item: item[0])
    return (text, name) if score >= _MIN_JAPANESE_SCORE else None


def _japanese_score(text: str) -> float:
    """How Japanese the non-ASCII characters look, at most 1.

    Kana, kanji and full-width forms count for, half-width kana and private-use characters twice
    against (EUC-JP misread as CP932 is mostly half-width kana); text without any kana is not
    Japanese (cp1252 "ç" and "é" read as CP932 turn into kanji).
    """
    sample = text[:200_000]
    total = len(_NON_ASCII.findall(sample))
    if total == 0:
        return 1.0
    kana = len(_KANA.findall(sample))
    if kana < max(1, total // 20):
        return 0.0
    good, bad = len(_JAPANESE.findall(sample)), len(_UNLIKELY.findall(sample))
    return (good - 2 * bad) / total


#: charset-normalizer's "chaos" (0 = clean text) above which its guess is not trusted.
_MAX_CHAOS = 0.1
#: Guesses from fewer bytes than this are coin flips between single-byte code pages.
_MIN_GUESS_BYTES = 64


def _decode_guess(data: bytes) -> tuple[str, str] | None:
    """charset-normalizer's best guess, only when it is confident and lossless."""
    if len(data) < _MIN_GUESS_BYTES:
        return None
    best = charset_normalizer.from_bytes(data).best()
    if best is None or best.chaos > _MAX_CHAOS:
        return None
    text = str(best)
    sample = text[:8192]
    if "\ufffd" in text or _control_share(sample) > 0.01 or _unlikely_share(sample) > 0.05:
        return None
    return text, codecs.lookup(best.encoding).name


def _unlikely_share(text: str) -> float:
    """Share of half-width kana, private-use and C1 characters among the non-ASCII ones."""
    return len(_UNLIKELY.findall(text)) / max(1, len(_NON_ASCII.findall(text)))


def _strict(data: bytes, encoding: str) -> tuple[str, str] | None:
    """Decode without replacement, or None."""
    try:
        return data.decode(encoding), encoding
    except (UnicodeDecodeError, LookupError):
        return None


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _control_share(text: str) -> float:
    """Share of control characters that never occur in text files."""
    return len(_CONTROL.findall(text)) / max(1, len(text))
