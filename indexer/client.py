"""Asking a running `index serve` of the same index, so that a cold `index ask` costs an HTTP
round trip instead of a model load.

A server announces itself in its index directory (config.SERVE_FILE: host, port, pid, what it
serves and its token; mode 0600) while it listens. This module reads that file, checks that
the process lives and answers /healthz, and asks. It imports only the standard library, and
of it no more than a question needs: not numpy, onnxruntime or the web server, and not
typing, pathlib or urllib (together about a fifth of a served ask's start).
"""

from __future__ import annotations

import json
import os
import socket

from indexer import config

#: The checker takes any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Place = str | os.PathLike[str]

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


def discovery_file(index_dir: Place) -> str:
    """Where a server of this index announces itself."""
    return os.path.join(index_dir, config.SERVE_FILE)


def announce(index_dir: Place, record: dict[str, Any]) -> None:
    """Write the discovery file atomically, readable by its owner only."""
    path = discovery_file(index_dir)
    temporary = os.path.join(index_dir, f".{config.SERVE_FILE}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as out:
        os.fchmod(descriptor, 0o600)
        json.dump(record, out, ensure_ascii=False)
    os.replace(temporary, path)


def withdraw(index_dir: Place, pid: int) -> None:
    """Remove the discovery file if it is still this process's (a newer server may own it)."""
    path = discovery_file(index_dir)
    record = _read(path)
    if record is not None and record.get("pid") == pid:
        import contextlib  # the server's side: the served ask does not load it

        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def find(index_dir: Place) -> dict[str, Any] | None:
    """The record of a server announced for this index whose process is alive, or None."""
    record = _read(discovery_file(index_dir))
    if record is None or record.get("index") != os.path.realpath(index_dir):
        return None
    pid = record.get("pid")
    return record if isinstance(pid, int) and _alive(pid) else None


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as text:
            record = json.load(text)
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


#: Index directories (real paths) whose server this process already asked in vain: the
#: entry point gives up on them, so the CLI it hands over to does not wait out the same
#: timeouts again.
_GAVE_UP: set[str] = set()


def give_up(index_dir: Place) -> None:
    """Ask this index locally from now on in this process."""
    _GAVE_UP.add(os.path.realpath(index_dir))


def gave_up(index_dir: Place) -> bool:
    """Whether give_up() was called for this index."""
    return os.path.realpath(index_dir) in _GAVE_UP


def ask(
    index_dir: Place,
    question: str,
    *,
    k: int,
    context: int,
    mode: str,
    model: Place | None = None,
) -> list[ServedHit] | None:
    """The hits from a running server of this index, or None when there is none, it serves
    another model than `model`, or it fails in any way (the caller then asks locally)."""
    record = find(index_dir)
    if record is None or (model is not None and os.path.realpath(model) != record.get("model")):
        return None
    host = _WILDCARDS.get(record.get("host", ""), record.get("host", ""))
    token = record.get("token")
    try:
        with Connection(host, record["port"]) as connection:
            health = connection.get("/healthz", token)
            if not isinstance(health, dict) or health.get("pid") != record["pid"]:
                return None
            connection.timeout(ASK_TIMEOUT)
            query = {"q": question, "k": str(k), "context": str(context), "mode": mode}
            hits = connection.get(f"/ask?{query_string(query)}", token)
        return [ServedHit(hit) for hit in hits] if isinstance(hits, list) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


#: Bytes a query string carries as they are (RFC 3986 unreserved); the rest is %-encoded.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def query_string(params: dict[str, str]) -> str:
    """`name=value&…`, UTF-8 and %-encoded (urllib.parse.urlencode's result, without the
    import, which costs a cold ask more than the few lines here)."""
    return "&".join(f"{_quoted(name)}={_quoted(value)}" for name, value in params.items())


def _quoted(value: str) -> str:
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in value.encode())


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
