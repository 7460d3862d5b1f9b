"""scripts/serve_bench.py end to end with the tiny model: a second of load per row, every row
stamped, no failed request, and cold asks that went through the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.files import DOCS, run_script, write_docs


@pytest.mark.slow
def test_serve_bench_prints_stamped_rows(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = write_docs(tmp_path / "docs", DOCS)
    args = ["--corpus", corpus, "--model", tiny_model_dir, "--clients", "1,4"]
    args += ["--seconds", "1", "--cold-runs", "2", "--index", tmp_path / "kept"]
    done = run_script("serve_bench", *args, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(row["args"] == [str(a) for a in args] and row["commit"] for row in rows)
    loads = [row for row in rows if row["measure"] == "load"]
    assert [(r["clients"], r["build_beside"]) for r in loads] == [
        (1, False), (1, True), (4, False), (4, True),
    ]  # fmt: skip
    for row in loads:
        assert row["errors"] == 0, row["first_error"]
        assert row["requests"] > 0 and row["p50_ms"] <= row["p99_ms"]
        assert row["server_rss_mb_before"] > 0 and row["server_rss_mb_after"] > 0
    assert all(row["builds_beside"] >= 1 for row in loads if row["build_beside"])
    cold = [row for row in rows if row["measure"] == "cold_ask"]
    assert [row["through_server"] for row in cold] == [True, False]
    assert all(row["runs"] == 2 and row["p50_ms"] > 0 for row in cold)
    assert all(row["command"] in ("index", "python -m indexer") and row["python"] for row in cold)
    assert rows[-1]["measure"] == "cold_python" and rows[-1]["cpu_p50_ms"] > 0
    assert (tmp_path / "kept" / "index.sqlite").exists()  # built once, kept for the next run
    assert not (corpus / "en" / "review.md").read_text(encoding="utf-8").count("Serve bench")
