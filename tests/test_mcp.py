"""`index mcp`: the Model Context Protocol server, spoken to through the SDK's own stdio client."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from indexer import Index
from indexer.cli import cli
from indexer.errors import IndexerError, NoSuchDocumentError
from indexer.mcp_server import read_passage
from tests.files import write, write_docs

DOCS = {
    "animals.md": "# Animals\n\nThe cat sat on the mat.\nIt was a sunny day.\n\n"
    "Dogs bark loudly at night.\n\nBirds sing in the morning.\n",
    "travel/trains.md": "# Trains\n\nTrains in Japan run on time.\n\nThe shinkansen is fast.\n",
    "notes.txt": "Remember to water the plants on Sunday.\n",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Path]:
    """(docs folder, index) of DOCS, with a symlink leading out of the folder (not indexed)."""
    root = tmp_path_factory.mktemp("mcp")
    docs = write_docs(root / "docs", DOCS)
    secret = write(root / "secret.md", "A secret that no agent may read.\n")
    (docs / "leak.md").symlink_to(secret)
    index = Index(root / "idx", model=tiny_model_dir)
    index.build(docs)
    index.close()
    return docs, root / "idx"


# ---------------------------------------------------------------- read_passage, in-process


@pytest.fixture
def index(built: tuple[Path, Path], tiny_model_dir: Path) -> Iterator[Index]:
    index = Index(built[1], model=tiny_model_dir)
    yield index
    index.close()


def texts(passage: dict[str, Any]) -> list[str]:
    return [s["text"] for s in passage["sentences"]]


def test_read_passage_shows_the_sentence_at_the_line_and_its_neighbours(index: Index) -> None:
    passage = read_passage(index, "animals.md", line=6, context=1)
    assert texts(passage) == [
        "It was a sunny day.",
        "Dogs bark loudly at night.",
        "Birds sing in the morning.",
    ]
    assert [s["target"] for s in passage["sentences"]] == [False, True, False]
    assert [s["line"] for s in passage["sentences"]] == [4, 6, 8]


def test_read_passage_clips_at_the_ends_of_the_document(index: Index) -> None:
    assert texts(read_passage(index, "animals.md", line=1, context=1)) == [
        "Animals",
        "The cat sat on the mat.",
    ]
    last = read_passage(index, "animals.md", line=999, context=0)
    assert texts(last) == ["Birds sing in the morning."]


@pytest.mark.parametrize(
    "path", ["../secret.md", "/etc/passwd", "leak.md", "travel/../animals.md", "missing.md"]
)
def test_read_passage_reads_only_indexed_files(index: Index, path: str) -> None:
    with pytest.raises(NoSuchDocumentError):
        read_passage(index, path, line=1, context=5)


def test_read_passage_bounds_its_context(index: Index) -> None:
    with pytest.raises(IndexerError, match="context must be between"):
        read_passage(index, "animals.md", line=1, context=10_000)


def test_without_the_mcp_package_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if it were not installed
    result = CliRunner().invoke(cli, ["mcp", "--index", str(tmp_path / "idx")])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "pip install -e '.[mcp]'" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- the server over stdio


def talk(idx: Path, model: Path, conversation: Callable[[Any], Awaitable[None]]) -> None:
    """Start `python -m indexer mcp` and hold a conversation with it through the SDK client."""
    anyio = pytest.importorskip("anyio")
    pytest.importorskip("mcp")
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "indexer", "mcp", "--index", str(idx), "--model", str(model)],
        cwd=Path(__file__).resolve().parent.parent,
    )

    async def run() -> None:
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await conversation(session)

    anyio.run(run)


def result(call: Any) -> dict[str, Any]:
    assert not call.is_error, call.content
    data = json.loads(call.content[0].text)
    assert data == call.structured_content
    return data


def error(call: Any) -> str:
    assert call.is_error
    (content,) = call.content
    return content.text


@pytest.mark.slow
def test_tools_search_and_status(built: tuple[Path, Path], tiny_model_dir: Path) -> None:
    async def conversation(session: Any) -> None:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"search", "read_passage", "status"}
        assert tools["search"].input_schema["required"] == ["question"]
        hits = result(await session.call_tool("search", {"question": "trains in Japan", "k": 3}))
        top = hits["hits"][0]
        assert (top["path"], top["line"], top["location"]) == (
            "travel/trains.md",
            3,
            "travel/trains.md:3",
        )
        assert len(hits["hits"]) == 3 and top["rank"] == 1
        keyword = result(
            await session.call_tool("search", {"question": "plants", "k": 1, "mode": "keyword"})
        )
        assert keyword["hits"][0]["path"] == "notes.txt"
        status = result(await session.call_tool("status", {}))
        assert status["files"] == 3 and status["index"] == str(built[1])

    talk(built[1], tiny_model_dir, conversation)


@pytest.mark.slow
def test_read_passage_and_tool_errors(built: tuple[Path, Path], tiny_model_dir: Path) -> None:
    async def conversation(session: Any) -> None:
        passage = result(
            await session.call_tool("read_passage", {"path": "animals.md", "line": 6, "context": 1})
        )
        assert [s["line"] for s in passage["sentences"]] == [4, 6, 8]
        assert passage["sentences"][1]["text"] == "Dogs bark loudly at night."
        for path in ("../secret.md", "leak.md", str(built[0] / "animals.md")):
            message = error(await session.call_tool("read_passage", {"path": path, "line": 1}))
            assert "is not an indexed file" in message and "Traceback" not in message
            assert "secret" not in message.replace(path, "")
        message = error(await session.call_tool("search", {"question": "   "}))
        assert "the question is empty" in message and len(message.splitlines()) == 1
        message = error(await session.call_tool("search", {"question": "cats", "k": 0}))
        assert "k must be between" in message

    talk(built[1], tiny_model_dir, conversation)


@pytest.mark.slow
def test_a_new_build_is_answered_without_restarting(tmp_path: Path, tiny_model_dir: Path) -> None:
    docs = write_docs(tmp_path / "docs", {"a.md": "The cat sat on the mat.\n"})
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    index.build(docs)

    async def conversation(session: Any) -> None:
        before = result(await session.call_tool("status", {}))
        write(docs / "b.md", "Volcanoes erupt with molten lava.\n")
        index.build(docs)
        hits = result(await session.call_tool("search", {"question": "volcano lava", "k": 1}))
        assert hits["hits"][0]["path"] == "b.md"
        after = result(await session.call_tool("status", {}))
        assert after["generation"] == before["generation"] + 1 and after["files"] == 2

    talk(tmp_path / "idx", tiny_model_dir, conversation)
    index.close()


@pytest.mark.slow
def test_before_the_first_build_the_server_starts_and_says_so(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    async def conversation(session: Any) -> None:
        message = error(await session.call_tool("search", {"question": "cats"}))
        assert "run `index build DIR` first" in message

    talk(tmp_path / "idx", tiny_model_dir, conversation)
