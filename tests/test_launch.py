"""The entry point's fast path: which argument lists it answers from a running server itself."""

from __future__ import annotations

import ast
import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from indexer import Index, client
from indexer.launch import _ask_arguments
from tests.files import write_docs


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


def test_a_server_that_does_not_answer_is_tried_once_per_ask(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    docs = write_docs(tmp_path / "docs", {"a.md": "The backup job runs every night.\n"})
    idx = tmp_path / "idx"
    Index(idx, model=tiny_model_dir).build(docs)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    silent.listen(8)
    record = {"host": "127.0.0.1", "port": silent.getsockname()[1], "pid": os.getpid()}
    client.announce(idx, {**record, "index": str(idx.resolve()), "model": "m", "token": None})
    command = [sys.executable, "-m", "indexer", "ask", "backup job", "--index", str(idx)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "a.md" in done.stdout, done.stderr
    silent.settimeout(0.1)
    attempts = 0
    with contextlib.suppress(TimeoutError):
        while True:
            silent.accept()[0].close()
            attempts += 1
    silent.close()
    assert attempts == 1, "the CLI asked the silent server again after the entry point"


def test_the_served_ask_imports_no_more_than_it_needs() -> None:
    # typing, pathlib and urllib.parse (which pathlib imports, with ipaddress) cost a cold
    # served ask about a fifth of its start, and re, json and socket (with the enum,
    # functools and collections they share) more than the server's answer; site hooks may
    # have loaded some already.
    code = (
        "import sys; before = set(sys.modules); import indexer.launch; "
        "print(sorted(set(sys.modules) - before))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.strip().strip("[]").replace("'", "").split(", "))
    assert "indexer.launch" in loaded
    unwanted = {"typing", "pathlib", "urllib.parse", "ipaddress", "contextlib", "click", "numpy"}
    unwanted |= {"re", "json", "socket", "enum", "functools", "collections", "importlib"}
    assert not loaded & unwanted


def test_the_index_script_imports_only_the_launcher() -> None:
    # pip's wrapper for a [project.scripts] entry imports `re` before anything of ours; the
    # `index` script (pyproject's script-files) imports sys and the launcher alone.
    script = Path(__file__).parents[1] / "indexer" / "bin" / "index"
    tree = ast.parse(script.read_text(encoding="utf-8"))
    imported = [
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert imported == ["sys", "indexer.launch"]
    assert script.stat().st_mode & 0o111
    assert '"indexer/bin/index"' in (script.parents[2] / "pyproject.toml").read_text()
