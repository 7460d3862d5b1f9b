"""Running `index serve` in tests: in a thread of the test process or as a child process, on a
free port of 127.0.0.1, and talking HTTP to it with urllib."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from indexer import Index, client
from indexer.serve import Server


def wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll until condition() holds, failing after a generous deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@contextlib.contextmanager
def served(idx: Path, model: Path, **options: Any) -> Iterator[Server]:
    """A real server of idx on a free port, run in a thread of this process."""
    server = Server(lambda: Index(idx, model=model), port=0, **options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.listening.is_set() or not thread.is_alive())
    assert server.listening.is_set(), "the server did not start"
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=60)
        assert not thread.is_alive()


def serve_command(idx: Path, model: Path) -> list[str]:
    """`python -m indexer serve` of idx with model (add --port and the rest)."""
    return [sys.executable, "-m", "indexer", "serve", "--index", str(idx), "--model", str(model)]


@contextlib.contextmanager
def serving_process(idx: Path, model: Path, *extra: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`index serve --port 0` as a child process; yields it and its base URL (from the
    discovery file)."""
    command = [*serve_command(idx, model), "--port", "0", *extra]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    announced = Path(client.discovery_file(idx))
    try:
        wait_for(lambda: announced.exists() or process.poll() is not None)
        assert process.poll() is None, process.communicate()[1]
        record = client.find(idx)
        assert record is not None, announced.read_text(encoding="utf-8")
        yield process, f"http://127.0.0.1:{record['port']}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def get(
    base: str, target: str, *, token: str | None = None, timeout: float = 60
) -> tuple[int, Any]:
    """GET base+target: the status and the decoded JSON body (errors included)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(base.rstrip("/") + target, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def answered(base: str, token: str | None = None) -> int:
    """How many index calls the server has answered."""
    status, health = get(base, "/healthz", token=token)
    assert status == 200, health
    return int(health["answered"])


def dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, 0)
        raise AssertionError("pid reused already")
    return child.pid
