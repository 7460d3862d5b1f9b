"""Every default in one place. Precedence: command-line flag > environment variable > default."""

from __future__ import annotations

import os

#: The served ask (indexer.launch) reads this module and must start fast: no pathlib or
#: typing at run time. The Literal types exist for the checker (which takes any name
#: TYPE_CHECKING as true); at run time they are plain str.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Literal, TextIO

    Mode = Literal["hybrid", "dense", "keyword"]
    ChunkVectors = Literal["embedded", "pooled"]
    AnnMode = Literal["exact", "auto", "always"]
    PassagePrecision = Literal["fp32", "int8"]
    SectionVectors = Literal["embedded", "averaged"]
else:
    Mode = ChunkVectors = AnnMode = PassagePrecision = SectionVectors = str

#: Environment variables users can set instead of flags.
ENV_INDEX = "INDEXER_INDEX"
ENV_MODEL = "INDEXER_MODEL"
ENV_CACHE = "INDEXER_CACHE_DIR"
ENV_THREADS = "INDEXER_THREADS"
ENV_TOKEN = "INDEXER_TOKEN"
ENV_RAY = "INDEXER_RAY_ADDRESS"

DEFAULT_INDEX_DIR = ".index"
#: The SQLite file inside an index directory.
DB_NAME = "index.sqlite"
DEFAULT_MODEL_NAME = "multilingual-e5-small"
DEFAULT_K = 5
DEFAULT_CONTEXT = 1
#: Retrieval modes of `index ask` (see indexer.search; type Mode).
MODES: tuple[Mode, ...] = ("hybrid", "dense", "keyword")
#: How `index ask` ranks: "hybrid" (dense + keyword), "dense" or "keyword".
DEFAULT_MODE: Mode = "hybrid"
#: Sentences per onnxruntime run; batches are sorted by length so padding stays small.
DEFAULT_BATCH_SIZE = 32
#: Sentences embedded and committed to SQLite together (the unit of crash recovery).
COMMIT_EVERY = 256
#: Consecutive sentences embedded together as one chunk besides each sentence alone (3 was
#: the best window in the retrieval evaluation; chunks never cross a heading).
CHUNK_SENTENCES = 3
#: How chunk vectors are made (`index build --chunks`, recorded per index): "embedded", each
#: chunk a text of its own; "pooled", from its section's run of the model (faster first
#: builds, measured cost in docs/performance.md; type ChunkVectors).
CHUNK_VECTORS: tuple[ChunkVectors, ...] = ("embedded", "pooled")
DEFAULT_CHUNK_VECTORS: ChunkVectors = "embedded"
#: How section vectors are made (`index build --sections`, recorded per index): "embedded",
#: each section (as much as the model reads) a text of its own; "averaged", the mean of its
#: chunks' vectors weighted by their tokens, with no run of the model (faster first builds,
#: measured cost in docs/performance.md). Chunks pooled from their section's run need the
#: section embedded (type SectionVectors).
SECTION_VECTORS: tuple[SectionVectors, ...] = ("embedded", "averaged")
DEFAULT_SECTION_VECTORS: SectionVectors = "embedded"
#: How chunk and section vectors are computed (`index build --passage-precision`, recorded per
#: index): "fp32", by the model as it is, like sentences; "int8" (the default for new indexes),
#: by a copy of the model with int8 linear layers but its down projections
#: (indexer.models.quantize: faster first builds at the same retrieval quality, measured in
#: docs/performance.md). Sentence vectors are always fp32 (type PassagePrecision).
PASSAGE_PRECISIONS: tuple[PassagePrecision, ...] = ("fp32", "int8")
DEFAULT_PASSAGE_PRECISION: PassagePrecision = "int8"
#: Vector search (`index build --ann`): exact, always a flat base; always, an approximate
#: (IVF) base; auto, approximate from vectors.Policy.ann_from vectors (type AnnMode).
ANN_MODES: tuple[AnnMode, ...] = ("exact", "auto", "always")
#: Fragments shorter than this many characters are merged into a neighbour.
MIN_SENTENCE_CHARS = 8
#: Longer sentences and blocks (a base64 blob, minified code, a log line) are cut into pieces.
MAX_SENTENCE_CHARS = 2000
#: `index watch`: seconds without a change before a build (a burst of changes is one build) ...
DEFAULT_DEBOUNCE = 2.0
#: ... and the most seconds a build waits after the first change, so a constant trickle builds.
WATCH_MAX_DELAY = 30.0
#: File suffixes read as documents, and their formats (how each is read and split).
TEXT_SUFFIXES = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".odt": "odt",
}
#: The file of gitignore-style patterns read in every folder of a build.
IGNORE_FILE = ".indexignore"
#: Folders never descended into.
SKIP_DIRS = {".git", ".hg", ".svn", ".index", "__pycache__", "node_modules", ".venv", "venv"}
#: Per-file text cap (characters); longer files are indexed up to the cap and reported.
MAX_FILE_CHARS = 20_000_000
#: Uncompressed size above which a DOCX/PPTX/ODT archive is refused (a zip bomb guard).
MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
#: `index serve` listens on loopback unless told otherwise; other addresses need a token.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: The file in an index directory that tells `index ask` where a server of that index listens.
SERVE_FILE = "serve.info"
#: Limits of a served question: its characters, its hits and its sentences of context.
MAX_QUESTION_CHARS = 2000
MAX_K = 100
MAX_CONTEXT = 20


def color(stream: TextIO) -> bool:
    """Whether `index ask` styles its hits: on a terminal, unless $NO_COLOR is set."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def index_location(flag: str | os.PathLike[str] | None = None) -> str:
    """Where the index lives: --index, else $INDEXER_INDEX, else ./.index."""
    return os.fspath(flag or os.environ.get(ENV_INDEX) or DEFAULT_INDEX_DIR)


def index_dir(flag: str | os.PathLike[str] | None = None) -> Path:
    """index_location() as a Path."""
    from pathlib import Path

    return Path(index_location(flag))


def model_location(flag: str | os.PathLike[str] | None = None) -> str | None:
    """A user-chosen model directory, or None for the default model."""
    value = flag or os.environ.get(ENV_MODEL)
    return os.fspath(value) if value else None


def model_dir(flag: str | os.PathLike[str] | None = None) -> Path | None:
    """model_location() as a Path."""
    from pathlib import Path

    value = model_location(flag)
    return Path(value) if value else None


#: How help texts name the default cache_dir().
DEFAULT_CACHE_HINT = "~/.cache/indexer"


def cache_dir(flag: str | os.PathLike[str] | None = None) -> Path:
    """Per-user model cache: --cache-dir, $INDEXER_CACHE_DIR, else $XDG_CACHE_HOME/indexer."""
    from pathlib import Path

    value = flag or os.environ.get(ENV_CACHE)
    if value:
        return Path(value)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "indexer"


def ray_address(flag: str | None = None, *, workers: int | None = None) -> str | None:
    """Where a build embeds: flag, else $INDEXER_RAY_ADDRESS, else "local" when a worker
    count is given, else None (in this process)."""
    return flag or os.environ.get(ENV_RAY) or ("local" if workers else None)


def threads(flag: int | None = None) -> int | None:
    """Inference threads: flag, else $INDEXER_THREADS, else None (one per physical core)."""
    if flag:
        return flag
    value = os.environ.get(ENV_THREADS)
    return int(value) if value and value.isdigit() else None
