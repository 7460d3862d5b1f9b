"""`index mcp`: an index's search, passages and status as Model Context Protocol tools over
stdio, for agents. The model loads once; every question reads the index's current build.

The `mcp` package is an optional extra, imported only when the server starts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from indexer import config
from indexer.config import Mode
from indexer.errors import (
    IndexerError,
    IndexUnusableError,
    MissingExtraError,
    NoIndexError,
    from_sqlite,
)
from indexer.index import Index
from indexer.worker import IndexWorker

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

T = TypeVar("T")
Echo = Callable[[str], None]

#: The most hits one search returns, so an agent cannot ask for the whole index at once.
MAX_K = 50
#: The most sentences read_passage shows on each side of a line.
MAX_CONTEXT = 50

INSTRUCTIONS = (
    "Search an offline index of a folder of documents (any language; the question may be in "
    "another language than the documents). `search` returns the best passages with their "
    "path and line; `read_passage` shows the indexed text around a path and line from a hit; "
    "`status` tells what the index holds."
)


def search(index: Index, question: str, *, k: int, mode: Mode) -> dict[str, Any]:
    """The k best hits for a question, as JSON-ready records."""
    if not 1 <= k <= MAX_K:
        raise IndexerError(f"k must be between 1 and {MAX_K}")
    hits = index.ask(question, k=k, context=config.DEFAULT_CONTEXT, mode=mode)
    return {"hits": [hit.to_dict() for hit in hits]}


def read_passage(index: Index, path: str, *, line: int, context: int) -> dict[str, Any]:
    """The stored sentences around a line of an indexed file: the sentence covering the line
    (or the first after it) and `context` sentences on each side. Nothing is read from disk,
    so only indexed files can be shown."""
    if not 0 <= context <= MAX_CONTEXT:
        raise IndexerError(f"context must be between 0 and {MAX_CONTEXT}")
    rows = index.document(path)
    at = next((i for i, row in enumerate(rows) if row.line_end >= line), len(rows) - 1)
    shown = range(max(0, at - context), min(len(rows), at + context + 1))
    sentences = [
        {
            "line": rows[i].line_start,
            "line_end": rows[i].line_end,
            "page": rows[i].page,
            "kind": rows[i].kind,
            "text": rows[i].text,
            "target": i == at,
        }
        for i in shown
    ]
    return {"path": path, "line": line, "sentences": sentences}


def warm_up(index: Index, echo: Echo) -> None:
    """Load the model and open the current build, so the first question is answered warm.

    An index not built yet is not an error here: the server answers once it is built."""
    try:
        index.ask("warm up", k=1, context=0)
    except (NoIndexError, IndexUnusableError) as exc:
        echo(f"warning: {exc}")


def make_server(worker: IndexWorker) -> MCPServer[Any]:
    """The MCP server with the three tools, each running on the index's thread."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server: MCPServer[Any] = MCPServer("indexer", instructions=INSTRUCTIONS, log_level="WARNING")

    async def call(func: Callable[[Index], T]) -> T:
        try:
            return await worker.run(func)
        except sqlite3.DatabaseError as exc:
            raise ToolError(str(from_sqlite(exc, "the index"))) from None
        except IndexerError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(name="search")
    async def search_tool(
        question: str, k: int = config.DEFAULT_K, mode: Mode = config.DEFAULT_MODE
    ) -> dict[str, Any]:
        """Find the passages of the indexed documents that best answer a question, in any
        language. Returns hits best first, each with path, line, location (path:line or
        path:pPAGE), text, the sentences before and after, and scores. mode: hybrid (meaning
        and shared words), dense (meaning only) or keyword (shared words only)."""
        return await call(lambda index: search(index, question, k=k, mode=mode))

    @server.tool(name="read_passage")
    async def read_passage_tool(path: str, line: int, context: int = 5) -> dict[str, Any]:
        """Read the indexed text around a line of a document: pass a hit's path and line. Returns
        the sentence at that line (target: true) and `context` sentences before and after it,
        each with its line. Only indexed files can be read."""
        return await call(lambda index: read_passage(index, path, line=line, context=context))

    @server.tool(name="status")
    async def status_tool() -> dict[str, Any]:
        """What the index holds: files, sentences, model, last build, size on disk."""
        return await call(Index.status)

    return server


def serve(open_index: Callable[[], Index], *, echo: Echo) -> None:
    """Serve an index over stdio until the client disconnects."""
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name not in {"mcp", "mcp.server", "mcp.server.mcpserver"}:
            raise
        raise MissingExtraError("mcp", "`index mcp`") from None
    worker = IndexWorker(open_index)
    try:
        worker.call(lambda index: warm_up(index, echo))
        make_server(worker).run("stdio")
    finally:
        worker.close()
