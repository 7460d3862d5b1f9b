"""scripts/keyword_bench.py on a tiny real index: each size repeats the keyword rows, every
row is stamped, and the index it reads is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

from indexer import Index
from tests.files import DOCS, run_script, write_docs


def test_keyword_bench_repeats_rows_and_only_reads(tmp_path: Path, tiny_model_dir: Path) -> None:
    idx = tmp_path / "idx"
    Index(idx, model=tiny_model_dir).build(write_docs(tmp_path / "docs", DOCS))
    before = (idx / "index.sqlite").read_bytes()
    args = ["--index", idx, "--repeats", "1,3", "--runs", "1"]
    done = run_script("keyword_bench", *args)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["repeats"] for row in rows] == [1, 3]
    assert rows[1]["rows"] == 3 * rows[0]["rows"] > 0
    for row in rows:
        assert row["commit"] and row["args"] == [str(a) for a in args]
        for side in ("en_every", "en_searched", "ja_every", "ja_searched"):
            assert row[side]["questions"] == 10 and 0 < row[side]["p50_s"] <= row[side]["p95_s"]
            assert (
                row[side]["matched_rows_p50"]
                <= row[side.replace("searched", "every")]["matched_rows_p50"]
            )
        for side in ("en_counts", "en_counts_fts5vocab", "ja_counts", "ja_counts_fts5vocab"):
            assert row[side]["questions"] == 10 and 0 < row[side]["p50_s"] <= row[side]["p95_s"]
    # The bench's Japanese questions share character pairs with the Japanese documents.
    assert rows[1]["ja_every"]["matched_rows_p50"] == 3 * rows[0]["ja_every"]["matched_rows_p50"]
    assert rows[0]["ja_every"]["matched_rows_p50"] > 0
    assert (idx / "index.sqlite").read_bytes() == before
