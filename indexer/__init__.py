"""indexer: offline, multilingual document question answering."""

from __future__ import annotations

#: This package is imported by the served ask (indexer.launch), which must start fast: no
#: typing at run time (the checker takes any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from indexer.build import BuildReport
    from indexer.errors import IndexerError
    from indexer.index import Index, VerifyReport
    from indexer.search import Hit

__all__ = ["BuildReport", "Hit", "Index", "IndexerError", "VerifyReport"]

#: Exported names and their modules, imported on first use: `index ask` starts reading the
#: tokenizer before numpy, onnxruntime and faiss load (see indexer.cli), and a served ask
#: loads none of them.
_LAZY = {
    "BuildReport": "indexer.build",
    "IndexerError": "indexer.errors",
    "Hit": "indexer.search",
    "Index": "indexer.index",
    "VerifyReport": "indexer.index",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # not at the top: the served ask does without it

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
