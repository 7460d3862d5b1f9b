"""scripts/vector_storage.py on a real index built with the tiny model."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from indexer import Index
from scripts import vector_storage
from tests.files import store_vectors_as_float32, write_docs


def test_float32_vectors_are_narrowed_and_asks_compared(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    docs = {
        "a.md": "# Backups\n\nThe backup job runs nightly. It keeps seven copies.\n",
        "b.txt": "Reports are written on Fridays. 週報は金曜日に書きます。\n",
    }
    Index(tmp_path / "idx", model=tiny_model_dir).build(write_docs(tmp_path / "docs", docs))
    stored = store_vectors_as_float32(tmp_path / "idx")
    before = vector_storage.vacuumed_bytes(tmp_path / "idx")
    asked = vector_storage.questions(tmp_path / "idx", 3)
    old = vector_storage.answers(tmp_path / "idx", asked, 3)

    narrowed = vector_storage.narrow(tmp_path / "idx")
    assert narrowed["vectors"] == stored and narrowed["sqlite_bytes"] > 0
    with sqlite3.connect(tmp_path / "idx" / "index.sqlite") as db:
        assert all(len(b) % 2 for (b,) in db.execute("SELECT vector FROM vectors"))
    after = vector_storage.vacuumed_bytes(tmp_path / "idx")
    assert after["sqlite"] <= before["sqlite"]
    compared = vector_storage.compare(old, vector_storage.answers(tmp_path / "idx", asked, 3))
    assert compared["asks"] == 3 * len(asked) and compared["same_first_hit"] == compared["asks"]
    assert compared["largest_score_difference"] < 0.01
