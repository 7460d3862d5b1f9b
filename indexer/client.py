"""Asking a running `index serve` of the same index, so that a cold `index ask` costs an HTTP
round trip instead of a model load.

A server announces itself in its index directory (config.SERVE_FILE: host, port, pid, what it
serves and its token, one `name=value` line each; mode 0600) while it listens. This module
reads that file, checks that the process lives and that its /healthz answers with its pid, and
asks for the lines `index ask` prints, rendered by the server.

A served ask is mostly interpreter start-up, so this module imports nothing but `os` and
`_socket` (the C half of `socket`): `socket` itself, `json` and `re` each bring in `enum`,
`functools` and `collections`, and together cost a cold ask more than the server's answer
(docs/performance.md, "Serving").
"""

from __future__ import annotations

import _socket
import os

from indexer import config

#: The checker takes any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    Place = str | os.PathLike[str]

#: Seconds a live server has to answer /healthz before `index ask` loads the model itself.
HEALTH_TIMEOUT = 0.5
#: Seconds for the answer itself (a busy server queues questions).
ASK_TIMEOUT = 30.0
#: Longest head (status line and headers) and body read from a server.
MAX_HEAD = 65536
MAX_BODY = 64 * 1024 * 1024
#: The header by which /healthz names the process answering (checked against the file's pid).
PID_HEADER = "X-Indexer-Pid"
#: Where a client connects for a server listening on every address.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
#: The fields of the discovery file.
_FIELDS = ("host", "port", "pid", "index", "model", "token")


def discovery_file(index_dir: Place) -> str:
    """Where a server of this index announces itself."""
    return os.path.join(index_dir, config.SERVE_FILE)


def announce(index_dir: Place, record: dict[str, object]) -> None:
    """Write the discovery file atomically, readable by its owner only (`record` holds the
    _FIELDS; a token of None is written empty)."""
    path = discovery_file(index_dir)
    temporary = os.path.join(index_dir, f".{config.SERVE_FILE}.{os.getpid()}")
    lines = [f"{name}={_escaped(str(record.get(name) or ''))}\n" for name in _FIELDS]
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as out:
        os.fchmod(descriptor, 0o600)
        out.writelines(lines)
    os.replace(temporary, path)


def withdraw(index_dir: Place, pid: int) -> None:
    """Remove the discovery file if it is still this process's (a newer server may own it)."""
    path = discovery_file(index_dir)
    record = _read(path)
    if record is not None and record["pid"] == str(pid):
        import contextlib  # the server's side: the served ask does not load it

        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def find(index_dir: Place) -> dict[str, str] | None:
    """The record of a server announced for this index whose process is alive, or None."""
    record = _read(discovery_file(index_dir))
    if record is None or record["index"] != os.path.realpath(index_dir):
        return None
    pid, port = record["pid"], record["port"]
    ok = pid.isdigit() and port.isdigit() and _alive(int(pid))
    return record if ok else None


def _read(path: str) -> dict[str, str] | None:
    """The discovery file's fields, or None when it is missing or not one."""
    try:
        with open(path, encoding="utf-8") as text:
            lines = text.read(MAX_HEAD).splitlines()
    except (OSError, ValueError):
        return None
    record = {}
    for line in lines:
        name, eq, value = line.partition("=")
        if eq:
            record[name] = _unescaped(value)
    return record if all(name in record for name in _FIELDS) else None


def _escaped(value: str) -> str:
    """`value` on one line: % and line breaks written as %25, %0A, %0D."""
    return value.replace("%", "%25").replace("\n", "%0A").replace("\r", "%0D")


def _unescaped(value: str) -> str:
    return value.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


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
    as_json: bool,
    color: bool,
    model: Place | None = None,
) -> str | None:
    """What `index ask` prints for this question (display.hit_lines, rendered by a running
    server of this index), or None when there is none, it serves another model than `model`,
    or it fails in any way (the caller then asks locally)."""
    record = find(index_dir)
    if record is None or (model is not None and os.path.realpath(model) != record["model"]):
        return None
    host = _WILDCARDS.get(record["host"], record["host"])
    token = record["token"] or None
    query = {"q": question, "k": str(k), "context": str(context), "mode": mode}
    query["format"] = "jsonl" if as_json else "text"
    query["color"] = "1" if color else "0"
    try:
        connection = Connection(host, int(record["port"]))
        try:
            health = connection.get("/healthz", token)
            if health is None or health[0].get(PID_HEADER.lower()) != record["pid"]:
                return None
            connection.timeout(ASK_TIMEOUT)
            answer = connection.get(f"/ask?{query_string(query)}", token)
        finally:
            connection.close()
        return answer[1].decode("utf-8") if answer is not None else None
    except (OSError, ValueError):
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

    A few lines of HTTP/1.1 on the C socket module rather than http.client (whose imports,
    email and ssl, cost a cold ask about 20 ms of CPU) or `socket`; the server is uvicorn,
    which answers with a Content-Length.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        # An ASCII host goes to getaddrinfo as bytes: a str host costs a cold ask the import
        # of the IDNA codec (unicodedata and stringprep).
        address = host.encode("ascii") if host.isascii() else host
        error: OSError = OSError(f"no address for {host}")
        for family, kind, proto, _, where in _socket.getaddrinfo(
            address, port, 0, _socket.SOCK_STREAM
        ):
            self.socket = _socket.socket(family, kind, proto)
            try:
                self.socket.settimeout(HEALTH_TIMEOUT)
                self.socket.connect(where)
                break
            except OSError as exc:
                self.socket.close()
                error = exc
        else:
            raise error
        self._buffer = b""

    def close(self) -> None:
        """Close the connection."""
        self.socket.close()

    def timeout(self, seconds: float) -> None:
        """Wait up to `seconds` for each answer from now on."""
        self.socket.settimeout(seconds)

    def get(self, target: str, token: str | None) -> tuple[dict[str, str], bytes] | None:
        """The headers (names in lower case) and body of a 200 answer, else None."""
        head = [f"GET {target} HTTP/1.1", f"Host: {self.host}"]
        head += [f"Authorization: Bearer {token}"] if token else []
        self.socket.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self._buffer:
            self._receive(MAX_HEAD)
        raw, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status, *lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_BODY:
            raise ValueError("no usable Content-Length")
        while len(self._buffer) < int(length):
            self._receive(MAX_BODY)
        body, self._buffer = self._buffer[: int(length)], self._buffer[int(length) :]
        return (headers, body) if status.split(" ")[1:2] == ["200"] else None

    def _receive(self, limit: int) -> None:
        if len(self._buffer) > limit:
            raise ValueError("answer too long")
        data = self.socket.recv(65536)
        if not data:
            raise ValueError("answer cut short")
        self._buffer += data
