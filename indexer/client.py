"""Asking a running `index serve` of the same index, so that a cold `index ask` costs an HTTP
round trip instead of a model load.

A server announces itself in its index directory (config.SERVE_FILE: host, port, pid, what it
serves and its token; mode 0600) while it listens. This module reads that file, checks that
the process lives and answers /healthz, and asks. It imports only the standard library: the
ask path must not load numpy, onnxruntime or the web server.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from indexer import config

#: Seconds a live server has to answer /healthz before `index ask` loads the model itself.
HEALTH_TIMEOUT = 0.5
#: Seconds for the answer itself (a busy server queues questions).
ASK_TIMEOUT = 30.0
#: Longest header line and body read from a server (a body holds at most 100 hits).
MAX_LINE = 65536
MAX_BODY = 64 * 1024 * 1024
#: Where a client connects for a server listening on every address.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class ServedHit:
    """One hit as a server sent it: the fields `index ask` prints, and the whole record.

    A plain class: a dataclass would cost the cold ask the code it generates at import.
    """

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.rank: int = record["rank"]
        self.score: float = record["score"]
        self.location: str = record["location"]
        self.text: str = record["text"]
        self.before: list[str] = record["before"]
        self.after: list[str] = record["after"]
        self.dense_score: float | None = record["dense_score"]

    def to_dict(self) -> dict[str, Any]:
        """The record, exactly as the server's Hit.to_dict() made it."""
        return self.record


def discovery_file(index_dir: Path) -> Path:
    """Where a server of this index announces itself."""
    return index_dir / config.SERVE_FILE


def announce(index_dir: Path, record: dict[str, Any]) -> None:
    """Write the discovery file atomically, readable by its owner only."""
    path = discovery_file(index_dir)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as out:
        os.fchmod(descriptor, 0o600)
        json.dump(record, out, ensure_ascii=False)
    os.replace(temporary, path)


def withdraw(index_dir: Path, pid: int) -> None:
    """Remove the discovery file if it is still this process's (a newer server may own it)."""
    path = discovery_file(index_dir)
    record = _read(path)
    if record is not None and record.get("pid") == pid:
        path.unlink(missing_ok=True)


def find(index_dir: Path) -> dict[str, Any] | None:
    """The record of a server announced for this index whose process is alive, or None."""
    record = _read(discovery_file(index_dir))
    if record is None or record.get("index") != str(index_dir.resolve()):
        return None
    pid = record.get("pid")
    return record if isinstance(pid, int) and _alive(pid) else None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: /healthz decides
        return True
    return True


#: Index directories whose server this process already asked in vain (the entry point marks
#: them, so the CLI it hands over to does not wait out the same timeouts again).
FAILED: set[Path] = set()


def ask(
    index_dir: Path,
    question: str,
    *,
    k: int,
    context: int,
    mode: str,
    model: Path | None = None,
) -> list[ServedHit] | None:
    """The hits from a running server of this index, or None when there is none, it serves
    another model than `model`, or it fails in any way (the caller then asks locally)."""
    record = find(index_dir)
    if record is None or (model is not None and str(model.resolve()) != record.get("model")):
        return None
    host = _WILDCARDS.get(record.get("host", ""), record.get("host", ""))
    token = record.get("token")
    try:
        with Connection(host, record["port"]) as connection:
            health = connection.get("/healthz", token)
            if not isinstance(health, dict) or health.get("pid") != record["pid"]:
                return None
            connection.timeout(ASK_TIMEOUT)
            query = urlencode({"q": question, "k": k, "context": context, "mode": mode})
            hits = connection.get(f"/ask?{query}", token)
        return [ServedHit(hit) for hit in hits] if isinstance(hits, list) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Connection:
    """GET requests to `index serve` over one keep-alive connection.

    A few lines of HTTP/1.1 rather than http.client, whose imports (email, ssl) cost a cold
    ask about 20 ms of CPU; the server is uvicorn, which answers with a Content-Length.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        # An ASCII host goes to getaddrinfo as bytes (which it takes, though typeshed says str):
        # a str host costs a cold ask the import of the IDNA codec (unicodedata and stringprep).
        address = host.encode("ascii") if host.isascii() else host
        self.socket = socket.create_connection(
            (address, port),  # type: ignore[arg-type]
            timeout=HEALTH_TIMEOUT,
        )
        self.reader = self.socket.makefile("rb")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()
        self.socket.close()

    def timeout(self, seconds: float) -> None:
        """Wait up to `seconds` for each answer from now on."""
        self.socket.settimeout(seconds)

    def get(self, target: str, token: str | None) -> Any:
        """The JSON body of a 200 answer, else None."""
        head = [f"GET {target} HTTP/1.1", f"Host: {self.host}", "Accept: application/json"]
        head += [f"Authorization: Bearer {token}"] if token else []
        self.socket.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        status = int(self.reader.readline(MAX_LINE).split()[1])
        length = None
        while (line := self.reader.readline(MAX_LINE)).strip():
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None or length > MAX_BODY:
            raise ValueError("no usable Content-Length")
        body = self.reader.read(length)
        if len(body) != length:
            raise ValueError("answer cut short")
        return json.loads(body) if status == 200 else None
