"""`python -m indexer` is the same as the `index` command."""

from indexer.launch import main

main()
