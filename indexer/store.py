"""The index database: every SQL statement of an index lives here.

Layout of an index directory::

    index.sqlite          files, sentences, passages, vectors (float16 blobs), meta; WAL mode
    vectors.<gen>.faiss   a vector base written by generation <gen> (indexer.vectors)
    vectors.<gen>.delta.faiss, vectors.<gen>.removed.npy
                          what generation <gen> added to and removed from the files before it
    build.lock            held by the one process allowed to write

SQLite is the source of truth; ``meta.generation`` and the layout (VectorLayout: base file,
delta generations) name the vector files that match it. A build writes the next generation's
vector files first and then commits the SQLite transaction that points at them, so a reader
that reads the generation and its rows inside one read snapshot always sees a matching set.

Vector ids: a sentence's id is its row id; a passage's (chunk or section) is its row id plus
PASSAGE_ID_BASE, so both live in one vector index.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal, NamedTuple

from indexer import keyword
from indexer.config import DB_NAME
from indexer.errors import (
    BuildLockedError,
    IndexBusyError,
    IndexerError,
    IndexUnusableError,
    NoIndexError,
    NoSpaceError,
    NotWritableError,
    from_os,
    from_sqlite,
)

if TYPE_CHECKING:  # both load slowly; imported where used, after `index ask` starts its tokenizer
    import numpy as np
    import sqlite_utils

LOCK_NAME = "build.lock"
#: Modes of what an index creates, set explicitly: a umask of 000 must not make the index
#: world-writable.
DIR_MODE = 0o755
FILE_MODE = 0o644
#: Vector ids at or above this are passages (id - PASSAGE_ID_BASE = passages.id).
PASSAGE_ID_BASE = 1 << 48
#: How long a statement waits for another connection's write lock before SQLITE_BUSY.
BUSY_TIMEOUT_MS = 30_000
#: Free pages worth handing back after a build (4 KiB pages: 4 MB).
RECLAIM_MIN_PAGES = 1024
#: Ids per `IN (...)` list (SQLite's default limit on variables is far above this).
IDS_PER_QUERY = 500
#: Columns of SentenceRow, in order.
_SENTENCE_SELECT = """SELECT s.id, s.file_id, f.path, s.position, s.text, s.kind, s.line_start,
    s.line_end, s.char_start, s.char_end, s.page
    FROM sentences s JOIN files f ON f.id = s.file_id"""

#: Each passage with the sentences it spans.
_PASSAGE_SENTENCES = """passages p JOIN sentences s
    ON s.file_id = p.file_id AND s.position BETWEEN p.first AND p.last"""

PassageKind = Literal["chunk", "section"]

#: Ends a vector stored as float16: 2 bytes a component and this one, an odd length that no
#: float32 vector (4 bytes a component, as every vector was stored before) can have.
_FLOAT16_TAG = b"\x10"

#: Rows read at a time when every stored vector is read (a first build writing its vector
#: file, compaction, retraining, verify --repair). A block's row tuples, its joined bytes and
#: its float32 array are alive together, about 4 KB a row at 384 dimensions: blocks of 65,536
#: rows put about 140 MB on top of a first build's peak (docs/performance.md).
VECTOR_BLOCK = 8192


def encode_vector(vector: np.ndarray) -> bytes:
    """The blob a vector is stored as: float16 (half the bytes; cosines move by about 1e-4),
    or float32 where float16 cannot hold it (a component past 65504 would become infinite)."""
    import numpy as np

    exact = np.ascontiguousarray(vector, dtype=np.float32)
    with np.errstate(over="ignore"):  # an overflow is checked below, not warned about
        half = exact.astype(np.float16)
    if np.array_equal(np.isfinite(half), np.isfinite(exact)):
        return half.tobytes() + _FLOAT16_TAG
    return exact.tobytes()


def decode_vector(blob: bytes) -> np.ndarray:
    """A stored vector as float32, whichever way it was stored."""
    import numpy as np

    if len(blob) % 2:
        return np.frombuffer(blob, dtype=np.float16, count=len(blob) // 2).astype(np.float32)
    return np.frombuffer(blob, dtype=np.float32)


def decode_vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Stored vectors as a float32 [n, dim] array (one conversion when all share a width)."""
    import numpy as np

    widths = {len(blob) for blob in blobs}
    if widths == {4 * dim}:
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, dim)
    if widths == {2 * dim + 1}:
        rows = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(-1, 2 * dim + 1)
        return np.ascontiguousarray(rows[:, : 2 * dim]).view(np.float16).astype(np.float32)
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack([decode_vector(blob) for blob in blobs]).reshape(-1, dim)


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class FileRow:
    """What the index remembers about one indexed file, for change detection."""

    id: int
    path: str
    size: int
    mtime_ns: int
    sha256: str
    ctime_ns: int = 0
    inode: int = 0

    def stat_key(self) -> tuple[int, int, int, int]:
        """Size, mtime, ctime and inode as stored (see load.FileInfo.stat_key)."""
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode)


@dataclass(frozen=True)
class FileEntry:
    """A file row to write: the document's metadata (its text is not kept)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    encoding: str
    format: str
    truncated: bool
    ctime_ns: int = 0
    inode: int = 0


@dataclass(frozen=True)
class SentenceEntry:
    """A sentence row to write; `key` names its vector (vector_key)."""

    text: str
    kind: str
    line_start: int
    line_end: int
    char_start: int
    char_end: int
    page: int | None
    key: str


@dataclass(frozen=True)
class PassageEntry:
    """A passage row to write: sentences first..last (positions) of the file, one vector."""

    first: int
    last: int
    key: str
    kind: PassageKind


@dataclass(frozen=True)
class SentenceRow:
    """One stored sentence, as read back for a hit or its context."""

    id: int
    file_id: int
    path: str
    position: int
    text: str
    kind: str
    line_start: int
    line_end: int
    char_start: int
    char_end: int
    page: int | None = None


class Holders(NamedTuple):
    """What holds a sentence: its chunk, its section (None when the chunk is the whole
    section) and the sentence's kind."""

    chunk: int
    section: int | None
    kind: str


@dataclass(frozen=True)
class ModelRecord:
    """The model an index was built with, as recorded in it."""

    name: str = ""
    checksum: str = ""
    path: str = ""
    dimension: int = 0
    pooling: str = ""
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""


@dataclass(frozen=True)
class VectorLayout:
    """Which vector files make up a generation (indexer.vectors): a base file, then delta
    files applied in order (each adds vectors and hides ids of the files before it)."""

    #: File name of the base; "" for indexes older than deltas (vectors.<generation>.faiss).
    base: str = ""
    #: Generations whose delta files (vectors.<g>.delta.faiss, vectors.<g>.removed.npy) apply.
    deltas: tuple[int, ...] = ()
    #: Vectors the base holds; -1: unknown (older indexes).
    base_count: int = -1
    #: Vectors added plus ids removed by the deltas (compaction compares it with base_count).
    churn: int = 0
    #: "flat" (exact) or "ivf-sq8" (approximate, re-ranked on the stored vectors).
    kind: str = "flat"
    nlist: int = 0
    nprobe: int = 0
    #: Vectors in the index when its coarse quantizer was trained.
    trained_on: int = 0
    #: Recall@10 against exact search measured when nprobe was chosen.
    recall: float = 0.0
    #: Size, modification time and inode of the base file when it was written
    #: (vectors.file_stamp); "" for indexes older than it.
    base_stamp: str = ""


@dataclass(frozen=True)
class IndexMeta:
    """The meta table as a record: the model, the committed generation and its counts."""

    model: ModelRecord | None = None
    split_version: str = ""
    generation: int = 0
    #: Vectors the generation's vector file holds (sentences plus passages); -1: unknown.
    vector_count: int = -1
    #: Digest of the generation's sorted vector ids (ids_digest); "" for older indexes.
    vector_ids_digest: str = ""
    sentence_count: int = 0
    last_build: str | None = None
    #: The files of the generation's vector index.
    vectors: VectorLayout = VectorLayout()
    #: How the index's chunk vectors were made (config.ChunkVectors); "" before it was recorded.
    chunk_vectors: str = ""
    #: Which copy of the model made its chunk and section vectors (config.PassagePrecision);
    #: "fp32" when none is recorded: indexes built before the choice existed used it.
    passage_precision: str = "fp32"
    #: How its section vectors were made (config.SectionVectors); "embedded" when none is
    #: recorded, as indexes built before the choice existed made them.
    section_vectors: str = "embedded"


@dataclass(frozen=True)
class Stats:
    """Row counts of an index."""

    files: int
    sentences: int
    passages: int
    vectors: int


@dataclass(frozen=True)
class Integrity:
    """What the database says about its own consistency."""

    sentences_without_vector: int
    sentences_without_file: int
    staged_vectors: int
    quick_check: str
    #: Terms whose count of keyword rows (term_rows) differs from the rows themselves.
    miscounted_terms: int = 0


#: Meta key: the newest vector id when vectors were last cleaned up (vectors stored after it
#: are the only ones besides those of removed rows that can have become unused).
_VECTOR_MARK = "vector_mark"

# Meta keys as stored (strings): the record's field -> the key, for the model's fields.
_MODEL_KEYS = {f.name: f"model_{f.name}" for f in fields(ModelRecord)}
_MODEL_KEYS.update(dimension="dimension", pooling="pooling", normalize="normalize")
_MODEL_KEYS.update(query_prefix="query_prefix", passage_prefix="passage_prefix")


def _meta_from_rows(rows: dict[str, str]) -> IndexMeta:
    model = None
    if "model_checksum" in rows:
        model = ModelRecord(
            name=rows.get("model_name", ""),
            checksum=rows["model_checksum"],
            path=rows.get("model_path", ""),
            dimension=int(rows.get("dimension", 0)),
            pooling=rows.get("pooling", ""),
            normalize=rows.get("normalize", "True") == "True",
            query_prefix=rows.get("query_prefix", ""),
            passage_prefix=rows.get("passage_prefix", ""),
        )
    return IndexMeta(
        model=model,
        split_version=rows.get("split_version", ""),
        generation=int(rows.get("generation", 0)),
        vector_count=int(rows.get("faiss_entries", -1)),
        vector_ids_digest=rows.get("vector_ids_digest", ""),
        sentence_count=int(rows.get("sentence_count", 0)),
        last_build=rows.get("last_build"),
        vectors=_layout_from_rows(rows),
        chunk_vectors=rows.get("chunk_vectors", ""),
        passage_precision=rows.get("passage_precision", "fp32"),
        section_vectors=rows.get("section_vectors", "embedded"),
    )


# Meta keys of VectorLayout's fields.
_LAYOUT_KEYS = {
    "base": "vector_base",
    "deltas": "vector_deltas",
    "base_count": "vector_base_count",
    "churn": "vector_churn",
    "kind": "vector_kind",
    "nlist": "ann_nlist",
    "nprobe": "ann_nprobe",
    "trained_on": "ann_trained_on",
    "recall": "ann_recall",
    "base_stamp": "vector_base_stamp",
}


def _layout_from_rows(rows: dict[str, str]) -> VectorLayout:
    def get(name: str, default: str) -> str:
        return rows.get(_LAYOUT_KEYS[name], default)

    return VectorLayout(
        base=get("base", ""),
        deltas=tuple(int(g) for g in get("deltas", "").split(",") if g),
        base_count=int(get("base_count", "-1")),
        churn=int(get("churn", "0")),
        kind=get("kind", "flat"),
        nlist=int(get("nlist", "0")),
        nprobe=int(get("nprobe", "0")),
        trained_on=int(get("trained_on", "0")),
        recall=float(get("recall", "0")),
        base_stamp=get("base_stamp", ""),
    )


def _layout_rows(layout: VectorLayout) -> dict[str, object]:
    values = {key: getattr(layout, name) for name, key in _LAYOUT_KEYS.items()}
    values["vector_deltas"] = ",".join(str(g) for g in layout.deltas)
    return values


def vector_key(model_checksum: str, embedded_text: str) -> str:
    """Content address of a vector: the exact text the model saw, prefix included, and the model."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(model_checksum.encode())
    digest.update(b"\0")
    digest.update(embedded_text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


# ---------------------------------------------------------------- migrations


def _m001_initial(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute(
        """CREATE TABLE files (
            id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, encoding TEXT, format TEXT,
            sentences INTEGER NOT NULL DEFAULT 0, truncated INTEGER NOT NULL DEFAULT 0,
            indexed_at TEXT)"""
    )
    db.execute(
        """CREATE TABLE vectors (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, vector BLOB NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE sentences (
            id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            position INTEGER NOT NULL, text TEXT NOT NULL, kind TEXT NOT NULL,
            line_start INTEGER NOT NULL, line_end INTEGER NOT NULL,
            char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,
            vector_id INTEGER NOT NULL REFERENCES vectors(id))"""
    )
    db.execute("CREATE INDEX sentences_file ON sentences(file_id, position)")
    db.execute("CREATE INDEX sentences_vector ON sentences(vector_id)")
    db.execute("CREATE INDEX files_sha ON files(sha256)")


def _m002_keyword(db: sqlite_utils.Database) -> None:
    # Terms are made by indexer.keyword (CJK bigrams, words elsewhere), so the tokenizer only
    # has to split on the spaces between them (0008 makes that exact). rowid = sentence id.
    db.execute(
        "CREATE VIRTUAL TABLE sentences_fts "
        "USING fts5(own, near, tokenize='unicode61 remove_diacritics 0')"
    )
    db.execute("CREATE VIRTUAL TABLE sentences_vocab USING fts5vocab('sentences_fts', 'row')")
    for (file_id,) in db.execute("SELECT id FROM files").fetchall():
        # The window this migration came with; 0008 counts the terms of every row.
        _insert_keyword_rows(db, file_id, window=2, count_terms=False)


def _m003_chunks(db: sqlite_utils.Database) -> None:
    # Runs of consecutive sentences (positions first..last) with a vector of their own; an
    # index without them still answers from sentence vectors until its files change.
    db.execute(
        """CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            first INTEGER NOT NULL, last INTEGER NOT NULL,
            vector_id INTEGER NOT NULL REFERENCES vectors(id))"""
    )
    db.execute("CREATE INDEX chunks_file ON chunks(file_id, first)")
    db.execute("CREATE INDEX chunks_vector ON chunks(vector_id)")


def _m004_pages(db: sqlite_utils.Database) -> None:
    # Page (PDF) or slide (PPTX) of a sentence; NULL for formats located by line.
    db.execute("ALTER TABLE sentences ADD COLUMN page INTEGER")


def _m005_sections(db: sqlite_utils.Database) -> None:
    # A row is a chunk (up to three sentences) or a section (the sentences under one heading,
    # as many as the model takes); sections arrive when files are next re-split.
    db.execute("ALTER TABLE chunks ADD COLUMN span TEXT NOT NULL DEFAULT 'chunk'")


def _m006_passages(db: sqlite_utils.Database) -> None:
    # One name per concept: the table holds passages, each a chunk or a section (its kind).
    db.execute("ALTER TABLE chunks RENAME TO passages")
    db.execute("ALTER TABLE passages RENAME COLUMN span TO kind")
    db.execute("DROP INDEX chunks_file")
    db.execute("DROP INDEX chunks_vector")
    db.execute("CREATE INDEX passages_file ON passages(file_id, first)")
    db.execute("CREATE INDEX passages_vector ON passages(vector_id)")


def _m007_file_identity(db: sqlite_utils.Database) -> None:
    # Status-change time and inode join size and mtime in change detection; 0 until a build
    # next reads the file (one content hash per file, then touched).
    db.execute("ALTER TABLE files ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE files ADD COLUMN inode INTEGER NOT NULL DEFAULT 0")


def _m008_term_rows(db: sqlite_utils.Database) -> None:
    # FTS5's ascii tokenizer splits only on ASCII characters that are not letters or digits,
    # which no term of indexer.keyword holds: each term is one token, as made. unicode61 also
    # split terms at marks and punctuation (Thai vowel signs, the Katakana middle dot), so a
    # Thai character pair was stored and searched as its first letter.
    db.execute("DROP TABLE sentences_vocab")
    db.execute("CREATE VIRTUAL TABLE keyword_rows USING fts5(own, near, tokenize='ascii')")
    db.execute(
        "INSERT INTO keyword_rows(rowid, own, near) SELECT rowid, own, near FROM sentences_fts"
    )
    db.execute("DROP TABLE sentences_fts")
    db.execute("ALTER TABLE keyword_rows RENAME TO sentences_fts")
    # How many keyword rows hold each term (Store.term_frequencies). FTS5 keeps no such count:
    # its vocabulary table finds one by reading the term's whole list of rows, which for the
    # common character pairs of a Japanese question grew with the index (79 ms at 1,140,800
    # rows, scripts/keyword_bench.py). Kept in step by the two writers of keyword rows.
    db.execute(
        "CREATE TABLE term_rows (term TEXT PRIMARY KEY, rows INTEGER NOT NULL) WITHOUT ROWID"
    )
    _count_terms(db, _every_keyword_row(db), sign=1)


def _m009_float16_vectors(db: sqlite_utils.Database) -> None:
    # The vectors table is unchanged: from here on a build stores float16 blobs beside the
    # float32 ones (encode_vector). Versions before this read every blob as float32; this
    # marker makes them refuse the index as newer (check_schema) instead of misreading it.
    pass


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("0001_initial", _m001_initial),
    ("0002_keyword", _m002_keyword),
    ("0003_chunks", _m003_chunks),
    ("0004_pages", _m004_pages),
    ("0005_sections", _m005_sections),
    ("0006_passages", _m006_passages),
    ("0007_file_identity", _m007_file_identity),
    ("0008_term_rows", _m008_term_rows),
    ("0009_float16_vectors", _m009_float16_vectors),
]
SCHEMA_VERSION = len(MIGRATIONS)
#: Migrations that change nothing a reader relies on: an index without them is still read
#: (until a build applies them), so upgrading indexer does not stop asks on an older index.
READABLE_WITHOUT = frozenset({"0009_float16_vectors"})


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the named migrations not yet applied, each in its own transaction."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        with db.atomic():
            step(db)
            db.execute("INSERT INTO _migrations VALUES (?, datetime('now'))", [name])
        applied.append(name)
    return applied


def recorded_model_path(index_dir: Path) -> str | None:
    """The model directory an index records, read without loading numpy or sqlite-utils
    (`index ask` starts reading that model's tokenizer before the heavy imports)."""
    database = index_dir / DB_NAME
    if not database.is_file():
        return None
    uri = database.resolve().as_uri() + "?mode=ro"
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(uri, uri=True)) as db,
    ):
        return _meta_value(db, "model_path")
    return None


def _meta_value(db: sqlite3.Connection | sqlite_utils.Database, key: str) -> str | None:
    """One value of the meta table (as stored: a string), or None when it has none."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


# ---------------------------------------------------------------- the store


class Store:
    """An index directory's database: schema, reads, writes and the writer lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db_path = self.path / DB_NAME
        self.lock_path = self.path / LOCK_NAME
        self._db: sqlite_utils.Database | None = None
        #: True when the database could only be opened read-only.
        self.read_only = False

    # -- opening

    def exists(self) -> bool:
        """True when an index database is present."""
        return self.db_path.is_file()

    @property
    def db(self) -> sqlite_utils.Database:
        """The open database (opened on first use)."""
        if self._db is None:
            self._db = self._connect()
        return self._db

    def _connect(self, *, create: bool = False) -> sqlite_utils.Database:
        sqlite_utils = load_sqlite_utils()
        if not create and not self.exists():
            raise NoIndexError(self.path)
        try:
            conn = self._open(create=create)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise self.unusable(exc) from exc
        # No plugins: loading them scans every installed package's entry points (~20 ms of
        # each cold `index ask`), and the index needs none.
        return sqlite_utils.Database(conn, execute_plugins=False)

    def _open(self, *, create: bool) -> sqlite3.Connection:
        """A connection that can read: read-write when this process may write the index,
        else read-only (a read-only mount, another user's index: a reader never writes)."""
        try:
            return _readable(sqlite3.connect(self.db_path, timeout=30, isolation_level=None))
        except sqlite3.OperationalError as exc:
            name = getattr(exc, "sqlite_errorname", "") or ""
            if create or not name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
                raise
            failure = exc
        # mode=ro reads a WAL index whose -shm exists; with no writer running and a folder
        # this process cannot write, SQLite can only open it as immutable.
        for option in ("mode=ro", "immutable=1"):
            uri = f"{self.db_path.resolve().as_uri()}?{option}"
            try:
                conn = _readable(sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None))
            except sqlite3.OperationalError as exc:
                failure = exc
                continue
            self.read_only = True
            return conn
        raise failure

    def unusable(self, exc: sqlite3.Error) -> IndexerError:
        """The one-line error for a database SQLite refuses: busy, not writable and no space
        are told apart from a database that is not (yet) an index."""
        mapped = from_sqlite(exc, self.path)
        name = getattr(exc, "sqlite_errorname", "") or ""
        if isinstance(mapped, IndexBusyError | NotWritableError | NoSpaceError) or name.startswith(
            "SQLITE_IOERR"
        ):
            return mapped
        if name.startswith("SQLITE_NOTADB"):
            return IndexUnusableError(
                f"{self.db_path} is not a usable index ({exc}) — move it away and run "
                "`index build DIR`"
            )
        return IndexUnusableError(
            f"{self.db_path} is not a usable index ({exc}) — run `index build DIR` to finish "
            "it, or `index verify` to see what is wrong"
        )

    def create(self) -> None:
        """Create the directory and database if missing, and bring the schema up to date."""
        new = not self.exists()
        _make_dir(self.path)
        if self._db is None:
            self._db = self._connect(create=True)
        try:
            # Only takes effect before the first table: lets a build give freed pages back.
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            # Always (a build killed right after creating the file must not leave rollback mode).
            self.db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as exc:
            raise self.unusable(exc) from exc
        if new:
            os.chmod(self.db_path, FILE_MODE)  # not the caller's umask: SQLite copies it to -wal
        self.upgrade()

    def upgrade(self) -> list[str]:
        """Apply pending migrations (writers only)."""
        try:
            return migrate(self.db)
        except sqlite3.DatabaseError as exc:
            raise self.unusable(exc) from exc

    def check_schema(self) -> None:
        """Refuse to read an index whose schema this version does not know."""
        try:
            names = {r[0] for r in self.db.execute("SELECT name FROM _migrations").fetchall()}
        except sqlite3.DatabaseError as exc:
            raise self.unusable(exc) from exc
        known = {name for name, _ in MIGRATIONS}
        if names - known:
            raise IndexUnusableError(
                f"{self.path} was written by a newer version of indexer — upgrade indexer"
            )
        if known - names - READABLE_WITHOUT:
            raise IndexUnusableError(
                f"{self.path} uses an older schema — run `index build DIR` to upgrade it"
            )

    def require_build(self) -> None:
        """Fail with a clear message unless the store holds a committed build."""
        self.check_schema()
        if self.generation() == 0:
            raise IndexUnusableError(f"{self.path} has no finished build — run `index build DIR`")

    def close(self) -> None:
        """Close the database connection."""
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- transactions and the lock

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: everything read inside comes from the same commit."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, rolled back on any error."""
        with self.db.atomic():
            yield

    @contextlib.contextmanager
    def writer_lock(self, *, wait: float = 0, busy: str | None = None) -> Iterator[None]:
        """Hold the index's one writer lock; BuildLockedError (saying `busy`) after `wait` s,
        NotWritableError when this process cannot write the index at all."""
        import filelock

        lock = filelock.FileLock(self.lock_path, timeout=wait, mode=FILE_MODE)
        try:
            _make_dir(self.path)
            lock.acquire()
        except filelock.Timeout:
            raise BuildLockedError(
                busy
                or f"another build is writing {self.path} — try again later or pass --wait SECS"
            ) from None
        except OSError as exc:
            raise from_os(exc, self.path) or exc from None
        try:
            yield
        finally:
            lock.release()

    # -- meta

    def meta(self) -> IndexMeta:
        """The meta table as a record."""
        return _meta_from_rows(dict(self.db.execute("SELECT key, value FROM meta").fetchall()))

    def generation(self) -> int:
        """The committed generation (0 before the first build)."""
        return int(_meta_value(self.db, "generation") or 0)

    def latest_generation(self) -> int:
        """The generation committed now, read on a connection of its own: outside the read
        snapshot this store's connection may be in."""
        with contextlib.closing(self._open(create=False)) as conn:
            return int(_meta_value(conn, "generation") or 0)

    def record_build(
        self,
        model: ModelRecord,
        *,
        split_version: str,
        generation: int,
        vector_count: int,
        vector_ids_digest: str,
        layout: VectorLayout | None = None,
        sentence_count: int | None = None,
        chunk_vectors: str = "",
        passage_precision: str = "",
        section_vectors: str = "",
    ) -> None:
        """Record a changed build's model and generation (inside the build's transaction);
        the sentence count is counted when not given."""
        values: dict[str, object] = {
            _MODEL_KEYS[f.name]: getattr(model, f.name) for f in fields(ModelRecord)
        }
        sentences = sentence_count
        if sentences is None:
            sentences = self.db.execute("SELECT COUNT(*) FROM sentences").fetchone()[0]
        values.update(split_version=split_version, generation=generation, sentence_count=sentences)
        if chunk_vectors:
            values.update(chunk_vectors=chunk_vectors)
        if passage_precision:
            values.update(passage_precision=passage_precision)
        if section_vectors:
            values.update(section_vectors=section_vectors)
        self._set_meta(values)
        self.record_vectors(
            vector_count=vector_count, vector_ids_digest=vector_ids_digest, layout=layout
        )

    def record_last_build(self, when: str) -> None:
        """Record when a build last ran (changed or not)."""
        self._set_meta({"last_build": when})

    def set_split_version(self, version: str) -> None:
        """Overwrite the recorded split version (tests and migrations of the splitter)."""
        self._set_meta({"split_version": version})

    def _set_meta(self, values: dict[str, object]) -> None:
        self.db["meta"].upsert_all(  # type: ignore[union-attr]
            [{"key": k, "value": str(v)} for k, v in values.items()], pk="key"
        )

    # -- files

    def files(self) -> dict[str, FileRow]:
        """Indexed files by relative path."""
        rows = self.db.execute(
            "SELECT id, path, size, mtime_ns, sha256, ctime_ns, inode FROM files"
        ).fetchall()
        return {r[1]: FileRow(*r) for r in rows}

    def write_file(
        self,
        entry: FileEntry,
        sentences: Sequence[SentenceEntry],
        passages: Sequence[PassageEntry],
        *,
        indexed_at: str,
        keyword_window: int,
        replaces: int | None = None,
    ) -> int:
        """Write one file's rows (file, sentences in position order, keyword rows, passages),
        replacing file `replaces`; every key must name a stored vector. Returns the file id."""
        if replaces is not None:
            self.delete_file(replaces)
        row = {f.name: getattr(entry, f.name) for f in fields(FileEntry)}
        row.update(truncated=int(entry.truncated), sentences=len(sentences), indexed_at=indexed_at)
        file_id = int(self.db["files"].insert(row).last_pk)  # type: ignore[union-attr,arg-type]
        ids = self.vector_ids([s.key for s in sentences] + [p.key for p in passages])
        self.db.conn.executemany(
            """INSERT INTO sentences(file_id, position, text, kind, line_start, line_end,
               char_start, char_end, vector_id, page) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                (file_id, position, *_sentence_columns(s), ids[s.key], s.page)
                for position, s in enumerate(sentences)
            ],
        )
        _insert_keyword_rows(self.db, file_id, window=keyword_window)
        self.db.conn.executemany(
            "INSERT INTO passages(file_id, first, last, vector_id, kind) VALUES (?, ?, ?, ?, ?)",
            [(file_id, p.first, p.last, ids[p.key], p.kind) for p in passages],
        )
        return file_id

    def update_file(
        self,
        file_id: int,
        size: int,
        mtime_ns: int,
        ctime_ns: int = 0,
        inode: int = 0,
        *,
        path: str | None = None,
    ) -> None:
        """A file's new stat (size, mtime, ctime, inode; and new path, when it moved) with
        unchanged content."""
        changes: dict[str, object] = {
            "size": size,
            "mtime_ns": mtime_ns,
            "ctime_ns": ctime_ns,
            "inode": inode,
        }
        if path is not None:
            changes["path"] = path
        self.db["files"].update(file_id, changes)  # type: ignore[union-attr]

    def delete_file(self, file_id: int) -> None:
        """Remove a file with its sentences, passages and keyword rows."""
        held = "rowid IN (SELECT id FROM sentences WHERE file_id = ?)"
        rows = self.db.execute(f"SELECT own, near FROM sentences_fts WHERE {held}", [file_id])
        _count_terms(self.db, rows, sign=-1)
        self.db.execute(f"DELETE FROM sentences_fts WHERE {held}", [file_id])
        self.db.execute("DELETE FROM sentences WHERE file_id = ?", [file_id])
        self.db.execute("DELETE FROM passages WHERE file_id = ?", [file_id])
        self.db.execute("DELETE FROM files WHERE id = ?", [file_id])

    # -- sentences and passages

    def sentences(self, ids: Sequence[int]) -> dict[int, SentenceRow]:
        """Sentences by id, with their file path."""
        sql = f"{_SENTENCE_SELECT} WHERE s.id IN ({{marks}})"
        return {r[0]: SentenceRow(*r) for r in self._rows_in(sql, ids)}

    def texts(self, ids: Sequence[int]) -> dict[int, str]:
        """The text of some sentences."""
        sql = "SELECT id, text FROM sentences WHERE id IN ({marks})"
        return {int(i): text for i, text in self._rows_in(sql, ids)}

    def sentences_with_vectors(self) -> Iterator[tuple[int, int, str, str, np.ndarray]]:
        """(file id, position, text, kind, vector) of every sentence, by file and position."""
        rows = self.db.execute(
            "SELECT s.file_id, s.position, s.text, s.kind, v.vector FROM sentences s "
            "JOIN vectors v ON v.id = s.vector_id ORDER BY s.file_id, s.position"
        )
        for file_id, position, text, kind, blob in rows:
            yield file_id, position, text, kind, decode_vector(blob)

    def passages_with_vectors(self) -> Iterator[tuple[int, int, int, PassageKind, np.ndarray]]:
        """(file id, first, last, kind, vector) of every passage."""
        rows = self.db.execute(
            "SELECT p.file_id, p.first, p.last, p.kind, v.vector FROM passages p "
            "JOIN vectors v ON v.id = p.vector_id ORDER BY p.file_id, p.first, p.kind"
        )
        for file_id, first, last, kind, blob in rows:
            yield file_id, first, last, kind, decode_vector(blob)

    def neighbours(self, file_id: int, first: int, last: int) -> list[SentenceRow]:
        """Sentences of one file with position in [first, last], in order."""
        rows = self.db.execute(
            f"{_SENTENCE_SELECT} WHERE s.file_id = ? AND s.position BETWEEN ? AND ? "
            "ORDER BY s.position",
            [file_id, first, last],
        ).fetchall()
        return [SentenceRow(*r) for r in rows]

    def file_sentences(self, path: str) -> list[SentenceRow]:
        """Every sentence of one indexed file (by its path relative to the folder), in order;
        empty when no such file is indexed."""
        rows = self.db.execute(
            f"{_SENTENCE_SELECT} WHERE f.path = ? ORDER BY s.position", [path]
        ).fetchall()
        return [SentenceRow(*r) for r in rows]

    def holders(self, sentence_ids: Sequence[int]) -> dict[int, Holders]:
        """The chunk and section holding each sentence, and the sentence's kind (sentences of
        an index without passages are absent). Where windows of one kind overlap, the one
        starting last holds it. Each is found by walking the file's passages back from the
        sentence and stopping at the first that holds it: joining every passage that starts
        before it took 2.4 times as long."""
        holder = (
            "(SELECT p.id FROM passages p WHERE p.file_id = s.file_id AND p.kind = '{kind}' "
            "AND p.first <= s.position AND p.last >= s.position ORDER BY p.first DESC LIMIT 1)"
        )
        sql = (
            f"SELECT s.id, {holder.format(kind='chunk')}, {holder.format(kind='section')}, "
            "s.kind FROM sentences s WHERE s.id IN ({marks})"
        )
        return {
            int(s): Holders(int(chunk), None if section is None else int(section), kind)
            for s, chunk, section, kind in self._rows_in(sql, sentence_ids)
            if chunk is not None
        }

    def passage_members(
        self, passage_ids: Sequence[int], *, kind: PassageKind | None = None
    ) -> dict[int, list[int]]:
        """The sentence ids of each passage (only of the passages of one kind, when given)."""
        found: dict[int, list[int]] = {}
        only = f" AND p.kind = '{kind}'" if kind else ""
        sql = f"SELECT p.id, s.id FROM {_PASSAGE_SENTENCES} WHERE p.id IN ({{marks}}){only}"
        for passage_id, sentence_id in self._rows_in(sql, passage_ids):
            found.setdefault(int(passage_id), []).append(int(sentence_id))
        return found

    def passage_texts(self, passage_ids: Sequence[int]) -> dict[int, str]:
        """The text of each passage: its sentences joined by spaces, in order."""
        parts: dict[int, list[str]] = {}
        sql = (
            f"SELECT p.id, s.text FROM {_PASSAGE_SENTENCES} "
            "WHERE p.id IN ({marks}) ORDER BY p.id, s.position"
        )
        for passage_id, text in self._rows_in(sql, passage_ids):
            parts.setdefault(int(passage_id), []).append(text)
        return {i: " ".join(texts) for i, texts in parts.items()}

    def passage_terms(self, passage_ids: Sequence[int]) -> dict[int, str]:
        """The keyword terms of each passage, as " term term … " in no set order: those of its
        sentences' own keyword rows (a passage's text is its sentences joined by spaces, so it
        makes no other terms). Read from the FTS5 table's content table (looking rows up
        through the FTS5 table itself took about 40 µs a row) and joined by SQLite, one row a
        passage (a row a sentence took 1–2 ms more per ask)."""
        sql = (
            f"SELECT p.id, group_concat(c.c0, ' ') FROM {_PASSAGE_SENTENCES} "
            "JOIN sentences_fts_content c ON c.id = s.id WHERE p.id IN ({marks}) GROUP BY p.id"
        )
        return {int(i): f" {terms} " for i, terms in self._rows_in(sql, passage_ids)}

    def sentence_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored vectors of some sentences."""
        return self._vectors("sentences", ids)

    def passage_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored vectors of some passages."""
        return self._vectors("passages", ids)

    def vectors_by_id(self, vector_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored vectors of some vector ids, sentences and passages alike."""
        sentences = self.sentence_vectors([int(i) for i in vector_ids if i < PASSAGE_ID_BASE])
        passages = self.passage_vectors(
            [int(i) - PASSAGE_ID_BASE for i in vector_ids if i >= PASSAGE_ID_BASE]
        )
        return {**sentences, **{i + PASSAGE_ID_BASE: v for i, v in passages.items()}}

    def _vectors(self, table: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
        sql = (
            f"SELECT t.id, v.vector FROM {table} t JOIN vectors v ON v.id = t.vector_id "
            "WHERE t.id IN ({marks})"
        )
        return {int(i): decode_vector(blob) for i, blob in self._rows_in(sql, ids)}

    def _rows_in(self, sql: str, ids: Iterable[object]) -> Iterator[tuple]:
        """Rows of `sql`, whose `{marks}` (each of them) is an IN list, for any number of ids."""
        for statement, values in self._bound(sql, ids):
            yield from self.db.execute(statement, values).fetchall()

    def _bound(self, sql: str, ids: Iterable[object]) -> Iterator[tuple[str, list[object]]]:
        """`sql` with its `{marks}` filled, and its values, per batch of at most IDS_PER_QUERY
        ids (each `{marks}` takes the batch once)."""
        values = list(ids)
        uses = sql.count("{marks}")
        for start in range(0, len(values), IDS_PER_QUERY):
            batch = values[start : start + IDS_PER_QUERY]
            yield sql.format(marks=",".join("?" * len(batch))), batch * uses

    # -- keyword search

    def keyword_search(
        self, match: str, limit: int, weights: tuple[float, float]
    ) -> list[tuple[int, float]]:
        """(sentence id, BM25 score — higher is better) for the best keyword rows; `weights`
        are the BM25 weights of a row's own terms and of its neighbours'."""
        columns = ", ".join(str(w) for w in weights)
        rows = self.db.execute(
            f"SELECT rowid, -bm25(sentences_fts, {columns}) AS score FROM sentences_fts "
            "WHERE sentences_fts MATCH ? ORDER BY score DESC LIMIT ?",
            [match, limit],
        ).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def keyword_count(self, match: str) -> int:
        """How many keyword rows a search matches (found, not scored)."""
        return int(
            self.db.execute(
                "SELECT COUNT(*) FROM sentences_fts WHERE sentences_fts MATCH ?", [match]
            ).fetchone()[0]
        )

    def term_frequencies(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many keyword rows hold each term, and how many rows there are."""
        marks = ",".join("?" * len(terms))
        rows = self.db.execute(
            f"SELECT term, rows FROM term_rows WHERE term IN ({marks})", list(terms)
        ).fetchall()
        # Counted at commit time: COUNT(*) on every question would scan a large index.
        total = _meta_value(self.db, "sentence_count")
        floor = max((int(r[1]) for r in rows), default=0)
        return {r[0]: int(r[1]) for r in rows}, int(total) if total else max(floor, 1)

    # -- vectors

    def record_vectors(
        self, *, vector_count: int, vector_ids_digest: str, layout: VectorLayout | None = None
    ) -> None:
        """Record what the generation's vector files hold and which files they are (inside
        the transaction that commits the generation)."""
        values: dict[str, object] = {
            "faiss_entries": vector_count,
            "vector_ids_digest": vector_ids_digest,
        }
        values.update(_layout_rows(layout or VectorLayout(base_count=vector_count)))
        self._set_meta(values)

    def file_vector_ids(self, file_ids: Sequence[int]) -> np.ndarray:
        """The sorted vector ids of some files' sentences and passages."""
        import numpy as np

        sql = (
            "SELECT id FROM sentences WHERE file_id IN ({marks}) UNION ALL "
            f"SELECT id + {PASSAGE_ID_BASE} FROM passages WHERE file_id IN ({{marks}})"
        )
        found = [r[0] for r in self._rows_in(sql, file_ids)]
        return np.sort(np.array(found, dtype=np.int64))

    def vector_ids(self, keys: Iterable[str]) -> dict[str, int]:
        """Vector ids of the given keys that are already stored."""
        return dict(self._rows_in("SELECT key, id FROM vectors WHERE key IN ({marks})", keys))

    def vectors_by_key(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of the given keys that are stored."""
        sql = "SELECT key, vector FROM vectors WHERE key IN ({marks})"
        return {key: decode_vector(blob) for key, blob in self._rows_in(sql, keys)}

    def add_vectors(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store new vectors (encode_vector) and commit, so an interrupted build keeps them."""
        blobs = [encode_vector(v) for v in vectors]
        with self.db.atomic():
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO vectors(key, vector) VALUES (?, ?)",
                zip(keys, blobs, strict=True),
            )

    def narrow_vectors(self, block: int = 4096) -> int:
        """Store the float32 vectors older versions wrote as float16 (encode_vector: those
        float16 can hold), inside the caller's transaction; how many were rewritten. A float16
        blob has an odd length, a float32 one an even length, which SQLite reads without
        loading the blob.

        Each row is deleted and written again rather than updated: a row updated in place
        leaves its page half empty, so the file would not shrink. The sentences and passages
        using a row are checked once it is back (deferred foreign keys)."""
        narrowed, after = 0, 0
        select = (
            "SELECT id, key, vector FROM vectors WHERE id > ? AND length(vector) % 2 = 0 "
            "ORDER BY id LIMIT ?"
        )
        self.db.execute("PRAGMA defer_foreign_keys = ON")
        try:
            while rows := self.db.execute(select, [after, block]).fetchall():
                after = rows[-1][0]
                smaller = [
                    (vector_id, key, blob)
                    for vector_id, key, old in rows
                    if len(blob := encode_vector(decode_vector(old))) < len(old)
                ]
                ids = [(vector_id,) for vector_id, _, _ in smaller]
                self.db.conn.executemany("DELETE FROM vectors WHERE id = ?", ids)
                insert = "INSERT INTO vectors(id, key, vector) VALUES (?, ?, ?)"
                self.db.conn.executemany(insert, smaller)
                narrowed += len(smaller)
        finally:
            self.db.execute("PRAGMA defer_foreign_keys = OFF")
        return narrowed

    def nonfinite_vectors(self, block: int = 4096) -> list[int]:
        """Ids of stored vectors holding NaN or infinity (written by a damaged model)."""
        import numpy as np

        found: list[int] = []
        cursor = self.db.execute("SELECT id, vector FROM vectors")
        while rows := cursor.fetchmany(block):
            for vector_id, blob in rows:
                if not np.isfinite(decode_vector(blob)).all():
                    found.append(int(vector_id))
        return found

    def files_using(self, vector_ids: Sequence[int]) -> list[FileRow]:
        """The files whose sentences or passages use any of these vectors."""
        sql = """SELECT DISTINCT f.id, f.path, f.size, f.mtime_ns, f.sha256 FROM files f
                 WHERE f.id IN (SELECT file_id FROM sentences WHERE vector_id IN ({marks})
                 UNION SELECT file_id FROM passages WHERE vector_id IN ({marks}))"""
        rows = {r[0]: FileRow(*r) for r in self._rows_in(sql, vector_ids)}
        return list(rows.values())

    def reindex(self) -> None:
        """Rebuild SQLite's own indexes (what repair can do for a damaged b-tree index)."""
        self.db.execute("REINDEX")

    def vector_refs(self, file_ids: Sequence[int]) -> list[int]:
        """The stored vectors (vectors.id) that some files' sentences and passages use."""
        sql = (
            "SELECT vector_id FROM sentences WHERE file_id IN ({marks}) UNION "
            "SELECT vector_id FROM passages WHERE file_id IN ({marks})"
        )
        return sorted({r[0] for r in self._rows_in(sql, file_ids)})

    def delete_unused_vectors(self, released: Sequence[int] | None = None) -> None:
        """Drop vectors no sentence or passage refers to (space is reclaimed on delete).

        With `released` (what the rows this build removed referred to, see vector_refs) only
        those and the vectors stored since the last commit are looked at, so the cost follows
        the change; without it, or on an index that has no mark yet, every vector is.
        """
        mark = _meta_value(self.db, _VECTOR_MARK)
        if released is None or mark is None:
            self.db.execute(
                "DELETE FROM vectors WHERE id NOT IN "
                "(SELECT vector_id FROM sentences UNION SELECT vector_id FROM passages)"
            )
        else:
            recent = self.db.execute("SELECT id FROM vectors WHERE id > ?", [int(mark)])
            candidates = sorted({*released, *(r[0] for r in recent)})
            sql = (
                "DELETE FROM vectors WHERE id IN ({marks}) AND id NOT IN "
                "(SELECT vector_id FROM sentences WHERE vector_id IN ({marks}) UNION "
                "SELECT vector_id FROM passages WHERE vector_id IN ({marks}))"
            )
            for statement, values in self._bound(sql, candidates):
                self.db.execute(statement, values)
        newest = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM vectors").fetchone()[0]
        self._set_meta({_VECTOR_MARK: newest})

    def vector_count(self) -> int:
        """How many vectors the vector index of this state holds: sentences plus passages."""
        return self.db.execute(
            "SELECT (SELECT COUNT(*) FROM sentences) + (SELECT COUNT(*) FROM passages)"
        ).fetchone()[0]

    def expected_vector_ids(self) -> np.ndarray:
        """The sorted vector ids the current state should hold."""
        import numpy as np

        rows = self.db.execute(
            f"SELECT id FROM sentences UNION ALL SELECT id + {PASSAGE_ID_BASE} FROM passages "
            "ORDER BY 1"
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def vector_blocks(self, dim: int, block: int = VECTOR_BLOCK) -> Iterator[np.ndarray]:
        """Every stored vector, used or not, in blocks (any schema version: the vectors table
        has not changed since the first, and its blobs tell their encoding)."""
        cursor = self.db.execute("SELECT vector FROM vectors ORDER BY id")
        while rows := cursor.fetchmany(block):
            yield decode_vectors([r[0] for r in rows], dim)

    def iter_vectors(
        self, dim: int, block: int = VECTOR_BLOCK
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(vector ids, vectors) of sentences and passages in id order, in blocks, from this
        transaction's view.

        Sentences, then passages (whose vector ids all lie above the sentences'), each read in
        rowid order: one query over both, ordered by vector id, sorted the passages' vectors
        in a temporary B-tree first (6 GB of temporary file at 10 M sentences)."""
        import numpy as np

        for query in (
            "SELECT s.id, v.vector FROM sentences s JOIN vectors v ON v.id = s.vector_id "
            "ORDER BY s.id",
            f"SELECT p.id + {PASSAGE_ID_BASE}, v.vector FROM passages p "
            "JOIN vectors v ON v.id = p.vector_id ORDER BY p.id",
        ):
            cursor = self.db.execute(query)
            while rows := cursor.fetchmany(block):
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                yield ids, decode_vectors([r[1] for r in rows], dim)

    # -- checks and upkeep

    def stats(self) -> Stats:
        """Row counts."""
        counts = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM files), (SELECT COUNT(*) FROM sentences), "
            "(SELECT COUNT(*) FROM passages), (SELECT COUNT(*) FROM vectors)"
        ).fetchone()
        return Stats(*counts)

    def integrity(self) -> Integrity:
        """Rows pointing nowhere, vectors staged by an unfinished build, SQLite's quick_check."""
        (without_vector, without_file, staged) = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM sentences WHERE vector_id NOT IN "
            "(SELECT id FROM vectors)), (SELECT COUNT(*) FROM sentences WHERE file_id NOT IN "
            "(SELECT id FROM files)), (SELECT COUNT(*) FROM vectors WHERE id NOT IN "
            "(SELECT vector_id FROM sentences UNION SELECT vector_id FROM passages))"
        ).fetchone()
        quick = self.db.execute("PRAGMA quick_check").fetchone()[0]
        return Integrity(without_vector, without_file, staged, quick, self._miscounted_terms())

    def _miscounted_terms(self) -> int:
        counted = term_counts(_every_keyword_row(self.db))
        stored = dict(self.db.execute("SELECT term, rows FROM term_rows").fetchall())
        return sum(1 for t in counted.keys() | stored.keys() if counted[t] != stored.get(t, 0))

    def recount_terms(self) -> None:
        """Count every term's keyword rows again (index verify --repair)."""
        with self.db.atomic():
            self.db.execute("DELETE FROM term_rows")
            _count_terms(self.db, _every_keyword_row(self.db), sign=1)

    def reclaim_space(self) -> bool:
        """Give free pages back to the file system when they are over a quarter of the file."""
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        total = self.db.execute("PRAGMA page_count").fetchone()[0]
        if free < RECLAIM_MIN_PAGES or free * 4 < total:
            return False
        # executescript steps the pragma to the end; execute() frees a single page.
        self.db.conn.executescript("PRAGMA incremental_vacuum;")
        # Without waiting: a reader holding an old snapshot must not stall the build for the
        # busy timeout; the WAL is then truncated by a later build.
        self.db.execute("PRAGMA busy_timeout = 0")
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return True

    def confirm_generation(self, generation: int) -> bool:
        """Whether a new connection sees `generation` committed (a build that cannot confirm
        its own commit, e.g. its WAL file was removed under it, must not report success)."""
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=30)) as db:
            try:
                committed = _meta_value(db, "generation")
            except sqlite3.DatabaseError:
                return False
        return committed is not None and int(committed) == generation

    def size_on_disk(self) -> int:
        """Bytes used by the index directory."""
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())


def load_sqlite_utils() -> ModuleType:
    """sqlite_utils, imported without pandas.

    sqlite-utils imports pandas when it is installed, to store DataFrame values, which the
    index never does: that import took 0.5–0.8 s of every `index` process where pandas is
    installed (`python -X importtime -c "import sqlite_utils"`). pandas stays importable for
    whatever needs it later in the process (Ray Data does).
    """
    import sys

    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        import sqlite_utils

        return sqlite_utils
    sys.modules["pandas"] = None  # type: ignore[assignment]  # import pandas → ImportError
    try:
        import sqlite_utils
    finally:
        del sys.modules["pandas"]
    return sqlite_utils


def _readable(conn: sqlite3.Connection) -> sqlite3.Connection:
    """The connection, once a first read has worked (SQLite opens lazily)."""
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _make_dir(path: Path) -> None:
    """The index directory, made with DIR_MODE whatever the caller's umask."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)


def _sentence_columns(s: SentenceEntry) -> tuple[str, str, int, int, int, int]:
    return (s.text, s.kind, s.line_start, s.line_end, s.char_start, s.char_end)


def _insert_keyword_rows(
    db: sqlite_utils.Database, file_id: int, *, window: int, count_terms: bool = True
) -> None:
    """Index one file's stored sentences for keyword search (and count their terms)."""
    stored = db.execute(
        "SELECT id, text, kind FROM sentences WHERE file_id = ? ORDER BY position", [file_id]
    ).fetchall()
    rows = list(keyword_rows(stored, window=window))
    db.conn.executemany("INSERT INTO sentences_fts(rowid, own, near) VALUES (?, ?, ?)", rows)
    if count_terms:
        _count_terms(db, ((own, near) for _, own, near in rows), sign=1)


def _count_terms(
    db: sqlite_utils.Database, rows: Iterable[tuple[str, str]], *, sign: Literal[1, -1]
) -> None:
    """Add (sign 1) or take away (-1) keyword rows (own, near) in the rows-per-term counts;
    a term no row holds any more is dropped."""
    counts = term_counts(rows)
    if not counts:
        return
    db.conn.executemany(
        "INSERT INTO term_rows(term, rows) VALUES (?, ?) "
        "ON CONFLICT(term) DO UPDATE SET rows = rows + excluded.rows",
        [(term, sign * n) for term, n in counts.items()],
    )
    if sign < 0:
        db.conn.executemany(
            "DELETE FROM term_rows WHERE term = ? AND rows <= 0", [(t,) for t in counts]
        )


def _every_keyword_row(db: sqlite_utils.Database) -> Iterable[tuple[str, str]]:
    """(own terms, neighbours' terms) of every keyword row, as counted in term_rows."""
    return db.execute("SELECT own, near FROM sentences_fts")


def term_counts(rows: Iterable[tuple[str, str]]) -> Counter[str]:
    """How many of some keyword rows (own terms, neighbours' terms) hold each term."""
    counts: Counter[str] = Counter()
    for own, near in rows:
        counts.update(set(own.split()).union(near.split()))
    return counts


def keyword_rows(
    sentences: Sequence[tuple[int, str, str]], *, window: int
) -> Iterator[tuple[int, str, str]]:
    """FTS5 rows for one file's (id, text, kind) in order: a sentence's terms, and as its
    context the terms of `window` neighbours on each side and of the heading it sits under."""
    terms = [keyword.document(text) for _, text, _ in sentences]
    heading = -1
    for i, (sentence_id, _, kind) in enumerate(sentences):
        if kind == "heading":
            heading = i
        start = max(0, i - window)
        near = terms[start:i] + terms[i + 1 : i + window + 1]
        if 0 <= heading < start:
            near.append(terms[heading])
        yield sentence_id, terms[i], " ".join(near)
