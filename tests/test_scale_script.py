"""scripts/scale_bench.py end to end on a tiny index of the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer import Index, vectors
from tests.files import run_script, write_docs

pytestmark = pytest.mark.slow


def source_index(tmp_path: Path, model: Path) -> Path:
    """A tiny index whose vectors the synthetic ones are made from."""
    docs = {
        f"f{i}.txt": f"Sentence {i} about rivers. Another {i} about stones.\n" for i in range(9)
    }
    source = tmp_path / "source"
    Index(source, model=model).build(write_docs(tmp_path / "docs", docs))
    return source


def test_scale_bench_times_every_step(tmp_path: Path, tiny_model_dir: Path) -> None:
    source = source_index(tmp_path, tiny_model_dir)
    work = tmp_path / "scratch" / "not yet made"
    done = run_script(
        "scale_bench", "--sizes", "2000", "--questions", "5", "--source", source, "--work", work
    )
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["sentences"] == 2000 and row["commit"] and row["machine"]
    assert work.is_dir()
    assert row["edit-delta-2"]["deltas"] == 2 and row["edit-full"]["deltas"] == 0
    assert row["train"]["kind"] == "ivf-sq8" and row["train"]["sample_recall"] >= 0.95
    assert row["edit-delta-on-ivf"]["kind"] == "ivf-sq8"
    assert row["recall_ivf"]["recall_at_10"] > 0 and row["ask_flat_2t"]["p50_ms"] > 0
    # Only an approximate base re-ranks on stored vectors.
    assert row["ask_flat_1t"]["rerank_read_ms"] == 0 < row["ask_ivf_1t"]["rerank_read_ms"]
    assert 0 < row["ask_ivf_1t"]["faiss_ms"] <= row["ask_ivf_1t"]["p95_ms"] * 2
    assert all(row[step]["peak_rss_mib"] for step in ("make", "compact", "ask_flat_1t"))


def test_sizes_past_flat_run_on_ivf_bases_made_in_several_commits(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    source = source_index(tmp_path, tiny_model_dir)
    done = run_script(
        "scale_bench", "--sizes", "4000", "--questions", "5", "--source", source,
        "--work", tmp_path, "--commit-size", "2000", "--flat-up-to", "2000",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(row["make"]["commit_seconds"]) == 2 and row["make"]["kind"] == "ivf-sq8"
    assert "edit-full" not in row and "ask_flat_1t" not in row
    assert row["no-change"]["kind"] == "ivf-sq8" and row["edit-delta-on-ivf-2"]["deltas"] == 2
    # The first edit deletes the base the make's second commit superseded: part of its time.
    first = row["edit-delta-on-ivf"]
    assert 0 <= first["cleanup_seconds"] <= first["seconds"]
    assert row["recall_ivf"]["recall_at_10"] > 0.5


def test_real_texts_give_real_keyword_rows_and_timed_hybrid_asks(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from scripts.scale_bench import STAGES, RealTexts, vectors_per_file

    source = source_index(tmp_path, tiny_model_dir)
    texts, vectors = RealTexts(source).file(np.random.default_rng(0))
    assert len(texts) == 20 and all("about" in t for t in texts)
    assert vectors.shape[0] == vectors_per_file()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    done = run_script(
        "scale_bench", "--sizes", "2000", "--questions", "5", "--source", source,
        "--work", tmp_path, "--texts",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.strip().splitlines()[-1])
    hybrid = row["ask_hybrid_2t"]
    assert row["texts"] and hybrid["kind"] == "ivf-sq8" and hybrid["p50_ms"] > 0
    # The source's first sentences stand in for questions: the keyword side finds each.
    assert hybrid["questions"] == 5 and hybrid["keyword_found"] == 5
    stages = hybrid["stages_ms"]
    assert set(stages) == {name for _, name in STAGES}
    assert stages["question_vector"] > 0 and stages["keyword_search"] > 0
    assert stages["_dense"] > 0 and stages["_dense"] + stages["_hybrid"] < 5 * hybrid["p95_ms"]


def test_ivf_quantizer_compares_flat_and_hnsw_coarse_quantizers(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    source = source_index(tmp_path, tiny_model_dir)
    done = run_script("ivf_quantizer", "--sizes", "3000", "--questions", "5", "--source", source)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [row["quantizer"] for row in rows] == ["flat", "hnsw"]
    for row in rows:
        assert row["vectors"] == 3000 and row["nlist"] == vectors.nlist_for(3000)
        assert row["train_seconds"] > 0 and row["add_seconds"] >= 0 and row["commit"]
        # 64 of its 76 lists: nearly an exact search, re-ranked on the exact vectors.
        assert row["by_nprobe"]["64"]["recall_at_10"] >= 0.9
        assert row["by_nprobe"]["8"]["ms"] > 0


def test_an_existing_index_gets_its_searches_timed_as_it_is(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    source = source_index(tmp_path, tiny_model_dir)
    index = tmp_path / "kept"
    made = run_script("scale_bench", "make", index, source, "2000", "1000", "0")
    assert made.returncode == 0, made.stderr
    before = sorted(p.name for p in index.iterdir())
    done = run_script(
        "scale_bench", "--existing", index, "--source", source, "--questions", "5",
        "--work", tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["index"] == str(index) and row["commit"] and "make" not in row
    assert row["ask_ivf_2t"]["kind"] == "ivf-sq8" and row["recall_ivf"]["recall_at_10"] > 0
    assert sorted(p.name for p in index.iterdir()) == before
