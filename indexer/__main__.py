"""`python -m indexer` is the same as the `index` command."""

from indexer.cli import main

main()
