"""Folders → documents: walk a tree safely, read files, decode text or extract it (formats.py)."""

from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, BinaryIO, Literal

from indexer import config
from indexer.errors import BadPatternError, FileSkipped, UnreadableDocument

if TYPE_CHECKING:
    import pathspec

UNDECODABLE = "undecodable text (not UTF-8, UTF-16, CP932 or EUC-JP)"


@dataclass(frozen=True)
class FileInfo:
    """What `stat` says about one file; cheap, used for incremental change detection.

    Size and mtime alone miss edits that keep both (`cp -p`, `rsync -t`, unzip, a file made
    again within the same second): the status-change time and inode number change then,
    and cannot be set back by the tool that made the edit."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int = 0
    inode: int = 0

    def stat_key(self) -> tuple[int, int, int, int]:
        """What must stay equal for the file to count as unchanged without reading it."""
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode)


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
    ctime_ns: int = 0
    inode: int = 0


# ---------------------------------------------------------------- walking

Symlinks = Literal["inside", "all", "none"]


@dataclass(frozen=True)
class Skip:
    """A file or folder passed by, with a one-line reason. `transient`: it could not be read
    now (vanished, permission, I/O error), so a build keeps what the index has for it."""

    path: str
    reason: str
    transient: bool = False


#: Called for each entry the walk passes by.
OnSkip = Callable[[Skip], None]

BROKEN_LINK = "broken symlink"
LINK_LOOP = "symlink loop"
LINK_OUTSIDE = "symlink leads outside the folder (--symlinks all follows it)"
LINK_NOT_FOLLOWED = "symlink (--symlinks none follows no links)"
NOT_REGULAR = "not a regular file"
WALKED_BEFORE = "symlink to a folder already walked (a loop or an alias)"


@dataclass(frozen=True)
class Selection:
    """Which files a walk lists: gitignore-style patterns and how symlinks are followed.

    `include` keeps only files matching one of its patterns; `exclude` drops files and folders;
    both add to the `.indexignore` files found in the tree, and win over them.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    symlinks: Symlinks = "inside"


def walk(
    root: Path, selection: Selection = Selection(), *, on_skip: OnSkip | None = None
) -> Iterator[FileInfo]:
    """Indexable files under root in sorted path order.

    Entries that cannot be listed, or that lead nowhere, are left out and passed to `on_skip`.
    Raises OSError only when root itself cannot be listed, BadPatternError for a bad pattern.
    """
    walker = _Walker(root, selection, on_skip or (lambda skip: None))
    stack = walker.children(os.fspath(root), "", _root_rules(selection), strict=True)
    while stack:
        entry, rel, rules = stack.pop()
        kind = walker.kind(entry, rel, rules)
        if kind == "file":
            info = _file_info(entry, rel)
            if info is not None:
                yield info
        elif kind == "dir":
            stack.extend(walker.children(entry.path, rel + "/", rules))


@dataclass(frozen=True)
class _Rules:
    """Patterns in force in one folder: each .indexignore from the root down, then --exclude."""

    ignores: tuple[tuple[str, pathspec.PathSpec], ...]
    exclude: pathspec.PathSpec | None
    include: pathspec.PathSpec | None

    def ignored(self, rel: str, *, folder: bool) -> bool:
        """Whether .indexignore files or --exclude drop this path (gitignore semantics)."""
        name = rel + "/" if folder else rel
        result = False
        for prefix, spec in self.ignores:
            if name.startswith(prefix):
                verdict = spec.check_file(name[len(prefix) :]).include
                result = result if verdict is None else verdict
        return result or bool(self.exclude and self.exclude.match_file(name))

    def wanted(self, rel: str) -> bool:
        """Whether a file passes --include (every file does when none was given)."""
        return self.include is None or self.include.match_file(rel)

    def below(self, prefix: str, spec: pathspec.PathSpec | None) -> _Rules:
        """The rules of a subfolder that has its own .indexignore."""
        if spec is None:
            return self
        return _Rules((*self.ignores, (prefix, spec)), self.exclude, self.include)


def _root_rules(selection: Selection) -> _Rules:
    return _Rules(
        (),
        _compile(selection.exclude, "--exclude") if selection.exclude else None,
        _compile(selection.include, "--include") if selection.include else None,
    )


def _compile(patterns: Iterable[str], option: str) -> pathspec.PathSpec:
    try:
        return _pathspec().GitIgnoreSpec.from_lines(patterns)
    except (ValueError, TypeError) as error:
        raise BadPatternError(f"bad {option} pattern: {error} — use gitignore syntax") from None


_Entry = tuple[os.DirEntry[str], str, _Rules]

#: Bytes of a .indexignore file that are read; the rest is ignored.
_MAX_IGNORE_BYTES = 1 << 20


class _Walker:
    """What one walk needs to remember: the root, the folders seen, where to report skips."""

    def __init__(self, root: Path, selection: Selection, on_skip: OnSkip) -> None:
        self.root_real = os.path.realpath(root)
        top = os.stat(root)
        self.visited = {(top.st_dev, top.st_ino)}
        self.symlinks = selection.symlinks
        self.on_skip = on_skip

    def children(
        self, path: str, prefix: str, rules: _Rules, *, strict: bool = False
    ) -> list[_Entry]:
        """Entries with their relative paths, reversed so that popping yields sorted order."""
        try:
            with os.scandir(path) as scan:
                entries = sorted(scan, key=_sort_key, reverse=True)
        except OSError as error:
            if strict:
                raise
            self.on_skip(_failure(prefix, error))
            return []
        ignore = next((e for e in entries if e.name == config.IGNORE_FILE), None)
        if ignore is not None:
            rules = rules.below(prefix, self._ignore_file(ignore, prefix))
        return [(entry, prefix + entry.name, rules) for entry in entries]

    def _ignore_file(self, entry: os.DirEntry[str], prefix: str) -> pathspec.PathSpec | None:
        """A .indexignore file's patterns, read as documents are: a FIFO cannot hang the walk."""
        rel = prefix + entry.name
        try:
            with _opened(entry.path, rel) as (handle, _):
                data = handle.read(_MAX_IGNORE_BYTES)
        except FileSkipped as skipped:
            self.on_skip(Skip(rel, skipped.reason, skipped.transient))
            return None
        except OSError as error:
            self.on_skip(_failure(rel, error))
            return None
        return _lenient_spec(data.decode("utf-8", errors="replace").splitlines())

    def kind(
        self, entry: os.DirEntry[str], rel: str, rules: _Rules
    ) -> Literal["file", "dir", "skip"]:
        """Whether to read an entry, descend into it, or pass it by (reporting why)."""
        if entry.name.startswith("."):
            return "skip"
        document = _is_document(entry.name)
        try:
            folder = entry.is_dir()  # a symlink's target; False when the link is broken
            if not (folder or document) or rules.ignored(rel, folder=folder):
                return "skip"
            if entry.is_symlink() and not self._follow(entry, rel):
                return "skip"
            if folder:
                return self._folder_kind(entry, rel)
            if entry.is_file():
                return "file" if rules.wanted(rel) else "skip"
            if rules.wanted(rel):  # a FIFO, socket or device named like a document
                self.on_skip(Skip(rel, NOT_REGULAR))
        except OSError as error:
            if document:
                loop = error.errno == errno.ELOOP
                self.on_skip(Skip(rel, LINK_LOOP) if loop else _failure(rel, error))
        return "skip"

    def _follow(self, entry: os.DirEntry[str], rel: str) -> bool:
        """Whether a symlink may be followed; says why when it may not (unless told "none")."""
        if self.symlinks == "none":
            return False
        try:
            target = os.stat(entry.path)
        except OSError as error:
            self.on_skip(Skip(rel, LINK_LOOP if error.errno == errno.ELOOP else BROKEN_LINK))
            return False
        if not (stat.S_ISREG(target.st_mode) or stat.S_ISDIR(target.st_mode)):
            self.on_skip(Skip(rel, NOT_REGULAR))  # /dev/zero, wherever it lies
            return False
        if self.symlinks == "inside" and not _inside(os.path.realpath(entry.path), self.root_real):
            self.on_skip(Skip(rel, LINK_OUTSIDE))
            return False
        return True

    def _folder_kind(self, entry: os.DirEntry[str], rel: str) -> Literal["dir", "skip"]:
        """Descend unless a tool folder, a virtual environment, or a folder seen before."""
        if _skipped_dir(entry):
            return "skip"
        info = entry.stat()
        key = (info.st_dev, info.st_ino)
        if key in self.visited:
            if entry.is_symlink():
                self.on_skip(Skip(rel, WALKED_BEFORE))
            return "skip"
        self.visited.add(key)
        return "dir"


def _pathspec() -> ModuleType:
    """pathspec, imported on first use: `index ask` never walks a folder."""
    import pathspec

    return pathspec


def _formats() -> ModuleType:
    """indexer.formats (PDF, HTML, Office readers), imported when a file needs it."""
    from indexer import formats

    return formats


def _lenient_spec(lines: list[str]) -> pathspec.PathSpec:
    """A .indexignore file's patterns; a line pathspec cannot read is dropped, not fatal."""
    try:
        return _pathspec().GitIgnoreSpec.from_lines(lines)
    except (ValueError, TypeError):
        good = []
        for line in lines:
            try:
                _pathspec().GitIgnoreSpec.from_lines([line])
            except (ValueError, TypeError):
                continue
            good.append(line)
        return _pathspec().GitIgnoreSpec.from_lines(good)


def _is_document(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in config.TEXT_SUFFIXES


def _sort_key(entry: os.DirEntry[str]) -> str:
    """Sort a folder as "name/" so a depth-first walk lists paths in plain string order."""
    try:
        return entry.name + "/" if entry.is_dir() else entry.name
    except OSError:
        return entry.name


def _inside(path: str, root_real: str) -> bool:
    """Whether a resolved path lies within the resolved root."""
    return os.path.commonpath([path, root_real]) == root_real


def _skipped_dir(entry: os.DirEntry[str]) -> bool:
    """Tool folders (.git, node_modules, ...) and virtual environments."""
    if entry.name in config.SKIP_DIRS:
        return True
    return os.path.isfile(os.path.join(entry.path, "pyvenv.cfg"))


def _file_info(entry: os.DirEntry[str], rel: str) -> FileInfo | None:
    """Size and modification time, or None when the file vanished meanwhile."""
    try:
        info = entry.stat()
    except OSError:
        return None
    return FileInfo(rel, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


# ---------------------------------------------------------------- reading


def read_document(root: Path, info: FileInfo, symlinks: Symlinks = "inside") -> Document:
    """Read one file listed by `walk` and turn it into text; raises FileSkipped when it cannot.

    `symlinks` is the walk's setting, checked again on the opened file: a file replaced by a
    link after the walk listed it is not read unless the walk would have followed that link.
    """
    fmt = config.TEXT_SUFFIXES.get(Path(info.path).suffix.lower(), "text")
    try:
        with _opened_within(root, info.path, symlinks) as (handle, status):
            if fmt in _formats().CONTAINERS:
                text, encoding, truncated, digest = _read_container(handle, fmt, info.path)
                _check_unchanged(handle, status, info.path)
            elif fmt == "html":
                text, encoding, truncated, digest = _read_html(handle, info.path)
            else:
                text, encoding, truncated, digest = _read_text(handle, info.path)
    except OSError as error:
        failure = _failure(info.path, error)
        raise FileSkipped(info.path, failure.reason, transient=failure.transient) from None
    return Document(
        path=info.path,
        text=text,
        encoding=encoding,
        format=fmt,
        size=status.st_size,
        mtime_ns=status.st_mtime_ns,
        sha256=digest,
        truncated=truncated,
        ctime_ns=status.st_ctime_ns,
        inode=status.st_ino,
    )


_Read = tuple[str, str, bool, str]  # text, encoding, truncated, sha256


_Opened = Iterator[tuple[BinaryIO, os.stat_result]]


@contextlib.contextmanager
def _opened_within(root: Path, rel: str, symlinks: Symlinks) -> _Opened:
    """`_opened`, with the symlink setting enforced on the file actually opened.

    The walk checked links when it listed the file; by now any part of the path may have been
    swapped for a link. So "none" opens without following a final link and "inside" opens the
    resolved path the same way; then the opened file's real path must be the expected one.
    """
    path = os.path.join(root, rel)
    if symlinks == "all":
        with _opened(path, rel) as opened:
            yield opened
        return
    root_real = os.path.realpath(root)
    if symlinks == "none":
        expected, reason = os.path.join(root_real, rel), LINK_NOT_FOLLOWED
    else:
        expected, reason = os.path.realpath(path, strict=True), LINK_OUTSIDE
        if not _inside(expected, root_real):
            raise FileSkipped(rel, reason)
    with _opened(expected, rel, nofollow=True, link_reason=reason) as (handle, status):
        real = _real_path(handle.fileno(), status, expected)
        if not _allowed(real, expected, root_real, symlinks):
            raise FileSkipped(rel, reason)
        yield handle, status


def _allowed(real: str | None, expected: str, root_real: str, symlinks: Symlinks) -> bool:
    """Whether an opened file is where the setting allows: exactly the listed path for "none"
    (no link on the way), anywhere in the folder for "inside"."""
    if real is None:
        return False
    return real == expected if symlinks == "none" else _inside(real, root_real)


@contextlib.contextmanager
def _opened(path: str, rel: str, *, nofollow: bool = False, link_reason: str = "") -> _Opened:
    """The open file and its fstat; FileSkipped unless it is a regular file.

    With `nofollow`, a final symlink is refused with `link_reason`.
    """
    # O_NONBLOCK: a FIFO that replaced the file must not hang the build.
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | (getattr(os, "O_NOFOLLOW", 0) if nofollow else 0))
    except OSError as error:
        if nofollow and error.errno in _NOFOLLOW_ERRNOS and os.path.islink(path):
            raise FileSkipped(rel, link_reason) from None
        raise
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise FileSkipped(rel, NOT_REGULAR)
        yield handle, status


#: What open(O_NOFOLLOW) fails with on a symlink: ELOOP on Linux, EMLINK or EFTYPE on BSDs.
_NOFOLLOW_ERRNOS = {errno.ELOOP, errno.EMLINK, getattr(errno, "EFTYPE", errno.ELOOP)}


def _real_path(fd: int, status: os.stat_result, path: str) -> str | None:
    """Where an open file really is: /proc on Linux; elsewhere the path resolved again, trusted
    only when it still names the file that is open (else None)."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(path)
        with contextlib.suppress(OSError):
            if os.path.samestat(os.stat(real), status):
                return real
        return None
    if real.endswith(" (deleted)") and os.fstat(fd).st_nlink == 0:
        raise FileNotFoundError(errno.ENOENT, "deleted while open", path)
    return real


def _read_text(handle: BinaryIO, rel: str) -> _Read:
    """A plain text file: bytes up to the cap decoded, the SHA-256 of all bytes."""
    # Enough bytes for MAX_FILE_CHARS characters of UTF-8.
    data = handle.read(config.MAX_FILE_CHARS * 4)
    digest = hashlib.sha256(data)
    complete = _hash_rest(handle, digest)
    if _looks_binary(data):
        raise FileSkipped(rel, "binary file")
    try:
        text, encoding = decode(data) if complete else _decode_prefix(data)
    except ValueError:
        raise FileSkipped(rel, UNDECODABLE) from None
    del data
    truncated = not complete or len(text) > config.MAX_FILE_CHARS
    text = text[: config.MAX_FILE_CHARS].replace("\r\n", "\n").replace("\r", "\n")
    return text, encoding, truncated, digest.hexdigest()


def _hash_rest(handle: BinaryIO, digest: hashlib._Hash) -> bool:
    """Feed the rest of the file to the digest; True when there was nothing left."""
    complete = True
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
        complete = False
    return complete


#: Bytes looked at to find an HTML page's encoding when it does not declare one.
_HTML_SNIFF = 1 << 20


def _read_html(handle: BinaryIO, rel: str) -> _Read:
    """An HTML page streamed through the parser: memory stays flat however large the file."""
    head = handle.read(_HTML_SNIFF)
    digest = hashlib.sha256(head)
    if _looks_binary(head):
        raise FileSkipped(rel, "binary file")
    encoding = _html_encoding(head, rel)
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    parser = _formats().HtmlText(max_chars=config.MAX_FILE_CHARS)
    parser.feed(decoder.decode(head))
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
        parser.feed(decoder.decode(chunk))
    parser.feed(decoder.decode(b"", final=True))
    extracted = parser.result()
    return extracted.text, encoding, extracted.truncated, digest.hexdigest()


def _html_encoding(head: bytes, rel: str) -> str:
    """A byte order mark, else the declared charset if the bytes fit it, else a detected one."""
    declared = None if _bom(head) else _formats().declared_html_encoding(head)
    if declared and _decode_prefix_as(head, declared):
        return declared
    try:
        return _decode_prefix(head)[1]
    except ValueError:
        raise FileSkipped(rel, UNDECODABLE) from None


def _bom(data: bytes) -> bool:
    return data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


def _decode_prefix_as(data: bytes, encoding: str) -> bool:
    """Whether the bytes (maybe cut inside a character at the end) decode strictly."""
    return any(_strict(data[: len(data) - cut], encoding) for cut in range(4))


def _read_container(handle: BinaryIO, fmt: str, rel: str) -> _Read:
    """A PDF or Office file: hashed in one pass, then parsed from the start."""
    digest = hashlib.sha256()
    _hash_rest(handle, digest)
    handle.seek(0)
    try:
        extracted = _formats().extract(fmt, handle, max_chars=config.MAX_FILE_CHARS)
    except UnreadableDocument as error:
        raise FileSkipped(rel, error.reason) from None
    return extracted.text, "", extracted.truncated, digest.hexdigest()


CHANGED = "file changed while reading (read again next build)"


def _check_unchanged(handle: BinaryIO, before: os.stat_result, rel: str) -> None:
    """A file read twice (hash, then parse) must not have changed in between."""
    after = os.fstat(handle.fileno())
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise FileSkipped(rel, CHANGED)


VANISHED = "file vanished while reading"
DENIED = "permission denied"
READ_ERROR = "read error"


def _failure(rel: str, error: OSError) -> Skip:
    """Why an entry could not be read, as a short lower-case phrase; all but a wrong file
    type mean "could not read it now" rather than "not a text document"."""
    if isinstance(error, FileNotFoundError):
        return Skip(rel, VANISHED, transient=True)
    if isinstance(error, PermissionError):
        return Skip(rel, DENIED, transient=True)
    if isinstance(error, (IsADirectoryError, NotADirectoryError)):
        return Skip(rel, NOT_REGULAR)
    if error.errno == errno.ELOOP:
        return Skip(rel, LINK_LOOP)
    strerror = (error.strerror or type(error).__name__).lower()
    return Skip(rel, f"{READ_ERROR} ({strerror})", transient=True)


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
    import charset_normalizer  # only for the rare file no known encoding fits (30 ms import)

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
