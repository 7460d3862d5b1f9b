"""What of a document gets a vector: its units (sentences, or windows of long ones) and its
passages (chunks of a few units, sections under a heading). Needs only the model's tokenizer.

A unit is what the model sees as one text; a chunk is up to config.CHUNK_SENTENCES
consecutive units; a section is the units under one heading, as many as the model takes.
Chunks and sections are both passages: runs of units embedded together, so a question can
match a whole paragraph.

A Pass is one run of the model and the vectors pooled from it. By default each unit and each
passage is a pass of its own. With pooled chunks (`index build --chunks pooled`) a chunk
inside a longer section is not embedded as a text of its own but pooled from the section's
pass over its units' tokens ("late chunking"): each token then goes through the model once
for its sentence and once for its section.

With int8 passages (`index build --passage-precision int8`, the default for a new index) every
passage pass runs on an int8 copy of the model (indexer.models.quantize), and its vectors' keys
name that copy and its recipe (passage_checksum); units always run on the model as it is.

With averaged sections (`index build --sections averaged`) a section is not a pass at all: its
vector is the mean of the vectors of the chunks covering it, each weighted by its tokens
(Passage.parts), stored after the chunks' passes ran (indexer.build.average_sections). Each
token then goes through the model once for its sentence and once for its chunk.

A Recipe names the three choices; each is recorded in the index.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from indexer import config
from indexer.config import ChunkVectors, PassagePrecision, SectionVectors
from indexer.models import ModelInfo
from indexer.models.quantize import RECIPE
from indexer.split import Sentence, split_document
from indexer.store import PassageKind, vector_key
from indexer.tokenize import Tokenizer

#: Marks the key of a chunk pooled from its section's pass, which no embedded text can have.
LATE = "\x00late "
#: Marks the key of a section averaged from its chunks' vectors (no embedded text has it).
AVERAGED = "\x00averaged "


@dataclass(frozen=True)
class Recipe:
    """How a build makes its passage vectors: chunks embedded or pooled from their section's
    pass, sections embedded or averaged from their chunks, and which copy of the model runs
    the passage passes."""

    chunks: ChunkVectors = config.DEFAULT_CHUNK_VECTORS
    sections: SectionVectors = config.DEFAULT_SECTION_VECTORS
    precision: PassagePrecision = config.DEFAULT_PASSAGE_PRECISION


#: What a build makes when neither the index nor its options choose otherwise.
DEFAULT_RECIPE = Recipe()


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
    #: A chunk pooled from a section's pass: that section's key ("" when embedded alone).
    within: str = ""
    #: A section averaged from its chunks: each chunk's key and its tokens, the weight it
    #: counts with (empty when the section is embedded).
    parts: tuple[tuple[str, int], ...] = ()


@dataclass
class Pass:
    """One run of the model: texts joined into one sequence (the first carries the passage
    prefix), and the vectors pooled from its token states. Each output is (key, span): span
    None pools every token (the text as if embedded alone), (a, b) the tokens of texts a..b.
    """

    texts: list[str]
    outputs: list[tuple[str, tuple[int, int] | None]] = field(default_factory=list)
    #: Which copy of the model runs it: units always "fp32", passages as the index chose.
    precision: PassagePrecision = "fp32"

    @property
    def keys(self) -> list[str]:
        """The keys of the vectors this pass makes."""
        return [key for key, _ in self.outputs]


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


def passage_checksum(checksum: str, precision: PassagePrecision) -> str:
    """What names the model behind a passage vector in its key: the model's checksum, marked
    with the copy's recipe when an int8 copy of it makes the vector (a new recipe makes new
    vectors)."""
    return checksum if precision == "fp32" else f"{checksum} {precision} {RECIPE}"


def make_passages(
    units: list[Unit], tokenizer: Tokenizer, recipe: Recipe = DEFAULT_RECIPE
) -> list[Passage]:
    """A document's chunks, then its sections that are not also a chunk, made as `recipe`
    says: with pooled chunks, a chunk inside a longer section is pooled from that section's
    pass (Passage.within); with averaged sections, a section is the mean of its chunks
    (Passage.parts). Keys name the copy of the model that makes the passages (a one-unit
    chunk keeps its unit's vector)."""
    checksum = passage_checksum(tokenizer.model.checksum, recipe.precision)
    chunks = make_chunks(units, tokenizer, checksum=checksum)
    sections = make_sections(units, tokenizer, chunks, checksum=checksum)
    info = tokenizer.model
    if recipe.chunks == "pooled" and info.pooling == "mean":
        # Joined token by token, a section may come out a token or two longer than counted.
        whole = [s for s in sections if pass_tokens(s, units, tokenizer) <= info.max_tokens]
        return [_pooled(c, whole, units, info, checksum) for c in chunks] + sections
    if recipe.sections == "averaged":
        return chunks + [_averaged(s, chunks, tokenizer, checksum) for s in sections]
    return chunks + sections


def _pooled(
    chunk: Passage, sections: list[Passage], units: list[Unit], info: ModelInfo, checksum: str
) -> Passage:
    """The chunk pooled from the section holding it, if any; else the chunk as it is. A
    one-unit chunk keeps its unit's vector."""
    if chunk.key == units[chunk.first].key:
        return chunk
    for section in sections:
        if section.first <= chunk.first and chunk.last <= section.last:
            span = f"{chunk.first - section.first}-{chunk.last - section.first}"
            text = f"{LATE}{span}\n{info.passage_prefix}{section.text}"
            return replace(chunk, key=vector_key(checksum, text), within=section.key)
    return chunk


def _averaged(
    section: Passage, chunks: list[Passage], tokenizer: Tokenizer, checksum: str
) -> Passage:
    """The section as the mean of the chunks covering any of its units, each weighted by the
    tokens it was embedded with; its key names those chunks and weights."""
    prefix = tokenizer.model.passage_prefix
    parts = tuple(
        (c.key, tokenizer.count(prefix + c.text))
        for c in chunks
        if c.first <= section.last and section.first <= c.last
    )
    text = AVERAGED + "\n".join(f"{key} {tokens}" for key, tokens in parts)
    return replace(section, key=vector_key(checksum, text), parts=parts)


def _head(section: Passage, units: list[Unit], prefix: str) -> str:
    """What a section's pass reads before its first unit: the prefix and any heading text
    the section carries in front."""
    joined = _joined(units[section.first : section.last + 1])
    return (prefix + section.text[: len(section.text) - len(joined)]).rstrip()


def _pass_texts(section: Passage, units: list[Unit], prefix: str) -> list[str]:
    return [_head(section, units, prefix)] + [
        u.text for u in units[section.first : section.last + 1]
    ]


def pass_tokens(section: Passage, units: list[Unit], tokenizer: Tokenizer) -> int:
    """Tokens of a section's pass, with <s> and </s>."""
    texts = _pass_texts(section, units, tokenizer.model.passage_prefix)
    return sum(len(tokenizer.encode(t)) for t in texts) + 2


def make_passes(
    units: list[Unit],
    passages: list[Passage],
    prefix: str,
    precision: PassagePrecision = "fp32",
) -> list[Pass]:
    """The runs of the model a document needs: each unit and each passage embedded alone,
    except chunks pooled from their section, which ride on that section's pass, and averaged
    sections, which need none. Passages run on the `precision` copy of the model
    (make_passages keyed them for it)."""
    passes = [Pass([prefix + u.text], [(u.key, None)]) for u in units]
    unit_keys = {u.key for u in units}
    pooled: dict[str, list[Passage]] = {}
    for p in passages:
        if p.within:
            pooled.setdefault(p.within, []).append(p)
    for p in passages:
        if p.within:
            continue
        if p.key in unit_keys or p.parts:  # a one-unit chunk, or an averaged section
            continue
        inside = pooled.get(p.key, [])
        if not inside:
            passes.append(Pass([prefix + p.text], [(p.key, None)], precision))
            continue
        texts = _pass_texts(p, units, prefix)
        spans = [(c.key, (c.first - p.first + 1, c.last - p.first + 1)) for c in inside]
        passes.append(Pass(texts, [(p.key, None), *spans], precision))
    return passes


def make_sections(
    units: list[Unit], tokenizer: Tokenizer, chunks: list[Passage], *, checksum: str = ""
) -> list[Passage]:
    """The runs of units under one heading, each as long as the model takes (a long section
    is cut into several); a run that is also a chunk is left out, the chunk stands for it."""
    known = {(c.first, c.last) for c in chunks}
    sections = make_chunks(units, tokenizer, size=None, kind="section", checksum=checksum)
    return [s for s in sections if (s.first, s.last) not in known]


def make_chunks(
    units: list[Unit],
    tokenizer: Tokenizer,
    *,
    size: int | None = config.CHUNK_SENTENCES,
    kind: PassageKind = "chunk",
    checksum: str = "",
) -> list[Passage]:
    """Group consecutive units into runs of up to `size` units (None: no limit) that fit the
    model.

    A heading starts a new run, and the runs after it under the same heading carry the
    heading's text in front, so a passage says what it is about. A run of one unit with no
    heading in front has the unit's own text and key, so it costs no extra embedding.
    `checksum` names the model that makes the others' vectors (default: the tokenizer's).
    """
    prefix = tokenizer.model.passage_prefix
    checksum = checksum or tokenizer.model.checksum
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
        alone = first == last and text == units[first].text
        key = units[first].key if alone else vector_key(checksum, prefix + text)
        passages.append(Passage(first, last, text, key, kind))
        first = last + 1
    return passages


def _joined(units: list[Unit]) -> str:
    return " ".join(u.text for u in units)


def _window_of(sentence: Sentence, text: str) -> Sentence:
    # Position -1 marks a window of a long sentence; positions are renumbered when stored.
    return replace(sentence, text=text, position=-1)
