"""What of a document gets a vector: its units (sentences, or windows of long ones) and its
passages (chunks of a few units, sections under a heading). Needs only the model's tokenizer.

A unit is what the model sees as one text; a chunk is up to config.CHUNK_SENTENCES
consecutive units; a section is the units under one heading, as many as the model takes.
Chunks and sections are both passages: runs of units embedded together, so a question can
match a whole paragraph.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from indexer import config
from indexer.split import Sentence, split_document
from indexer.store import PassageKind, vector_key
from indexer.tokenize import Tokenizer


@dataclass
class Unit:
    """One stored sentence (or one window of a long sentence) before it has an id."""

    sentence: Sentence
    text: str
    key: str

    @property
    def windowed(self) -> bool:
        """True for a window cut from a sentence longer than the model takes."""
        return self.sentence.position < 0


@dataclass
class Passage:
    """A run of consecutive units (first..last) embedded together: a chunk or a section."""

    first: int
    last: int
    text: str
    key: str
    kind: PassageKind = "chunk"


def make_units(text: str, fmt: str, tokenizer: Tokenizer) -> list[Unit]:
    """Split a document's text and window sentences longer than the model's limit."""
    prefix = tokenizer.model.passage_prefix
    checksum = tokenizer.model.checksum
    units: list[Unit] = []
    for sentence in split_document(text, fmt):
        if sentence.kind == "meta":
            continue
        spans = tokenizer.windows(sentence.text, prefix=prefix)
        for start, end in spans:
            piece = sentence.text[start:end].strip()
            if not piece:
                continue
            part = sentence if len(spans) == 1 else _window_of(sentence, piece)
            units.append(Unit(sentence=part, text=piece, key=vector_key(checksum, prefix + piece)))
    return units


def make_passages(units: list[Unit], tokenizer: Tokenizer) -> list[Passage]:
    """A document's chunks, then its sections that are not also a chunk."""
    chunks = make_chunks(units, tokenizer)
    return chunks + make_sections(units, tokenizer, chunks)


def make_sections(units: list[Unit], tokenizer: Tokenizer, chunks: list[Passage]) -> list[Passage]:
    """The runs of units under one heading, each as long as the model takes (a long section
    is cut into several); a run that is also a chunk is left out, the chunk stands for it."""
    known = {(c.first, c.last) for c in chunks}
    sections = make_chunks(units, tokenizer, size=None, kind="section")
    return [s for s in sections if (s.first, s.last) not in known]


def make_chunks(
    units: list[Unit],
    tokenizer: Tokenizer,
    *,
    size: int | None = config.CHUNK_SENTENCES,
    kind: PassageKind = "chunk",
) -> list[Passage]:
    """Group consecutive units into runs of up to `size` units (None: no limit) that fit the
    model.

    A heading starts a new run, and the runs after it under the same heading carry the
    heading's text in front, so a passage says what it is about. A run of one unit with no
    heading in front has the unit's own text and key, so it costs no extra embedding.
    """
    prefix = tokenizer.model.passage_prefix
    checksum = tokenizer.model.checksum
    limit = tokenizer.max_content_tokens

    def fits(context: str, first: int, last: int) -> bool:
        text = context + _joined(units[first : last + 1])
        return tokenizer.count(prefix + text) <= limit

    passages: list[Passage] = []
    heading = ""
    first = 0
    while first < len(units):
        if units[first].sentence.kind == "heading":
            heading, context = units[first].text, ""
        else:
            context = heading + "\n" if heading else ""
        if context and not fits(context, first, first):
            context = ""
        last = first
        while (
            last + 1 < len(units)
            and (size is None or last + 1 - first < size)
            and units[last + 1].sentence.kind != "heading"
            and fits(context, first, last + 1)
        ):
            last += 1
        text = context + _joined(units[first : last + 1])
        passages.append(Passage(first, last, text, vector_key(checksum, prefix + text), kind))
        first = last + 1
    return passages


def _joined(units: list[Unit]) -> str:
    return " ".join(u.text for u in units)


def _window_of(sentence: Sentence, text: str) -> Sentence:
    # Position -1 marks a window of a long sentence; positions are renumbered when stored.
    return replace(sentence, text=text, position=-1)
