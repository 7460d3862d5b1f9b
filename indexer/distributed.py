"""The embed step of a build on a Ray cluster: the driver plans and commits, Ray workers embed.

The passes of the model a build still has to run (`build.missing_passes`) go to a Ray Data
pipeline, sorted by token count, whose actors each load the model once into an onnxruntime
session with the threads they were given. Vectors come back keyed by their text key; the
driver stores them in commit batches as a local build does (one writer, under the index's
lock), so an interrupted build keeps what arrived and the next one embeds only the rest.

The model travels as its files through Ray's object store (or as a path every node can read);
each worker checks it against the driver's checksum before embedding anything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer import config, errors, models
from indexer.embed import Model, usable_threads
from indexer.errors import IndexerError, MissingExtraError, ModelMismatchError
from indexer.passages import Pass

if TYPE_CHECKING:
    from indexer.build import Progress
    from indexer.store import Store

#: `--ray ADDRESS`'s value for a Ray instance started by the build on this machine.
LOCAL = "local"
#: Seconds a build waits for the head node of `--ray HOST:PORT` to answer before giving up.
CONNECT_TIMEOUT = 20.0
#: Texts per Ray Data batch, i.e. per call of a worker: small enough to spread a build over
#: the workers and show progress, large enough that a call's overhead stays under 1 %.
ROWS_PER_CALL = 256
#: Test hook: INDEXER_RAY_FAULT=N:MARKER makes a worker exit on its N-th batch, once (the first
#: worker to create the file MARKER), so tests can kill a worker without a mock.
FAULT_ENV = "INDEXER_RAY_FAULT"
#: Where workers unpack a model shipped through the object store, by checksum.
UNPACK_DIR = "indexer-ray-models"


class RayJobError(IndexerError):
    """The Ray job failed for a reason that is not one of the index's own errors."""


@dataclass(frozen=True)
class ModelSource:
    """How a worker gets the model: the driver's files through the object store (`files`, a
    Ray ObjectRef of {name: bytes}), or a directory every node can read (`path`)."""

    checksum: str
    files: Any = None
    path: str = ""


@dataclass
class WorkerStats:
    """What one worker embedded, and the seconds it spent in its calls."""

    worker: str
    texts: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready row of the run report."""
        rate = self.texts / self.seconds if self.seconds else 0.0
        return {
            "worker": self.worker,
            "texts": self.texts,
            "seconds": round(self.seconds, 3),
            "texts_per_second": round(rate, 1),
        }


def import_ray() -> Any:
    """The ray module, or MissingExtraError saying what to install."""
    try:
        import ray
        import ray.data  # the pipeline needs the data extra (pyarrow, pandas)
    except ImportError as exc:
        raise MissingExtraError("ray", "index build --ray") from exc
    return ray


class RayEmbedding:
    """The embed step of a build on Ray: pass as `Index.build(..., embed=RayEmbedding(...))`.

    address: "local" (or None) starts a Ray instance on this machine and shuts it down after;
    HOST:PORT (or "auto") joins a running cluster. When Ray is already initialised in this
    process, that instance is used and left running. workers: actors (default: the cluster's
    CPUs // threads); threads: onnxruntime threads per worker; model_path: the model's
    directory as every node sees it (a shared file system), instead of shipping its files;
    rows_per_call: texts per call of a worker.
    """

    def __init__(
        self,
        address: str | None = LOCAL,
        *,
        workers: int | None = None,
        threads: int = 1,
        model_path: Path | None = None,
        echo: Callable[[str], None] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        rows_per_call: int = ROWS_PER_CALL,
    ) -> None:
        self.ray = import_ray()
        self.address = address or LOCAL
        self.workers = workers
        self.threads = threads
        self.model_path = model_path
        self.echo = echo or (lambda message: None)
        self.connect_timeout = connect_timeout
        self.rows_per_call = rows_per_call

    def __call__(
        self,
        store: Store,
        model: Model,
        texts: list[Pass],
        *,
        batch_size: int,
        progress: Callable[[int], Progress] | None,
    ) -> dict[str, object]:
        """Run each pass and store its vectors under their keys; returns the run report's
        "ray" part."""
        started = time.perf_counter()
        items = sorted_items(model, texts)
        vectors = sum(len(run.outputs) for run in texts)
        with self._session(), _as_indexer_errors():
            _quiet_data(self.ray)
            workers = self._worker_count()
            source = self._source(model)
            self.echo(
                f"embedding {len(items)} texts on Ray ({self.address}): {workers} workers × "
                f"{self.threads} thread{'s' * (self.threads > 1)}, model "
                + (f"at {source.path}" if source.path else "shipped from here")
            )
            rows = self._pipeline(items, source, workers, batch_size)
            tick = progress(vectors) if progress else None
            setup = time.perf_counter() - started
            first: list[float] = []
            stats = store_as_they_come(store, model, _arrival(rows, started, first), tick)
        seconds = time.perf_counter() - started
        return {
            "address": self.address,
            "workers": workers,
            "threads_per_worker": self.threads,
            "texts": len(items),
            "seconds": round(seconds, 3),
            "setup_seconds": round(setup, 3),
            "first_vectors_seconds": round(first[0], 3) if first else None,
            "texts_per_second": round(len(items) / seconds, 1) if seconds else 0.0,
            "embed_texts_per_second": round(len(items) / (seconds - setup), 1),
            "per_worker": [s.to_dict() for s in sorted(stats.values(), key=lambda s: s.worker)],
        }

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """Ray for this build: started or joined here and shut down after (cancelling the job
        on Ctrl-C or an error), or the caller's, left as it was."""
        ray = self.ray
        if ray.is_initialized():
            yield
            return
        quiet: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if self.address == LOCAL:
            cpus = (self.workers or max(1, usable_threads(None) // self.threads)) * self.threads
            ray.init(num_cpus=cpus, **quiet)
        else:
            reachable(self.address, self.connect_timeout)
            try:
                ray.init(address=self.address, **quiet)
            except Exception as exc:
                raise RayJobError(
                    f"could not join the Ray cluster at {self.address} ({first_line(exc)}) — "
                    "check `ray status` on the head node"
                ) from exc
        try:
            yield
        finally:
            ray.shutdown()

    def _worker_count(self) -> int:
        if self.workers:
            return self.workers
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        return max(1, cpus // self.threads)

    def _source(self, model: Model) -> ModelSource:
        if self.model_path is not None:
            return ModelSource(model.info.checksum, path=str(self.model_path))
        return ModelSource(model.info.checksum, files=self.ray.put(model_files(model.path)))

    def _pipeline(
        self, items: list[dict[str, object]], source: ModelSource, workers: int, batch_size: int
    ) -> Iterator[dict[str, np.ndarray]]:
        ray = self.ray
        # Contiguous blocks of the length-sorted items: each call sees texts of similar length.
        blocks = max(1, math.ceil(len(items) / self.rows_per_call))
        data = ray.data.from_items(items, override_num_blocks=blocks)
        vectors = data.map_batches(
            Encoder,
            batch_size=self.rows_per_call,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=self.threads,
            fn_constructor_kwargs={
                "source": source,
                "threads": self.threads,
                "batch_size": batch_size,
                "fault": os.environ.get(FAULT_ENV, ""),
            },
            # Ray Data's own defaults make the pool fault tolerant: a worker that dies is
            # restarted (max_restarts=-1) and its unfinished calls run again (max_task_retries=-1).
        )
        return iter(vectors.iter_batches(batch_size=config.COMMIT_EVERY, batch_format="numpy"))


def sorted_items(model: Model, passes: list[Pass]) -> list[dict[str, object]]:
    """The passes as the workers get them (JSON: texts and outputs), sorted by token count as
    embed_missing sorts them."""
    counted = sorted(
        (sum(model.tokenizer.count(text) for text in run.texts), i) for i, run in enumerate(passes)
    )
    return [
        {"run": json.dumps([passes[i].texts, passes[i].outputs, passes[i].precision]), "tokens": n}
        for n, i in counted
    ]


def _arrival(
    rows: Iterator[dict[str, np.ndarray]], started: float, first: list[float]
) -> Iterator[dict[str, np.ndarray]]:
    """The rows, noting when the first arrived: the fixed cost of a Ray build (instance,
    workers and their model loads, one call)."""
    for batch in rows:
        if not first:
            first.append(time.perf_counter() - started)
        yield batch


def store_as_they_come(
    store: Store,
    model: Model,
    rows: Iterator[dict[str, np.ndarray]],
    tick: Progress | None,
) -> dict[str, WorkerStats]:
    """Store vectors in commit batches as the workers return them; per-worker totals."""
    from indexer.build import checkpoint

    stats: dict[str, WorkerStats] = {}
    for batch in rows:
        vectors = np.asarray(batch["vector"], dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise errors.ModelDamagedError(
                f"the model in {model.info.path} produced vectors that are not numbers on a Ray "
                "worker: its files are damaged — replace that directory; nothing more was stored"
            )
        store.add_vectors([str(key) for key in batch["key"]], vectors)
        checkpoint("vectors")
        for worker, seconds in zip(batch["worker"], batch["seconds"], strict=True):
            entry = stats.setdefault(str(worker), WorkerStats(str(worker)))
            entry.texts += 1
            entry.seconds += float(seconds)
        if tick:
            tick(len(vectors))
    return stats


# ---------------------------------------------------------------- the worker side


class Encoder:
    """A Ray Data actor: loads the model once, then embeds one batch of texts per call."""

    def __init__(self, source: ModelSource, threads: int, batch_size: int, fault: str = "") -> None:
        path = model_dir(source)
        check_model_dir(path, source.checksum)
        self.model = Model(path, threads=threads)
        # Loaded now; an int8 copy (--passage-precision int8) on its first pass, then kept.
        self.embedders = {"fp32": self.model.embedder_for("fp32")}
        self.batch_size = batch_size
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.calls = 0
        self.fault = fault

    def _embed(self, runs: list[Pass]) -> list[np.ndarray]:
        """Each run's vectors, in order; the runs of each precision batched on its embedder."""
        made: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(runs)
        for precision in {run.precision for run in runs}:
            at = [i for i, run in enumerate(runs) if run.precision == precision]
            if precision not in self.embedders:
                self.embedders[precision] = self.model.embedder_for(precision)
            embedder = self.embedders[precision]
            vectors = embedder.embed_passes([runs[i] for i in at], batch_size=self.batch_size)
            for i, v in zip(at, vectors, strict=True):
                made[i] = v
        return made

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        die_if_asked(self.fault, self.calls)
        started = time.perf_counter()
        runs = [Pass(*json.loads(str(run))) for run in batch["run"]]
        for run in runs:  # JSON made the spans lists
            run.outputs = [(key, (span[0], span[1]) if span else None) for key, span in run.outputs]
        made = self._embed(runs)
        keys = [key for run in runs for key in run.keys]
        share = (time.perf_counter() - started) / max(1, len(keys))
        return {
            "key": np.array(keys),
            "vector": np.concatenate(made),
            "worker": np.full(len(keys), self.name),
            "seconds": np.full(len(keys), share),
        }


def model_files(path: Path) -> dict[str, bytes]:
    """The files of a model directory that a worker needs: model.json and what it lists."""
    info = models.load_info(path)
    names = {models.MODEL_JSON, models.ONNX_FILE, info.tokenizer.file.name, *info.files}
    return {name: (path / name).read_bytes() for name in sorted(names)}


def model_dir(source: ModelSource) -> Path:
    """The model directory on this node: the shared path, or the shipped files unpacked once
    per node (under the temporary folder, by checksum)."""
    if source.path:
        return Path(source.path)
    import ray

    files: dict[str, bytes] = ray.get(source.files)
    home = Path(tempfile.gettempdir()) / UNPACK_DIR
    home.mkdir(parents=True, exist_ok=True)
    target = home / source.checksum
    if target.is_dir() and not _damaged(target):
        return target
    staging = Path(tempfile.mkdtemp(dir=home, prefix=".unpack-"))
    for name, content in files.items():
        (staging / name).write_bytes(content)
    with contextlib.suppress(OSError):  # another worker on this node unpacked it first
        os.rename(staging, target)
    if staging.exists():
        if not _damaged(target):
            shutil.rmtree(staging, ignore_errors=True)
            return target
        return staging
    return target


def _damaged(path: Path) -> bool:
    try:
        return bool(models.damaged_files(path))
    except IndexerError:
        return True


def check_model_dir(path: Path, checksum: str) -> None:
    """Refuse to embed with a model other than the driver's, or a damaged copy of it."""
    host = socket.gethostname()
    try:
        info = models.load_info(path)
        damaged = models.damaged_files(path)
    except IndexerError as exc:
        raise ModelMismatchError(f"Ray worker on {host}: {exc}") from None
    if info.checksum != checksum:
        raise ModelMismatchError(
            f"Ray worker on {host} has model {info.name} ({info.checksum[:12]}) in {path}, not "
            f"the build's ({checksum[:12]}) — put the same model there, or omit --ray-model-path "
            "to ship it from this machine"
        )
    if damaged:
        raise ModelMismatchError(
            f"Ray worker on {host}: model files {', '.join(damaged)} in {path} differ from "
            "model.json — restore that directory from a good copy"
        )


def die_if_asked(fault: str, calls: int) -> None:
    """The test hook (FAULT_ENV): exit on call N unless another worker already did."""
    if not fault:
        return
    count, _, marker = fault.partition(":")
    if calls < int(count):
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


# ---------------------------------------------------------------- the driver's surroundings


def reachable(address: str, timeout: float) -> None:
    """Fail in one line, within `timeout` seconds, when HOST:PORT does not accept connections."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as exc:
        raise RayJobError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}) — start one with "
            "`ray start --head` there, or use --ray local"
        ) from None


def _quiet_data(ray: Any) -> None:
    """No Ray Data progress bars, INFO lines or worker tracebacks on the build's terminal: it
    has its own bar, and a failure is reported in one line (Ray keeps the details in its logs)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _as_indexer_errors() -> Iterator[None]:
    """A Ray failure as one line: the index's own error when a worker raised one."""
    try:
        yield
    except IndexerError:
        raise
    except Exception as exc:
        cause = indexer_cause(exc)
        if cause is not None:
            raise cause from None
        raise RayJobError(f"the Ray job failed: {first_line(exc)}") from exc


def indexer_cause(exc: BaseException) -> IndexerError | None:
    """The IndexerError a worker raised, found in what Ray wrapped around it."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, IndexerError) and type(item).__module__.startswith("indexer"):
            return item
        todo += [item.__cause__, item.__context__, getattr(item, "cause", None)]
        todo += [arg for arg in item.args if isinstance(arg, BaseException)]
    return None


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text (Ray's carry whole tracebacks)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
