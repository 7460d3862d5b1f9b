"""scripts/bench.py end to end with the tiny model: one JSON report with every section; and the
child-process runner its build timings (and reindex_bench.py's) use."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from scripts.common import PEAK_MARK, dirty, run_python, split_peak
from tests.files import run_script
from tests.tiny_model import CORPUS


def write_corpus(folder: Path) -> Path:
    folder.mkdir()
    english = [s for s in CORPUS if s.isascii()]
    japanese = [s for s in CORPUS if not s.isascii()]
    (folder / "guide.md").write_text("# Guide\n\n" + " ".join(english) + "\n", encoding="utf-8")
    (folder / "notes.txt").write_text("\n\n".join(japanese) + "\n", encoding="utf-8")
    return folder


@pytest.mark.slow
def test_bench_prints_one_json_report(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    args = ["--corpus", corpus, "--model", tiny_model_dir, "--sample", "12", "--batch-size", "4"]
    args += ["--questions", "3", "--synthetic", "500", "--cold-runs", "1"]
    args += ["--out", tmp_path / "report.json"]
    done = run_script("bench", *args, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert set(report) - {"dirty"} == {
        "environment", "settings", "load", "workload", "embed", "roofline", "peer", "build",
        "ask", "scale", "commit", "date", "args", "machine",
    }  # fmt: skip
    assert report["args"] == [str(a) for a in args]
    embed = report["embed"]
    # Batches of at most 4 sentences, fewer when long ones would exceed the token budget.
    assert embed["sentences"] == 12 and embed["batches"] >= 3
    assert embed["real_tokens"] == round(embed["mean_tokens"] * 12)
    assert embed["padding_waste"] >= 0 and embed["sentences_per_s"] > 0
    assert report["roofline"]["achieved_fraction"] > 0
    assert report["peer"]["sentences_per_s"] > 0
    build = report["build"]
    assert build["first"]["embedded"] > 0 and build["first"]["peak_rss_mb"] > 0
    assert build["unchanged"]["embedded"] == 0
    assert build["one_edit"]["embedded"] == 1
    warm = report["ask"]["warm"]
    assert warm["dense"]["runs"] == warm["hybrid"]["runs"] == warm["embed_statement"]["runs"] == 3
    assert report["ask"]["cold"]["ours"]["runs"] == 1
    assert [s["vectors"] for s in report["scale"]] == [500, 20_000]
    assert "| embed |" in done.stderr


#: A child that touches this many MiB more than a bare interpreter.
TOUCHED_MIB = 150


def test_the_runner_reports_the_childs_own_peak_memory(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text(f"b = bytearray({TOUCHED_MIB} * 2**20)\nprint(len(b))\n")
    (tmp_path / "bare.py").write_text("")
    big = run_python(["-m", "big"], peak=True, cwd=tmp_path).check()
    bare = run_python(["-m", "bare"], peak=True, cwd=tmp_path).check()
    assert big.stdout.strip() == str(TOUCHED_MIB * 2**20)
    assert big.peak_rss_mib is not None and bare.peak_rss_mib is not None
    assert big.peak_rss_mib - bare.peak_rss_mib > TOUCHED_MIB * 0.9
    assert PEAK_MARK not in big.stderr


def test_the_childs_peak_is_not_the_parents(tmp_path: Path) -> None:
    # wait4's ru_maxrss would report at least this process's size for any child.
    touched = bytearray(2 * TOUCHED_MIB * 2**20)
    (tmp_path / "bare.py").write_text("")
    bare = run_python(["-m", "bare"], peak=True, cwd=tmp_path).check()
    assert bare.peak_rss_mib is not None and bare.peak_rss_mib < TOUCHED_MIB
    assert len(touched) == 2 * TOUCHED_MIB * 2**20


def test_the_runner_reports_exit_codes_and_times_bare_children() -> None:
    done = run_python(["-c", "import sys; print('out'); sys.exit(5)"])
    assert (done.code, done.stdout, done.peak_rss_mib) == (5, "out\n", None)
    assert done.seconds > 0
    assert done.check(ok=(0, 5)) is done
    with pytest.raises(click.ClickException, match="exited 5"):
        done.check()
    with pytest.raises(ValueError):
        run_python(["-c", "pass"], peak=True)


def test_split_peak_keeps_the_rest_of_stderr() -> None:
    assert split_peak(f"warning\n{PEAK_MARK} 2048\nlast\n") == ("warning\nlast\n", 2048)
    assert split_peak("no mark\n") == ("no mark\n", None)


def test_a_row_is_dirty_for_changed_code_not_for_result_files() -> None:
    # `git status --porcelain` lines: eval_all.sh rewrites its result file while it runs.
    assert not dirty("")
    assert not dirty(" M scripts/eval_results.jsonl\n M scripts/bench_results.jsonl\n")
    assert dirty(" M scripts/eval_results.jsonl\n M indexer/ranking.py\n")
    assert dirty("M  docs/quality.md")


@pytest.mark.slow
def test_build_compare_times_two_commits_taking_turns(tmp_path: Path, tiny_model_dir: Path) -> None:
    if not (Path(__file__).parents[1] / ".git").exists():
        pytest.skip("needs the project's git repository")
    corpus = write_corpus(tmp_path / "docs")
    args = ["HEAD", "HEAD", "--corpus", corpus, "--model", tiny_model_dir, "--rounds", "2"]
    done = run_script("build_compare", *args, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    # Two rounds, the order flipping: before, after, then after, before; then the summary.
    assert [(r["side"], r["round"]) for r in rows[:4]] == [
        ("before", 1), ("after", 1), ("after", 2), ("before", 2),
    ]  # fmt: skip
    for row in rows[:4]:
        assert row["first"]["embedded"] > 0 and row["first"]["peak_rss_mb"] > 0
        assert row["one_edit"]["embedded"] == 1
    summary = rows[4]
    assert summary["summary"] and summary["first"]["ratio"] > 0
    assert summary["commits"]["before"] == summary["commits"]["after"] == rows[0]["built_by"]
    # The worktrees are gone.
    listed = run_python(["-c", "import subprocess; subprocess.run(['git', 'worktree', 'list'])"])
    assert "build-compare-" not in listed.stdout


@pytest.mark.slow
def test_thread_bench_times_each_threading_variant(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    args = ["--corpus", corpus, "--model", tiny_model_dir, "--sample", "8", "--rounds", "1"]
    done = run_script("thread_bench", *args, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert rows[0]["variant"] == "1 session, 1 threads" and rows[0]["speedup"] == 1.0
    cores = rows[0]["cores"]
    # 1..N threads spinning, 2..N threads sleeping, N sessions of one thread.
    assert len(rows) == 2 * cores - 1 + (cores > 1)
    if cores > 1:
        assert f"1 session, {cores} threads, sleeping" in {r["variant"] for r in rows}
    assert all(r["sentences"] == 8 and r["sentences_per_s"] > 0 for r in rows)
