"""One Index used from one thread, for servers whose requests arrive on other threads.

An Index holds one sqlite3 connection, which may only be used from the thread that opened it;
`index serve` (Starlette) and `index mcp` (the MCP SDK) both run their handlers elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from indexer.index import Index

T = TypeVar("T")


class IndexWorker:
    """The one thread that opens the Index (on first use) and runs every call on it."""

    def __init__(self, open_index: Callable[[], Index]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexer-worker")
        self._open = open_index
        self._index: Index | None = None

    def _call(self, job: Callable[[Index], T]) -> T:
        if self._index is None:
            self._index = self._open()
        return job(self._index)

    def call(self, job: Callable[[Index], T]) -> T:
        """Run job(index) on the worker and wait for it (start-up, shutdown)."""
        return self._pool.submit(self._call, job).result()

    async def run(self, job: Callable[[Index], T]) -> T:
        """Run job(index) on the worker without blocking the event loop."""
        return await asyncio.wrap_future(self._pool.submit(self._call, job))

    def close(self) -> None:
        """Close the Index on its own thread, then stop the thread."""
        if self._index is not None:
            self.call(lambda index: index.close())
        self._pool.shutdown(wait=True)
