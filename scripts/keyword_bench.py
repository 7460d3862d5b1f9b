"""How the keyword side's cost grows with the index: Store.keyword_search on the keyword rows
of an index repeated R times.

    python -m scripts.keyword_bench --index DIR [--repeats 1,4,16,64] [--runs 3]

Each size is a scratch SQLite file in a temporary directory holding only the keyword tables
(made with the index's own CREATE statements: the FTS5 table, its vocabulary, and the meta
table with the row count) and the index's keyword rows (own terms and neighbours' terms) R
times over, so every term keeps its share of the rows and BM25 its weights; only the number
of rows that hold a term grows. The questions are the bench's (scripts/bench.py: English and
Japanese in turn), searched for the first ranking.DEFAULT.keyword_depth rows by BM25, as the
hybrid ask does, two ways: with every term of the question ("every"), and with the terms the
ask searches (Searcher.keyword_match: "searched"). Per size, language and way: p50/p95
seconds (the best of --runs per question, after one warm-up) and the median number of rows
the search matches. One stamped JSON row per size on stdout (scripts.common.emit).

The index is only read.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import click

from scripts.bench import QUESTIONS
from scripts.common import emit, log

TABLE = "sentences_fts"


#: The tables a keyword search reads: the FTS5 table first (the vocabulary reads it).
TABLES = (TABLE, "sentences_vocab", "meta")


def keyword_rows(index: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The keyword tables' CREATE statements and the keyword rows (own terms, neighbours')."""
    from indexer import config

    with sqlite3.connect(f"file:{index / config.DB_NAME}?mode=ro", uri=True) as db:
        made = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        rows = db.execute(f"SELECT own, near FROM {TABLE}").fetchall()
    return [made[name] for name in TABLES], rows


def scratch(directory: Path, creates: list[str], rows: list[tuple[str, str]], repeats: int) -> Path:
    """A directory whose index file holds the keyword rows `repeats` times, merged into one
    FTS5 segment as a long-lived index's would be, and their count."""
    from indexer import config

    path = directory / f"x{repeats}"
    path.mkdir()
    with sqlite3.connect(path / config.DB_NAME) as db:
        for create in creates:
            db.execute(create)
        for _ in range(repeats):
            db.executemany(f"INSERT INTO {TABLE}(own, near) VALUES (?, ?)", rows)
        db.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('optimize')")
        count = len(rows) * repeats
        db.execute("INSERT INTO meta(key, value) VALUES ('sentence_count', ?)", [str(count)])
    return path


def measure(path: Path, runs: int) -> dict[str, Any]:
    """Search times and matched rows per language of the bench questions and way of searching."""
    from indexer import keyword
    from indexer.ranking import DEFAULT
    from indexer.search import Searcher
    from indexer.store import Store

    store = Store(path)
    searcher = Searcher(store, cast(Any, None))  # keyword_match needs no model
    out: dict[str, Any] = {"rows": store.db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]}
    ways: dict[str, Callable[[str], str | None]] = {
        "every": keyword.query,
        "searched": searcher.keyword_match,
    }
    count = f"SELECT COUNT(*) FROM {TABLE} WHERE {TABLE} MATCH ?"
    for language, questions in (("en", QUESTIONS[0::2]), ("ja", QUESTIONS[1::2])):
        for way, make in ways.items():
            seconds, matched = [], []
            for question in questions:
                match = make(question)
                assert match is not None
                matched.append(store.db.execute(count, [match]).fetchone()[0])
                store.keyword_search(match, DEFAULT.keyword_depth, DEFAULT.bm25_weights)  # warm
                best = float("inf")
                for _ in range(runs):
                    start = time.perf_counter()
                    store.keyword_search(match, DEFAULT.keyword_depth, DEFAULT.bm25_weights)
                    best = min(best, time.perf_counter() - start)
                seconds.append(best)
            ordered = sorted(seconds)
            out[f"{language}_{way}"] = {
                "questions": len(questions),
                "p50_s": round(statistics.median(ordered), 5),
                "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 5),
                "matched_rows_p50": int(statistics.median(matched)),
            }
    store.close()
    return out


@click.command()
@click.option(
    "--index",
    "index",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="An index whose keyword rows are repeated (only read).",
)
@click.option("--repeats", default="1,4,16,64", show_default=True, help="Sizes, as repeats.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True)
def main(index: Path, repeats: str, runs: int) -> None:
    """Time the keyword search on an index's keyword rows repeated R times."""
    creates, rows = keyword_rows(index)
    with tempfile.TemporaryDirectory(prefix="keyword-bench-") as tmp:
        for count in (int(r) for r in repeats.split(",")):
            log(f"{len(rows) * count:,} keyword rows ({count}×)")
            path = scratch(Path(tmp), creates, rows, count)
            emit({"repeats": count, "source": str(index), **measure(path, runs)}, readable=True)


if __name__ == "__main__":
    main()
