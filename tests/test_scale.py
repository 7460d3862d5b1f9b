"""Deltas, compaction and the approximate base, on real FAISS files, real SQLite and the tiny
model: every layout answers as a fresh flat build of the same folder does."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from indexer import Index, vectors
from indexer.cli import cli
from indexer.search import Hit, Searcher
from indexer.vectors import Policy
from tests.files import store_vectors_as_float32, write_docs

WORDS = (
    "river stone cloud engine battery latency window garden paper signal market orange violet "
    "silver copper harbor meadow rocket planet forest winter summer autumn spring coffee kettle "
    "ladder mirror pencil marble candle tunnel bridge castle valley desert island quiet rapid"
).split()
#: Deltas from the first change on; compaction only when asked or past the share.
DELTAS = Policy(delta_from=0, compact_share=10.0)
#: An approximate base from a few hundred vectors.
ANN = Policy(ann="auto", ann_from=300, delta_from=0, compact_share=10.0)


def corpus(files: int, *, seed: int = 0, per_file: int = 6) -> dict[str, str]:
    rng = random.Random(seed)
    docs = {}
    for f in range(files):
        sentences = [
            " ".join(rng.sample(WORDS, 6)).capitalize() + f" number {seed}-{f}-{i}."
            for i in range(per_file)
        ]
        docs[f"d{f % 3}/f{f:03}.txt"] = "\n\n".join(sentences) + "\n"
    return docs


def hits(index: Index, questions: list[str], k: int = 10) -> list[list[tuple[str, str]]]:
    return [[(h.path, h.text) for h in index.ask(q, k=k, mode="dense")] for q in questions]


def overlap(mine: list[list[tuple[str, str]]], theirs: list[list[tuple[str, str]]]) -> float:
    """Mean share of each exact top-k that another index returns too."""
    shares = [len(set(a) & set(b)) / len(b) for a, b in zip(mine, theirs, strict=True) if b]
    return float(np.mean(shares))


def questions_of(docs: dict[str, str]) -> list[str]:
    return [text.split("\n\n")[1] for _, text in sorted(docs.items())[::4]]


def fresh(tmp_path: Path, model: Path, folder: Path, name: str = "fresh") -> Index:
    index = Index(tmp_path / name, model=model)
    index.build(folder, vector_policy=Policy(ann="exact"))
    return index


def layout(index: Index) -> vectors.VectorLayout:
    return vectors.layout_of(index.store.meta())


def edit(folder: Path, docs: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """Apply {path: new text or None to delete} to the folder and to the dict."""
    docs = dict(docs)
    for path, text in changes.items():
        if text is None:
            (folder / path).unlink()
            docs.pop(path)
        else:
            write_docs(folder, {path: text})
            docs[path] = text
    return docs


@pytest.fixture
def world(tmp_path: Path, tiny_model_dir: Path) -> tuple[Index, Path, dict[str, str]]:
    docs = corpus(24)
    folder = write_docs(tmp_path / "docs", docs)
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    index.build(folder, vector_policy=DELTAS)
    return index, folder, docs


def test_a_small_change_writes_a_delta_and_answers_as_a_fresh_build(
    world: tuple[Index, Path, dict[str, str]], tmp_path: Path, tiny_model_dir: Path
) -> None:
    index, folder, docs = world
    base = layout(index)
    assert base.deltas == () and base.kind == "flat"
    gone = sorted(docs)[3]
    removed_text = docs[gone].split("\n\n")[0]
    docs = edit(folder, docs, {sorted(docs)[0]: corpus(1, seed=5)["d0/f000.txt"], gone: None})
    index.build(folder, vector_policy=DELTAS)
    docs = edit(folder, docs, {"new/added.txt": corpus(1, seed=6)["d0/f000.txt"]})
    index.build(folder, vector_policy=DELTAS)

    now = layout(index)
    assert now.base == base.base and len(now.deltas) == 2 and now.churn > 0
    names = {p.name for p in index.path.glob("vectors.*")}
    assert set(vectors.file_names(now)) <= names
    assert index.verify().ok
    expected = fresh(tmp_path, tiny_model_dir, folder)
    questions = [*questions_of(docs), removed_text]
    assert hits(index, questions) == hits(expected, questions)
    assert all(h.path != gone for q in questions for h in index.ask(q, k=50, mode="dense"))

    # Compaction on request: a fresh base, the same answers; it deletes the files it replaced.
    index.build(folder, vector_policy=Policy(compact=True))
    compacted = layout(index)
    assert compacted.deltas == () and compacted.base != base.base
    assert sorted(p.name for p in index.path.glob("vectors.*")) == [compacted.base]
    assert hits(index, questions) == hits(expected, questions)
    assert index.verify().ok


def test_a_compaction_deletes_what_it_replaced_and_every_reader_still_answers(
    world: tuple[Index, Path, dict[str, str]],
    tmp_path: Path,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index, folder, docs = world
    docs = edit(folder, docs, {"new/added.txt": corpus(1, seed=6)["d0/f000.txt"]})
    index.build(folder, vector_policy=DELTAS)
    replaced = vectors.file_names(layout(index))
    replaced_generation = index.store.generation()
    questions = questions_of(docs)
    # A reader that opened the generation before the compaction keeps its mapped files.
    opened = Index(index.path, model=tiny_model_dir)
    before = hits(opened, questions)
    # A reader whose read snapshot names that generation, but that has not opened its files
    # when the compaction deletes them, reads again in a new snapshot: no rebuild from SQLite.
    notes: list[str] = []
    late = Index(index.path, model=tiny_model_dir, echo=notes.append)
    searcher_class = type(late.searcher)
    keyword_found, one_snapshot = searcher_class.keyword_found, searcher_class._ask
    compactions, snapshots = [], []

    def compact_once(self: Searcher, *args: Any, **kwargs: Any) -> list[tuple[int, float]]:
        found = keyword_found(self, *args, **kwargs)
        if not compactions:
            assert self.store.generation() == replaced_generation  # the snapshot begins
            compactions.append(index.build(folder, vector_policy=Policy(compact=True)))
        return found

    def counted(self: Searcher, *args: Any, **kwargs: Any) -> list[Hit]:
        snapshots.append(1)
        return one_snapshot(self, *args, **kwargs)

    monkeypatch.setattr(searcher_class, "keyword_found", compact_once)
    monkeypatch.setattr(searcher_class, "_ask", counted)
    answered = hits(late, questions)
    assert compactions and len(snapshots) == len(questions) + 1, "the first ask read again"
    assert not any((index.path / name).exists() for name in replaced)
    assert not notes, notes
    assert answered == before == hits(opened, questions)
    assert layout(index).deltas == () and index.verify().ok


def test_a_delta_build_trusts_its_own_base_and_readers_still_check_it(
    world: tuple[Index, Path, dict[str, str]], tmp_path: Path, tiny_model_dir: Path
) -> None:
    index, folder, docs = world
    base = layout(index)
    path = index.path / base.base
    assert base.base_stamp == vectors.file_stamp(path)
    # The base's bytes rot in place: same size, same inode, its mtime put back.
    status = path.stat()
    with open(path, "r+b") as handle:
        handle.write(b"\0" * status.st_size)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert vectors.file_stamp(path) == base.base_stamp
    # A small build stacks its delta without reading the base's ids...
    docs = edit(folder, docs, {"new/added.txt": corpus(1, seed=6)["d0/f000.txt"]})
    index.build(folder, vector_policy=DELTAS)
    assert layout(index).base == base.base and len(layout(index).deltas) == 1
    # ...while a reader checks what it opens, rebuilds from SQLite and answers right,
    # and verify names the damage, which --repair fixes with a fresh base.
    reader = Index(index.path, model=tiny_model_dir)
    expected = fresh(tmp_path, tiny_model_dir, folder)
    questions = questions_of(docs)
    assert hits(reader, questions) == hits(expected, questions)
    assert not index.verify().ok
    assert index.verify(repair=True).ok and index.verify().ok
    assert layout(index).deltas == () and layout(index).base_stamp


def test_deltas_compact_past_their_share_of_the_base(
    world: tuple[Index, Path, dict[str, str]],
) -> None:
    index, folder, docs = world
    policy = Policy(delta_from=0, compact_share=0.10)
    shapes = []
    for seed in (8, 9, 10):
        edit(folder, docs, {sorted(docs)[seed - 8]: corpus(1, seed=seed)["d0/f000.txt"]})
        index.build(folder, vector_policy=policy)
        now = layout(index)
        assert now.churn <= 0.10 * now.base_count
        shapes.append(len(now.deltas))
    # One changed file of 24 is under 10 % of the base, two are past it.
    assert shapes == [1, 0, 1]


def test_small_indexes_keep_one_flat_file_as_before(tmp_path: Path, tiny_model_dir: Path) -> None:
    docs = corpus(6)
    folder = write_docs(tmp_path / "docs", docs)
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    index.build(folder)
    edit(folder, docs, {"d0/f000.txt": corpus(1, seed=3)["d0/f000.txt"]})
    index.build(folder)
    generation = index.store.generation()
    assert [p.name for p in index.path.glob("vectors.*")] == [f"vectors.{generation}.faiss"]
    assert index.status()["vector_index"] == "flat"


@pytest.mark.parametrize("damage", ["missing", "garbage", "removed ids"])
def test_verify_finds_a_damaged_delta_and_repair_writes_a_fresh_base(
    world: tuple[Index, Path, dict[str, str]], tiny_model_dir: Path, damage: str
) -> None:
    index, folder, docs = world
    edit(folder, docs, {sorted(docs)[0]: corpus(1, seed=11)["d0/f000.txt"]})
    index.build(folder, vector_policy=DELTAS)
    question = questions_of(docs)[1]
    before = hits(index, [question])
    (gen,) = layout(index).deltas
    if damage == "missing":
        (index.path / vectors.DELTA_PATTERN.format(gen=gen)).unlink()
    elif damage == "garbage":
        (index.path / vectors.DELTA_PATTERN.format(gen=gen)).write_bytes(b"garbage" * 9)
    else:
        np.save(index.path / vectors.REMOVED_PATTERN.format(gen=gen), np.zeros(0, np.int64))
    report = index.verify()
    assert not report.ok and "repair" in report.problems[-1]
    # A reader still answers (from SQLite) and says why.
    warnings: list[str] = []
    reader = Index(index.path, model=tiny_model_dir, echo=warnings.append)
    assert hits(reader, [question]) == before and warnings
    result = CliRunner().invoke(cli, ["verify", "--index", str(index.path), "--repair"])
    assert result.exit_code == 0, result.output
    assert layout(index).deltas == () and index.verify().ok
    assert hits(index, [question]) == before


def test_switching_to_approximate_and_back_as_the_corpus_grows_and_shrinks(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    docs = corpus(8)
    folder = write_docs(tmp_path / "docs", docs)
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    index.build(folder, vector_policy=ANN)
    assert layout(index).kind == "flat"

    grown = corpus(40, seed=1)
    docs = edit(folder, docs, grown)
    index.build(folder, vector_policy=ANN)
    approximate = layout(index)
    assert approximate.kind == "ivf-sq8" and approximate.deltas == ()
    assert approximate.recall >= 0.95 and 1 <= approximate.nprobe <= approximate.nlist
    assert "nprobe" in str(index.status()["vector_index"])
    assert index.verify().ok
    expected = fresh(tmp_path, tiny_model_dir, folder)
    questions = questions_of(docs)
    assert overlap(hits(index, questions), hits(expected, questions)) >= 0.8
    assert [h[0] for h in hits(index, questions)] == [h[0] for h in hits(expected, questions)]

    # A small change is a flat delta on the approximate base; retraining past 4x its size.
    docs = edit(folder, docs, {"d0/f000.txt": corpus(1, seed=12)["d0/f000.txt"]})
    index.build(folder, vector_policy=ANN)
    assert layout(index).kind == "ivf-sq8" and len(layout(index).deltas) == 1
    assert index.verify().ok
    docs = edit(folder, docs, corpus(200, seed=2))
    index.build(folder, vector_policy=ANN)
    retrained = layout(index)
    assert retrained.deltas == () and retrained.trained_on > 4 * approximate.trained_on
    expected = fresh(tmp_path, tiny_model_dir, folder, "fresh2")
    questions = questions_of(docs)
    assert overlap(hits(index, questions), hits(expected, questions)) >= 0.8

    # Shrinking below half the threshold goes back to one exact flat file.
    shutil.rmtree(folder)
    small = corpus(3, seed=4)
    write_docs(folder, small)
    index.build(folder, vector_policy=ANN, confirm_delete=True)
    assert layout(index).kind == "flat"
    expected = fresh(tmp_path, tiny_model_dir, folder, "fresh3")
    assert hits(index, questions_of(small)) == hits(expected, questions_of(small))


def test_recall_counts_rows_tied_with_the_last_exact_hit() -> None:
    # Thirty rows share one vector (a heading repeated in thirty files): exact search keeps
    # whichever ten come first, an equally right answer keeps another ten.
    rng = np.random.default_rng(0)
    heading = rng.normal(size=16).astype(np.float32)
    others = rng.normal(size=(20, 16)).astype(np.float32)
    rows = np.vstack([np.tile(heading, (30, 1)), others])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    ids = np.arange(100, 150, dtype=np.int64)
    found = vectors.GenerationIndex.of(vectors.VectorIndex.from_blocks([(ids, rows)], 16))
    query = rows[:1]
    returned = found.search(query[0], 10)
    other_ten = np.array([[i for i in ids[:30] if i not in {j for j, _ in returned}][:10]])
    scores = np.array([[s for _, s in returned]], dtype=np.float32)
    assert vectors.recall_at(found, query, other_ten, scores) == 1.0
    # A real miss still counts as one: the truth's last place is a different, closer row.
    truth = np.array([[*(i for i, _ in returned[:9]), 149]])
    better = scores.copy()
    better[0, -1] = 1.5
    assert vectors.recall_at(found, query, truth, better) == 0.9


def test_the_recall_sample_moves_along_the_spread_of_the_stored_vectors() -> None:
    # Stored vectors in a 4-dimensional subspace of 32: noise drawn evenly over all 32
    # dimensions would leave it, the build's stand-ins for questions stay in it.
    rng = np.random.default_rng(0)
    span = np.linalg.qr(rng.normal(size=(32, 4)))[0].T
    data = (rng.normal(size=(500, 4)) @ span).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    stored = {i: data[i] for i in range(len(data))}
    ids = np.arange(len(data), dtype=np.int64)
    queries = vectors.recall_queries(lambda wanted: {i: stored[i] for i in wanted}, ids, rng)
    assert queries.shape == (vectors.RECALL_QUERIES, 32)
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert np.abs(queries - queries @ span.T @ span).max() < 1e-5
    nearest = (queries @ data.T).max(axis=1)
    assert 0.7 < float(np.median(nearest)) < 1.0


def test_nprobe_takes_its_margin_over_the_sample(tmp_path: Path, tiny_model_dir: Path) -> None:
    import faiss

    folder = write_docs(tmp_path / "docs", corpus(40, seed=1))
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    index.build(folder, vector_policy=ANN)
    built = layout(index)
    assert built.kind == "ivf-sq8" and built.recall >= 0.95
    base = vectors.VectorIndex.load(index.path / built.base, kind=built.kind)
    ids = index.store.expected_vector_ids()
    stored = index.store.vectors_by_id(ids.tolist())
    data = np.stack([stored[int(i)] for i in ids]).astype(np.float32)
    rng = np.random.default_rng(0)
    queries = data[:60] + rng.normal(size=data[:60].shape).astype(np.float32) * 0.05
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = faiss.ResultHeap(len(queries), 10, keep_max=True)
    scores, rows = faiss.knn(queries, data, 10, faiss.METRIC_INNER_PRODUCT)
    truth.add_result(scores, ids[rows])
    truth.finalize()
    least, _ = vectors.choose_nprobe(base, queries, truth, index.store, 0.95)
    chosen, recall = vectors.choose_nprobe(base, queries, truth, index.store, 0.95, margin=2)
    assert chosen == min(2 * least, built.nlist) and recall >= 0.95


def test_ann_option_and_compact_option_on_the_command_line(
    world: tuple[Index, Path, dict[str, str]], tiny_model_dir: Path
) -> None:
    index, folder, _ = world
    run = CliRunner().invoke
    args = ["build", str(folder), "--index", str(index.path), "--model", str(tiny_model_dir)]
    assert run(cli, [*args, "--ann", "always"]).exit_code == 0
    assert layout(index).kind == "ivf-sq8", "switching kind writes a new base"
    assert run(cli, [*args, "--ann", "exact", "--compact"]).exit_code == 0
    assert layout(index).kind == "flat"


# ---------------------------------------------------------------- crashes during a delta build

DELTA_BUILD = """
import sys
from indexer import Index
from indexer.vectors import Policy
policy = Policy(delta_from=0, compact_share=10.0, ann=sys.argv[4], compact=sys.argv[5] == "1")
Index(sys.argv[1], model=sys.argv[2]).build(sys.argv[3], vector_policy=policy)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("step", "ann"),
    [
        ("vectors", "exact"),
        ("delta", "exact"),
        ("faiss", "exact"),
        ("commit", "exact"),
        ("train", "always"),
        ("faiss", "always"),
    ],
)
def test_a_delta_build_killed_at_each_step_still_opens_and_answers(
    world: tuple[Index, Path, dict[str, str]],
    tmp_path: Path,
    tiny_model_dir: Path,
    step: str,
    ann: str,
) -> None:
    index, folder, docs = world
    old = hits(index, questions_of(docs))
    if ann == "always":
        index.build(folder, vector_policy=Policy(ann="always", delta_from=0))
    changed = edit(folder, docs, {sorted(docs)[0]: corpus(1, seed=13)["d0/f000.txt"]})
    changed = edit(folder, changed, {sorted(docs)[5]: None})
    env = {**os.environ, "INDEXER_FAULT": step}
    compact = "1" if step == "train" else "0"  # a delta never trains; compaction does
    command = [sys.executable, "-c", DELTA_BUILD, index.path, tiny_model_dir, folder, ann, compact]
    killed = subprocess.run(list(map(str, command)), env=env, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    after = Index(index.path, model=tiny_model_dir)
    assert after.verify().ok, after.verify().problems
    questions = questions_of(changed)
    expected_old = hits(index, questions) if step != "commit" else None
    if step == "commit":
        assert hits(after, questions) == hits(fresh(tmp_path, tiny_model_dir, folder), questions)
    else:
        assert len(hits(after, questions_of(docs))) == len(old)
        assert hits(after, questions) == expected_old
    after.build(folder, vector_policy=Policy(delta_from=0, compact_share=10.0, ann=ann))  # type: ignore[arg-type]
    assert after.verify().ok
    expected = fresh(tmp_path, tiny_model_dir, folder, "fresh_after")
    mine, theirs = hits(after, questions), hits(expected, questions)
    if ann == "exact":
        assert mine == theirs
    else:
        assert [h[0] for h in mine] == [h[0] for h in theirs]


def test_compacting_on_request_stores_an_older_versions_float32_vectors_as_float16(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    docs = corpus(12)
    folder = write_docs(tmp_path / "docs", docs)
    index = fresh(tmp_path, tiny_model_dir, folder)
    questions = questions_of(docs)
    before = hits(index, questions)
    index.close()
    count = store_vectors_as_float32(index.path)  # as an index written before float16 holds them

    args = ["build", str(folder), "--index", str(index.path), "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(cli, [*args, "--compact"])
    assert result.exit_code == 0, result.output
    assert f"stored {count} vectors of an older version as float16" in result.output
    with contextlib.closing(sqlite3.connect(index.path / "index.sqlite")) as db:
        widths = {n for (n,) in db.execute("SELECT length(vector) % 2 FROM vectors")}
    assert widths == {1}, "every vector is float16 (an odd length)"
    again = Index(index.path, model=tiny_model_dir)
    assert hits(again, questions) == before, "float16 values written as float32 and back"
    assert again.verify().ok
    result = CliRunner().invoke(cli, [*args, "--compact"])
    assert result.exit_code == 0 and "float16" not in result.output, result.output
