"""scripts/bench.py end to end with the tiny model: one JSON report with every section."""

from __future__ import annotations

import json
from pathlib import Path

from tests.files import run_script
from tests.tiny_model import CORPUS, make_tiny_model


def write_corpus(folder: Path) -> Path:
    folder.mkdir()
    english = [s for s in CORPUS if s.isascii()]
    japanese = [s for s in CORPUS if not s.isascii()]
    (folder / "guide.md").write_text("# Guide\n\n" + " ".join(english) + "\n", encoding="utf-8")
    (folder / "notes.txt").write_text("\n\n".join(japanese) + "\n", encoding="utf-8")
    return folder


def test_bench_prints_one_json_report(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "model")
    corpus = write_corpus(tmp_path / "docs")
    args = ["--corpus", corpus, "--model", model, "--sample", "12", "--batch-size", "4"]
    args += ["--questions", "3", "--synthetic", "500", "--cold-runs", "1"]
    args += ["--out", tmp_path / "report.json"]
    done = run_script("bench", *args, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert set(report) == {
        "machine", "settings", "load", "workload", "embed", "roofline", "peer", "build", "ask",
        "scale",
    }  # fmt: skip
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
