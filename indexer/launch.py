"""The `index` command's entry point.

A question that a running `index serve` of the same index can answer is asked, and the lines
the server renders are printed, with no more than `os` and the C socket module: no click, and
none of numpy, onnxruntime or faiss (see indexer.client). Anything else, or any doubt about
the arguments, goes to the click CLI (indexer.cli), which prints the same for a served
question. The `index` script that calls main() is a plain file (indexer/bin/index), not a
generated entry point, which would import `re` first.
"""

from __future__ import annotations

import os
import sys

from indexer import client, config

#: The checker takes any name TYPE_CHECKING as true; a served ask imports no typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def main() -> None:
    """Console-script entry point."""
    try:
        answered = served_ask(sys.argv[1:])
    except BrokenPipeError:
        # The reader left early (`index ask … | head -1`): stop quietly with the CLI's code,
        # and point stdout at /dev/null so the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    if answered is None:
        from indexer.cli import main as cli_main

        cli_main()


def served_ask(args: Sequence[str]) -> int | None:
    """Ask a running server and print its hits, returning 0; None when this needs the CLI
    (other commands or flags, odd arguments, no server, any failure)."""
    parsed = _ask_arguments(args)
    if parsed is None:
        return None
    question, options = parsed
    where = config.index_location(options.get("--index"))
    printed = client.ask(
        where,
        question,
        k=int(options.get("-k", config.DEFAULT_K)),
        context=int(options.get("--context", config.DEFAULT_CONTEXT)),
        mode=options.get("--mode", config.DEFAULT_MODE),
        as_json="--json" in options,
        color=config.color(sys.stdout),
        model=config.model_location(None),
    )
    if printed is None:
        client.give_up(where)
        return None
    sys.stdout.write(printed)
    sys.stdout.flush()
    return 0


#: The options of `index ask` taken here, and whether each takes a value.
_TAKEN = {"-k": True, "--context": True, "--mode": True, "--index": True, "--json": False}


def _ask_arguments(args: Sequence[str]) -> tuple[str, dict[str, str]] | None:
    """(question, options) of a plain `index ask QUESTION [options]`, or None."""
    if not args or args[0] != "ask":
        return None
    question: str | None = None
    options: dict[str, str] = {}
    rest = iter(args[1:])
    for arg in rest:
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if not arg.startswith("-"):
            if question is not None:
                return None
            question = arg
        elif name not in _TAKEN or name in options or (eq and not _TAKEN[name]):
            return None
        elif _TAKEN[name]:
            value = inline if eq else next(rest, None)
            if value is None:
                return None
            options[name] = value
        else:
            options[name] = ""
    if not question or not question.strip() or not _valid(options):
        return None
    return question, options


def _valid(options: dict[str, str]) -> bool:
    for name, low in (("-k", 1), ("--context", 0)):
        value = options.get(name, str(low))
        if not value.isdigit() or int(value) < low:
            return False
    return options.get("--mode", config.DEFAULT_MODE) in config.MODES
