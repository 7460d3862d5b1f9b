"""The Python API: `Index(path).build(folder)` and `Index(path).ask(question)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock
import numpy as np

from indexer import config, models
from indexer.build import BuildReport, Progress, build, check_model, rebuild_faiss
from indexer.embed import Embedder
from indexer.errors import BuildLockedError, NotAFolderError
from indexer.load import Selection, Symlinks
from indexer.search import Hit, Mode, Searcher, require_index
from indexer.store import Store, faiss_ids

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


class LazyEmbedder:
    """Stands in for an Embedder: model.json is read at once, the session on first real use.

    An unchanged re-run from cron then costs stat calls, not a model load.
    """

    def __init__(self, path: Path, *, threads: int | None) -> None:
        self.info = models.load_info(path)
        self._path = path
        self._threads = threads
        self._loaded: Embedder | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._loaded is None:
            self._loaded = Embedder.load(self._path, threads=self._threads)
        return getattr(self._loaded, name)


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
    ) -> None:
        self.store = Store(config.index_dir(path))
        self._model_flag = config.model_dir(model)
        self._cache = config.cache_dir(cache_dir)
        self._threads = config.threads(threads)
        self._echo = echo or (lambda message: None)
        self._embedder: Embedder | None = None
        self._searcher: Searcher | None = None

    @property
    def path(self) -> Path:
        """The index directory."""
        return self.store.path

    # -- the model

    def _model_path(self) -> Path:
        """The explicit model, else the one the index was built with, else the default."""
        chosen = models.choose(self._model_flag, self._recorded_model)
        return models.resolve(chosen, cache=self._cache, echo=self._echo)

    def _recorded_model(self) -> str | None:
        return self.store.meta().get("model_path") if self.store.exists() else None

    @property
    def embedder(self) -> Embedder:
        """The embedding model, loaded once per Index."""
        if self._embedder is None:
            self._embedder = Embedder.load(self._model_path(), threads=self._threads)
        return self._embedder

    def _lazy_embedder(self) -> Embedder:
        """The model's identity now; its ONNX session only if a file needs splitting."""
        if self._embedder is not None:
            return self._embedder
        return LazyEmbedder(self._model_path(), threads=self._threads)  # type: ignore[return-value]

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
    ) -> BuildReport:
        """Bring the index in line with a folder (incremental; one writer at a time).

        include/exclude: gitignore-style patterns (added to the folder's .indexignore files);
        symlinks: follow those staying "inside" the folder, "all", or "none".
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise NotAFolderError(folder)
        selection = Selection(tuple(include), tuple(exclude), symlinks)
        if dry_run:
            return build(
                self.store, self._lazy_embedder(), folder, dry_run=True, selection=selection
            )
        self.store.path.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.store.lock_path, timeout=wait)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise BuildLockedError(
                f"another build is writing {self.store.path} — try again later or pass --wait SECS"
            ) from None
        try:
            return build(
                self.store,
                self._lazy_embedder(),
                folder,
                model_path=self._recorded_model_path(),
                batch_size=batch_size,
                progress=progress,
                selection=selection,
            )
        finally:
            lock.release()

    def ask(
        self,
        question: str,
        *,
        k: int = config.DEFAULT_K,
        context: int = config.DEFAULT_CONTEXT,
        mode: Mode = config.DEFAULT_MODE,
    ) -> list[Hit]:
        """The k best places for a question, best first (mode: hybrid, dense or keyword)."""
        if self._searcher is None:
            require_index(self.store)
            check_model(store=self.store, embedder=self.embedder, hint=ASK_HINT)
            self._searcher = Searcher(self.store, self.embedder, warn=self._echo)
        return self._searcher.ask(question, k=k, context=context, mode=mode)

    def status(self) -> dict[str, object]:
        """Files, sentences, model, last build and size on disk."""
        require_index(self.store)
        db = self.store.db
        meta = self.store.meta()
        return {
            "index": str(self.path),
            "files": db.execute("SELECT COUNT(*) FROM files").fetchone()[0],
            "sentences": db.execute("SELECT COUNT(*) FROM sentences").fetchone()[0],
            "vectors": db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0],
            "model": meta.get("model_name"),
            "model_checksum": meta.get("model_checksum"),
            "model_path": meta.get("model_path") or "default",
            "dimension": int(meta.get("dimension", 0)),
            "generation": int(meta.get("generation", 0)),
            "last_build": meta.get("last_build"),
            "size_bytes": self.store.size_on_disk(),
        }

    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Compare SQLite with FAISS (counts and ids), look for orphans, check the model."""
        require_index(self.store)
        report = VerifyReport()
        _verify_database(self.store, report)
        _verify_faiss(self.store, report)
        self._verify_model(report)
        if repair and report.problems:
            lock = filelock.FileLock(self.store.lock_path, timeout=0)
            try:
                with lock:
                    rebuild_faiss(self.store)
            except filelock.Timeout:
                raise BuildLockedError(
                    f"a build is writing {self.path}; repair after it finishes"
                ) from None
            after = VerifyReport()
            _verify_database(self.store, after)
            _verify_faiss(self.store, after)
            report.repaired = not after.problems
            report.notes.append("rebuilt the FAISS file from the vectors stored in SQLite")
        return report

    def _verify_model(self, report: VerifyReport) -> None:
        recorded = self.store.meta().get("model_checksum")
        try:
            info = models.load_info(self._model_path())
        except Exception as exc:
            report.notes.append(f"model not checked: {exc}")
            return
        if info.checksum != recorded:
            report.problems.append(
                f"model checksum {info.checksum[:12]} differs from the index's {str(recorded)[:12]}"
            )

    def close(self) -> None:
        """Release the database."""
        self.store.close()


def _verify_database(store: Store, report: VerifyReport) -> None:
    db = store.db
    checks = {
        "sentences without a vector": "SELECT COUNT(*) FROM sentences WHERE vector_id NOT IN "
        "(SELECT id FROM vectors)",
        "sentences without a file": "SELECT COUNT(*) FROM sentences WHERE file_id NOT IN "
        "(SELECT id FROM files)",
    }
    for label, sql in checks.items():
        count = db.execute(sql).fetchone()[0]
        if count:
            report.problems.append(f"{count} {label}")
    staged = db.execute(
        "SELECT COUNT(*) FROM vectors WHERE id NOT IN "
        "(SELECT vector_id FROM sentences UNION SELECT vector_id FROM chunks)"
    ).fetchone()[0]
    if staged:
        report.notes.append(
            f"{staged} vectors from an unfinished build are kept for the next build to reuse"
        )
    integrity = db.execute("PRAGMA quick_check").fetchone()[0]
    if integrity != "ok":
        report.problems.append(f"SQLite integrity check: {integrity}")


def _verify_faiss(store: Store, report: VerifyReport) -> None:
    generation = store.generation()
    path = store.faiss_path(generation)
    if not path.is_file():
        report.problems.append(f"{path.name} is missing — run `index verify --repair`")
        return
    try:
        index = store.read_faiss(generation)
    except RuntimeError as exc:
        report.problems.append(f"{path.name} cannot be read ({exc}) — run `index verify --repair`")
        return
    ids = np.sort(faiss_ids(index))
    stored = store.faiss_expected_ids()
    if len(ids) != len(stored):
        report.problems.append(
            f"FAISS holds {len(ids)} vectors but SQLite {len(stored)} sentences and chunks — "
            "run `index verify --repair`"
        )
    elif not np.array_equal(ids, stored):
        report.problems.append(
            "FAISS ids differ from SQLite sentence ids — run `index verify --repair`"
        )
