"""The entry point's fast path: which argument lists it answers from a running server itself."""

from __future__ import annotations

import pytest

from indexer.launch import _ask_arguments


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ask", "How fast?"], ("How fast?", {})),
        (["ask", "How fast?", "--json", "-k", "3"], ("How fast?", {"--json": "", "-k": "3"})),
        (
            ["ask", "--index=/x", "Q", "--mode", "dense"],
            ("Q", {"--index": "/x", "--mode": "dense"}),
        ),
        (["ask", "Q", "--context", "0"], ("Q", {"--context": "0"})),
    ],
)
def test_plain_asks_are_taken(args: list[str], expected: tuple) -> None:
    assert _ask_arguments(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["build", "docs"],
        ["ask"],  # the interactive prompt
        ["ask", "   "],
        ["ask", "Q", "--model", "m"],  # the CLI checks the model against the server's
        ["ask", "Q", "--threads", "2"],
        ["ask", "Q", "-h"],
        ["ask", "Q", "R"],
        ["ask", "Q", "-k"],
        ["ask", "Q", "-k", "0"],
        ["ask", "Q", "-k", "x"],
        ["ask", "Q", "--context", "-1"],
        ["ask", "Q", "--mode", "fuzzy"],
        ["ask", "Q", "--json=yes"],
        ["ask", "Q", "-k", "3", "-k", "4"],
    ],
)
def test_anything_else_goes_to_the_cli(args: list[str]) -> None:
    assert _ask_arguments(args) is None
