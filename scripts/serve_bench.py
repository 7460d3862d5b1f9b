"""Serving under load: requests/s, p50/p99 latency, errors and the server's memory with 1, 4
and 16 concurrent clients, each without and with a build running beside; then a cold `index
ask` as a whole process, through a running server and without one.

    python -m scripts.serve_bench [--corpus DIR] [--index DIR] [--model DIR] [--threads N]
                                  [--clients 1,4,16] [--seconds 10] [--cold-runs 10]

Works on a copy of the index (made from --index, or built from the corpus when --index is not
given or holds no index yet), so the builds beside never change an index of yours. The server
is `index serve` as a child process on 127.0.0.1; the clients are threads here, each asking
the bench questions in turn over one keep-alive connection. Each measurement is one JSON row
on stdout, stamped with commit, date, arguments and machine (scripts.common.emit), with the
machine's load average: other work on the machine shows in every figure. Before the cold
processes the installed indexer package's bytecode is written, as a user's first run writes it.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import shutil
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from indexer.client import discovery_file
from indexer.client import find as find_server
from scripts.bench import DONE, QUESTIONS, index_flags
from scripts.common import (
    CHILD_ENV,
    copy_index,
    corpus_option,
    emit,
    log,
    percentiles,
    run_python,
)

#: Files of the corpus copy edited before each build beside (each build embeds their changes).
EDITED_FILES = 10
#: Seconds to wait for the server to load the model and listen.
START_TIMEOUT = 300.0


# -- the server


class Served:
    """`index serve --port 0` of an index, as a child process."""

    def __init__(self, flags: list[str]) -> None:
        self.index = Path(flags[flags.index("--index") + 1])
        command = [sys.executable, "-m", "indexer", "serve", *flags, "--port", "0"]
        self.process = subprocess.Popen(command, env=CHILD_ENV, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._announced():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise click.ClickException(f"`index serve` did not start: {self._stop()}")
            time.sleep(0.05)
        self.port = int(self._announced()["port"])

    def _announced(self) -> dict[str, str]:
        """The discovery record of this server, or {} before it writes one."""
        record = find_server(self.index) or {}
        return record if record.get("pid") == str(self.process.pid) else {}

    def rss_mb(self, field: str = "VmRSS") -> float:
        """The server's resident memory now (VmRSS) or at its peak (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
        raise click.ClickException(f"no {field} for the server")

    def answered(self) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", "/healthz")
            return int(json.loads(connection.getresponse().read())["answered"])
        finally:
            connection.close()

    def _stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        _, err = self.process.communicate(timeout=60)
        return err.strip()[-2000:]

    def stop(self) -> None:
        """SIGTERM, then check it ended cleanly (exit 0, discovery file removed)."""
        err = self._stop()
        if self.process.returncode != 0 or Path(discovery_file(self.index)).exists():
            raise click.ClickException(f"`index serve` did not stop cleanly: {err}")


@contextmanager
def serving(flags: list[str]) -> Iterator[Served]:
    served = Served(flags)
    try:
        yield served
    finally:
        if served.process.poll() is None:
            served.stop()


# -- clients


class Tally:
    """Latencies of answered requests and the count of failed ones, from several threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seconds: list[float] = []
        self.errors: list[str] = []

    def add(self, seconds: float, error: str | None) -> None:
        with self.lock:
            if error:
                self.errors.append(error)
            else:
                self.seconds.append(seconds)


def client(port: int, questions: list[str], first: int, deadline: float, tally: Tally) -> None:
    """Ask questions in turn over one keep-alive connection until the deadline."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    turn = first
    while time.perf_counter() < deadline:
        target = "/ask?" + urlencode({"q": questions[turn % len(questions)]})
        turn += 1
        started = time.perf_counter()
        try:
            connection.request("GET", target)
            response = connection.getresponse()
            body = response.read()
            ok = response.status == 200 and isinstance(json.loads(body), list)
            error = None if ok else f"{response.status}: {body[:200]!r}"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error = repr(exc)
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        tally.add(time.perf_counter() - started, error)
    connection.close()


def load(port: int, clients: int, seconds: float) -> Tally:
    """`clients` concurrent clients for `seconds`."""
    tally = Tally()
    deadline = time.perf_counter() + seconds
    threads = [
        threading.Thread(target=client, args=(port, QUESTIONS, i * 7, deadline, tally))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


# -- builds beside


def edit(corpus: Path, round_: int) -> None:
    """Append a new paragraph to EDITED_FILES Markdown files of the corpus copy."""
    for number, path in enumerate(sorted(corpus.rglob("*.md"))[:EDITED_FILES]):
        with path.open("a", encoding="utf-8") as out:
            out.write(f"\n\nServe bench round {round_}, file {number}: added during serving.\n")


class Builds:
    """Incremental builds one after another (each after an edit) until stopped."""

    def __init__(self, corpus: Path, flags: list[str]) -> None:
        self.corpus, self.flags = corpus, flags
        self.stopping = threading.Event()
        self.done: list[float] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stopping.is_set():
            edit(self.corpus, len(self.done))
            args = ["-m", "indexer", "build", str(self.corpus), *self.flags, "--quiet"]
            self.done.append(run_python([*args, "--wait", "600"]).check(DONE).seconds)

    def __enter__(self) -> Builds:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()


def measure_load(
    served: Served, clients: int, seconds: float, corpus: Path | None, flags: list[str]
) -> dict[str, Any]:
    """One load run; with a corpus, builds run beside it."""
    before = served.rss_mb()
    if corpus is None:
        tally, builds = load(served.port, clients, seconds), None
    else:
        with Builds(corpus, flags) as builds:
            tally = load(served.port, clients, seconds)
    return {
        "measure": "load",
        "clients": clients,
        "build_beside": corpus is not None,
        "seconds": seconds,
        "requests": len(tally.seconds),
        "requests_per_s": round(len(tally.seconds) / seconds, 1),
        **percentiles(tally.seconds, 50, 99),
        "errors": len(tally.errors),
        "first_error": tally.errors[0] if tally.errors else None,
        "builds_beside": len(builds.done) if builds else 0,
        "server_rss_mb_before": before,
        "server_rss_mb_after": served.rss_mb(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


# -- cold asks


def processes(commands: list[list[str]]) -> dict[str, Any]:
    """Wall and CPU time (user + system) of `python ARGS` processes, one per command: on a
    busy machine the CPU time is the steadier figure."""
    written = compile_package()
    wall, cpu = [], []
    for args in commands:
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall.append(run_python(args).check(DONE).seconds)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - used.ru_utime + after.ru_stime - used.ru_stime)
    return {
        "runs": len(commands),
        **percentiles(wall, 50, 95),
        "cpu_p50_ms": percentiles(cpu, 50)["p50_ms"],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "bytecode_written": written,
        **interpreter(),
    }


def compile_package() -> bool:
    """Write the bytecode of the installed indexer package, as its first run on a user's
    machine does. Where PYTHONDONTWRITEBYTECODE is set (this bench's own environment may set it)
    an editable install would otherwise compile its modules from source in every cold process:
    13 ms of a served ask here. True when every module compiled."""
    import compileall

    import indexer

    return bool(compileall.compile_dir(Path(indexer.__file__).parent, quiet=1))


def interpreter() -> dict[str, Any]:
    """The Python the cold processes start (this script's), and the .pth files its site
    directories run at every start: an editable install adds one, some machines add more, and
    each shows in the cold figures (compare the cold_python row)."""
    hooks = sorted(p.name for d in site.getsitepackages() for p in Path(d).glob("*.pth"))
    return {"python": sys.executable, "venv": sys.prefix != sys.base_prefix, "site_hooks": hooks}


def cold_row(flags: list[str], runs: int, served: Served | None) -> dict[str, Any]:
    """Fresh `index ask` processes, through a running server or loading the model."""
    before = served.answered() if served else 0
    command = index_command()
    asks = [[*command, "ask", QUESTIONS[i % len(QUESTIONS)], *flags] for i in range(runs)]
    timed = processes(asks)
    if served and served.answered() != before + runs:
        raise click.ClickException("`index ask` did not go through the running server")
    return {
        "measure": "cold_ask",
        "through_server": served is not None,
        "command": "index" if command[0] != "-m" else "python -m indexer",
        **timed,
    }


def index_command() -> list[str]:
    """What a user runs: the `index` script installed beside this Python, run by it (so the
    package comes from where it is installed, not from a source tree in the working folder);
    `-m indexer` where no script is installed."""
    script = Path(sys.executable).with_name("index")
    return [str(script)] if script.is_file() else ["-m", "indexer"]


def bare_row(runs: int) -> dict[str, Any]:
    """Fresh `python -c pass` processes: what starting Python alone costs on this machine."""
    return {"measure": "cold_python", **processes([["-c", "pass"]] * runs)}


# -- the run


def prepare(work: Path, corpus: Path, index: Path | None, flags: list[str]) -> Path:
    """The index copy to serve: copied from --index (and brought up to date, which also
    upgrades an index of an older schema without re-embedding), or built from the corpus."""
    copy = work / "index"
    if index is not None and (index / "index.sqlite").exists():
        log(f"copying {index} ...")
        copy_index(index, copy)
        run = run_python(["-m", "indexer", "build", str(corpus), "--index", str(copy), *flags])
        run.check(DONE)
        return copy
    log(f"building an index of {corpus} (minutes with the default model) ...")
    run = run_python(["-m", "indexer", "build", str(corpus), "--index", str(copy), *flags])
    log(f"built in {run.check(DONE).seconds:.0f} s")
    if index is not None:
        shutil.copytree(copy, index)
        log(f"kept a copy at {index} for the next run")
    return copy


@click.command()
@corpus_option
@click.option(
    "--index",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="An index of the corpus to copy; built there first when it holds none.",
)
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Inference threads.")
@click.option("--clients", default="1,4,16", show_default=True, help="Concurrent clients.")
@click.option("--seconds", type=click.FloatRange(min=0.1), default=10.0, show_default=True)
@click.option("--cold-runs", type=click.IntRange(min=1), default=10, show_default=True)
def main(
    corpus: Path,
    index: Path | None,
    model: Path | None,
    threads: int | None,
    clients: str,
    seconds: float,
    cold_runs: int,
) -> None:
    """Serve an index of the corpus under load, then time cold asks with and without it."""
    counts = [int(c) for c in clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        work = Path(tmp)
        extra = index_flags(work, model, threads)[2:]
        served_index = prepare(work, corpus, index, extra)
        flags = ["--index", str(served_index), *extra]
        copy = shutil.copytree(corpus, work / "corpus")  # mtimes kept: unchanged files stay so
        with serving(flags) as served:
            log(f"serving {served_index} on port {served.port}")
            for count in counts:
                for beside in (None, copy):
                    row = measure_load(served, count, seconds, beside, flags)
                    emit(row, readable=True)
            row = cold_row(flags, cold_runs, served)
            emit({**row, "server_peak_rss_mb": served.rss_mb("VmHWM")}, readable=True)
        emit(cold_row(flags, cold_runs, None), readable=True)
        emit(bare_row(cold_runs), readable=True)


if __name__ == "__main__":
    main()
