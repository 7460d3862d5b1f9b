"""Vectors stored as float16 against float32: bytes on disk and what asks return.

    python -m scripts.vector_storage --index INDEX [--questions 60] [--k 10]

INDEX is an index whose vectors are stored as float32 (built before float16 storage; nothing
in it is changed). Two copies are made: one kept as it is, one with its stored vectors made
float16 as `index build --compact` makes them (store.narrow_vectors, then the free pages given
back: the seconds this takes and the bytes left are reported as `narrowed`) and its vector file
written again from them (float16 codes, vectors.repair); both are then vacuumed, so their
sizes compare. The same
questions are then asked of both in every mode: the bench questions of scripts/bench.py and
stored sentences of INDEX, chosen with a fixed seed. The row reports the bytes of each copy,
how many answer lists are the same (ids in order), how many have the same first hit, and the
largest score difference among hits both lists hold. One stamped JSON row on stdout.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from indexer import Index, vectors
from indexer.config import MODES
from indexer.store import Store
from scripts.bench import QUESTIONS
from scripts.common import copy_index, emit, log


def narrow(index: Path) -> dict[str, Any]:
    """Store the vectors of `index` as float16 as `index build --compact` does (the vectors,
    then the free pages given back), then write its vector file again from them: how many
    were rewritten, the seconds it took and the database's bytes after it."""
    store = Store(index)
    try:
        started = time.perf_counter()
        with store.transaction():
            rewritten = store.narrow_vectors()
        store.reclaim_space()
        seconds = time.perf_counter() - started
        vectors.repair(store)
    finally:
        store.close()
    return {"vectors": rewritten, "seconds": round(seconds, 2), "sqlite_bytes": sqlite_bytes(index)}


def sqlite_bytes(index: Path) -> int:
    """The bytes of the index's SQLite database and of what is left in its WAL."""
    files = (index / "index.sqlite", index / "index.sqlite-wal")
    return sum(p.stat().st_size for p in files if p.is_file())


def vacuumed_bytes(index: Path) -> dict[str, int]:
    """The SQLite database after VACUUM (its file and what is left in its WAL, which the
    checkpoint empties when no other connection holds it), and the vector files, in bytes."""
    with contextlib.closing(sqlite3.connect(index / "index.sqlite")) as db:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    faiss_bytes = sum(p.stat().st_size for p in index.glob("vectors.*"))
    return {"sqlite": sqlite_bytes(index), "vector_files": faiss_bytes}


def questions(index: Path, count: int) -> list[str]:
    """The bench questions, then stored sentences of the index (fixed seed) up to `count`."""
    with sqlite3.connect(index / "index.sqlite") as db:
        texts = [
            r[0]
            for r in db.execute(
                "SELECT text FROM sentences WHERE length(text) BETWEEN 15 AND 200 ORDER BY id"
            )
        ]
    chosen = list(QUESTIONS)[:count]
    return chosen + random.Random(7).sample(texts, max(0, count - len(chosen)))


def answers(
    index: Path, asked: list[str], k: int
) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(question, mode) -> [(sentence id, score)] of each ask."""
    opened = Index(index)
    try:
        return {
            (q, mode): [(h.sentence_id, h.score) for h in opened.ask(q, k=k, mode=mode)]
            for q in asked
            for mode in MODES
        }
    finally:
        opened.close()


def compare(
    before: dict[Any, list[tuple[int, float]]], after: dict[Any, list[tuple[int, float]]]
) -> dict[str, Any]:
    """How alike two sets of answers are."""
    same_lists = same_first = 0
    largest = 0.0
    for key, old in before.items():
        new = after[key]
        same_lists += [i for i, _ in old] == [i for i, _ in new]
        same_first += [i for i, _ in old[:1]] == [i for i, _ in new[:1]]
        scores = dict(new)
        largest = max([largest, *(abs(s - scores[i]) for i, s in old if i in scores)])
    return {
        "asks": len(before),
        "same_lists": same_lists,
        "same_first_hit": same_first,
        "largest_score_difference": round(largest, 5),
    }


@click.command()
@click.option(
    "--index",
    "source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="An index with float32 vectors (only read: the comparison runs on copies).",
)
@click.option(
    "--questions",
    "count",
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    help="Questions asked: the bench questions, then stored sentences.",
)
@click.option(
    "--k", type=click.IntRange(min=1), default=10, show_default=True, help="Hits per ask."
)
def main(source: Path, count: int, k: int) -> None:
    """Compare float32 and float16 vector storage on copies of an index."""
    with tempfile.TemporaryDirectory(prefix="vector-storage-") as tmp:
        kept, halved = Path(tmp) / "float32", Path(tmp) / "float16"
        copy_index(source, kept)
        copy_index(source, halved)
        log("storing the vectors of one copy as float16 ...")
        narrowed = narrow(halved)
        asked = questions(source, count)
        log(f"asking {len(asked)} questions in {len(MODES)} modes of each copy ...")
        before, after = answers(kept, asked, k), answers(halved, asked, k)
        emit(
            {
                "index": str(source),
                "vectors": narrowed["vectors"],
                "narrowed": narrowed,
                "k": k,
                "bytes_float32": vacuumed_bytes(kept),
                "bytes_float16": vacuumed_bytes(halved),
                **compare(before, after),
            },
            readable=True,
        )


if __name__ == "__main__":
    main()
