"""Measurements behind the ranking defaults (indexer.ranking.Ranking; docs/ranking.md).

Every variant is a Ranking built with dataclasses.replace and passed to the real code.

    python -m scripts.ablation [SET_DIR ...] [--limit 1000] [--windows] [--plain-chunks]
                               [--measure NAME ...] [--index-dir DIR]

Uses the indexes scripts/eval.py caches (it builds them when missing; --index-dir names another
one, such as the index scripts/eval_all.sh keeps for a mixed set) and prints one stamped
JSON line per measurement on stdout, a readable line per measurement on stderr:

- mix: passage-level R@1 of the dense score alpha × sentence cosine + (1 − alpha) × the cosine
  of the sentence's chunk (and, with --windows, of a centred 3-sentence window embedded here),
  mixed with the section's cosine at the default weight; headings score as their chunk, as in
  indexer.ranking.dense_mix;
- section: the same at the default alpha for several weights of the section's cosine;
- statement: the same at the defaults, with questions written as statements leaning toward
  their passage form by several weights (Ranking.statement_passage_weight);
- headings: the same at the default alpha, with headings scored on their own vectors, and (with
  --plain-chunks) with chunks embedded here without the heading text in front;
- trust: how much of each question (IDF-weighted) the index vocabulary holds (median, p10, p90);
- ramp: hybrid R@1 / MRR@10 with the default keyword-weight ramp and with a linear one;
- alike: hybrid R@1 / MRR@10 with the keyword side on the candidates written like the question
  (the default) and on every candidate (run it on a mixed set from scripts/mixed_set.py);
- names: hybrid R@1 / MRR@10 with several weights of the names a candidate written unlike the
  question writes by sound (Ranking.name_weight; run it on NTREX and its mixed set);
- passage: hybrid R@1 / MRR@10 with several weights of the share of the question's words the
  passage around a candidate holds (Ranking.passage_words_weight);
- pool: hybrid R@1 / MRR@10 with the passage's share weighing terms by their IDF in the index
  alone or also among the candidates' passages (Ranking.pool_idf), absolute or relative to the
  best candidate's (Ranking.share_relative);
- expand: hybrid and dense R@1 / MRR@10 with the sentences of the sections the vector search
  finds made candidates or not (Ranking.expand_sections), and the median number of candidates
  a question's dense side scores either way;
- passage_bm25: R@1 of BM25 over whole passages with indexer's keyword terms;
- words: the same with a morphological analyser's words (SudachiPy, jieba; measured only when
  installed), and with words and bigrams together;
- rows: hybrid and keyword R@1 / MRR@10 with smaller budgets of the rows a keyword search
  reads (Ranking.keyword_rows): in an index of a few thousand sentences, a budget of 100
  stands for the default 5,000 in an index 50 times larger, where a question's rarest word
  alone can be held by more rows than the budget (how many questions are then searched with
  their rarest terms together: searched_together);
- baseline: the simple baseline the Japanese and Chinese targets are set against, on the same
  questions: character-bigram BM25 over whole passages (title and text lower-cased, whitespace
  removed, every adjacent pair; the question's term frequencies, k1 1.2, b 0.75) fused with
  the best sentence cosine of each passage by a min-max weighted sum (BASELINE_WEIGHTS of the
  BM25 side), beside BM25 alone, the sentence cosine alone and our hybrid mode;
- misses: hybrid questions whose first passage is wrong, how many of those rank another
  passage with the gold passage's title (same article) first, and how many rank first a
  passage that also holds one of the question's gold answers (word for word).
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from indexer import Index, keyword, ranking
from indexer.embed import is_statement, lean, normalize
from indexer.ranking import DEFAULT, Ranking
from scripts import common
from scripts import eval as ev  # the yardstick's own helpers: index location, queries, metrics

ALPHAS = (1.0, 0.7, 0.5, 0.3, 0.0)
BETAS = (0.0, 0.1, 0.2, 0.3)
STATEMENT_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
NAME_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
PASSAGE_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
BASELINE_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
ROW_BUDGETS = (DEFAULT.keyword_rows, 500, 100)
MEASURES = (
    "mix", "statement", "headings", "trust", "ramp", "alike", "names", "passage_bm25", "misses",
    "passage", "pool", "expand", "words", "rows", "baseline",
)  # fmt: skip


def emit(record: dict[str, object]) -> None:
    """One stamped JSON line on stdout, one readable line on stderr."""
    common.emit(record, readable=True)


def open_index(set_dir: Path, index_dir: Path | None = None) -> Index:
    """The set's evaluation index (by default the one scripts/eval.py caches), built
    (incrementally) like scripts/eval.py does."""
    index = Index(index_dir or ev.default_index_dir(set_dir, None))
    index.build(set_dir / "docs")
    return index


def stored(index: Index) -> dict[str, np.ndarray]:
    """Sentence vectors, their files and positions, and each sentence's chunk and section
    vectors (the chunk's where the chunk is the whole section)."""
    store = index.store
    rows = list(store.sentences_with_vectors())
    spans: dict[str, dict[tuple[int, int], np.ndarray]] = {"chunk": {}, "section": {}}
    for f, first, last, kind, vector in store.passages_with_vectors():
        for p in range(first, last + 1):
            spans[kind][(f, p)] = vector
    chunk, section = spans["chunk"], {**spans["chunk"], **spans["section"]}
    sentences = np.stack([r[4] for r in rows])
    return {
        "file": np.array([r[0] for r in rows]),
        "position": np.array([r[1] for r in rows]),
        "text": np.array([r[2] for r in rows], dtype=object),
        "heading": np.array([r[3] == "heading" for r in rows]),
        "sentence": sentences,
        "chunk": np.stack(
            [chunk.get((r[0], r[1]), s) for r, s in zip(rows, sentences, strict=True)]
        ),
        "section": np.stack(
            [section.get((r[0], r[1]), s) for r, s in zip(rows, sentences, strict=True)]
        ),
        "stem": {row.id: Path(row.path).stem for row in store.files().values()},
    }


def plain_chunks(index: Index, data: dict[str, np.ndarray]) -> np.ndarray:
    """Each sentence's chunk embedded as its sentences alone, without the heading in front."""
    keys = list(zip(data["file"].tolist(), data["position"].tolist(), strict=True))
    texts = dict(zip(keys, data["text"], strict=True))
    spans = [
        (f, a, b) for f, a, b, kind, _ in index.store.passages_with_vectors() if kind == "chunk"
    ]
    joined = [" ".join(texts[(f, p)] for p in range(a, b + 1)) for f, a, b in spans]
    embedder = index.embedder
    vectors = embedder.embed([embedder.passage_text(t) for t in joined])
    row = {key: i for i, key in enumerate(texts)}
    out = data["sentence"].copy()
    for (f, a, b), v in zip(spans, vectors, strict=True):
        for p in range(a, b + 1):
            out[row[(f, p)]] = v
    return out


def windows(index: Index, data: dict[str, np.ndarray]) -> np.ndarray:
    """Embed each sentence with its neighbours (same file) as one passage."""
    files, texts = data["file"], data["text"]
    out = []
    for i in range(len(texts)):
        j = [k for k in (i - 1, i, i + 1) if 0 <= k < len(texts) and files[k] == files[i]]
        out.append(" ".join(texts[j]))
    embedder = index.embedder
    return embedder.embed([embedder.passage_text(t) for t in out])


def recall_at_1(scores: np.ndarray, data: dict[str, np.ndarray], golds: list[str]) -> float:
    """Passage-level R@1: each passage scores its best sentence."""
    files, column = np.unique(data["file"], return_inverse=True)
    hits = 0
    for row, gold in zip(scores, golds, strict=True):
        best = np.full(len(files), -np.inf)
        np.maximum.at(best, column, row)
        hits += data["stem"][files[int(np.argmax(best))]] == gold
    return round(hits / len(golds), 3)


def mixed(
    own: np.ndarray,
    other: np.ndarray,
    alpha: float,
    heading: np.ndarray,
    section: np.ndarray,
    beta: float = DEFAULT.section_weight,
) -> np.ndarray:
    """ranking.dense_mix with `other` as the chunk's cosine at own weight alpha and section
    weight beta (the rest of the record at its defaults)."""
    variant = dataclasses.replace(DEFAULT, own_weight=alpha, section_weight=beta)
    return ranking.dense_mix(own, other, section, heading, variant)


def default_scores(cos: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> np.ndarray:
    """[queries, sentences] dense scores at the default ranking."""
    return ranking.dense_mix(cos["sentence"], cos["chunk"], cos["section"], data["heading"])


def question_forms(index: Index, queries: list) -> dict[str, np.ndarray]:
    """Each question embedded as a query and as a passage, and which ones are statements."""
    embedder = index.embedder
    return {
        "query": embedder.embed([embedder.query_text(x.question) for x in queries]),
        "passage": embedder.embed([embedder.passage_text(x.question) for x in queries]),
        "statement": np.array([is_statement(x.question) for x in queries]),
    }


def question_vectors(forms: dict[str, np.ndarray], weight: float) -> np.ndarray:
    """Question vectors as Embedder.embed_query makes them, at a given statement weight."""
    weights = np.where(forms["statement"], weight, 0.0)[:, None]
    return normalize(lean(forms["query"], forms["passage"], weights))


@dataclass
class Dense:
    """What the dense measures share: the stored vectors, the question vectors (as `index ask`
    embeds them, and both forms), and the [queries, sentences] cosines with each sentence's
    own, chunk and section vectors."""

    data: dict[str, np.ndarray]
    forms: dict[str, np.ndarray]
    q: np.ndarray
    cos: dict[str, np.ndarray]

    @classmethod
    def of(cls, index: Index, queries: list) -> Dense:
        data, forms = stored(index), question_forms(index, queries)
        q = question_vectors(forms, DEFAULT.statement_passage_weight)
        return cls(data, forms, q, cosines(q, data))


def cosines(q: np.ndarray, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: q @ data[name].T for name in ("sentence", "chunk", "section")}


def measure_statement(set_dir: Path, queries: list, dense: Dense) -> None:
    """Dense R@1 with statements leaning toward their passage form by several weights."""
    data, forms = dense.data, dense.forms
    golds = [x.passage_id for x in queries]
    share = round(float(forms["statement"].mean()), 3)
    for weight in STATEMENT_WEIGHTS:
        cos = cosines(question_vectors(forms, weight), data)
        scores = default_scores(cos, data)
        emit({"set": set_dir.name, "measure": "statement", "statements": share,
              "weight": weight, "recall@1": recall_at_1(scores, data, golds)})  # fmt: skip


def measure_mix(
    set_dir: Path, index: Index, queries: list, dense: Dense, with_windows: bool
) -> None:
    data, q, cos = dense.data, dense.q, dense.cos
    golds = [x.passage_id for x in queries]
    own, section, heading = cos["sentence"], cos["section"], data["heading"]
    units = {"chunk": cos["chunk"]}
    if with_windows:
        units["window"] = q @ windows(index, data).T
    for name, other in units.items():
        for alpha in ALPHAS:
            score = recall_at_1(mixed(own, other, alpha, heading, section), data, golds)
            emit({"set": set_dir.name, "measure": "mix", "unit": name, "alpha": alpha,
                  "recall@1": score})  # fmt: skip
    chunk, alpha = units["chunk"], DEFAULT.own_weight
    for beta in BETAS:
        score = recall_at_1(mixed(own, chunk, alpha, heading, section, beta), data, golds)
        emit({"set": set_dir.name, "measure": "section", "beta": beta, "recall@1": score})


def measure_headings(
    set_dir: Path, index: Index, queries: list, dense: Dense, with_plain: bool
) -> None:
    data, q, cos = dense.data, dense.q, dense.cos
    golds = [x.passage_id for x in queries]
    own, chunk, alpha = cos["sentence"], cos["chunk"], DEFAULT.own_weight
    section, heading = cos["section"], data["heading"]
    variants = {
        "default": default_scores(cos, data),
        "heading_own_vector": mixed(own, chunk, alpha, np.zeros_like(heading), section),
    }
    if with_plain:
        variants["chunk_without_heading"] = mixed(
            own, q @ plain_chunks(index, data).T, alpha, heading, section
        )
    for name, scores in variants.items():
        emit({"set": set_dir.name, "measure": "headings", "variant": name,
              "recall@1": recall_at_1(scores, data, golds)})  # fmt: skip


def measure_trust(set_dir: Path, index: Index, queries: list) -> None:
    searcher = index.searcher
    with index.store.snapshot():
        trust = np.array([searcher.keyword_trust(x.question) for x in queries])
    p10, p50, p90 = (round(float(v), 2) for v in np.percentile(trust, [10, 50, 90]))
    emit({"set": set_dir.name, "measure": "trust", "p10": p10, "median": p50, "p90": p90})


def hybrid(
    index: Index, queries: list, variant: Ranking = DEFAULT, mode: str = "hybrid"
) -> dict[str, float]:
    """Hybrid (or another mode's) R@1 and MRR@10 through the real ask code with a ranking
    variant, rounded."""
    asked = Index(index.path, ranking=variant)
    scores, _ = ev.run_queries(asked, queries, k=10, mode=mode)
    asked.close()
    return {key: round(scores[key], 3) for key in ("recall@1", "mrr@10")}


def measure_rows(set_dir: Path, index: Index, queries: list) -> None:
    """Hybrid and keyword with smaller budgets of keyword rows (Ranking.keyword_rows), which
    stand for the default budget in a larger index."""
    sentences = index.status()["sentences"]
    for budget in ROW_BUDGETS:
        variant = dataclasses.replace(DEFAULT, keyword_rows=budget)
        asked = Index(index.path, ranking=variant)
        with asked.store.snapshot():
            matches = [asked.searcher.keyword_match(x.question) or "" for x in queries]
        asked.close()
        together = sum(" AND " in m for m in matches)  # the rarest term alone was too many rows
        for mode in ("hybrid", "keyword"):
            emit({"set": set_dir.name, "measure": "rows", "keyword_rows": budget, "mode": mode,
                  "sentences": sentences, "searched_together": together,
                  **hybrid(index, queries, variant, mode)})  # fmt: skip


def measure_ramp(set_dir: Path, index: Index, queries: list) -> None:
    for name, ramp in (("default", DEFAULT.trust_ramp), ("linear", (0.0, 1.0))):
        variant = dataclasses.replace(DEFAULT, trust_ramp=ramp)
        emit({"set": set_dir.name, "measure": "ramp", "ramp": name,
              **hybrid(index, queries, variant)})  # fmt: skip


def measure_alike(set_dir: Path, index: Index, queries: list) -> None:
    """Hybrid with the keyword side on the candidates written like the question (default) and
    on every candidate; they differ where a folder mixes writing systems."""
    for name, rule in (("default", "alike"), ("every_candidate", "every")):
        variant = dataclasses.replace(DEFAULT, keyword_on=rule)
        emit({"set": set_dir.name, "measure": "alike", "keyword_on": name,
              **hybrid(index, queries, variant)})  # fmt: skip


def measure_names(set_dir: Path, index: Index, queries: list) -> None:
    for weight in NAME_WEIGHTS:
        variant = dataclasses.replace(DEFAULT, name_weight=weight)
        emit({"set": set_dir.name, "measure": "names", "weight": weight,
              **hybrid(index, queries, variant)})  # fmt: skip


def measure_passage(set_dir: Path, index: Index, queries: list) -> None:
    """Hybrid with several weights of the share of the question's words a candidate's passage
    holds (Ranking.passage_words_weight)."""
    for weight in PASSAGE_WEIGHTS:
        variant = dataclasses.replace(DEFAULT, passage_words_weight=weight)
        emit({"set": set_dir.name, "measure": "passage", "weight": weight,
              **hybrid(index, queries, variant)})  # fmt: skip


def measure_pool(set_dir: Path, index: Index, queries: list) -> None:
    """Hybrid with the passage's share weighted by IDF in the index alone or also among the
    candidates' passages (Ranking.pool_idf), absolute or relative (Ranking.share_relative)."""
    for pool_idf in (False, True):
        for relative in (False, True):
            variant = dataclasses.replace(DEFAULT, pool_idf=pool_idf, share_relative=relative)
            emit({"set": set_dir.name, "measure": "pool", "pool_idf": pool_idf,
                  "share_relative": relative, **hybrid(index, queries, variant)})  # fmt: skip


def measure_expand(set_dir: Path, index: Index, queries: list) -> None:
    """Hybrid and dense with the sentences of the sections the vector search finds made
    candidates or not (Ranking.expand_sections)."""
    vectors = [index.searcher.question_vector(x.question) for x in queries]
    for expand in (True, False):
        variant = dataclasses.replace(DEFAULT, expand_sections=expand)
        asked = Index(index.path, ranking=variant)
        with asked.store.snapshot():
            counts = [len(asked.searcher.dense(v, variant.pool(10))) for v in vectors]
        asked.close()
        for mode in ("hybrid", "dense"):
            emit({"set": set_dir.name, "measure": "expand", "expand_sections": expand,
                  "mode": mode, "median_dense_candidates": int(np.median(counts)),
                  **hybrid(index, queries, variant, mode)})  # fmt: skip


def baseline_terms(text: str) -> list[str]:
    """The baseline's terms: the text lower-cased, whitespace removed, every adjacent pair of
    characters."""
    squeezed = "".join(text.lower().split())
    return [squeezed[i : i + 2] for i in range(len(squeezed) - 1)]


def bm25_scores(passages: list[str], questions: list[str]) -> np.ndarray:
    """[questions, passages] Okapi BM25 (k1 1.2, b 0.75, IDF ln(1 + (N − df + ½) / (df + ½)))
    of the baseline's terms, each of a question's terms counted as often as it occurs."""
    k1, b = 1.2, 0.75
    postings: dict[str, dict[int, int]] = {}
    lengths = np.zeros(len(passages))
    for column, text in enumerate(passages):
        terms = baseline_terms(text)
        lengths[column] = len(terms)
        for term, count in Counter(terms).items():
            postings.setdefault(term, {})[column] = count
    norm = k1 * (1 - b + b * lengths / max(1.0, float(lengths.mean())))
    scores = np.zeros((len(questions), len(passages)))
    for row, question in enumerate(questions):
        for term, asked in Counter(baseline_terms(question)).items():
            held = postings.get(term)
            if not held:
                continue
            columns = np.fromiter(held, dtype=np.int64)
            tf = np.fromiter(held.values(), dtype=np.float64)
            idf = np.log(1 + (len(passages) - len(held) + 0.5) / (len(held) + 0.5))
            scores[row, columns] += asked * idf * tf * (k1 + 1) / (tf + norm[columns])
    return scores


def min_max(scores: np.ndarray) -> np.ndarray:
    """Each row scaled to 0–1 (a constant row to 0)."""
    low, high = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    return (scores - low) / np.where(high > low, high - low, 1.0)


def ranked_scores(scores: np.ndarray, ids: list[str], golds: list[str]) -> dict[str, float]:
    """R@1 and MRR@10 of passages ranked by [questions, passages] scores, rounded."""
    rankings = [[ids[c] for c in np.argsort(-row, kind="stable")[:10]] for row in scores]
    measured = ev.retrieval_scores(rankings, golds)
    return {key: round(measured[key], 3) for key in ("recall@1", "mrr@10")}


def measure_baseline(set_dir: Path, index: Index, queries: list, dense: Dense) -> None:
    passages = list(common.read_jsonl(set_dir / "passages.jsonl"))
    ids = [str(p["id"]) for p in passages]
    column = {passage: c for c, passage in enumerate(ids)}
    texts = [f"{p.get('title') or ''} {p['text']}" for p in passages]
    bm25 = bm25_scores(texts, [x.question for x in queries])
    # Each passage's best sentence cosine; a passage the index holds no sentence of scores -1.
    cosine = np.full_like(bm25, -1.0)
    stems = [column[dense.data["stem"][f]] for f in dense.data["file"].tolist()]
    for row, sentences in zip(cosine, dense.cos["sentence"], strict=True):
        np.maximum.at(row, stems, sentences)
    golds = [x.passage_id for x in queries]
    runs = {"bm25": bm25, "sentence cosine": cosine}
    for weight in BASELINE_WEIGHTS:
        runs[f"fused {weight}"] = weight * min_max(bm25) + (1 - weight) * min_max(cosine)
    for name, scores in runs.items():
        emit({"set": set_dir.name, "measure": "baseline", "ranking": name,
              "queries": len(queries), **ranked_scores(scores, ids, golds)})  # fmt: skip
    emit({"set": set_dir.name, "measure": "baseline", "ranking": "ours (hybrid)",
          "queries": len(queries), **hybrid(index, queries)})  # fmt: skip


def measure_passage_bm25(set_dir: Path, queries: list) -> None:
    recall = passage_bm25_recall(set_dir, queries, keyword.terms)
    emit({"set": set_dir.name, "measure": "passage_bm25", "recall@1": recall})


def passage_bm25_recall(set_dir: Path, queries: list, terms: Callable[[str], list[str]]) -> float:
    """R@1 of FTS5's BM25 over whole passages (title and text), with these terms."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE p USING fts5(stem UNINDEXED, terms)")
    for doc in sorted((set_dir / "docs").glob("*.txt")):
        db.execute("INSERT INTO p VALUES (?, ?)", [doc.stem, " ".join(terms(doc.read_text()))])
    hits = 0
    for x in queries:
        match = keyword.match_any(terms(x.question))
        row = (
            db.execute(
                "SELECT stem FROM p WHERE p MATCH ? ORDER BY bm25(p) LIMIT 1", [match]
            ).fetchone()
            if match
            else None
        )
        hits += row is not None and row[0] == x.passage_id
    return round(hits / len(queries), 3)


def measure_words(set_dir: Path, queries: list) -> None:
    """Passage BM25 with a morphological analyser's words (SudachiPy for Japanese, jieba for
    Chinese, when installed) instead of character bigrams, and with both; the seconds it takes
    to cut the set's passages; the analyser's installed size."""
    bigrams = passage_bm25_recall(set_dir, queries, keyword.terms)
    for name, make in ANALYSERS.items():
        try:
            words, size = make()
        except ImportError:
            common.log(f"{name} is not installed; `pip install {name}` to measure it")
            continue
        started = time.perf_counter()
        for doc in (set_dir / "docs").glob("*.txt"):
            words(doc.read_text())
        seconds = round(time.perf_counter() - started, 2)
        both = lambda text, words=words: [*words(text), *keyword.terms(text)]  # noqa: E731
        emit({"set": set_dir.name, "measure": "words", "analyser": name,
              "bigrams": bigrams,
              "words": passage_bm25_recall(set_dir, queries, words),
              "words_and_bigrams": passage_bm25_recall(set_dir, queries, both),
              "cut_seconds": seconds, "installed_mb": size})  # fmt: skip


def _sudachi() -> tuple[Callable[[str], list[str]], int]:
    import sudachidict_core
    from sudachipy import Dictionary, SplitMode

    tokenizer = Dictionary().tokenizer(mode=SplitMode.C)
    return _words(lambda text: [m.normalized_form() for m in tokenizer.tokenize(text)]), (
        _installed_mb(sudachidict_core.__file__)
    )


def _jieba() -> tuple[Callable[[str], list[str]], int]:
    import jieba

    jieba.setLogLevel(60)
    return _words(jieba.lcut), _installed_mb(jieba.__file__)


def _words(cut: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """Lower-cased words of an analyser, without punctuation, cut in pieces it accepts."""

    def words(text: str) -> list[str]:
        normal = unicodedata.normalize("NFKC", text).lower()
        pieces = [normal[i : i + 10000] for i in range(0, len(normal), 10000)]
        return [w for piece in pieces for w in cut(piece) if re.search(r"[^\W_]", w)]

    return words


def _installed_mb(module_file: str) -> int:
    folder = Path(module_file).parent
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20)


ANALYSERS: dict[str, Callable[[], tuple[Callable[[str], list[str]], int]]] = {
    "sudachipy": _sudachi,
    "jieba": _jieba,
}


def measure_misses(set_dir: Path, index: Index, queries: list) -> None:
    passages = {r["id"]: r for r in common.read_jsonl(set_dir / "passages.jsonl")}
    # queries are the first N of the file, in order, so the answers line up with them
    answers = [r.get("answers") or [] for r in common.read_jsonl(set_dir / "queries.jsonl")]
    misses = same_title = answer_in_first = 0
    for x, gold_answers in zip(queries, answers, strict=False):
        first = ev.ask_passages(index, x.question, k=1, mode="hybrid")
        if first and first[0] != x.passage_id:
            misses += 1
            ranked, gold = passages.get(first[0], {}), passages.get(x.passage_id, {})
            same_title += bool(gold.get("title")) and ranked.get("title") == gold.get("title")
            answer_in_first += any(a in ranked.get("text", "") for a in gold_answers)
    emit({"set": set_dir.name, "measure": "misses", "queries": len(queries), "misses": misses,
          "same_title": same_title, "answer_in_first": answer_in_first})  # fmt: skip


@click.command()
@click.argument("set_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Queries per set (the first N in file order).",
)
@click.option(
    "--windows",
    "with_windows",
    is_flag=True,
    help="Also embed centred 3-sentence windows (about a minute per 2,000 sentences).",
)
@click.option(
    "--index-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The index to use (with one SET_DIR), e.g. the one scripts/eval_all.sh keeps for a "
    "mixed set; default: the cached one of scripts/eval.py.",
)
@click.option(
    "--plain-chunks",
    "with_plain",
    is_flag=True,
    help="Also embed every chunk without its heading in front (to compare with the stored ones).",
)
@click.option(
    "--measure",
    "measures",
    multiple=True,
    type=click.Choice(MEASURES),
    help="Only this measure (repeatable) [default: all].",
)
def main(
    set_dirs: tuple[Path, ...],
    limit: int,
    with_windows: bool,
    index_dir: Path | None,
    with_plain: bool,
    measures: tuple[str, ...],
) -> None:
    """Measure the ranking choices on every retrieval set (default: ../shared/eval/*)."""
    set_dirs = set_dirs or common.retrieval_sets()
    if index_dir and len(set_dirs) != 1:
        raise click.UsageError("--index-dir needs exactly one SET_DIR")
    chosen = set(measures or MEASURES)
    for set_dir in set_dirs:
        queries = ev.read_queries(set_dir, limit)
        index = open_index(set_dir, index_dir)
        if chosen & {"mix", "statement", "headings", "baseline"}:
            dense = Dense.of(index, queries)
            if "mix" in chosen:
                measure_mix(set_dir, index, queries, dense, with_windows)
            if "statement" in chosen:
                measure_statement(set_dir, queries, dense)
            if "headings" in chosen:
                measure_headings(set_dir, index, queries, dense, with_plain)
            if "baseline" in chosen:
                measure_baseline(set_dir, index, queries, dense)
        if "trust" in chosen:
            measure_trust(set_dir, index, queries)
        if "ramp" in chosen:
            measure_ramp(set_dir, index, queries)
        if "alike" in chosen:
            measure_alike(set_dir, index, queries)
        if "names" in chosen:
            measure_names(set_dir, index, queries)
        if "passage" in chosen:
            measure_passage(set_dir, index, queries)
        if "pool" in chosen:
            measure_pool(set_dir, index, queries)
        if "expand" in chosen:
            measure_expand(set_dir, index, queries)
        if "passage_bm25" in chosen:
            measure_passage_bm25(set_dir, queries)
        if "words" in chosen:
            measure_words(set_dir, queries)
        if "misses" in chosen:
            measure_misses(set_dir, index, queries)
        if "rows" in chosen:
            measure_rows(set_dir, index, queries)


if __name__ == "__main__":
    main()
