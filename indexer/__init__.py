"""indexer: offline, multilingual document question answering."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from indexer.errors import IndexerError

if TYPE_CHECKING:
    from indexer.build import BuildReport
    from indexer.index import Index, VerifyReport
    from indexer.search import Hit

__all__ = ["BuildReport", "Hit", "Index", "IndexerError", "VerifyReport"]

#: Exported names and their modules, imported on first use: `index ask` starts reading the
#: tokenizer before numpy, onnxruntime and faiss load (see indexer.cli).
_LAZY = {
    "BuildReport": "indexer.build",
    "Hit": "indexer.search",
    "Index": "indexer.index",
    "VerifyReport": "indexer.index",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
