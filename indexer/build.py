"""The build use case: bring an index in line with a folder, embedding only what is new."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TypeVar

from indexer import config
from indexer.embed import Embedder
from indexer.errors import EmptyFolderError, FileSkipped, IndexerError, ModelMismatchError
from indexer.load import READ_FAILURES, Document, FileInfo, Selection, read_document, walk
from indexer.split import Sentence, split_document
from indexer.store import FileRow, Store, vector_key

#: Bump when splitting or windowing changes: files of an index built with another version are
#: re-split on the next build (their unchanged sentences keep their vectors).
SPLIT_VERSION = "5"


Progress = Callable[[int], None]
T = TypeVar("T")
BAD_NAME = "file name is not valid UTF-8 (rename the file)"

#: Crash-test hook: INDEXER_FAULT=STEP[:N] kills the build with SIGKILL at the N-th pass of STEP
#: (vectors: after a chunk of vectors is committed; faiss: after the new FAISS file is written,
#: before SQLite commits; commit: after SQLite commits, before old files are cleaned up).
FAULT_ENV = "INDEXER_FAULT"
_passes: Counter[str] = Counter()


@dataclass
class Unit:
    """One stored sentence (or one window of a long sentence) before it has an id."""

    sentence: Sentence
    text: str
    key: str


@dataclass
class Chunk:
    """A run of consecutive units embedded together, so a question can match a whole passage:
    a chunk (up to CHUNK_SENTENCES units) or a section (as many as fit the model)."""

    first: int
    last: int
    text: str
    key: str
    span: str = "chunk"


@dataclass
class FilePlan:
    """A file to (re)index: its document metadata and the units to store."""

    doc: Document
    units: list[Unit]
    old: FileRow | None = None
    chunks: list[Chunk] = field(default_factory=list)


@dataclass
class BuildReport:
    """What a build did (or, with dry_run, would do)."""

    root: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    sentences: int = 0
    embedded: int = 0
    chunks_embedded: int = 0
    reused: int = 0
    windowed: int = 0
    generation: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def failed(self) -> list[tuple[str, str]]:
        """Skipped files whose reason is a read failure rather than their content."""
        return [(p, r) for p, r in self.skipped if r.startswith(READ_FAILURES)]

    @property
    def touched(self) -> bool:
        """True when the build changed what the index holds."""
        return bool(self.added or self.changed or self.deleted or self.renamed)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready run report."""
        return {
            "root": self.root,
            "dry_run": self.dry_run,
            "files": {
                "added": len(self.added),
                "changed": len(self.changed),
                "deleted": len(self.deleted),
                "renamed": len(self.renamed),
                "unchanged": self.unchanged,
                "skipped": len(self.skipped),
            },
            "sentences": {
                "total": self.sentences,
                "embedded": self.embedded,
                "reused": self.reused,
                "chunks_embedded": self.chunks_embedded,
                "windowed": self.windowed,
            },
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "renamed": [{"from": a, "to": b} for a, b in self.renamed],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "skipped_by_reason": _count_reasons(self.skipped),
            "kept_unreadable": self.kept,
            "truncated": self.truncated,
            "generation": self.generation,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Plan:
    """The difference between a folder and an index."""

    index: list[FilePlan] = field(default_factory=list)
    touch: list[tuple[FileRow, FileInfo]] = field(default_factory=list)
    rename: list[tuple[FileRow, FileInfo]] = field(default_factory=list)
    delete: list[FileRow] = field(default_factory=list)


def model_meta(embedder: Embedder, model_path: str) -> dict[str, object]:
    """What the index records about the model it was built with."""
    info = embedder.info
    return {
        "model_name": info.name,
        "model_checksum": info.checksum,
        "model_path": model_path,
        "dimension": info.dimension,
        "pooling": info.pooling,
        "normalize": info.normalize,
        "query_prefix": info.query_prefix,
        "passage_prefix": info.passage_prefix,
        "split_version": SPLIT_VERSION,
    }


#: What to do about a model mismatch while building; {model} is the index's model path.
BUILD_HINT = "pass --model {model} or use another --index"


def check_model(store: Store, embedder: Embedder, *, hint: str = BUILD_HINT) -> None:
    """Refuse to mix vectors of one model with an index built with another."""
    meta = store.meta()
    recorded = meta.get("model_checksum")
    if recorded and recorded != embedder.info.checksum:
        path = meta.get("model_path")
        raise ModelMismatchError(
            f"{store.path} was built with model {meta.get('model_name')} "
            f"({path or 'the default model'}), not {embedder.info.name} — "
            + hint.format(model=path or "(omit for the default)")
        )


def build(
    store: Store,
    embedder: Embedder,
    root: Path,
    *,
    model_path: str = "",
    dry_run: bool = False,
    batch_size: int = config.DEFAULT_BATCH_SIZE,
    progress: Callable[[int], Progress] | None = None,
    warn: Callable[[str], None] | None = None,
    selection: Selection | None = None,
) -> BuildReport:
    """Index new and changed files under root, drop deleted ones, re-path moved ones."""
    started = time.perf_counter()
    report = BuildReport(root=str(root), dry_run=dry_run)
    if store.exists() and not dry_run:
        store.create()  # finishes a schema that an interrupted first build left half-made
    if store.exists():
        check_model(store, embedder)
    old = store.files() if store.exists() else {}
    resplit = store.exists() and store.meta().get("split_version") != SPLIT_VERSION
    plan = make_plan(root, old, embedder, report, resplit=resplit, selection=selection)
    if not old and not plan.index and not report.skipped:
        raise EmptyFolderError(
            f"no documents found in {root} (looked for {', '.join(sorted(config.TEXT_SUFFIXES))})"
            " — point `index build` at a folder of text files"
        )
    missing = _missing_units(store, plan)
    report.embedded = sum(1 for m in missing if isinstance(m, Unit))
    report.chunks_embedded = len(missing) - report.embedded
    report.reused = report.sentences - report.embedded
    if dry_run:
        report.seconds = time.perf_counter() - started
        return report
    store.create()
    embed_missing(store, embedder, missing, batch_size=batch_size, progress=progress)
    report.generation = commit(store, plan, model_meta(embedder, model_path))
    report.seconds = time.perf_counter() - started
    return report


def make_plan(
    root: Path,
    old: dict[str, FileRow],
    embedder: Embedder,
    report: BuildReport,
    *,
    resplit: bool = False,
    selection: Selection | None = None,
) -> Plan:
    """Compare the folder with the index: stat first, content hash only when stat differs."""
    plan = Plan()
    unlisted: list[tuple[str, str]] = []
    listing = {
        info.path: info
        for info in walk(
            root, selection or Selection(), on_skip=lambda path, why: unlisted.append((path, why))
        )
    }
    report.skipped.extend(unlisted)
    gone = _gone(old, listing, unlisted, report)
    gone_by_sha = {row.sha256: row for row in gone.values()}
    for path, info in listing.items():
        if not _storable(path):
            report.skipped.append((path.encode("utf-8", "backslashreplace").decode(), BAD_NAME))
            continue
        row = old.get(path)
        if row and row.size == info.size and row.mtime_ns == info.mtime_ns and not resplit:
            report.unchanged += 1
            continue
        try:
            doc = read_document(root, info)
        except FileSkipped as skipped:
            report.skipped.append((path, skipped.reason))
            if row:
                report.kept.append(path)
            continue
        _classify(plan, report, doc, info, row, gone_by_sha, embedder, resplit=resplit)
    renamed = {moved.id for moved, _ in plan.rename}
    for path, old_row in gone.items():
        if old_row.id not in renamed:
            plan.delete.append(old_row)
            report.deleted.append(path)
    return plan


def _gone(
    old: dict[str, FileRow],
    listing: dict[str, FileInfo],
    unlisted: list[tuple[str, str]],
    report: BuildReport,
) -> dict[str, FileRow]:
    """Indexed files no longer listed, except those under a folder that cannot be read now."""
    gone: dict[str, FileRow] = {}
    for path, row in old.items():
        if path in listing:
            continue
        if _unreadable(path, unlisted):
            report.kept.append(path)  # its folder cannot be listed now: keep what we have
        else:
            gone[path] = row
    return gone


def _classify(
    plan: Plan,
    report: BuildReport,
    doc: Document,
    info: FileInfo,
    row: FileRow | None,
    gone_by_sha: dict[str, FileRow],
    embedder: Embedder,
    *,
    resplit: bool = False,
) -> None:
    if row and row.sha256 == doc.sha256 and not resplit:
        plan.touch.append((row, info))
        report.unchanged += 1
        return
    moved = gone_by_sha.pop(doc.sha256, None) if row is None else None
    if moved:
        plan.rename.append((moved, info))
        report.renamed.append((moved.path, info.path))
        return
    units = make_units(doc, embedder)
    chunks = make_chunks(units, embedder)
    chunks += make_sections(units, embedder, chunks)
    report.sentences += len(units)
    report.windowed += sum(1 for u in units if u.sentence.position < 0)
    if doc.truncated:
        report.truncated.append(doc.path)
    plan.index.append(FilePlan(doc=doc, units=units, old=row, chunks=chunks))
    (report.changed if row else report.added).append(doc.path)


def make_units(doc: Document, embedder: Embedder) -> list[Unit]:
    """Split a document and window sentences longer than the model's limit."""
    prefix = embedder.info.passage_prefix
    checksum = embedder.info.checksum
    units: list[Unit] = []
    for sentence in split_document(doc.text, doc.format):
        if sentence.kind == "meta":
            continue
        spans = embedder.windows(sentence.text, prefix=prefix)
        for start, end in spans:
            text = sentence.text[start:end].strip()
            if not text:
                continue
            part = sentence if len(spans) == 1 else _window_of(sentence, start, end)
            units.append(Unit(sentence=part, text=text, key=vector_key(checksum, prefix + text)))
    return units


def make_sections(units: list[Unit], embedder: Embedder, chunks: list[Chunk]) -> list[Chunk]:
    """The runs of units under one heading, each as long as the model takes (a long section
    is cut into several); a run that is also a chunk is left out, the chunk stands for it."""
    known = {(c.first, c.last) for c in chunks}
    sections = make_chunks(units, embedder, size=None, span="section")
    return [s for s in sections if (s.first, s.last) not in known]


def make_chunks(
    units: list[Unit],
    embedder: Embedder,
    *,
    size: int | None = config.CHUNK_SENTENCES,
    span: str = "chunk",
) -> list[Chunk]:
    """Group consecutive units into runs of up to `size` units (None: no limit) that fit the
    model.

    A heading starts a new chunk, and the chunks after it under the same heading carry the
    heading's text in front, so a chunk says what it is about. A chunk of one unit with no
    heading in front has the unit's own text and key, so it costs no extra embedding.
    """
    prefix = embedder.info.passage_prefix
    checksum = embedder.info.checksum
    limit = embedder.max_content_tokens

    def fits(context: str, first: int, last: int) -> bool:
        text = context + _joined(units[first : last + 1])
        return embedder.token_count(prefix + text) <= limit

    chunks: list[Chunk] = []
    heading = ""
    first = 0
    while first < len(units):
        if units[first].sentence.kind == "heading":
            heading, context = units[first].text, ""
        else:
            context = heading + "\n" if heading else ""
        if context and not fits(context, first, first):
            context = ""
        last = first
        while (
            last + 1 < len(units)
            and (size is None or last + 1 - first < size)
            and units[last + 1].sentence.kind != "heading"
            and fits(context, first, last + 1)
        ):
            last += 1
        text = context + _joined(units[first : last + 1])
        chunks.append(Chunk(first, last, text, vector_key(checksum, prefix + text), span))
        first = last + 1
    return chunks


def _joined(units: list[Unit]) -> str:
    return " ".join(u.text for u in units)


def _window_of(sentence: Sentence, start: int, end: int) -> Sentence:
    # Position -1 marks a window of a long sentence; commit() renumbers positions.
    return replace(sentence, text=sentence.text[start:end].strip(), position=-1)


def _unreadable(path: str, unlisted: list[tuple[str, str]]) -> bool:
    """Whether the walk could not read this path, or a folder above it, for now."""
    return any(
        reason.startswith(READ_FAILURES)
        and (path == where or path.startswith(where.rstrip("/") + "/"))
        for where, reason in unlisted
    )


def _missing_units(store: Store, plan: Plan) -> list[Unit | Chunk]:
    """Units whose exact text has no stored vector yet, each text once."""
    wanted: dict[str, Unit | Chunk] = {}
    for file_plan in plan.index:
        for unit in file_plan.units:
            wanted.setdefault(unit.key, unit)
        for chunk in file_plan.chunks:
            wanted.setdefault(chunk.key, chunk)
    known = store.known_keys(wanted) if store.exists() else {}
    return [unit for key, unit in wanted.items() if key not in known]


def embed_missing(
    store: Store,
    embedder: Embedder,
    units: list[Unit | Chunk],
    *,
    batch_size: int,
    progress: Callable[[int], Progress] | None,
) -> None:
    """Embed units in chunks, committing each chunk so an interruption loses little."""
    if not units:
        return
    tick = progress(len(units)) if progress else None
    prefix = embedder.info.passage_prefix
    # Sorting the whole build by token count (not each commit chunk) keeps padding near zero
    # (corpus: 52 % padded tokens sorted per chunk, 11 % by bytes, 2 % by tokens).
    counted = sorted((embedder.token_count(prefix + u.text), i) for i, u in enumerate(units))
    for chunk in batched(counted, config.COMMIT_EVERY):
        vectors = embedder.embed(
            [prefix + units[i].text for _, i in chunk],
            batch_size=batch_size,
            on_batch=tick,
            lengths=[count for count, _ in chunk],
        )
        store.add_vectors([units[i].key for _, i in chunk], vectors)
        checkpoint("vectors")


def commit(store: Store, plan: Plan, meta: dict[str, object]) -> int:
    """Apply the plan in one transaction, writing the matching FAISS generation first."""
    db = store.db
    generation = store.generation()
    with db.atomic():
        for row, info in plan.touch:
            _update_file_stat(store, row.id, info)
        for row, info in plan.rename:
            db.execute("UPDATE files SET path = ? WHERE id = ?", [info.path, row.id])
            _update_file_stat(store, row.id, info)
        for row in plan.delete:
            store.delete_file(row.id)
        for file_plan in plan.index:
            _store_file(store, file_plan)
        changed = bool(plan.index or plan.delete or plan.rename) or generation == 0
        if changed:
            store.delete_unused_vectors()
            generation += 1
            count = store.faiss_entries()
            store.write_faiss(generation, int(str(meta["dimension"])))
            checkpoint("faiss")
            store.set_meta(
                {
                    **meta,
                    "generation": generation,
                    "faiss_entries": count,
                    "sentence_count": db.execute("SELECT COUNT(*) FROM sentences").fetchone()[0],
                }
            )
        store.set_meta({"last_build": _now()})
    checkpoint("commit")
    store.remove_old_faiss(keep=generation)
    if plan.delete or plan.index:
        store.reclaim_space()
    return generation


def _update_file_stat(store: Store, file_id: int, info: FileInfo) -> None:
    store.db.execute(
        "UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", [info.size, info.mtime_ns, file_id]
    )


def _store_file(store: Store, file_plan: FilePlan) -> None:
    db = store.db
    doc = file_plan.doc
    if file_plan.old:
        store.delete_file(file_plan.old.id)
    cursor = db.execute(
        """INSERT INTO files(path, size, mtime_ns, sha256, encoding, format, sentences,
           truncated, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            doc.path,
            doc.size,
            doc.mtime_ns,
            doc.sha256,
            doc.encoding,
            doc.format,
            len(file_plan.units),
            int(doc.truncated),
            _now(),
        ],
    )
    file_id = int(cursor.lastrowid or 0)
    vector_ids = store.known_keys(u.key for u in file_plan.units)
    store.add_file_sentences(file_id, _sentence_rows(file_id, file_plan.units, vector_ids))
    chunk_ids = store.known_keys(c.key for c in file_plan.chunks)
    store.add_file_chunks(
        [(file_id, c.first, c.last, chunk_ids[c.key], c.span) for c in file_plan.chunks]
    )


def _sentence_rows(file_id: int, units: list[Unit], vector_ids: dict[str, int]) -> Iterator[tuple]:
    for position, unit in enumerate(units):
        s = unit.sentence
        yield (
            file_id,
            position,
            unit.text,
            s.kind,
            s.line_start,
            s.line_end,
            s.char_start,
            s.char_end,
            vector_ids[unit.key],
            s.page,
        )


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def batched(items: list[T], size: int) -> Iterator[list[T]]:
    """Consecutive chunks of at most size items (itertools.batched arrived in Python 3.12)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def checkpoint(step: str) -> None:
    """Die here if the crash-test hook asks for it (no effect unless INDEXER_FAULT is set)."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != step:
        return
    _passes[step] += 1
    if _passes[step] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _count_reasons(skipped: list[tuple[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, reason in skipped:
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def rebuild_faiss(store: Store) -> int:
    """Rewrite the current generation's FAISS file from the vectors in SQLite."""
    meta = store.meta()
    generation = store.generation()
    if generation == 0:
        raise IndexerError(f"{store.path} has no committed build — run `index build DIR`")
    store.db.execute("BEGIN")
    try:
        store.write_faiss(generation, int(meta["dimension"]))
    finally:
        store.db.execute("COMMIT")
    return generation
