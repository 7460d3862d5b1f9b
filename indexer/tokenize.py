"""Text -> model token ids with SentencePiece, and windows of long text that fit the model."""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import accumulate, pairwise

import sentencepiece as spm

from indexer.errors import ModelDirError, TextTooLongError
from indexer.models import ModelInfo

#: In the XLM-R vocabulary spm's <unk> (0) is model id 3; every other spm id i is model id i + 1.
XLMR_UNK = 3

#: SentencePiece files being read ahead of use (path -> the load in progress), see preload().
_AHEAD: dict[str, Future[spm.SentencePieceProcessor]] = {}


def preload(info: ModelInfo) -> None:
    """Start reading the model's SentencePiece file in a background thread; the next
    Tokenizer(info) takes it. A 250,000-piece model takes ~0.35 s, which a cold `index ask`
    can spend importing onnxruntime and faiss instead of waiting."""
    path = str(info.tokenizer.file)
    if path not in _AHEAD:
        _AHEAD[path] = ThreadPoolExecutor(max_workers=1).submit(_read, path)


def _read(path: str) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=path)


class Tokenizer:
    """A model directory's sentencepiece tokenizer plus its id rule and NFKC setting."""

    def __init__(self, info: ModelInfo) -> None:
        self.model = info
        self.info = info.tokenizer
        ahead = _AHEAD.pop(str(self.info.file), None)
        try:
            self.sp = ahead.result() if ahead else _read(str(self.info.file))
        except (OSError, RuntimeError) as e:
            raise ModelDirError(
                f"model directory {info.path}: {self.info.file.name} is not a sentencepiece "
                f"model ({e}) — copy the right tokenizer file there"
            ) from e

    def normalize(self, text: str) -> str:
        """NFKC when the model asks for it (half-width katakana, full-width digits...)."""
        return unicodedata.normalize("NFKC", text) if self.info.nfkc else text

    def _model_ids(self, sp_ids: list[int]) -> list[int]:
        if self.info.id_rule == "identity":
            return sp_ids
        return [XLMR_UNK if i == 0 else i + 1 for i in sp_ids]

    def encode(self, text: str) -> list[int]:
        """Content token ids of `text`, without <s> and </s>."""
        return self._model_ids(self.sp.encode(self.normalize(text)))

    @property
    def max_content_tokens(self) -> int:
        """Tokens a text may have, leaving room for <s> and </s>."""
        return self.model.max_tokens - 2

    def count(self, text: str) -> int:
        """Content tokens of `text` (no specials)."""
        return len(self.encode(text))

    def windows(self, text: str, *, prefix: str) -> list[tuple[int, int]]:
        """Character spans of `text` such that prefix + span fits the model; one span if it fits."""
        limit = self.max_content_tokens
        if self.count(prefix + text) <= limit:
            return [(0, len(text))]
        budget = limit - self.count(prefix)
        while budget > 0:
            spans = self.spans(text, budget)
            # Token counts are not quite additive (prefix and text can merge at the seam).
            if all(self.count(prefix + text[a:b]) <= limit for a, b in spans):
                return spans
            budget -= 1
        raise TextTooLongError(self.count(prefix), limit)

    def with_specials(self, ids: list[int]) -> list[int]:
        """<s> ids </s>."""
        return [self.info.bos_id, *ids, self.info.eos_id]

    def spans(self, text: str, max_content_tokens: int) -> list[tuple[int, int]]:
        """Character spans covering `text`, each encoding to at most `max_content_tokens` ids."""
        if max_content_tokens < 1:
            raise ValueError("max_content_tokens must be at least 1")
        # Window boundaries are piece starts, so windows never cut a token; bounds[-1] = the end.
        bounds = [*self._piece_starts(text), len(text)]
        bounds[0] = 0
        cuts = [0]
        while cuts[-1] < len(bounds) - 1:
            cuts.append(self._window_end(text, bounds, cuts[-1], max_content_tokens))
        return [(bounds[a], bounds[b]) for a, b in pairwise(cuts)]

    def _piece_starts(self, text: str) -> list[int]:
        """Character offset in `text` where each piece begins (pieces with no text dropped)."""
        # spm reports byte offsets into its (raw) input, mapped back through its own normaliser.
        pieces = self.sp.encode(text, out_type="proto").pieces
        char_starts = list(accumulate((len(c.encode()) for c in text), initial=0))
        starts = {bisect_right(char_starts, p.begin) - 1 for p in pieces if p.end > p.begin}
        return sorted(starts) or [0]

    def _window_end(self, text: str, bounds: list[int], first: int, limit: int) -> int:
        """Index into bounds where the window starting at `first` ends (at most `limit` ids)."""
        last = min(first + limit, len(bounds) - 1)
        if last < len(bounds) - 1:
            last = self._word_start(text, bounds, first + limit // 2, last)
        while last > first + 1:
            # Re-encoding the window itself is the ground truth (NFKC, dummy prefix at the cut).
            excess = len(self.encode(text[bounds[first] : bounds[last]])) - limit
            if excess <= 0:
                break
            last = max(first + 1, last - excess)
        return last

    @staticmethod
    def _word_start(text: str, bounds: list[int], low: int, high: int) -> int:
        """The last bound in (low, high] that starts a word, else high (cut inside a word)."""
        for k in range(high, max(low, 0), -1):
            if text[bounds[k]].isspace() or text[bounds[k] - 1].isspace():
                return k
        return high
