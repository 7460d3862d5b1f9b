"""The Python API: `Index(path).build(folder)` and `Index(path).ask(question)`.

The modules behind building and asking load numpy, onnxruntime and faiss; they are imported
on first use, so that `index ask` can start reading its tokenizer first (Index.read_ahead).
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from indexer import config, models, tokenize
from indexer.config import ChunkVectors, Mode, PassagePrecision, SectionVectors
from indexer.errors import (
    IndexerError,
    NoSuchDocumentError,
    NotAFolderError,
    from_os,
    from_sqlite,
)
from indexer.load import Selection, Symlinks
from indexer.models import ModelInfo
from indexer.store import ModelRecord, SentenceRow, Store, VectorLayout, recorded_model_path

if TYPE_CHECKING:
    from indexer.build import BuildReport, EmbedStep, Progress
    from indexer.embed import Embedder, Model
    from indexer.ranking import Ranking
    from indexer.search import Hit, Searcher
    from indexer.vectors import Policy as VectorPolicy

Echo = Callable[[str], None]
ASK_HINT = "ask without --model, or rebuild with this model into another --index"


@dataclass
class VerifyReport:
    """Result of comparing SQLite with the FAISS file and the model."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        """True when no problem was found (or all were repaired)."""
        return not self.problems or self.repaired

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready report."""
        return {
            "ok": self.ok,
            "problems": self.problems,
            "notes": self.notes,
            "repaired": self.repaired,
        }


class Index:
    """A folder's searchable index: build it from documents, then ask it questions."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        model: str | Path | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        echo: Echo | None = None,
        ranking: Ranking | None = None,
    ) -> None:
        self.store = Store(config.index_dir(path))
        self.ranking = ranking
        self._model_flag = config.model_dir(model)
        self._cache = config.cache_dir(cache_dir)
        self._threads = config.threads(threads)
        self._echo = echo or (lambda message: None)
        self._model: Model | None = None
        self._searcher: Searcher | None = None

    @property
    def path(self) -> Path:
        """The index directory."""
        return self.store.path

    # -- the model

    @staticmethod
    def read_ahead(
        path: str | Path | None = None,
        *,
        model: str | Path | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        """Start reading the tokenizer of the model an ask will use, before the heavy imports.

        The model is chosen as Index chooses it; this is only a head start: on any problem, or
        for a model that turns out different, the Index loads and checks the model as usual.
        """
        recorded = functools.partial(recorded_model_path, config.index_dir(path))
        chosen = models.choose(config.model_dir(model), recorded)
        folder = chosen or models.default_dir(config.cache_dir(cache_dir))
        with contextlib.suppress(IndexerError, OSError):
            tokenize.preload(models.load_info(folder))

    def _model_path(self) -> Path:
        """The explicit model, else the one the index was built with, else the default."""
        chosen = models.choose(self._model_flag, self._recorded_model)
        return models.resolve(chosen, cache=self._cache, echo=self._echo)

    def _recorded_model(self) -> str | None:
        meta = self.store.meta() if self.store.exists() else None
        return meta.model.path if meta and meta.model else None

    @property
    def model(self) -> Model:
        """The model: its identity at once, tokenizer and session when first needed."""
        if self._model is None:
            from indexer.embed import Model

            self._model = Model(self._model_path(), threads=self._threads, cache=self._cache)
        return self._model

    @property
    def embedder(self) -> Embedder:
        """The embedding model, loaded once per Index."""
        return self.model.embedder

    def _recorded_model_path(self) -> str:
        """What the index records as its model: the explicit one, else what it already had."""
        if self._model_flag:
            return str(self._model_flag.resolve())
        return self._recorded_model() or ""

    # -- use cases

    def build(
        self,
        folder: str | Path,
        *,
        dry_run: bool = False,
        wait: float = 0,
        batch_size: int = config.DEFAULT_BATCH_SIZE,
        progress: Callable[[int], Progress] | None = None,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        symlinks: Symlinks = "inside",
        confirm_delete: bool = False,
        vector_policy: VectorPolicy | None = None,
        embed: EmbedStep | None = None,
        chunks: ChunkVectors | None = None,
        passages: PassagePrecision | None = None,
        sections: SectionVectors | None = None,
    ) -> BuildReport:
        """Bring the index in line with a folder (incremental; one writer at a time).

        include/exclude: gitignore-style patterns (added to the folder's .indexignore files);
        symlinks: follow those staying "inside" the folder, "all", or "none"; confirm_delete:
        go ahead when the build would drop most of the index (see FolderVanishedError);
        vector_policy: when to write deltas, compact and go approximate (vectors.Policy);
        embed: run the embed step elsewhere (indexer.distributed.RayEmbedding on a Ray cluster);
        chunks: how chunk vectors are made, "embedded" or "pooled"; sections: how section
        vectors are made, "embedded" or "averaged" from their chunks; passages: which copy of
        the model makes chunk and section vectors, "fp32" or "int8" (each recorded in the
        index; default: what it recorded).
        """
        from indexer import vectors
        from indexer.build import build

        folder = Path(folder)
        if not folder.is_dir():
            raise NotAFolderError(folder)
        selection = Selection(tuple(include), tuple(exclude), symlinks)
        with self._surroundings():
            if dry_run:
                return build(
                    self.store,
                    self.model,
                    folder,
                    dry_run=True,
                    selection=selection,
                    chunks=chunks,
                    passages=passages,
                    sections=sections,
                )
            with self.store.writer_lock(wait=wait):
                return build(
                    self.store,
                    self.model,
                    folder,
                    model_path=self._recorded_model_path(),
                    batch_size=batch_size,
                    progress=progress,
                    selection=selection,
                    confirm_delete=confirm_delete,
                    vector_policy=vector_policy or vectors.DEFAULT_POLICY,
                    embed=embed,
                    chunks=chunks,
                    passages=passages,
                    sections=sections,
                )

    def ask(
        self,
        question: str,
        *,
        k: int = config.DEFAULT_K,
        context: int = config.DEFAULT_CONTEXT,
        mode: Mode = config.DEFAULT_MODE,
    ) -> list[Hit]:
        """The k best places for a question, best first (mode: hybrid, dense or keyword)."""
        with self._surroundings():
            return self.searcher.ask(question, k=k, context=context, mode=mode)

    @property
    def searcher(self) -> Searcher:
        """The searcher of this index (the model checked against the index once)."""
        if self._searcher is None:
            from indexer import ranking
            from indexer.build import check_model
            from indexer.search import Searcher

            self.store.require_build()
            check_model(self.store.meta(), self.model.info, self.path, hint=ASK_HINT)
            self._searcher = Searcher(
                self.store,
                self.embedder,
                ranking=self.ranking or ranking.DEFAULT,
                warn=self._echo,
            )
        return self._searcher

    def document(self, path: str) -> list[SentenceRow]:
        """The stored sentences of one indexed file, in order (its text as the index holds it;
        nothing is read from the folder, so only indexed files can be shown)."""
        with self._surroundings():
            self.store.require_build()
            with self.store.snapshot():
                rows = self.store.file_sentences(path)
        if not rows:
            raise NoSuchDocumentError(path)
        return rows

    def status(self) -> dict[str, object]:
        """Files, sentences, model, last build and size on disk."""
        with self._surroundings():
            self.store.require_build()
            stats = self.store.stats()
            meta = self.store.meta()
        model = meta.model or ModelRecord()
        return {
            "index": str(self.path),
            "files": stats.files,
            "sentences": stats.sentences,
            "vectors": stats.vectors,
            "model": model.name or None,
            "model_checksum": model.checksum or None,
            "model_path": model.path or "default",
            "dimension": model.dimension,
            "generation": meta.generation,
            "vector_index": _describe_vectors(meta.vectors),
            "chunk_vectors": meta.chunk_vectors or None,
            "section_vectors": meta.section_vectors,
            "passage_precision": meta.passage_precision,
            "last_build": meta.last_build,
            "size_bytes": self.store.size_on_disk(),
        }

    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Check SQLite (integrity, orphans, vectors that are not numbers), the vector file
        against it (counts, ids, a sample of the vector data) and the model's files by
        content. With repair: rebuild SQLite's indexes and the vector file, and drop the files
        whose vectors a damaged model made, for the next build to embed again."""
        with self._surroundings():
            self.store.require_build()
            report = self._check()
            self._verify_model(report)
            if repair and report.problems:
                self._repair(report)
            return report

    def _repair(self, report: VerifyReport) -> None:
        from indexer import vectors
        from indexer.build import Plan, commit

        busy = f"a build is writing {self.path}; repair after it finishes"
        with self.store.writer_lock(wait=0, busy=busy):
            integrity = self.store.integrity()
            if integrity.quick_check != "ok":
                self.store.reindex()
                report.notes.append("rebuilt SQLite's indexes (REINDEX)")
            if integrity.miscounted_terms:
                self.store.recount_terms()
                report.notes.append("counted the keyword rows of every term again")
            bad = self.store.nonfinite_vectors()
            meta = self.store.meta()
            if bad and meta.model is not None:
                # Dropping every file that uses them leaves them unused: the commit deletes them.
                files = self.store.files_using(bad)
                commit(self.store, Plan(delete=files), meta.model)
                report.notes.append(
                    f"dropped {len(files)} files whose vectors a damaged model made — run "
                    "`index build DIR` to embed them again"
                )
        vectors.repair(self.store)
        report.notes.append("rebuilt the FAISS file from the vectors stored in SQLite")
        with contextlib.suppress(IndexerError):
            if copy := self._damaged_int8_copy(models.load_info(self._model_path())):
                copy.unlink()
                report.notes.append(f"removed the damaged int8 copy {copy}")
        after = self._check()
        self._verify_model(after)
        report.repaired = not after.problems

    def _check(self) -> VerifyReport:
        from indexer import vectors

        report = VerifyReport()
        integrity = self.store.integrity()
        for count, label in (
            (integrity.sentences_without_vector, "sentences without a vector"),
            (integrity.sentences_without_file, "sentences without a file"),
        ):
            if count:
                report.problems.append(f"{count} {label}")
        if integrity.staged_vectors:
            report.notes.append(
                f"{integrity.staged_vectors} vectors from an unfinished build are kept for the "
                "next build to reuse"
            )
        if integrity.quick_check != "ok":
            report.problems.append(f"SQLite integrity check: {integrity.quick_check}")
        if integrity.miscounted_terms:
            report.problems.append(
                f"{integrity.miscounted_terms} keyword terms have a wrong row count (they "
                "weigh words wrongly) — run `index verify --repair`"
            )
        bad = self.store.nonfinite_vectors()
        if bad:
            report.problems.append(
                f"{len(bad)} stored vectors are not numbers (made by a damaged model) — run "
                "`index verify --repair`, then `index build DIR` to embed their files again"
            )
        report.problems.extend(vectors.problems(self.store))
        return report

    def _verify_model(self, report: VerifyReport) -> None:
        recorded = self.store.meta().model
        try:
            path = self._model_path()
            info = models.load_info(path)
            damaged = models.damaged_files(path)
        except Exception as exc:
            report.notes.append(f"model not checked: {exc}")
            return
        checksum = recorded.checksum if recorded else None
        if info.checksum != checksum:
            report.problems.append(
                f"model checksum {info.checksum[:12]} differs from the index's {str(checksum)[:12]}"
            )
        for name in damaged:
            fix = (
                "run `index model prepare --force`"
                if path == models.default_dir(self._cache)
                else f"restore {path} from a good copy"
            )
            report.problems.append(f"model file {name} in {path} differs from model.json — {fix}")
        if copy := self._damaged_int8_copy(info):
            report.problems.append(
                f"the int8 copy of the model that makes this index's passage vectors ({copy}) is "
                "damaged — run `index verify --repair` (the next build makes it again)"
            )

    def _damaged_int8_copy(self, info: ModelInfo) -> Path | None:
        if self.store.meta().passage_precision != "int8":
            return None
        from indexer.models import quantize

        return quantize.damaged_copy(info, self._cache)

    def close(self) -> None:
        """Release the database (and the searcher's thread)."""
        if self._searcher is not None:
            self._searcher.close()
        self.store.close()

    @contextlib.contextmanager
    def _surroundings(self) -> Iterator[None]:
        """SQLite and file-system failures as what they mean here: busy, cannot write, no
        space, damaged (errors.from_sqlite, errors.from_os)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise from_sqlite(exc, self.path) from exc
        except OSError as exc:
            mapped = from_os(exc, self.path)
            if mapped is None:
                raise
            raise mapped from exc


def _describe_vectors(layout: VectorLayout) -> str:
    """The vector files in one line: kind, deltas, and for an approximate base its nprobe and
    the recall@10 that nprobe reached against exact search."""
    text = layout.kind
    if layout.deltas:
        text += f" + {len(layout.deltas)} deltas"
    if layout.kind != "flat":
        text += f" (nlist {layout.nlist}, nprobe {layout.nprobe}, recall@10 {layout.recall:.3f})"
    return text
