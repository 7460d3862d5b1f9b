"""Texts -> normalised float32 vectors with an ONNX encoder: questions through embed_batch,
documents through embed_passes (one run of the model, pooled per output)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from indexer.config import PassagePrecision
from indexer.errors import ModelDirError, TextTooLongError
from indexer.models import ModelInfo, load_info
from indexer.passages import Pass
from indexer.tokenize import Tokenizer

#: A saved optimised graph (ORT optimized_model_filepath) was measured and dropped: cold load on
#: 2 cores is 0.40 s either way, because the tokenizer (250k pieces, ~0.35 s) loads in parallel and
#: is the critical path; the session alone went from ~0.16 s to ~0.13 s for 140 MB more on disk.


_CLOSERS = "\"'”’」』）)]】»"
# Full stops (Latin, CJK, full-width, Devanagari danda, Urdu) and exclamation marks.
_SENTENCE_END = re.compile(r"[.。!！．।۔]$")
# A question word right before the full stop: ～か。 and the elliptical ～は。 ("and X is?") in
# Japanese, 吗。/呢。 in Chinese.
_ASKING_END = re.compile(r"(か|かい|かな|は|吗|呢|嗎)[.。!！．]$")


def is_statement(text: str) -> bool:
    """Whether a question is written as a full sentence that states something: it ends with a
    full stop or exclamation mark, not with a question particle, and does not trail off."""
    end = text.strip().rstrip(_CLOSERS).rstrip()
    trailing_off = end.endswith("..")  # "What about NNAPI..." is left open
    return bool(_SENTENCE_END.search(end)) and not _ASKING_END.search(end) and not trailing_off


def usable_threads(threads: int | None) -> int:
    """Inference threads: the number asked for, else every core this process may run on."""
    if threads:
        return threads
    # Cores this process may run on (respects taskset/cgroup cpusets, unlike os.cpu_count()).
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def make_session(
    info: ModelInfo, threads: int, onnx_path: Path | None = None, *, spin: bool = True
) -> ort.InferenceSession:
    """An onnxruntime CPU session with every graph optimisation (attention, LayerNorm, GELU),
    on the model's graph or on `onnx_path` (a copy of it, e.g. its int8 one).

    With `spin` (onnxruntime's default, kept for builds) its idle threads spin for the next
    piece of work; without, they sleep, leaving the core to an ask's keyword search while its
    question is embedded (docs/performance.md, "Threads that sleep when idle"; for a build's
    batches the two differ by no more than the noise of scripts/thread_bench.py here)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    try:
        path = onnx_path or info.onnx_path
        return ort.InferenceSession(str(path), options, ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises several unrelated types for bad files
        raise ModelDirError(
            f"model directory {info.path}: onnxruntime cannot load "
            f"{path.name} ({e}) — re-export or re-prepare the model"
        ) from e


#: A batch holds at most batch_size × this many tokens: long texts (chunks, windows of up to
#: 512 tokens) run in smaller batches, so attention memory (batch × tokens²) stays bounded.
TOKENS_PER_ROW = 32  # 64: same speed, 9 % more peak RSS building the Cookpad guides


@dataclass
class TokenizedPass:
    """A Pass as token ids (with <s> and </s>) and where each of its texts starts."""

    ids: np.ndarray  # int32: a first build holds every pass's ids at once
    starts: list[int]  # token index of each text's first token, then of </s>
    outputs: list[tuple[str, tuple[int, int] | None]]


def _batches(order: list[int], lengths: list[int], size: int, budget: int) -> Iterator[list[int]]:
    """Consecutive rows of `order` (sorted by length) in batches within count and token budget."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) == size or (len(batch) + 1) * lengths[i] > budget):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


class Embedder:
    """An ONNX sentence encoder: tokenise, run, pool, normalise."""

    def __init__(
        self, info: ModelInfo, session: ort.InferenceSession, tokenizer: Tokenizer
    ) -> None:
        self.info = info
        self.session = session
        self.tokenizer = tokenizer
        self.dimension = info.dimension
        self._inputs = {i.name for i in session.get_inputs()}

    @classmethod
    def load(cls, model_dir: Path, *, threads: int | None = None, spin: bool = True) -> Embedder:
        """Load a model directory (see indexer.models) into an onnxruntime CPU session
        (make_session: `spin`)."""
        info = load_info(Path(model_dir))
        # Both loads release the GIL: a 250k-piece spm takes ~0.35 s, as long as the session.
        with ThreadPoolExecutor(max_workers=1) as pool:
            tokenizer = pool.submit(Tokenizer, info)
            session = make_session(info, usable_threads(threads), spin=spin)
            return cls(info, session, tokenizer.result())

    @property
    def max_content_tokens(self) -> int:
        """Tokens a text may have, leaving room for <s> and </s>."""
        return self.tokenizer.max_content_tokens

    def token_count(self, text: str) -> int:
        """Content tokens of `text` (no specials)."""
        return self.tokenizer.count(text)

    def passage_text(self, text: str) -> str:
        """`text` as the model wants documents (e5: "passage: " + text)."""
        return self.info.passage_prefix + text

    def query_text(self, text: str) -> str:
        """`text` as the model wants questions (e5: "query: " + text)."""
        return self.info.query_prefix + text

    def windows(self, text: str, *, prefix: str) -> list[tuple[int, int]]:
        """Character spans of `text` such that prefix + span fits the model (Tokenizer.windows)."""
        return self.tokenizer.windows(text, prefix=prefix)

    def _feeds(self, ids: Sequence[Sequence[int] | np.ndarray]) -> dict[str, np.ndarray]:
        """Pad to the longest text in the batch (never to max_tokens)."""
        width = max(map(len, ids))
        input_ids = np.full((len(ids), width), self.info.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        return feeds

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """float32 [n, dimension] for texts used exactly as given (prefixes already added), in
        one run of the model where they fit (embed() with one batch)."""
        return self.embed(texts, batch_size=max(len(texts), 1))

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed many texts in length-sorted batches (little padding); rows keep input order.
        Each text is a pass of its own (embed_passes)."""
        runs = [Pass([text], [("", None)]) for text in texts]
        made = self.embed_passes(runs, batch_size=batch_size, on_batch=on_batch)
        return np.concatenate(made) if made else np.zeros((0, self.dimension), dtype=np.float32)

    def tokenize_pass(self, run: Pass) -> TokenizedPass:
        """A pass's token ids; TextTooLongError when the model cannot read it whole."""
        pieces = [self.tokenizer.encode(text) for text in run.texts]
        starts = [1]
        for piece in pieces:
            starts.append(starts[-1] + len(piece))
        ids = self.tokenizer.with_specials([i for piece in pieces for i in piece])
        if len(ids) > self.info.max_tokens:
            raise TextTooLongError(len(ids) - 2, self.max_content_tokens)
        return TokenizedPass(np.array(ids, dtype=np.int32), starts, run.outputs)

    def embed_passes(
        self,
        passes: Sequence[Pass | TokenizedPass],
        *,
        batch_size: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[np.ndarray]:
        """For each pass, float32 [outputs, dimension]: one run of the model, pooled over each
        output's tokens. Passes run in length-sorted batches, like embed()."""
        runs = [p if isinstance(p, TokenizedPass) else self.tokenize_pass(p) for p in passes]
        lengths = [len(run.ids) for run in runs]
        order = sorted(range(len(runs)), key=lengths.__getitem__)
        out: list[np.ndarray] = [np.zeros((0, self.dimension), dtype=np.float32)] * len(runs)
        for rows in _batches(order, lengths, batch_size, batch_size * TOKENS_PER_ROW):
            feeds = self._feeds([runs[i].ids for i in rows])
            (hidden,) = self.session.run([self.info.output], feeds)
            for row, i in enumerate(rows):
                out[i] = self._pool_pass(hidden[row, : lengths[i]].astype(np.float32), runs[i])
            if on_batch:
                on_batch(sum(len(runs[i].outputs) for i in rows))
        return out

    def _pool_pass(self, hidden: np.ndarray, run: TokenizedPass) -> np.ndarray:
        rows = []
        for _, span in run.outputs:
            if span is None:
                rows.append(hidden[0] if self.info.pooling == "cls" else hidden.mean(axis=0))
            else:
                rows.append(hidden[run.starts[span[0]] : run.starts[span[1] + 1]].mean(axis=0))
        vectors = np.stack(rows).astype(np.float32)
        return normalize(vectors) if self.info.normalize else vectors

    def embed_query(self, question: str, *, statement_weight: float = 0.0) -> np.ndarray:
        """float32 [dimension] for a question (query prefix added here).

        A statement (is_statement) is embedded as a query and as a passage too, leaning
        `statement_weight` of the way to the passage form (indexer.ranking chooses it): e5
        matches a sentence to its translation best symmetrically, a question in query form.
        """
        texts = [self.query_text(question)]
        mixed = (
            statement_weight > 0
            and is_statement(question)
            and self.info.query_prefix != self.info.passage_prefix
        )
        if not mixed:
            return self.embed_batch(texts)[0]
        query, passage = self.embed_batch([*texts, self.passage_text(question)])
        vector = lean(query, passage, statement_weight)
        return normalize(vector[None])[0] if self.info.normalize else vector


class Model:
    """A model directory as a build or an ask needs it: its identity (model.json) at once, its
    tokenizer and onnxruntime session only when first used, so an unchanged re-run from cron
    costs stat calls rather than a model load."""

    def __init__(
        self, path: Path, *, threads: int | None = None, cache: Path | None = None
    ) -> None:
        self.path = Path(path)
        self.info = load_info(self.path)
        self._threads = threads
        self._cache = cache  # where an int8 copy is made (config.cache_dir)
        self._tokenizer: Tokenizer | None = None
        self._embedder: Embedder | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer, loaded on first use."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.info)
        return self._tokenizer

    @property
    def embedder(self) -> Embedder:
        """The embedder for questions, loaded on first use: its threads sleep when idle."""
        return self._loaded(spin=False)

    def _loaded(self, *, spin: bool) -> Embedder:
        """The model's one fp32 embedder, loaded on first use (sharing the tokenizer if already
        loaded); the first use chooses whether its threads spin (make_session)."""
        if self._embedder is None:
            if self._tokenizer is None:
                self._embedder = Embedder.load(self.path, threads=self._threads, spin=spin)
                self._tokenizer = self._embedder.tokenizer
            else:
                session = make_session(self.info, usable_threads(self._threads), spin=spin)
                self._embedder = Embedder(self.info, session, self._tokenizer)
        return self._embedder

    def embedder_for(self, precision: PassagePrecision) -> Embedder:
        """The embedder that runs passes of this precision: the model as it is (kept), or a
        new one on its int8 copy (made once into the cache). The int8 one is not kept: a
        build drops it after its passes, so it never holds both sessions for long. Their
        threads spin while idle (make_session), unless questions loaded the fp32 one first."""
        if precision == "fp32":
            return self._loaded(spin=True)
        session = make_session(self.info, usable_threads(self._threads), self.int8_copy())
        return Embedder(self.info, session, self.tokenizer)

    def int8_copy(self) -> Path:
        """The model's int8 copy for passage passes, made once into the cache
        (ModelPrepareError when it cannot be)."""
        from indexer.models import quantize

        return quantize.int8_model(self.info, self._cache)


def lean(query: np.ndarray, passage: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    """Question vectors in query form moved `weight` of the way to their passage form (not
    normalised); `weight` may be one per row, shaped [n, 1]."""
    return (1 - weight) * query + weight * passage


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
