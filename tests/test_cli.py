"""The `index` command via click's CliRunner on a tiny real model: output, exit codes, errors."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import unicodedata
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from indexer import Index
from indexer.cli import cli
from indexer.display import printable
from tests.files import DOCS, without_root_privileges, write_docs

HIT_KEYS = {
    *("rank", "score", "path", "line", "line_end", "page", "text", "kind", "before", "after"),
    *("location", "sentence_id", "dense_rank", "dense_score", "keyword_rank", "keyword_score"),
    "name_share",
}
COMMANDS = [["ask", "VPN"], ["status"], ["verify"], ["build", "DOCS"]]
FILE_KEYS = {"added", "changed", "deleted", "renamed", "unchanged", "skipped"}


def run(*args: object, input: str | None = None) -> Result:
    """Invoke the real CLI in-process, stdout and stderr kept apart."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def assert_ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def assert_one_error(result: Result, code: int | tuple[int, ...], prefix: str = "error:") -> str:
    """Exactly one stderr line starting with prefix, the expected exit code, no traceback."""
    codes = code if isinstance(code, tuple) else (code,)
    assert result.exit_code in codes, (result.exit_code, result.stdout, result.stderr)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


def contents(index: Path) -> list[tuple[str, int, str]]:
    """Every stored sentence as (path, line, text), sorted."""
    with contextlib.closing(sqlite3.connect(index / "index.sqlite")) as db:
        rows = db.execute(
            "SELECT f.path, s.line_start, s.text FROM sentences s JOIN files f ON f.id = s.file_id"
        ).fetchall()
    return sorted(rows)


def checkpointed(index: Path) -> Path:
    """index.sqlite with everything moved out of the WAL, so damaging it damages the data."""
    path = index / "index.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for leftover in index.glob("index.sqlite-*"):
        leftover.unlink()
    return path


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_docs(tmp_path / "docs", DOCS)


@pytest.fixture
def idx(tmp_path: Path) -> Path:
    return tmp_path / "idx"


@pytest.fixture
def built(docs: Path, idx: Path, tiny_model_dir: Path) -> Path:
    assert_ok(run("build", docs, "--index", idx, "--model", tiny_model_dir, "--quiet"))
    return idx


# ---------------------------------------------------------------- help


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


@pytest.mark.parametrize("path", _commands(cli), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help and command.help.strip(), f"{' '.join(path)} has no docstring"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"
    result = assert_ok(run(*path, "--help"))
    assert result.stdout.startswith("Usage:") and len(result.stdout.splitlines()) > 3


def test_top_level_help_names_the_commands() -> None:
    text = assert_ok(run("--help")).stdout
    assert "build" in text and "ask" in text


def test_python_dash_m_indexer_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "indexer", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "build" in result.stdout and "ask" in result.stdout


# ---------------------------------------------------------------- build and ask


def test_build_then_ask_human_output(docs: Path, idx: Path, tiny_model_dir: Path) -> None:
    result = assert_ok(run("build", docs, "--index", idx, "--model", tiny_model_dir))
    assert "4 added" in result.stdout and "embedded" in result.stdout
    result = assert_ok(run("ask", "How fast is inference on the NPU?", "--index", idx))
    lines = result.stdout.splitlines()
    assert lines[0].startswith("1. ") and "en/faq.txt:1" in lines[0]
    score = float(lines[0].split()[1])
    assert 0 < score <= 1.0001
    assert any("How fast is inference on the NPU compared with the CPU?" in x for x in lines)
    assert any("Your laptop arrives" in x for x in lines), "context sentence after the hit"


def test_ask_json_lines(built: Path) -> None:
    question = "NNAPI経由でNPUを使うと、CPUより約15倍速くなりました。"
    result = assert_ok(run("ask", question, "--index", built, "--json", "-k", "3"))
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert 1 <= len(hits) <= 3
    for rank, hit in enumerate(hits, 1):
        assert hit.keys() >= HIT_KEYS
        assert hit["rank"] == rank and hit["location"] == f"{hit['path']}:{hit['line']}"
        assert isinstance(hit["before"], list) and isinstance(hit["after"], list)
    top = hits[0]
    assert top["path"] == "ja/npu.md" and top["line"] == 3 and top["text"] == question
    assert top["before"] == ["NPUの測定"] and top["after"] == ["消費電力も大きく下がりました。"]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_readme_names_every_json_field_of_a_hit() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("- `--json` prints one JSON object per hit")
    bullet = readme[start : readme.index("\n- ", start + 1)]
    assert {key for key in HIT_KEYS if f"`{key}`" not in bullet} == set()


def test_build_json_report(docs: Path, idx: Path, tiny_model_dir: Path) -> None:
    args = ("build", docs, "--index", idx, "--model", tiny_model_dir, "--json")
    first = json.loads(assert_ok(run(*args)).stdout)
    assert first["files"].keys() >= FILE_KEYS and first["files"]["added"] == 4
    assert {"embedded", "reused"} <= first["sentences"].keys()
    assert first["sentences"]["embedded"] > 5 and isinstance(first["seconds"], float | int)
    (docs / "en/review.md").unlink()
    (docs / "ja/weather.txt").rename(docs / "weather.txt")
    (docs / "en/faq.txt").write_text("Your laptop arrives on the first day.\n", encoding="utf-8")
    (docs / "new.md").write_text("A brand new page about kittens.\n", encoding="utf-8")
    result = assert_ok(run(*args))
    assert len(result.stdout.strip().splitlines()) == 1, "one JSON object"
    report = json.loads(result.stdout)
    assert report["files"] == {
        "added": 1,
        "changed": 1,
        "deleted": 1,
        "renamed": 1,
        "unchanged": 1,
        "skipped": 0,
    }
    assert report["sentences"]["embedded"] == 1, "only the kitten sentence is new"


def test_rebuild_without_model_flag_keeps_the_recorded_model(
    docs: Path, idx: Path, tiny_model_dir: Path
) -> None:
    assert_ok(run("build", docs, "--index", idx, "--model", tiny_model_dir, "-q"))
    (docs / "extra.md").write_text("One more sentence to index.\n", encoding="utf-8")
    report = json.loads(assert_ok(run("build", docs, "--index", idx, "--json")).stdout)
    assert report["sentences"]["embedded"] == 1, "the recorded model was used"
    info = json.loads(assert_ok(run("status", "--index", idx, "--json")).stdout)
    assert info["model_path"] == str(tiny_model_dir.resolve()), "the index forgot its model"
    assert_ok(run("ask", "VPN", "--index", idx))
    assert_ok(run("verify", "--index", idx))


def test_dry_run_changes_nothing(docs: Path, idx: Path, tiny_model_dir: Path) -> None:
    result = assert_ok(run("build", docs, "--index", idx, "--model", tiny_model_dir, "--dry-run"))
    assert "would index" in result.stdout and "4 added" in result.stdout
    assert not idx.exists()
    assert_ok(run("build", docs, "--index", idx, "--model", tiny_model_dir, "-q"))
    before = contents(idx)
    (docs / "en/review.md").unlink()
    (docs / "extra.txt").write_text("Something not yet indexed at all.\n", encoding="utf-8")
    args = ("build", docs, "--index", idx, "--dry-run", "--json")
    report = json.loads(assert_ok(run(*args)).stdout)
    assert report["dry_run"] and report["files"]["deleted"] == 1 and report["files"]["added"] == 1
    assert contents(idx) == before


def test_quiet_clean_build_prints_nothing(docs: Path, idx: Path, tiny_model_dir: Path) -> None:
    result = assert_ok(run("build", docs, "--index", idx, "--model", tiny_model_dir, "--quiet"))
    assert result.stdout == "" and result.stderr == ""
    assert assert_ok(run("build", docs, "--index", idx, "-q")).stdout == ""


def test_environment_variables_replace_flags(
    docs: Path, idx: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INDEXER_INDEX", str(idx))
    monkeypatch.setenv("INDEXER_MODEL", str(tiny_model_dir))
    assert_ok(run("build", docs, "-q"))
    assert (idx / "index.sqlite").is_file()
    assert "ja/npu.md" in assert_ok(run("ask", "NNAPI経由でNPUを使う")).stdout


def test_interactive_prompt(built: Path) -> None:
    result = assert_ok(run("ask", "--index", built, input="How fast\n\nq\n"))
    assert "en/faq.txt:1" in result.stdout
    assert "Traceback" not in result.output


def test_interactive_prompt_json_keeps_stdout_parseable(built: Path) -> None:
    """`index ask --json < questions > hits.jsonl`: the prompt must not land in the JSON lines."""
    result = assert_ok(run("ask", "--index", built, "--json", input="VPN\nHow fast\n"))
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2
    for line in lines:
        assert json.loads(line).keys() >= HIT_KEYS, line


# ---------------------------------------------------------------- expected failures


def test_ask_without_index(tmp_path: Path) -> None:
    line = assert_one_error(run("ask", "hello", "--index", tmp_path / "nothing"), 1)
    assert "index build" in line


@pytest.mark.parametrize("command", ["status", "verify"])
def test_status_and_verify_without_index(tmp_path: Path, command: str) -> None:
    line = assert_one_error(run(command, "--index", tmp_path / "nothing"), 1)
    assert "index build" in line


def test_build_empty_folder(tmp_path: Path, idx: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "picture.png").write_bytes(b"\x89PNG\r\n")
    result = run("build", tmp_path / "empty", "--index", idx, "--model", tiny_model_dir)
    assert "no documents" in assert_one_error(result, 1)


def test_build_path_that_is_not_a_folder(docs: Path, idx: Path, tiny_model_dir: Path) -> None:
    for target in (docs / "en/faq.txt", docs / "missing"):
        result = run("build", target, "--index", idx, "--model", tiny_model_dir)
        assert "not a folder" in assert_one_error(result, 1)
    assert not (idx / "index.sqlite").exists()


@pytest.mark.parametrize("question", ["", "  ", "\t\n"])
def test_empty_question(built: Path, question: str) -> None:
    assert "empty" in assert_one_error(run("ask", question, "--index", built), 1)


def test_model_without_model_json(docs: Path, idx: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.onnx").write_bytes(b"not really")
    line = assert_one_error(run("build", docs, "--index", idx, "--model", bare), 1)
    assert "model.json" in line and str(bare) in line


def test_model_directory_missing_a_file(
    docs: Path, idx: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(tiny_model_dir, partial)
    (partial / "model.onnx").unlink()
    line = assert_one_error(run("build", docs, "--index", idx, "--model", partial), 1)
    assert "model.onnx" in line


def test_model_path_that_does_not_exist(built: Path, tmp_path: Path) -> None:
    line = assert_one_error(run("ask", "VPN", "--index", built, "--model", tmp_path / "nope"), 1)
    assert "nope" in line


def test_other_model_than_the_index_was_built_with(
    built: Path, docs: Path, other_model: Path
) -> None:
    line = assert_one_error(run("ask", "VPN", "--index", built, "--model", other_model), 1)
    assert "built with" in line
    line = assert_one_error(run("build", docs, "--index", built, "--model", other_model), 1)
    assert "built with" in line
    assert_ok(run("ask", "VPN", "--index", built))


def test_verify_reports_other_model(built: Path, other_model: Path) -> None:
    result = run("verify", "--index", built, "--model", other_model)
    assert result.exit_code == 4 and "Traceback" not in result.output
    assert result.stderr.startswith("problem:") and "checksum" in result.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_garbage_index_sqlite(built: Path, docs: Path, command: list[str]) -> None:
    checkpointed(built).write_bytes(os.urandom(4096) * 4)
    args = [str(docs) if a == "DOCS" else a for a in command]
    line = assert_one_error(run(*args, "--index", built), (1, 4))
    assert "index.sqlite" in line or str(built) in line


@pytest.mark.parametrize("table", ["meta", "sentences"])
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_damaged_table_in_index_sqlite(
    built: Path, docs: Path, command: list[str], table: str
) -> None:
    """Garbage over one table's root page (header and schema intact): one line, no traceback."""
    path = checkpointed(built)
    with contextlib.closing(sqlite3.connect(path)) as db:
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", [table]
        ).fetchone()
        (page,) = db.execute("PRAGMA page_size").fetchone()
    with path.open("r+b") as file:
        file.seek((root - 1) * page)
        file.write(b"\xa5" * page)
    args = [str(docs) if a == "DOCS" else a for a in command]
    result = run(*args, "--index", built)
    assert not isinstance(result.exception, sqlite3.Error), f"uncaught {result.exception!r}"
    assert "Traceback" not in result.output
    if table == "sentences" and command[0] in ("status", "build") and result.exit_code == 0:
        return  # SQLite counts through an index and an unchanged build reads no sentence
    assert result.exit_code in (1, 4), (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith(("error:", "problem:")), result.stderr


# ---------------------------------------------------------------- unreadable files


def test_binary_file_is_skipped_and_the_rest_indexed(
    docs: Path, idx: Path, tiny_model_dir: Path
) -> None:
    (docs / "blob.txt").write_bytes(b"\x00\x01\x02binary\x00" * 50)
    result = run("build", docs, "--index", idx, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.stderr
    assert "skipped blob.txt: binary file" in result.stderr
    assert "4 added" in result.stdout and "1 skipped" in result.stdout
    assert {p for p, _, _ in contents(idx)} == set(DOCS)


def test_unreadable_file_exits_5_and_indexes_the_rest(
    docs: Path, idx: Path, tiny_model_dir: Path
) -> None:
    secret = docs / "en/secret.md"
    secret.write_text("A secret sentence nobody may read.\n", encoding="utf-8")
    secret.chmod(0)
    command = [sys.executable, "-m", "indexer", "build", docs, "--index", idx]
    result = subprocess.run(
        [*without_root_privileges(), *map(str, command), "--model", str(tiny_model_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert "skipped en/secret.md: permission denied" in result.stderr.splitlines()
    assert {p for p, _, _ in contents(idx)} == set(DOCS)
    assert "en/faq.txt" in assert_ok(run("ask", "VPN laptop", "--index", idx)).stdout


def test_quiet_build_keeps_binary_file_notice_off_stderr(
    docs: Path, idx: Path, tiny_model_dir: Path
) -> None:
    (docs / "blob.md").write_bytes(b"\x00\xff" * 100)
    result = run("build", docs, "--index", idx, "--model", tiny_model_dir, "-q")
    assert result.exit_code == 0 and result.stdout == ""
    assert "blob.md" not in result.stderr, "a binary file is not a read failure"


# ---------------------------------------------------------------- status and verify


def test_status_human_and_json(built: Path) -> None:
    text = assert_ok(run("status", "--index", built)).stdout
    assert "files" in text and "sentences" in text and "tiny-test-32" in text
    info = json.loads(assert_ok(run("status", "--index", built, "--json")).stdout)
    assert info["files"] == 4 and info["sentences"] >= 9
    assert info["model"] == "tiny-test-32" and info["generation"] >= 1
    assert info["size_bytes"] > 0 and info["last_build"]


def test_verify_human_and_json(built: Path) -> None:
    result = assert_ok(run("verify", "--index", built))
    assert result.stdout.strip().splitlines()[-1] == "ok" and result.stderr == ""
    report = json.loads(assert_ok(run("verify", "--index", built, "--json")).stdout)
    assert report["ok"] is True and report["problems"] == []


def test_verify_missing_faiss_file_then_repair(built: Path) -> None:
    for path in built.glob("vectors.*.faiss"):
        path.unlink()
    result = run("verify", "--index", built)
    assert result.exit_code == 4 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("problem:") for line in lines)
    assert "missing" in result.stderr and "index has problems" in result.stdout
    report = json.loads(run("verify", "--index", built, "--json").stdout)
    assert report["ok"] is False and report["problems"]
    assert_ok(run("verify", "--index", built, "--repair"))
    assert assert_ok(run("verify", "--index", built)).stdout.strip().endswith("ok")
    assert "en/faq.txt" in assert_ok(run("ask", "VPN laptop", "--index", built)).stdout


def test_verify_garbage_faiss_file_then_repair(built: Path) -> None:
    (faiss_file,) = built.glob("vectors.*.faiss")
    faiss_file.write_bytes(b"garbage" * 10)
    assert run("verify", "--index", built).exit_code == 4
    report = json.loads(assert_ok(run("verify", "--index", built, "--repair", "--json")).stdout)
    assert report["repaired"] is True
    assert_ok(run("verify", "--index", built))


# ---------------------------------------------------------------- model commands


def test_model_info_of_a_directory(tiny_model_dir: Path) -> None:
    info = json.loads(assert_ok(run("model", "info", tiny_model_dir)).stdout)
    assert info["name"] == "tiny-test-32" and info["dimension"] == 32
    assert info["path"] == str(tiny_model_dir)


def test_model_info_of_a_bad_directory(tmp_path: Path) -> None:
    assert "model.json" in assert_one_error(run("model", "info", tmp_path), 1)


# ---------------------------------------------------------------- selecting files


def test_build_include_exclude_and_symlinks_flags(
    docs: Path, idx: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    outside = write_docs(tmp_path / "outside", {"linked.md": "A linked document from elsewhere.\n"})
    os.symlink(outside, docs / "elsewhere")
    result = run(
        "build",
        docs,
        "--index",
        idx,
        "--model",
        tiny_model_dir,
        "--json",
        "--include",
        "*.md",
        "--include",
        "*.txt",
        "--exclude",
        "ja/weather.txt",
    )
    report = json.loads(assert_ok(result).stdout)
    assert sorted(report["added"]) == ["en/faq.txt", "en/review.md", "ja/npu.md"]
    assert report["skipped"] == [
        {
            "path": "elsewhere",
            "reason": "symlink leads outside the folder (--symlinks all follows it)",
        }
    ]
    result = run(
        "build", docs, "--index", idx, "--model", tiny_model_dir, "--json", "--symlinks", "all"
    )
    report = json.loads(assert_ok(result).stdout)
    assert sorted(report["added"]) == ["elsewhere/linked.md", "ja/weather.txt"]


def test_build_bad_pattern_is_one_line(docs: Path, idx: Path, tiny_model_dir: Path) -> None:
    result = run("build", docs, "--index", idx, "--model", tiny_model_dir, "--exclude", "!")
    assert "bad --exclude pattern" in assert_one_error(result, 2)


def test_importing_the_cli_leaves_the_heavy_modules_for_later() -> None:
    heavy = "{'faiss', 'numpy', 'onnxruntime'}"
    code = f"import sys, indexer.cli; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_ask_reads_the_recorded_models_tokenizer_ahead(built: Path, tiny_model_dir: Path) -> None:
    from indexer import tokenize
    from indexer.models import load_info

    info = load_info(tiny_model_dir)
    Index.read_ahead(built)  # the index records the tiny model
    assert str(info.tokenizer.file) in tokenize._AHEAD
    ahead = tokenize.Tokenizer(info)  # takes the load in progress
    assert str(info.tokenizer.file) not in tokenize._AHEAD
    assert ahead.encode("NPUの測定") == tokenize.Tokenizer(info).encode("NPUの測定")


def test_reading_ahead_without_an_index_or_model_is_harmless(tmp_path: Path) -> None:
    from indexer import tokenize

    before = dict(tokenize._AHEAD)
    Index.read_ahead(tmp_path / "none", cache_dir=tmp_path / "empty-cache")
    assert before == tokenize._AHEAD
    assert_one_error(run("ask", "VPN", "--index", tmp_path / "none"), 1)


# ---------------------------------------------------------------- hostile text and names

#: Sets the window title, rings the bell and clears the screen when printed raw.
HOSTILE = "The printer jams\x1b]0;pwned\x07\x1b[2J every Monday\u202e morning."
FORGED = "bad\nskipped fine.md: all is well.txt"  # a binary file whose name forges a line


def raw_controls(text: str) -> set[str]:
    """Control and bidi characters in printed output, but newlines and click's own colours."""
    text = re.sub("\x1b\\[[0-9;]*m", "", text)
    return {c for c in text if c != "\n" and (unicodedata.category(c) == "Cc" or c in BIDI)}


BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


@pytest.mark.parametrize("color", [False, True], ids=["plain", "terminal"])
def test_document_text_and_file_names_cannot_drive_the_terminal(
    tmp_path: Path, idx: Path, tiny_model_dir: Path, color: bool
) -> None:
    docs = write_docs(tmp_path / "docs", {"new\nline\x1b[2J.md": HOSTILE + "\n"})
    (docs / FORGED).write_bytes(b"\x00\x01binary\x00" * 50)
    result = CliRunner().invoke(
        cli, ["build", str(docs), "--index", str(idx), "--model", str(tiny_model_dir)], color=color
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        "skipped bad\\nskipped fine.md: all is well.txt: binary file"
    ]
    assert not raw_controls(result.output)
    result = CliRunner().invoke(cli, ["ask", "printer jams", "--index", str(idx)], color=color)
    lines = assert_ok(result).stdout.splitlines()
    assert not raw_controls(result.output)
    assert "new\\nline\\x1b[2J.md:1" in lines[0]
    assert " > The printer jams\\x1b]0;pwned\\x07\\x1b[2J every Monday\\u202e morning." in lines[1]


def test_json_keeps_text_and_names_exact(tmp_path: Path, idx: Path, tiny_model_dir: Path) -> None:
    name = "new\nline\x1b[2J.md"
    docs = write_docs(tmp_path / "docs", {name: HOSTILE + "\n"})
    (docs / FORGED).write_bytes(b"\x00\x01binary\x00" * 50)
    result = assert_ok(run("build", docs, "--index", idx, "--model", tiny_model_dir, "--json"))
    assert "\x1b" not in result.stdout and len(result.stdout.splitlines()) == 1
    report = json.loads(result.stdout)
    assert report["added"] == [name]
    assert report["skipped"] == [{"path": FORGED, "reason": "binary file"}]
    result = assert_ok(run("ask", "printer jams", "--index", idx, "--json", "-k", "1"))
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    (hit,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (hit["path"], hit["text"]) == (name, HOSTILE)


def test_printable_escapes_controls_and_keeps_tabs_and_indented_lines() -> None:
    assert printable("a\tb\x00\x7f\x85\u2066\udce9\r") == "a\tb\\x00\\x7f\\x85\\u2066\\udce9\\r"
    assert printable("code:\n  x = 1\x1b", indent="   ") == "code:\n     x = 1\\x1b"
    assert printable("日本語 — fine") == "日本語 — fine"


def test_a_build_says_when_it_could_not_follow_the_int8_default(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    docs = write_docs(tmp_path / "docs", {"a.md": "The VPN needs a token.\n"})
    blocked = tmp_path / "cache"
    blocked.write_text("not a folder\n", encoding="utf-8")
    idx = tmp_path / "idx"
    args = ("build", docs, "--index", idx, "--model", tiny_model_dir, "--cache-dir", blocked)
    result = assert_ok(run(*args))
    assert result.stderr.startswith("note: chunk and section vectors made by the fp32 model")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert_ok(run("status", "--index", idx, "--json"))
