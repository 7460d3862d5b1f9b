"""The build use case: bring an index in line with a folder, embedding only what is new.

Four steps, each its own function: plan (compare the folder with the index, split what
changed), report (what the plan will do), embed (vectors for texts not stored yet, committed
as they come) and commit (one transaction, with the matching vector file written first).
"""

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
from typing import Protocol, TypeVar, cast

import numpy as np

from indexer import config, ranking, vectors
from indexer.config import ChunkVectors, PassagePrecision, SectionVectors
from indexer.embed import Embedder, Model, normalize
from indexer.errors import (
    EmptyFolderError,
    FileSkipped,
    FolderVanishedError,
    IndexerError,
    ModelDamagedError,
    ModelMismatchError,
    ModelPrepareError,
)
from indexer.load import Document, FileInfo, Selection, Skip, read_document, walk
from indexer.models import ModelInfo
from indexer.passages import (
    DEFAULT_RECIPE,
    Pass,
    Passage,
    Recipe,
    Unit,
    make_passages,
    make_passes,
    make_units,
)
from indexer.store import (
    PASSAGE_ID_BASE,
    FileEntry,
    FileRow,
    IndexMeta,
    ModelRecord,
    PassageEntry,
    SentenceEntry,
    Store,
)

#: Bump when splitting, windowing, keyword rows or what a passage vector means change: files of
#: an index built with another version are re-split on the next build (their unchanged
#: sentences keep their vectors). 8: the index records how its chunk vectors were made. 9:
#: keyword words keep their combining marks (Indic vowel signs; indexer.keyword).
SPLIT_VERSION = "9"

Progress = Callable[[int], None]
T = TypeVar("T")
V = TypeVar("V", bound=str)
BAD_NAME = "file name is not valid UTF-8 (rename the file)"

#: Crash-test hook: INDEXER_FAULT=STEP[:N] kills the build with SIGKILL at the N-th pass of STEP
#: (vectors: after a commit batch of vectors; delta: after a delta's removed ids are written,
#: before its vectors; train: after an approximate base is trained, before it is filled;
#: faiss: after the new vector files are written, before SQLite commits; commit: after SQLite
#: commits, before old files are cleaned up).
FAULT_ENV = "INDEXER_FAULT"
_passes: Counter[str] = Counter()


@dataclass
class FilePlan:
    """A file to (re)index: its file row, and the units and passages to store (its text is
    not kept: a first build's memory holds units, not whole files twice)."""

    entry: FileEntry
    units: list[Unit]
    passages: list[Passage]
    old: FileRow | None = None


@dataclass
class Plan:
    """The difference between a folder and an index."""

    index: list[FilePlan] = field(default_factory=list)
    touch: list[tuple[FileRow, FileInfo]] = field(default_factory=list)
    rename: list[tuple[FileRow, FileInfo]] = field(default_factory=list)
    delete: list[FileRow] = field(default_factory=list)
    #: Files whose stat is unchanged (those only touched are in `touch`).
    unchanged: int = 0
    skipped: list[Skip] = field(default_factory=list)
    #: Indexed files that could not be read now: their indexed version stays.
    kept: list[str] = field(default_factory=list)
    #: How the plan's passage vectors are made, recorded at commit.
    recipe: Recipe = DEFAULT_RECIPE
    #: What the build chose on its own and says once (a default it could not follow).
    notes: list[str] = field(default_factory=list)

    @property
    def changes_rows(self) -> bool:
        """True when committing changes what the index holds (not only file stats)."""
        return bool(self.index or self.delete or self.rename)


@dataclass
class BuildReport:
    """What a build did (or, with dry_run, would do)."""

    root: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skip] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    sentences: int = 0
    embedded: int = 0
    passages_embedded: int = 0
    #: Section vectors averaged from their chunks' (no run of the model).
    averaged: int = 0
    reused: int = 0
    windowed: int = 0
    generation: int = 0
    #: Vectors an older version stored as float32, stored as float16 by a compacting build.
    narrowed: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    #: How a distributed embed step ran (workers, per-worker throughput); empty when local.
    embedding: dict[str, object] = field(default_factory=dict)
    #: The plan's notes (Plan.notes).
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, plan: Plan, root: Path, missing: list[Pass], *, dry_run: bool) -> BuildReport:
        """What a plan will do, given the passes of the model it still has to run."""
        units = [u for fp in plan.index for u in fp.units]
        unit_keys = {u.key for u in units}
        made = [key for run in missing for key in run.keys]
        embedded = sum(1 for key in made if key in unit_keys)
        return cls(
            root=str(root),
            added=[fp.entry.path for fp in plan.index if fp.old is None],
            changed=[fp.entry.path for fp in plan.index if fp.old is not None],
            deleted=[row.path for row in plan.delete],
            renamed=[(row.path, info.path) for row, info in plan.rename],
            unchanged=plan.unchanged + len(plan.touch),
            skipped=list(plan.skipped),
            kept=list(plan.kept),
            truncated=[fp.entry.path for fp in plan.index if fp.entry.truncated],
            sentences=len(units),
            embedded=embedded,
            passages_embedded=len(made) - embedded,
            reused=len(units) - embedded,
            windowed=sum(1 for u in units if u.windowed),
            dry_run=dry_run,
            notes=list(plan.notes),
        )

    @property
    def failed(self) -> list[Skip]:
        """Skipped files that could not be read now, rather than not being documents."""
        return [s for s in self.skipped if s.transient]

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
                "passages_embedded": self.passages_embedded,
                "sections_averaged": self.averaged,
                "windowed": self.windowed,
            },
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "renamed": [{"from": a, "to": b} for a, b in self.renamed],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "skipped_by_reason": dict(Counter(s.reason for s in self.skipped)),
            "kept_unreadable": self.kept,
            "narrowed": self.narrowed,
            "truncated": self.truncated,
            "generation": self.generation,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
            **({"ray": self.embedding} if self.embedding else {}),
        }


# ---------------------------------------------------------------- the model


def model_record(info: ModelInfo, model_path: str) -> ModelRecord:
    """What the index records about the model it was built with."""
    return ModelRecord(
        name=info.name,
        checksum=info.checksum,
        path=model_path,
        dimension=info.dimension,
        pooling=info.pooling,
        normalize=info.normalize,
        query_prefix=info.query_prefix,
        passage_prefix=info.passage_prefix,
    )


#: What to do about a model mismatch while building; {model} is the index's model path.
BUILD_HINT = "pass --model {model} or use another --index"


def check_model(meta: IndexMeta, info: ModelInfo, path: Path, *, hint: str = BUILD_HINT) -> None:
    """Refuse to mix vectors of one model with an index built with another."""
    recorded = meta.model
    if recorded and recorded.checksum and recorded.checksum != info.checksum:
        raise ModelMismatchError(
            f"{path} was built with model {recorded.name} "
            f"({recorded.path or 'the default model'}), not {info.name} — "
            + hint.format(model=recorded.path or "(omit for the default)")
        )


# ---------------------------------------------------------------- the use case


class EmbedStep(Protocol):
    """The embed step run elsewhere (indexer.distributed.RayEmbedding): run each pass and
    store its vectors under their keys as embed_missing does; returns what the run report
    shows of it."""

    def __call__(
        self,
        store: Store,
        model: Model,
        texts: list[Pass],
        *,
        batch_size: int,
        progress: Callable[[int], Progress] | None,
    ) -> dict[str, object]: ...


def build(
    store: Store,
    model: Model,
    root: Path,
    *,
    model_path: str = "",
    dry_run: bool = False,
    batch_size: int = config.DEFAULT_BATCH_SIZE,
    progress: Callable[[int], Progress] | None = None,
    selection: Selection | None = None,
    embed: EmbedStep | None = None,
    confirm_delete: bool = False,
    vector_policy: vectors.Policy = vectors.DEFAULT_POLICY,
    chunks: ChunkVectors | None = None,
    passages: PassagePrecision | None = None,
    sections: SectionVectors | None = None,
) -> BuildReport:
    """Index new and changed files under root, drop deleted ones, re-path moved ones.

    A build that would drop most of a large index (an emptied or unmounted folder) stops with
    FolderVanishedError unless `confirm_delete`.

    `chunks` chooses how chunk vectors are made, `sections` how section vectors are, and
    `passages` which copy of the model makes chunk and section vectors (default: what the
    index recorded, else config's default); choosing another re-splits every file.

    `embed` runs the embed step elsewhere (indexer.distributed.RayEmbedding: a Ray cluster)
    instead of embed_missing.
    """
    started = time.perf_counter()
    chosen = Choices(chunks, sections, passages)
    plan, indexed = _planned(
        store, model, root, dry_run=dry_run, selection=selection, chosen=chosen
    )
    if not dry_run and not confirm_delete:
        _refuse_mass_delete(plan, indexed, root)
    missing = missing_passes(store, plan, model.info.passage_prefix)
    report = BuildReport.of(plan, root, missing, dry_run=dry_run)
    if not dry_run:
        store.create()
        if missing:
            step = embed or embed_locally
            report.embedding = step(store, model, missing, batch_size=batch_size, progress=progress)
        report.averaged = average_sections(store, plan, normalized=model.info.normalize)
        record = model_record(model.info, model_path)
        committed = _commit_confirmed(store, plan, record, vector_policy)
        report.generation, report.narrowed = committed.generation, committed.narrowed
    report.seconds = time.perf_counter() - started
    return report


@dataclass(frozen=True)
class Choices:
    """The passage options a build was given (None: not given)."""

    chunks: ChunkVectors | None = None
    sections: SectionVectors | None = None
    passages: PassagePrecision | None = None


def _recipe(given: Choices, recorded: Recipe) -> Recipe:
    """How this build makes passage vectors: each choice given, else what the index recorded
    (a value a newer version recorded reads as config's default), else config's default.
    Pooled chunks come from their section's pass, so sections are then embedded."""
    chunks, sections, passages = given.chunks, given.sections, given.passages
    chosen = Recipe(
        chunks=_known(
            chunks or recorded.chunks, config.CHUNK_VECTORS, config.DEFAULT_CHUNK_VECTORS
        ),
        sections=_known(
            sections or recorded.sections, config.SECTION_VECTORS, config.DEFAULT_SECTION_VECTORS
        ),
        precision=_known(
            passages or recorded.precision,
            config.PASSAGE_PRECISIONS,
            config.DEFAULT_PASSAGE_PRECISION,
        ),
    )
    if chosen.chunks == "pooled" and chosen.sections == "averaged":
        if sections == "averaged" and chunks == "pooled":
            raise IndexerError(
                "--chunks pooled makes chunks from their section's run of the model, and "
                "--sections averaged makes sections from their chunks — choose one of them"
            )
        if sections and not chunks:
            return replace(chosen, chunks="embedded")
        return replace(chosen, sections="embedded")
    return chosen


def _int8_unavailable(model: Model) -> str | None:
    """None when the model's int8 copy is there or can be made, else a note saying why not (a
    read-only or full cache, a graph the quantiser cannot read) for a build that then makes
    fp32 passages: a default never stops a build that fp32 passages would finish."""
    try:
        model.int8_copy()
    except ModelPrepareError as exc:
        return f"chunk and section vectors made by the fp32 model: {exc}"
    return None


def _recorded(meta: IndexMeta) -> Recipe:
    """The recipe an index recorded (chunks "" when it recorded none)."""
    return Recipe(
        chunks=cast(ChunkVectors, meta.chunk_vectors),
        sections=cast(SectionVectors, meta.section_vectors),
        precision=cast(PassagePrecision, meta.passage_precision),
    )


def _known(value: V, choices: tuple[V, ...], default: V) -> V:
    """`value`, or `default` when it is none of the choices (a newer version recorded it)."""
    return value if value in choices else default


def _planned(
    store: Store,
    model: Model,
    root: Path,
    *,
    dry_run: bool,
    selection: Selection | None,
    chosen: Choices = Choices(),
) -> tuple[Plan, int]:
    """The plan for root against the index, and how many files the index holds."""
    if store.exists() and not dry_run:
        store.create()  # finishes a schema that an interrupted first build left half-made
    meta = store.meta() if store.exists() else IndexMeta()
    if meta.generation == 0:
        # Nothing committed yet (a new index, or a first build that was interrupted): config's
        # default precision applies. An index that committed without recording one was built
        # with fp32 passages (IndexMeta's default).
        meta = replace(meta, passage_precision="")
    check_model(meta, model.info, store.path)
    old = store.files() if store.exists() else {}
    recorded = _recorded(meta)
    recipe = _recipe(chosen, recorded)

    def plan_for(recipe: Recipe) -> Plan:
        changed = recipe != recorded
        resplit = store.exists() and (
            meta.split_version != SPLIT_VERSION or (bool(old) and changed)
        )
        return make_plan(root, old, model, resplit=resplit, selection=selection, recipe=recipe)

    plan = plan_for(recipe)
    if not old and not plan.index and not plan.skipped:
        raise EmptyFolderError(
            f"no documents found in {root} (looked for {', '.join(sorted(config.TEXT_SUFFIXES))})"
            " — point `index build` at a folder of text files"
        )
    if recipe.precision == "int8" and not (dry_run or chosen.passages or recorded.precision):
        # Made only once the folder has documents; a plan's keys name the copy, not its file.
        note = _int8_unavailable(model)
        if note:
            plan = plan_for(replace(recipe, precision="fp32"))
            plan.notes = [note]
    return plan, len(old)


def _commit_confirmed(
    store: Store, plan: Plan, model: ModelRecord, policy: vectors.Policy
) -> Committed:
    """commit, then check from a new connection that the generation really was committed."""
    committed = commit(store, plan, model, policy)
    if not store.confirm_generation(committed.generation):
        raise IndexerError(
            f"the build could not confirm its commit to {store.path} (was a file of the "
            "index removed while it ran?) — run `index verify`, then build again"
        )
    return committed


#: A build that would drop more than this share of the indexed files, and at least
#: MASS_DELETE_MIN of them, stops for confirmation: the folder may be unmounted or emptied.
MASS_DELETE_SHARE = 0.5
MASS_DELETE_MIN = 10


def _refuse_mass_delete(plan: Plan, indexed: int, root: Path) -> None:
    dropped = len(plan.delete)
    if dropped >= MASS_DELETE_MIN and dropped > MASS_DELETE_SHARE * indexed:
        raise FolderVanishedError(
            f"{root} no longer holds {dropped} of the {indexed} indexed files (unmounted or "
            "emptied?) — nothing was changed; if they were deleted on purpose, run the build "
            "again with --confirm-delete"
        )


# ---------------------------------------------------------------- plan


def make_plan(
    root: Path,
    old: dict[str, FileRow],
    model: Model,
    *,
    resplit: bool = False,
    selection: Selection | None = None,
    recipe: Recipe = DEFAULT_RECIPE,
) -> Plan:
    """Compare the folder with the index: stat first, content hash only when stat differs."""
    plan = Plan(recipe=recipe)
    unlisted: list[Skip] = []
    listing = {
        info.path: info for info in walk(root, selection or Selection(), on_skip=unlisted.append)
    }
    plan.skipped.extend(unlisted)
    gone = _gone(plan, old, listing, unlisted)
    gone_by_sha = {row.sha256: row for row in gone.values()}
    for path, info in listing.items():
        if not _storable(path):
            plan.skipped.append(Skip(path.encode("utf-8", "backslashreplace").decode(), BAD_NAME))
            continue
        row = old.get(path)
        if row and row.stat_key() == info.stat_key() and not resplit:
            plan.unchanged += 1
            continue
        try:
            doc = read_document(root, info, (selection or Selection()).symlinks)
        except FileSkipped as skipped:
            plan.skipped.append(Skip(path, skipped.reason, skipped.transient))
            if row:
                plan.kept.append(path)
            continue
        _classify(plan, doc, info, row, gone_by_sha, model, resplit=resplit)
    renamed = {moved.id for moved, _ in plan.rename}
    plan.delete.extend(row for row in gone.values() if row.id not in renamed)
    return plan


def _gone(
    plan: Plan, old: dict[str, FileRow], listing: dict[str, FileInfo], unlisted: list[Skip]
) -> dict[str, FileRow]:
    """Indexed files no longer listed, except those under a folder that cannot be read now."""
    gone: dict[str, FileRow] = {}
    for path, row in old.items():
        if path in listing:
            continue
        if _unreadable(path, unlisted):
            plan.kept.append(path)  # its folder cannot be listed now: keep what we have
        else:
            gone[path] = row
    return gone


def _classify(
    plan: Plan,
    doc: Document,
    info: FileInfo,
    row: FileRow | None,
    gone_by_sha: dict[str, FileRow],
    model: Model,
    *,
    resplit: bool = False,
) -> None:
    if row and row.sha256 == doc.sha256 and not resplit:
        plan.touch.append((row, info))
        return
    moved = gone_by_sha.pop(doc.sha256, None) if row is None else None
    if moved:
        plan.rename.append((moved, info))
        return
    units = make_units(doc.text, doc.format, model.tokenizer)
    passages = make_passages(units, model.tokenizer, plan.recipe)
    plan.index.append(FilePlan(_entry(doc), units, passages, old=row))


def _entry(doc: Document) -> FileEntry:
    return FileEntry(
        path=doc.path,
        size=doc.size,
        mtime_ns=doc.mtime_ns,
        sha256=doc.sha256,
        encoding=doc.encoding,
        format=doc.format,
        truncated=doc.truncated,
        ctime_ns=doc.ctime_ns,
        inode=doc.inode,
    )


def _unreadable(path: str, unlisted: list[Skip]) -> bool:
    """Whether the walk could not read this path, or a folder above it, for now."""
    return any(
        skip.transient and (path == skip.path or path.startswith(skip.path.rstrip("/") + "/"))
        for skip in unlisted
    )


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------- embed


def missing_passes(store: Store, plan: Plan, prefix: str) -> list[Pass]:
    """The runs of the model a plan still needs: each making a vector no stored text has
    yet (a section whose chunks are pooled from it runs again for them), each run once."""
    wanted: dict[tuple[str, ...], Pass] = {}
    for file_plan in plan.index:
        for run in make_passes(file_plan.units, file_plan.passages, prefix, plan.recipe.precision):
            wanted.setdefault(tuple(run.keys), run)
    keys = {key for run in wanted.values() for key in run.keys}
    known = store.vector_ids(keys) if store.exists() else {}
    return [run for run in wanted.values() if any(key not in known for key in run.keys)]


def embed_locally(
    store: Store,
    model: Model,
    texts: list[Pass],
    *,
    batch_size: int,
    progress: Callable[[int], Progress] | None,
) -> dict[str, object]:
    """The embed step in this process (an EmbedStep); the run report adds nothing for it."""
    embed_missing(store, model, texts, batch_size=batch_size, progress=progress)
    return {}


def embed_missing(
    store: Store,
    model: Model,
    passes: list[Pass],
    *,
    batch_size: int,
    progress: Callable[[int], Progress] | None,
) -> None:
    """Run the passes in commit batches, committing each batch's vectors so an interruption
    loses little: those of each precision on the model's copy for it, an int8 copy's first
    (it is made, or found, before anything runs) and then dropped, so a first build never
    holds two onnxruntime sessions."""
    tick = progress(sum(len(run.outputs) for run in passes)) if progress else None
    for precision in sorted({run.precision for run in passes}, key=lambda p: p == "fp32"):
        chosen = [run for run in passes if run.precision == precision]
        embedder = model.embedder_for(precision)
        _embed_runs(store, embedder, chosen, batch_size=batch_size, tick=tick)
        del embedder


def _embed_runs(
    store: Store,
    embedder: Embedder,
    passes: list[Pass],
    *,
    batch_size: int,
    tick: Progress | None,
) -> None:
    # Sorting the whole build by token count (not each commit batch) keeps padding near zero
    # (corpus: 52 % padded tokens sorted per batch, 11 % by bytes, 2 % by tokens).
    runs = sorted((embedder.tokenize_pass(run) for run in passes), key=lambda r: len(r.ids))
    for batch in batched(runs, config.COMMIT_EVERY):
        made = embedder.embed_passes(batch, batch_size=batch_size, on_batch=tick)
        vectors = np.concatenate(made)
        if not np.isfinite(vectors).all():
            raise ModelDamagedError(
                f"the model in {embedder.info.path} produced vectors that are not numbers: its "
                "files are damaged — run `index model prepare --force` (default model) or "
                "replace that directory; nothing was stored"
            )
        store.add_vectors([key for run in batch for key, _ in run.outputs], vectors)
        checkpoint("vectors")


def average_sections(store: Store, plan: Plan, *, normalized: bool = True) -> int:
    """Store the vectors of the plan's averaged sections (Passage.parts) that are not stored
    yet: the mean of their chunks' stored vectors, each weighted by its tokens (normalised
    when the model normalises). Runs after the embed step stored every chunk; commits in
    batches like it, so an interruption loses little. Returns how many it stored."""
    wanted = {p.key: p.parts for fp in plan.index for p in fp.passages if p.parts}
    known = store.vector_ids(wanted) if wanted else {}
    missing = [(key, parts) for key, parts in wanted.items() if key not in known]
    for batch in batched(missing, config.COMMIT_EVERY):
        chunks = store.vectors_by_key({key for _, parts in batch for key, _ in parts})
        means = np.stack([_weighted_mean(parts, chunks) for _, parts in batch])
        store.add_vectors([key for key, _ in batch], normalize(means) if normalized else means)
        checkpoint("vectors")
    return len(missing)


def _weighted_mean(
    parts: tuple[tuple[str, int], ...], vectors: dict[str, np.ndarray]
) -> np.ndarray:
    weights = np.array([tokens for _, tokens in parts], dtype=np.float32)
    stacked = np.stack([vectors[key] for key, _ in parts]).astype(np.float32)
    return (weights[:, None] * stacked).sum(axis=0) / weights.sum()


# ---------------------------------------------------------------- commit


@dataclass(frozen=True)
class Committed:
    """What commit wrote: the generation, and how many vectors of an older version it
    stored as float16."""

    generation: int
    narrowed: int = 0


def commit(
    store: Store, plan: Plan, model: ModelRecord, policy: vectors.Policy = vectors.DEFAULT_POLICY
) -> Committed:
    """Apply the plan in one transaction, writing the matching vector files first (a delta,
    or a fresh base when the policy says to compact). Compacting on request (policy.compact)
    also stores the float32 vectors of older versions as float16, and gives the space back."""
    generation = store.generation()
    narrowed = 0
    with store.transaction():
        replaced = [row.id for row in plan.delete] + [fp.old.id for fp in plan.index if fp.old]
        removed = store.file_vector_ids(replaced)
        released = store.vector_refs(replaced)
        for row, info in plan.touch:
            store.update_file(row.id, *info.stat_key())
        for row, info in plan.rename:
            store.update_file(row.id, *info.stat_key(), path=info.path)
        for row in plan.delete:
            store.delete_file(row.id)
        written_files = [_write_file(store, file_plan) for file_plan in plan.index]
        if plan.changes_rows or generation == 0 or vectors.base_outdated(store.meta(), policy):
            store.delete_unused_vectors(released)
            if policy.compact:
                narrowed = store.narrow_vectors()
            generation += 1
            change = vectors.Change(removed, store.file_vector_ids(written_files))
            meta = store.meta()
            written = vectors.write_generation(
                store, generation, model.dimension, change, policy, step=checkpoint
            )
            checkpoint("faiss")
            store.record_build(
                model,
                split_version=SPLIT_VERSION,
                generation=generation,
                vector_count=written.count,
                vector_ids_digest=written.digest,
                layout=written.layout,
                sentence_count=_sentences_after(meta, change) if meta.generation else None,
                chunk_vectors=plan.recipe.chunks,
                section_vectors=plan.recipe.sections,
                passage_precision=plan.recipe.precision,
            )
        store.record_last_build(_now())
    checkpoint("commit")
    vectors.remove_old(store.path, vectors.file_names(vectors.layout_of(store.meta())))
    if plan.delete or plan.index or narrowed:
        store.reclaim_space()
    return Committed(generation, narrowed)


def _sentences_after(meta: IndexMeta, change: vectors.Change) -> int:
    """The sentence count after a change, from the recorded one (vector ids below
    PASSAGE_ID_BASE are sentences), without counting every row again."""
    gone = int(np.count_nonzero(change.removed < PASSAGE_ID_BASE))
    return meta.sentence_count - gone + int(np.count_nonzero(change.added < PASSAGE_ID_BASE))


def _write_file(store: Store, file_plan: FilePlan) -> int:
    sentences = [
        SentenceEntry(
            text=unit.text,
            kind=unit.sentence.kind,
            line_start=unit.sentence.line_start,
            line_end=unit.sentence.line_end,
            char_start=unit.sentence.char_start,
            char_end=unit.sentence.char_end,
            page=unit.sentence.page,
            key=unit.key,
        )
        for unit in file_plan.units
    ]
    passages = [PassageEntry(p.first, p.last, p.key, p.kind) for p in file_plan.passages]
    return store.write_file(
        file_plan.entry,
        sentences,
        passages,
        indexed_at=_now(),
        keyword_window=ranking.DEFAULT.keyword_window,
        replaces=file_plan.old.id if file_plan.old else None,
    )


def batched(items: list[T], size: int) -> Iterator[list[T]]:
    """Consecutive runs of at most size items (itertools.batched arrived in Python 3.12)."""
    it = iter(items)
    while run := list(islice(it, size)):
        yield run


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
