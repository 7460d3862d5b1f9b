"""The index on disk: SQLite (source of truth) and the FAISS file derived from it.

Layout of an index directory::

    index.sqlite          files, sentences, vectors (float32 blobs), meta; WAL mode
    vectors.<gen>.faiss   inner-product index over sentence ids, for generation <gen>
    build.lock            held by the one build allowed to write

SQLite's ``meta.generation`` names the FAISS file that matches it. A build writes the
next generation's FAISS file first (temp file, fsync, rename) and then commits the
SQLite transaction that points at it, so a reader that reads the generation and its
sentences inside one read transaction always sees a matching pair.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np
import sqlite_utils

from indexer import keyword
from indexer.config import DB_NAME
from indexer.errors import IndexUnusableError, NoIndexError

#: Keyword rows hold a sentence and this many neighbours on each side, so words of a question
#: that are spread over a paragraph still meet (measured with scripts/eval.py).
KEYWORD_WINDOW = 2
#: BM25 column weights: own words count double, so the sentence that holds them is the hit
#: (equal weights were within noise on JSQuAD but point at neighbours, e.g. headings).
BM25_WEIGHTS = "1.0, 0.5"
LOCK_NAME = "build.lock"
FAISS_PATTERN = "vectors.{gen}.faiss"
#: Columns of SentenceRow, in order.
SENTENCE_SELECT = """SELECT s.id, s.file_id, f.path, s.position, s.text, s.kind, s.line_start,
    s.line_end, s.char_start, s.char_end, s.page
    FROM sentences s JOIN files f ON f.id = s.file_id"""
#: Free pages worth handing back after a build (4 KiB pages: 4 MB).
RECLAIM_MIN_PAGES = 1024
#: FAISS ids at or above this are chunks (id - CHUNK_BASE = chunks.id); below, sentence ids.
CHUNK_BASE = 1 << 48


@dataclass(frozen=True)
class FileRow:
    """What the index remembers about one indexed file."""

    id: int
    path: str
    size: int
    mtime_ns: int
    sha256: str


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
    # Terms are made by indexer.keyword (CJK bigrams, words elsewhere), so unicode61 only has
    # to split on the spaces between them. rowid = sentence id.
    db.execute(
        "CREATE VIRTUAL TABLE sentences_fts "
        "USING fts5(own, near, tokenize='unicode61 remove_diacritics 0')"
    )
    db.execute("CREATE VIRTUAL TABLE sentences_vocab USING fts5vocab('sentences_fts', 'row')")
    for (file_id,) in db.execute("SELECT id FROM files").fetchall():
        insert_keyword_rows(db, file_id)


def _m003_chunks(db: sqlite_utils.Database) -> None:
    # Runs of consecutive sentences (positions first..last) with a vector of their own; an
    # index without chunks still answers from sentence vectors until its files change.
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
    # A chunks row is a chunk (up to three sentences) or a section (the sentences under one
    # heading, as many as the model takes); sections arrive when files are next re-split.
    db.execute("ALTER TABLE chunks ADD COLUMN span TEXT NOT NULL DEFAULT 'chunk'")


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("0001_initial", _m001_initial),
    ("0002_keyword", _m002_keyword),
    ("0003_chunks", _m003_chunks),
    ("0004_pages", _m004_pages),
    ("0005_sections", _m005_sections),
]
SCHEMA_VERSION = len(MIGRATIONS)


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
            db.execute(
                "INSERT INTO _migrations VALUES (?, datetime('now'))",
                [name],
            )
        applied.append(name)
    return applied


# ---------------------------------------------------------------- the store


class Store:
    """An index directory: one SQLite database and the FAISS file of its current generation."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db_path = self.path / DB_NAME
        self.lock_path = self.path / LOCK_NAME
        self._db: sqlite_utils.Database | None = None

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
        if not create and not self.exists():
            raise NoIndexError(self.path)
        try:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA foreign_keys = ON")
            # No plugins: loading them scans every installed package's entry points (~20 ms
            # of each cold `index ask`), and the index needs none.
            return sqlite_utils.Database(conn, execute_plugins=False)
        except sqlite3.DatabaseError as exc:
            raise IndexUnusableError(
                f"cannot open {self.db_path}: {exc} — delete {self.path} and run `index build DIR`"
            ) from exc

    def create(self) -> None:
        """Create the directory and database if missing, and bring the schema up to date."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self._db is None:
            self._db = self._connect(create=True)
        try:
            # Only takes effect before the first table: lets a build give freed pages back.
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            # Always (a build killed right after creating the file must not leave rollback mode).
            self.db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as exc:
            raise IndexUnusableError(
                f"{self.db_path} is not a usable index ({exc}) — delete {self.path} and rebuild"
            ) from exc
        self.upgrade()

    def upgrade(self) -> list[str]:
        """Apply pending migrations (writers only)."""
        try:
            return migrate(self.db)
        except sqlite3.DatabaseError as exc:
            raise IndexUnusableError(
                f"{self.db_path} is not a usable index ({exc}) — delete {self.path} and rebuild"
            ) from exc

    def check_schema(self) -> None:
        """Refuse to read an index whose schema this version does not know."""
        try:
            names = {r[0] for r in self.db.execute("SELECT name FROM _migrations").fetchall()}
        except sqlite3.DatabaseError as exc:
            raise IndexUnusableError(
                f"{self.db_path} is not a usable index ({exc}) — delete {self.path} and rebuild"
            ) from exc
        known = {name for name, _ in MIGRATIONS}
        if names - known:
            raise IndexUnusableError(
                f"{self.path} was written by a newer version of indexer — upgrade indexer"
            )
        if known - names:
            raise IndexUnusableError(
                f"{self.path} uses an older schema — run `index build DIR` to upgrade it"
            )

    def close(self) -> None:
        """Close the database connection."""
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- meta

    def meta(self) -> dict[str, str]:
        """All meta key/value pairs."""
        return {k: v for k, v in self.db.execute("SELECT key, value FROM meta").fetchall()}

    def set_meta(self, values: dict[str, object]) -> None:
        """Upsert meta values (inside the caller's transaction, if any)."""
        self.db.conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, str(v)) for k, v in values.items()],
        )

    def generation(self) -> int:
        """The committed generation (0 before the first build)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    # -- files and sentences

    def files(self) -> dict[str, FileRow]:
        """Indexed files by relative path."""
        rows = self.db.execute("SELECT id, path, size, mtime_ns, sha256 FROM files").fetchall()
        return {r[1]: FileRow(*r) for r in rows}

    def sentences(self, ids: Sequence[int]) -> dict[int, SentenceRow]:
        """Sentences by id, with their file path."""
        sql = f"{SENTENCE_SELECT} WHERE s.id IN ({{marks}})"
        return {r[0]: SentenceRow(*r) for r in self._rows_in(sql, ids)}

    def texts(self, ids: Sequence[int]) -> dict[int, str]:
        """The text of some sentences."""
        sql = "SELECT id, text FROM sentences WHERE id IN ({marks})"
        return {int(i): text for i, text in self._rows_in(sql, ids)}

    def neighbours(self, file_id: int, first: int, last: int) -> list[SentenceRow]:
        """Sentences of one file with position in [first, last], in order."""
        rows = self.db.execute(
            f"{SENTENCE_SELECT} WHERE s.file_id = ? AND s.position BETWEEN ? AND ? "
            "ORDER BY s.position",
            [file_id, first, last],
        ).fetchall()
        return [SentenceRow(*r) for r in rows]

    def add_file_sentences(self, file_id: int, rows: Iterable[tuple]) -> None:
        """Insert a file's sentences (position order) and their keyword rows."""
        self.db.conn.executemany(
            """INSERT INTO sentences(file_id, position, text, kind, line_start, line_end,
               char_start, char_end, vector_id, page) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            rows,
        )
        insert_keyword_rows(self.db, file_id)

    def add_file_chunks(self, rows: Sequence[tuple[int, int, int, int, str]]) -> None:
        """Insert a file's chunks and sections:
        (file_id, first position, last position, vector id, "chunk" or "section")."""
        self.db.conn.executemany(
            "INSERT INTO chunks(file_id, first, last, vector_id, span) VALUES (?, ?, ?, ?, ?)",
            rows,
        )

    def delete_unused_vectors(self) -> None:
        """Drop vectors no sentence or chunk refers to (space is reclaimed on delete)."""
        self.db.execute(
            "DELETE FROM vectors WHERE id NOT IN "
            "(SELECT vector_id FROM sentences UNION SELECT vector_id FROM chunks)"
        )

    def faiss_entries(self) -> int:
        """How many vectors the FAISS file of this state holds: sentences plus chunks."""
        return self.db.execute(
            "SELECT (SELECT COUNT(*) FROM sentences) + (SELECT COUNT(*) FROM chunks)"
        ).fetchone()[0]

    def faiss_expected_ids(self) -> np.ndarray:
        """The sorted FAISS ids the current state should hold."""
        rows = self.db.execute(
            f"SELECT id FROM sentences UNION ALL SELECT id + {CHUNK_BASE} FROM chunks ORDER BY 1"
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def chunks_of(self, sentence_ids: Sequence[int]) -> dict[int, Holders]:
        """The chunk and section holding each sentence, and the sentence's kind (sentences of
        an index without chunks are absent)."""
        sql = """SELECT s.id, c.id, c.span, s.kind FROM sentences s JOIN chunks c
                 ON c.file_id = s.file_id AND s.position BETWEEN c.first AND c.last
                 WHERE s.id IN ({marks})"""
        chunk: dict[int, int] = {}
        section: dict[int, int] = {}
        kinds: dict[int, str] = {}
        for s, c, span, kind in self._rows_in(sql, sentence_ids):
            (chunk if span == "chunk" else section)[int(s)] = int(c)
            kinds[int(s)] = kind
        return {s: Holders(c, section.get(s), kinds[s]) for s, c in chunk.items()}

    def chunk_members(self, chunk_ids: Sequence[int]) -> dict[int, list[int]]:
        """The sentence ids of each chunk."""
        found: dict[int, list[int]] = {}
        sql = """SELECT c.id, s.id FROM chunks c JOIN sentences s ON s.file_id = c.file_id
                 AND s.position BETWEEN c.first AND c.last WHERE c.id IN ({marks})"""
        for chunk_id, sentence_id in self._rows_in(sql, chunk_ids):
            found.setdefault(int(chunk_id), []).append(int(sentence_id))
        return found

    def chunk_vectors(self, chunk_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored vectors of some chunks."""
        return self._vectors("chunks", chunk_ids)

    def delete_file(self, file_id: int, *, keep_row: bool = False) -> None:
        """Remove a file's sentences, chunks and keyword rows (and the file row unless keep_row)."""
        self.db.execute(
            "DELETE FROM sentences_fts WHERE rowid IN (SELECT id FROM sentences WHERE file_id = ?)",
            [file_id],
        )
        self.db.execute("DELETE FROM sentences WHERE file_id = ?", [file_id])
        self.db.execute("DELETE FROM chunks WHERE file_id = ?", [file_id])
        if not keep_row:
            self.db.execute("DELETE FROM files WHERE id = ?", [file_id])

    # -- keyword search

    def keyword_search(self, match: str, limit: int) -> list[tuple[int, float]]:
        """(sentence id, BM25 score — higher is better) for the best keyword rows."""
        rows = self.db.execute(
            f"SELECT rowid, -bm25(sentences_fts, {BM25_WEIGHTS}) AS score FROM sentences_fts "
            "WHERE sentences_fts MATCH ? ORDER BY score DESC LIMIT ?",
            [match, limit],
        ).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def term_frequencies(self, terms: Sequence[str]) -> tuple[dict[str, int], int]:
        """How many keyword rows hold each term, and how many rows there are."""
        marks = ",".join("?" * len(terms))
        rows = self.db.execute(
            f"SELECT term, doc FROM sentences_vocab WHERE term IN ({marks})", list(terms)
        ).fetchall()
        # Counted at commit time: COUNT(*) on every question would scan a large index.
        total = self.db.execute("SELECT value FROM meta WHERE key = 'sentence_count'").fetchone()
        return {r[0]: int(r[1]) for r in rows}, int(total[0]) if total else max(rows_max(rows), 1)

    def sentence_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored vectors of some sentences."""
        return self._vectors("sentences", ids)

    def _vectors(self, table: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
        sql = (
            f"SELECT t.id, v.vector FROM {table} t JOIN vectors v ON v.id = t.vector_id "
            "WHERE t.id IN ({marks})"
        )
        return {
            int(i): np.frombuffer(blob, dtype=np.float32) for i, blob in self._rows_in(sql, ids)
        }

    def _rows_in(self, sql: str, ids: Iterable[object]) -> Iterator[tuple]:
        """Rows of `sql`, whose `{marks}` is an IN list, for any number of ids (500 at a time)."""
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            yield from self.db.execute(sql.format(marks=marks), chunk).fetchall()

    # -- vectors

    def known_keys(self, keys: Iterable[str]) -> dict[str, int]:
        """Vector ids of the given keys that are already stored."""
        return dict(self._rows_in("SELECT key, id FROM vectors WHERE key IN ({marks})", keys))

    def add_vectors(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store new vectors and commit, so an interrupted build keeps them."""
        blobs = [np.ascontiguousarray(v, dtype=np.float32).tobytes() for v in vectors]
        with self.db.atomic():
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO vectors(key, vector) VALUES (?, ?)",
                zip(keys, blobs, strict=True),
            )

    def iter_vectors(self, dim: int, block: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(FAISS ids, vectors) of sentences and chunks in blocks, from this transaction's view."""
        cursor = self.db.execute(
            "SELECT s.id, v.vector FROM sentences s JOIN vectors v ON v.id = s.vector_id "
            f"UNION ALL SELECT c.id + {CHUNK_BASE}, v.vector FROM chunks c "
            "JOIN vectors v ON v.id = c.vector_id ORDER BY 1"
        )
        while rows := cursor.fetchmany(block):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            yield ids, vecs.reshape(len(rows), dim)

    # -- FAISS

    def faiss_path(self, generation: int) -> Path:
        """The FAISS file belonging to a generation."""
        return self.path / FAISS_PATTERN.format(gen=generation)

    def write_faiss(self, generation: int, dim: int) -> Path:
        """Build the FAISS index from the stored vectors and write it atomically."""
        return self.save_faiss(generation, build_faiss(self.iter_vectors(dim), dim))

    def save_faiss(self, generation: int, index: faiss.Index) -> Path:
        """Write a generation's FAISS file atomically: temp file, fsync, rename."""
        target = self.faiss_path(generation)
        tmp = target.with_suffix(".tmp")
        faiss.write_index(index, str(tmp))
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_dir(self.path)
        return target

    def read_faiss(self, generation: int) -> faiss.Index:
        """Open the FAISS file of a generation (memory-mapped where faiss allows it)."""
        path = self.faiss_path(generation)
        try:
            return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            return faiss.read_index(str(path))

    def remove_old_faiss(self, keep: int) -> None:
        """Delete FAISS files older than the previous generation (readers may still hold it)."""
        for path in self.path.glob("vectors.*.faiss"):
            gen = path.name.split(".")[1]
            if gen.isdigit() and int(gen) < keep - 1:
                path.unlink(missing_ok=True)
        for path in self.path.glob("vectors.*.tmp"):
            path.unlink(missing_ok=True)

    def reclaim_space(self) -> bool:
        """Give free pages back to the file system when they are over a quarter of the file."""
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        total = self.db.execute("PRAGMA page_count").fetchone()[0]
        if free < RECLAIM_MIN_PAGES or free * 4 < total:
            return False
        # executescript steps the pragma to the end; execute() frees a single page.
        self.db.conn.executescript("PRAGMA incremental_vacuum;")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True

    def size_on_disk(self) -> int:
        """Bytes used by the index directory."""
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())


def rows_max(rows: Sequence[tuple[str, int]]) -> int:
    """The largest document frequency among vocabulary rows (a floor for the row count)."""
    return max((int(r[1]) for r in rows), default=0)


class Holders(NamedTuple):
    """What holds a sentence: its chunk, its section (None when the chunk is the whole
    section) and the sentence's kind."""

    chunk: int
    section: int | None
    kind: str


def insert_keyword_rows(db: sqlite_utils.Database, file_id: int) -> None:
    """Index one file's stored sentences for keyword search."""
    stored = db.execute(
        "SELECT id, text, kind FROM sentences WHERE file_id = ? ORDER BY position", [file_id]
    ).fetchall()
    db.conn.executemany(
        "INSERT INTO sentences_fts(rowid, own, near) VALUES (?, ?, ?)", keyword_rows(stored)
    )


def keyword_rows(sentences: Sequence[tuple[int, str, str]]) -> Iterator[tuple[int, str, str]]:
    """FTS5 rows for one file's (id, text, kind) in order: a sentence's terms, and as its
    context its neighbours' and those of the heading it sits under."""
    terms = [keyword.document(text) for _, text, _ in sentences]
    heading = -1
    for i, (sentence_id, _, kind) in enumerate(sentences):
        if kind == "heading":
            heading = i
        start = max(0, i - KEYWORD_WINDOW)
        near = terms[start:i] + terms[i + 1 : i + KEYWORD_WINDOW + 1]
        if 0 <= heading < start:
            near.append(terms[heading])
        yield sentence_id, terms[i], " ".join(near)


def build_faiss(blocks: Iterable[tuple[np.ndarray, np.ndarray]], dim: int) -> faiss.Index:
    """An exact inner-product index (cosine on normalised vectors) keyed by sentence id."""
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    for ids, vecs in blocks:
        index.add_with_ids(np.ascontiguousarray(vecs), ids)
    return index


def faiss_ids(index: faiss.Index) -> np.ndarray:
    """The sentence ids stored in a FAISS index built by build_faiss."""
    id_map = faiss.downcast_index(index).id_map  # type: ignore[attr-defined]
    return faiss.vector_to_array(id_map).astype(np.int64)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
