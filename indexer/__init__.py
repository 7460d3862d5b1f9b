"""indexer: offline, multilingual document question answering."""

from indexer.build import BuildReport
from indexer.errors import IndexerError
from indexer.index import Index, VerifyReport
from indexer.search import Hit

__all__ = ["BuildReport", "Hit", "Index", "IndexerError", "VerifyReport"]
