"""`index serve`: one process keeps the model and the current vector generation warm and
answers over HTTP with JSON, with a search page at `/` (Starlette on uvicorn).

Every Index call runs on one worker thread: the Index's SQLite connection may only be used by
the thread that opened it. A question reads the index's latest generation (Index.ask does, in
a read snapshot), so builds from cron or a watcher are served without a restart.

    GET /ask?q=…&k=&mode=&context=   the hits, as `index ask --json` prints them; with
        &format=text (&color=1) or &format=jsonl, the lines `index ask` (--json) prints
    GET /doc?path=…                  the stored sentences of one indexed file
    GET /status                      Index.status()
    GET /healthz                     liveness, answered without touching the index
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import os
import signal
import socket
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from indexer import client, config
from indexer.config import MODES
from indexer.display import hit_lines
from indexer.errors import (
    EmptyQuestionError,
    ExitCode,
    IndexerError,
    NoIndexError,
    NoSuchDocumentError,
    from_sqlite,
)
from indexer.worker import IndexWorker

if TYPE_CHECKING:
    from indexer.index import Index

T = TypeVar("T")
Echo = Callable[[str], None]

#: Questions waiting for the worker beyond which a request is refused (503) rather than queued.
MAX_WAITING = 64
#: Longest request line and headers (h11's limit): room for a question of MAX_QUESTION_CHARS
#: CJK characters, percent-encoded (9 bytes each).
MAX_REQUEST_BYTES = 64 * 1024
#: What /ask answers with: the hits as one JSON list, or the lines `index ask` prints for
#: people (text) or with --json (jsonl; what a served `index ask` prints, indexer.client).
FORMATS = ("json", "text", "jsonl")
#: Longest `path` accepted by /doc.
MAX_PATH_CHARS = 4096
#: Security headers on every response: no sniffing, no framing, no referrer (a ?token= URL).
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: The page is one file with inline style and script; it may talk to this server only.
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)


class TokenRequiredError(IndexerError):
    """A non-loopback address without a token."""

    exit_code = ExitCode.USAGE


class CannotListenError(IndexerError):
    """The address or port cannot be bound."""


# -- the worker


class Worker(IndexWorker):
    """The server's index worker: refuses a question when too many are waiting, and counts
    the answered ones (for /status and the benchmark)."""

    def __init__(self, open_index: Callable[[], Index], *, max_waiting: int = MAX_WAITING) -> None:
        super().__init__(open_index)
        self._max_waiting = max_waiting
        self.waiting = 0
        self.answered = 0

    async def run(self, job: Callable[[Index], T]) -> T:
        """Run a job on the worker without blocking the event loop (503 when too busy)."""
        if self.waiting >= self._max_waiting:
            raise HTTPException(503, f"busy: {self.waiting} questions are waiting — try again")
        self.waiting += 1
        try:
            result = await super().run(job)
        finally:
            self.waiting -= 1
        self.answered += 1
        return result


def warm_up(index: Index) -> dict[str, str]:
    """Load the model and the vector file with one question; what is served, for discovery."""
    index.ask("warm up", k=1, context=0)
    return {"index": str(index.path.resolve()), "model": str(index.model.path.resolve())}


# -- requests


def _params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, refusing unknown and repeated ones."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name == "token":
            continue
        if name not in allowed:
            takes = ", ".join(allowed) if allowed else "no parameters"
            raise HTTPException(
                400, f"unknown parameter {name!r} — {request.url.path} takes {takes}"
            )
        if name in params:
            raise HTTPException(400, f"parameter {name!r} given more than once")
        params[name] = value
    return params


def _question(value: str | None) -> str:
    if value is None:
        raise HTTPException(400, "no question — pass it as q, e.g. /ask?q=How+fast+nnapi%3F")
    question = value.strip()
    if not question:
        raise EmptyQuestionError()
    if len(question) > config.MAX_QUESTION_CHARS:
        raise HTTPException(
            400,
            f"the question has {len(question)} characters; at most {config.MAX_QUESTION_CHARS} "
            "are accepted — shorten it",
        )
    if "\ufffd" in question or any(_control(char) for char in question):
        raise HTTPException(
            400, "the question is not text (control characters or invalid UTF-8) — send UTF-8"
        )
    return question


def _control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cs")


def _int(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise HTTPException(400, f"{name} must be a whole number from {low} to {high}")
    return int(value)


def _choice(params: dict[str, str], name: str, choices: tuple[T, ...], default: T) -> T:
    """The parameter's value, one of `choices` (`default` when it is not given)."""
    value = params.get(name)
    if value is None:
        return default
    for choice in choices:
        if value == choice:
            return choice
    raise HTTPException(
        400, f"unknown {name} {value!r} — choose one of {', '.join(map(str, choices))}"
    )


def _json(content: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status, headers={**HEADERS, **(headers or {})})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


def status_for(exc: IndexerError) -> int:
    """The HTTP status of an expected failure."""
    if isinstance(exc, EmptyQuestionError):
        return 400
    if isinstance(exc, NoSuchDocumentError):
        return 404
    if isinstance(exc, NoIndexError) or exc.exit_code in (ExitCode.UNUSABLE, ExitCode.LOCKED):
        return 503
    return 400 if exc.exit_code == ExitCode.USAGE else 500


# -- the app


class Api:
    """The endpoints, over one worker."""

    def __init__(self, worker: Worker, served: dict[str, str]) -> None:
        self.worker = worker
        self.served = served
        self.page = (resources.files("indexer") / "web" / "index.html").read_bytes()

    async def ask(self, request: Request) -> Response:
        params = _params(request, ("q", "k", "mode", "context", "format", "color"))
        question = _question(params.get("q"))
        k = _int(params, "k", config.DEFAULT_K, 1, config.MAX_K)
        context = _int(params, "context", config.DEFAULT_CONTEXT, 0, config.MAX_CONTEXT)
        mode = _choice(params, "mode", MODES, config.DEFAULT_MODE)
        shape = _choice(params, "format", FORMATS, FORMATS[0])
        color = _int(params, "color", 0, 0, 1) == 1
        hits = await self.worker.run(
            lambda index: index.ask(question, k=k, context=context, mode=mode)
        )
        if shape == "json":
            return _json([hit.to_dict() for hit in hits])
        lines = hit_lines(hits, as_json=shape == "jsonl", color=color)
        text = "".join(f"{line}\n" for line in lines)
        return Response(text, media_type="text/plain; charset=utf-8", headers=HEADERS)

    async def doc(self, request: Request) -> Response:
        path = _params(request, ("path",)).get("path")
        if not path:
            raise HTTPException(400, "no path — pass a path from /ask, e.g. /doc?path=notes.md")
        if len(path) > MAX_PATH_CHARS:
            raise HTTPException(400, f"the path is longer than {MAX_PATH_CHARS} characters")

        def job(index: Index) -> list[dict[str, object]]:
            return [
                {
                    "sentence_id": row.id,
                    "line": row.line_start,
                    "line_end": row.line_end,
                    "page": row.page,
                    "kind": row.kind,
                    "text": row.text,
                }
                for row in index.document(path)
            ]

        return _json({"path": path, "sentences": await self.worker.run(job)})

    async def status(self, request: Request) -> Response:
        _params(request, ())
        return _json(await self.worker.run(lambda index: index.status()))

    async def healthz(self, request: Request) -> Response:
        _params(request, ())
        answer = {"ok": True, "pid": os.getpid(), **self.served, **self._load()}
        return _json(answer, headers={client.PID_HEADER: str(os.getpid())})

    def _load(self) -> dict[str, int]:
        return {"answered": self.worker.answered, "waiting": self.worker.waiting}

    async def index_page(self, request: Request) -> Response:
        _params(request, ())
        headers = {**HEADERS, "Content-Security-Policy": PAGE_POLICY}
        return Response(self.page, media_type="text/html; charset=utf-8", headers=headers)


async def _on_indexer_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IndexerError)
    return _error(status_for(exc), str(exc))


async def _on_database_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, sqlite3.DatabaseError)
    return await _on_indexer_error(request, from_sqlite(exc, "the index"))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such page: {request.url.path} — try /, /ask, /doc, /status or /healthz"
    elif exc.status_code == 405:
        message = "only GET is served"
    else:
        message = exc.detail
    return _error(exc.status_code, message, dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    return _error(500, f"internal error ({type(exc).__name__}) — the server's log has the details")


class Guard:
    """Before any endpoint: GET or HEAD only, no request body, and the token when one is set
    (`Authorization: Bearer TOKEN`, or `?token=TOKEN` for a page opened from a link)."""

    def __init__(self, app: ASGIApp, token: str | None = None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (refusal := self._refuse(scope)):
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refuse(self, scope: Scope) -> Response | None:
        headers = dict(scope["headers"])
        if self.token and not self._authorized(scope, headers):
            return _error(
                401,
                "a token is required — send `Authorization: Bearer TOKEN` (or ?token=TOKEN)",
                {"WWW-Authenticate": "Bearer"},
            )
        if scope["method"] not in ("GET", "HEAD"):
            return _error(405, "only GET is served", {"Allow": "GET, HEAD"})
        if headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers:
            return _error(413, "request bodies are not accepted — pass parameters in the URL")
        return None

    def _authorized(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        assert self.token is not None
        given = headers.get(b"authorization", b"")
        if given.startswith(b"Bearer ") and hmac.compare_digest(given[7:].strip(), self.token):
            return True
        query = scope.get("query_string", b"").decode("latin-1")
        tokens = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "token"]
        return len(tokens) == 1 and hmac.compare_digest(tokens[0].encode(), self.token)


def create_app(worker: Worker, served: dict[str, str], *, token: str | None = None) -> Starlette:
    """The ASGI app: the endpoints over `worker`, JSON errors, the token guard."""
    api = Api(worker, served)
    return Starlette(
        routes=[
            Route("/", api.index_page),
            Route("/ask", api.ask),
            Route("/doc", api.doc),
            Route("/status", api.status),
            Route("/healthz", api.healthz),
        ],
        middleware=[Middleware(Guard, token=token)],
        exception_handlers={
            IndexerError: _on_indexer_error,
            sqlite3.DatabaseError: _on_database_error,
            HTTPException: _on_http_error,
            Exception: _on_unexpected,
        },
    )


# -- the server


def needs_token(host: str) -> bool:
    """Whether an address reaches beyond this machine (anything but loopback)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise CannotListenError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}) — pass another --port or "
            "--host"
        ) from None
    return sock


class Server:
    """`index serve`: the worker, the app and uvicorn on one socket; writes the discovery file
    that `index ask` reads while it listens. run() blocks; stop() ends it from another thread."""

    def __init__(
        self,
        open_index: Callable[[], Index],
        *,
        host: str = config.DEFAULT_HOST,
        port: int = config.DEFAULT_PORT,
        token: str | None = None,
        echo: Echo | None = None,
    ) -> None:
        if needs_token(host) and not token:
            raise TokenRequiredError(
                f"{host} is reachable from other machines — pass --token (or set "
                f"{config.ENV_TOKEN}); without one, serve on 127.0.0.1"
            )
        self.host, self.port, self.token = host, port, token
        self.worker = Worker(open_index)
        self.echo = echo or (lambda message: None)
        self.listening = threading.Event()
        self.url = ""
        self._uvicorn: uvicorn.Server | None = None

    def run(self) -> None:
        """Load the model, listen, and answer until stopped (Ctrl-C, SIGTERM or stop())."""
        try:
            served = self.worker.call(warm_up)
            with contextlib.closing(listen(self.host, self.port)) as sock:
                self.port = sock.getsockname()[1]
                app = create_app(self.worker, served, token=self.token)
                self._uvicorn = uvicorn.Server(self._config(app))
                with _terminate_on_sigterm(), self._discoverable(served):
                    asyncio.run(self._serve(sock))
        except KeyboardInterrupt:
            pass
        finally:
            self.worker.close()

    def stop(self) -> None:
        """Ask a running server to finish its requests and exit."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True

    def _config(self, app: ASGIApp) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            http="h11",
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            h11_max_incomplete_event_size=MAX_REQUEST_BYTES,
            timeout_graceful_shutdown=5,
        )

    async def _serve(self, sock: socket.socket) -> None:
        assert self._uvicorn is not None
        serving = asyncio.create_task(self._uvicorn.serve(sockets=[sock]))
        while not self._uvicorn.started and not serving.done():
            await asyncio.sleep(0.01)
        if self._uvicorn.started:
            self.listening.set()
        await serving

    @contextlib.contextmanager
    def _discoverable(self, served: dict[str, str]) -> Iterator[None]:
        """The discovery file while listening (mode 0600: it may hold the token)."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        self.url = f"http://{host}:{self.port}/"
        record = {"host": self.host, "port": self.port, "pid": os.getpid(), **served}
        record["token"] = self.token
        index_dir = Path(served["index"])
        try:
            client.announce(index_dir, record)
        except OSError as exc:
            self.echo(f"warning: cannot write {config.SERVE_FILE} ({exc}): `index ask` will load")
        self.echo(f"serving {index_dir} at {self.url} (Ctrl-C to stop)")
        try:
            yield
        finally:
            client.withdraw(index_dir, os.getpid())


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM ends the server like Ctrl-C: uvicorn finishes the requests, re-raises the signal
    under the handler it found, and this one unwinds (so the discovery file is removed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(open_index: Callable[[], Index], **options: Any) -> None:
    """Run a Server until Ctrl-C or SIGTERM (options: host, port, token, echo)."""
    Server(open_index, **options).run()
