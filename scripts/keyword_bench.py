"""How the keyword side's cost grows with the index: Store.keyword_search on the keyword rows
of an index repeated R times.

    python -m scripts.keyword_bench --index DIR [--repeats 1,4,16,64] [--runs 3]

Each size is a scratch SQLite file in a temporary directory holding only the keyword tables
(made with the index's own CREATE statements: the FTS5 table, the rows-per-term counts, and
the meta table with the row count) and the index's keyword rows (own terms and neighbours'
terms) R times over, so every term keeps its share of the rows and BM25 its weights; only the
number of rows that hold a term grows. The questions are the bench's (scripts/bench.py:
English and Japanese in turn), searched for the first ranking.DEFAULT.keyword_depth rows by
BM25, as the hybrid ask does, two ways: with every term of the question ("every"), and as the
ask searches (Searcher.keyword_match, which reads each term's row count first, then the
search: "searched", both timed). Per size, language and way: p50/p95 seconds (the best of
--runs per question, after one warm-up) and the median number of rows the search matches.
Also timed alone: reading the question terms' row counts from the counts the index keeps
("counts") and from an FTS5 vocabulary table ("counts_fts5vocab", how they were read before
the index kept them), which reads each term's whole list of rows. One stamped JSON row per
size on stdout (scripts.common.emit).

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


#: The tables a keyword search reads.
TABLES = (TABLE, "term_rows", "meta")


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
    from indexer.store import term_counts

    path = directory / f"x{repeats}"
    path.mkdir()
    with sqlite3.connect(path / config.DB_NAME) as db:
        for create in creates:
            db.execute(create)
        for _ in range(repeats):
            db.executemany(f"INSERT INTO {TABLE}(own, near) VALUES (?, ?)", rows)
        db.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('optimize')")
        db.executemany(
            "INSERT INTO term_rows(term, rows) VALUES (?, ?)",
            [(term, n * repeats) for term, n in term_counts(rows).items()],
        )
        count = len(rows) * repeats
        db.execute("INSERT INTO meta(key, value) VALUES ('sentence_count', ?)", [str(count)])
    return path


def measure(path: Path, runs: int) -> dict[str, Any]:
    """Per language of the bench questions: search times and matched rows of each way of
    searching, and the times of reading the question's row counts each way."""
    from indexer import keyword
    from indexer.ranking import DEFAULT
    from indexer.search import Searcher
    from indexer.store import Store

    store = Store(path)
    db = store.db
    out: dict[str, Any] = {"rows": db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]}
    db.execute(f"CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, {TABLE}, 'row')")

    def search(make: Callable[[str], str | None]) -> Callable[[str], object]:
        def run(question: str) -> object:
            match = make(question)
            assert match is not None
            return store.keyword_search(match, DEFAULT.keyword_depth, DEFAULT.bm25_weights)

        return run

    def vocabulary(question: str) -> object:
        terms = list(dict.fromkeys(keyword.terms(question)))
        marks = ",".join("?" * len(terms))
        return db.execute(f"SELECT term, doc FROM vocab WHERE term IN ({marks})", terms).fetchall()

    ways: dict[str, Callable[[str], object]] = {
        "every": search(keyword.query),
        # A new Searcher each time: it keeps the last question's row counts.
        "searched": search(lambda q: Searcher(store, cast(Any, None)).keyword_match(q)),
        # Each term's row count, from the counts the index keeps (what keyword_match reads)
        # and from FTS5's vocabulary table (what it read before the counts were kept).
        "counts": lambda q: store.term_frequencies(list(dict.fromkeys(keyword.terms(q)))),
        "counts_fts5vocab": vocabulary,
    }
    matches = {"every": keyword.query, "searched": Searcher(store, cast(Any, None)).keyword_match}
    count = f"SELECT COUNT(*) FROM {TABLE} WHERE {TABLE} MATCH ?"
    for language, questions in (("en", QUESTIONS[0::2]), ("ja", QUESTIONS[1::2])):
        for way, timed in ways.items():
            seconds = []
            for question in questions:
                timed(question)  # warm
                best = float("inf")
                for _ in range(runs):
                    start = time.perf_counter()
                    timed(question)
                    best = min(best, time.perf_counter() - start)
                seconds.append(best)
            ordered = sorted(seconds)
            out[f"{language}_{way}"] = {
                "questions": len(questions),
                "p50_s": round(statistics.median(ordered), 5),
                "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 5),
            }
            if way in matches:
                matched = [db.execute(count, [matches[way](q)]).fetchone()[0] for q in questions]
                out[f"{language}_{way}"]["matched_rows_p50"] = int(statistics.median(matched))
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
