"""Document text → sentences: find each format's blocks, then sentence boundaries inside prose.

Pure functions, no I/O. Every non-whitespace character of a document ends up inside exactly one
sentence span, so `text[char_start:char_end]` always points back at the raw source.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import operator
import re
import textwrap
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from indexer import config

Kind = Literal["text", "heading", "list", "table", "code", "meta"]
Attach = Literal["prev", "next"]


@dataclass(frozen=True)
class Sentence:
    """One unit to embed: a sentence of prose, or a whole heading, table row, code block or meta."""

    text: str
    kind: Kind
    line_start: int
    line_end: int
    char_start: int
    char_end: int
    position: int
    page: int | None = None  # 1-based page (PDF) or slide (PPTX); None for unpaged formats


#: How each document format is split: extracted formats are plain text or Markdown (formats.py).
SYNTAX = {"pdf": "text", **dict.fromkeys(("html", "docx", "pptx", "odt"), "markdown")}
#: Formats whose form feeds separate numbered pages (slides for PPTX).
PAGED = frozenset({"pdf", "pptx"})


def split_document(text: str, fmt: str) -> list[Sentence]:
    """Split a document of a format in config.TEXT_SUFFIXES into sentences and structural units.

    A form feed is a hard boundary: no unit spans two pages. In paged formats each sentence
    gets the number of its page.
    """
    syntax = SYNTAX.get(fmt, fmt)
    units: list[tuple[int, _Unit]] = []
    start = 0
    for page, segment in enumerate(text.split("\f"), 1):
        shifted = [
            (page, replace(unit, start=unit.start + start, end=unit.end + start))
            for unit in _split_units(segment, syntax, top=start == 0)
        ]
        units.extend(shifted)
        start += len(segment) + 1
    return _to_sentences(units, text, paged=fmt in PAGED)


def _split_units(text: str, syntax: str, *, top: bool) -> list[_Unit]:
    """The units of one page, with offsets into that page's text."""
    lines = _lines(text)
    if syntax == "markdown":
        blocks = list(_md_blocks(lines, top=top))
    elif syntax == "rst":
        blocks = list(_rst_blocks(lines))
    else:
        blocks = _text_blocks(lines)
    units = [unit for block in blocks for unit in _block_units(block, syntax)]
    units = _merge_short_blocks(_absorb_fillers(units, text))
    return _cover_gaps(units, text)


def split_sentences(paragraph: str) -> list[tuple[int, int]]:
    """Sentence spans in one block of prose: trimmed, in order, covering every non-space char."""
    cuts = [0, *_boundaries(paragraph), len(paragraph)]
    spans = []
    for start, end in itertools.pairwise(cuts):
        span = _trim(paragraph, start, end)
        if span:
            spans.append(span)
    return _cap_spans(paragraph, _merge_fragments(paragraph, spans))


def _cap_spans(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Cut spans longer than MAX_SENTENCE_CHARS (a base64 blob, a minified script, a log line).

    A sentence that long is windowed anyway; cutting it here keeps memory and tokenizer time
    proportional to the text however the text is shaped.
    """
    capped: list[tuple[int, int]] = []
    for start, end in spans:
        while end - start > config.MAX_SENTENCE_CHARS:
            cut = _cut_point(text, start, start + config.MAX_SENTENCE_CHARS)
            piece = _trim(text, start, cut)
            if piece:
                capped.append(piece)
            start = cut
        piece = _trim(text, start, end)
        if piece:
            capped.append(piece)
    return capped


def _cut_point(text: str, start: int, limit: int) -> int:
    """After the last space or comma in the second half of text[start:limit], else at limit."""
    floor = (start + limit) // 2
    best = max(text.rfind(char, floor, limit) for char in " \n\t、，,")
    return best + 1 if best > floor else limit


# ---------------------------------------------------------------- sentence boundaries in prose

#: Full stops and question marks of other scripts (also a regex character class): Devanagari
#: danda and double danda (also Bengali and other Indic scripts), Arabic question mark, Urdu full
#: stop, Armenian full stop, Ethiopic full stop and question mark, Myanmar section mark, Khmer
#: khan and bariyoosan, and the Tibetan shads (U+0F0D-U+0F12), which end clauses as well as
#: sentences. Like "。" they end a sentence with or without a space after them.
_SCRIPT_STOPS = "।॥؟۔։።፧။។៕" + "".join(map(chr, range(0x0F0D, 0x0F13)))
_TERMINATOR = re.compile(
    rf"(?P<term>[。！？．!?.…{_SCRIPT_STOPS}]+)(?P<close>[」』）)】〕〉》\]\"'”’»]*)"
    # a footnote reference after the full stop belongs to the sentence: "... end. [#]_", "end.[^1]"
    r"(?:[ \t]*\[(?:#[\w-]*|\*|\d+)\]_|\[\^[^\]\s]+\])?",
)
_STRONG = re.compile(f"[。！？．{_SCRIPT_STOPS}]")
_BANG = re.compile(r"[!?]+")
_ELLIPSIS = re.compile(r"\.{2,}|…+")
_BRACKET = re.compile(r"[「」『』（）()【】〔〕“”〈〉《》]|(`+)[^`]+?\1")
_OPENERS = {"「": "」", "『": "』", "（": "）", "(": ")", "【": "】", "〔": "〕", "“": "”"}
_OPENERS |= {"〈": "〉", "《": "》"}
_CLOSERS = {close: open_ for open_, close in _OPENERS.items()}
_NEXT_START = re.compile(r"\s+[\"'“‘(\[「『【（*_`<]*(.)", re.S)
_TOKEN_BEFORE = re.compile(r"(?:(\S+)\s+)?(\S+)$")
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")


def _words(text: str) -> frozenset[str]:
    """A set of words written as one string."""
    return frozenset(text.split())


_FOLLOWING = re.compile(r"\s*(\S)")
_CONTINUES_QUOTE = re.compile(r"[\u3041-\u309f、，,]")
#: A stop followed by another one ("। ॥", Tibetan "། །") keeps the whole run in its sentence.
_NEVER_STARTS = frozenset("、，,。．" + _SCRIPT_STOPS)
#: A bracket pair longer than this is probably unbalanced text, not a quote: split inside it.
_MAX_QUOTE_CHARS = 500
_ABBREVIATIONS = _words(
    "e.g i.e etc vs cf al approx ca eg ie viz resp incl excl esp mr mrs ms dr prof st jr sr "
    "rev hon pres gov gen sen sens rep reps lt col capt sgt cmdr adm maj mt ft inc ltd co "
    "corp dept est fig figs eq eqs vol vols ch sec ed eds pp jan feb mar apr jun jul aug "
    "sep sept oct nov dec bzw usw vgl ggf evtl inkl sog nr str abs jh jhd hr fr"
)
#: Chinese, Japanese and full-width characters (a regex character class body).
CJK = (
    "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
)
_CJK_CHAR = re.compile(f"[{CJK}]")
_CJK_LINE_BREAK = re.compile(f"(?<=[{CJK}])[ \\t]*\\n\\s*(?=[{CJK}])")
#: Thai and Lao write no spaces between words; a space separates phrases and sentences. So a
#: space between a letter that can end a word and one that can start a word ends a sentence.
#: Digits, "ๆ"/"ໆ" (repeat the word) and "ฯ"/"ຯ" (abbreviation) are followed by a space
#: by convention, and a space next to Latin text or digits is only a word space.
_THAI_LAO_END = (
    "\u0e01-\u0e2e\u0e30-\u0e3a\u0e40-\u0e45\u0e47-\u0e4e"
    "\u0e81-\u0eae\u0eb0-\u0ec4\u0ec8-\u0ece\u0edc-\u0edf"
)
_THAI_LAO_START = "\u0e01-\u0e2e\u0e40-\u0e44\u0e81-\u0eae\u0ec0-\u0ec4\u0edc-\u0edf"
_PHRASE_END = re.compile(f"[{_THAI_LAO_END}](?=(\\s+)[{_THAI_LAO_START}])")


def _boundaries(paragraph: str) -> Iterator[int]:
    """Offsets right after each sentence end: a terminator plus closing brackets, or the last
    Thai or Lao letter before a space."""
    pairs: list[tuple[int, int]] | None = None
    candidates = heapq.merge(
        _TERMINATOR.finditer(paragraph),
        _PHRASE_END.finditer(paragraph),
        key=operator.methodcaller("end"),
    )
    for match in candidates:
        if match.end() >= len(paragraph):
            break
        if pairs is None:
            pairs = _quoted_ranges(paragraph)
        if match.re is _PHRASE_END:
            if _is_phrase_boundary(match, pairs):
                yield match.end()
        elif _is_boundary(paragraph, match, pairs):
            yield match.end()


def _is_phrase_boundary(match: re.Match[str], pairs: list[tuple[int, int]]) -> bool:
    """Whether a space after a Thai or Lao letter ends a sentence: outside brackets and quotes,
    and not a bare line break (hard-wrapped lines, as in PDF text, break between any words)."""
    return bool(match.group(1).strip("\r\n")) and _enclosing(pairs, match.end()) is None


def _is_boundary(text: str, match: re.Match[str], pairs: list[tuple[int, int]]) -> bool:
    """Whether a terminator candidate really ends a sentence."""
    start, end, term = match.start(), match.end(), match.group("term")
    strong = bool(_STRONG.search(term)) or (
        _BANG.fullmatch(term) is not None and start > 0 and _is_cjk(text[start - 1])
    )
    if term == "．" and text[start - 1 : start].isdigit() and text[end : end + 1].isdigit():
        return False  # full-width decimal "１．５"
    quote = _enclosing(pairs, start)
    if quote is not None:
        if end <= quote[1]:
            return False
        # The terminator closes a quote: 「…。」と言った goes on, 「…。」次の文 does not.
        if strong:
            following = _FOLLOWING.match(text, end)
            return following is None or not _CONTINUES_QUOTE.match(following.group(1))
    if strong:
        following = _FOLLOWING.match(text, end)
        return following is None or following.group(1) not in _NEVER_STARTS
    return _western_boundary(text, start, end, term)


def _western_boundary(text: str, start: int, end: int, term: str) -> bool:
    """A "." "!" "?" ends a sentence when whitespace and a plausible sentence start follow."""
    if not text[end].isspace() or _ELLIPSIS.fullmatch(term):
        return False
    if term == "." and _is_abbreviation(text, start):
        return False
    following = _NEXT_START.match(text, end)
    if following is None:
        return False
    char = following.group(1)
    return char.isalpha() and not char.islower()


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the word before the dot at `dot` is an abbreviation, an initial or an ordinal."""
    match = _TOKEN_BEFORE.search(text, max(0, dot - 60), dot)
    if match is None:
        return False
    previous, token = match.group(1) or "", match.group(2).lstrip("([\"'“‘*_`")
    if token.lower() in _ABBREVIATIONS or _DOTTED.fullmatch(token):
        return True
    if len(token) == 1 and token.isupper():
        return True  # an initial: "J. R. R. Tolkien"
    # German ordinals ("am 3. Oktober") are far more common than a sentence ending in "in 3.",
    # but "a Pixel 8. The" ends one.
    return token.isdigit() and len(token) <= 2 and (not previous or previous.islower())


def _quoted_ranges(text: str) -> list[tuple[int, int]]:
    """Outermost matched bracket/quote pairs and inline code spans, as (open, close) offsets."""
    stack: list[tuple[str, int]] = []
    pairs: list[tuple[int, int]] = []
    for match in _BRACKET.finditer(text):
        char, pos = match.group(), match.start()
        if match.group(1):
            pairs.append((pos, match.end() - 1))
        elif char in _OPENERS:
            stack.append((char, pos))
        else:
            _close_pair(stack, pairs, _CLOSERS[char], pos)
    return _outermost(pairs)


def _close_pair(
    stack: list[tuple[str, int]], pairs: list[tuple[int, int]], opener: str, pos: int
) -> None:
    """Match a closing bracket with the nearest open one of its type; unmatched ones are ignored."""
    for depth in range(len(stack) - 1, -1, -1):
        if stack[depth][0] == opener:
            start = stack[depth][1]
            del stack[depth:]
            if pos - start <= _MAX_QUOTE_CHARS:
                pairs.append((start, pos))
            return


def _outermost(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drop pairs that start inside an earlier kept pair."""
    kept: list[tuple[int, int]] = []
    for start, end in sorted(pairs):
        if not kept or start > kept[-1][1]:
            kept.append((start, end))
    return kept


def _enclosing(pairs: list[tuple[int, int]], pos: int) -> tuple[int, int] | None:
    """The pair with open < pos < close, if any."""
    index = bisect.bisect_left(pairs, (pos, -1)) - 1
    if index >= 0 and pairs[index][0] < pos < pairs[index][1]:
        return pairs[index]
    return None


def _merge_fragments(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join too-short fragments to the previous span (or the next one when first)."""
    merged: list[tuple[int, int]] = []
    carry: int | None = None
    for start, end in spans:
        if carry is not None:
            start, carry = carry, None
        if _is_fragment(text[start:end]):
            if merged:
                merged[-1] = (merged[-1][0], end)
            else:
                carry = start
            continue
        merged.append((start, end))
    if carry is not None:
        merged.append((carry, spans[-1][1]))
    return merged


def _is_fragment(text: str) -> bool:
    """Too short to stand alone, or no letter or digit at all."""
    return _is_short(text) or not _has_word(text)


def _is_short(text: str) -> bool:
    """Fewer than MIN_SENTENCE_CHARS characters as a reader counts them.

    Whitespace is not counted, and neither are combining marks: a Thai vowel or tone mark, or a
    Devanagari vowel sign, belongs to the letter it is written with. So the minimum means the
    same length in every script: a Thai phrase of a word or two (split off at a space) joins
    its neighbour as "OK." does in English.
    """
    count = 0
    for char in text:
        if not char.isspace() and not unicodedata.category(char).startswith("M"):
            count += 1
            if count >= config.MIN_SENTENCE_CHARS:
                return False
    return True


def _has_word(text: str) -> bool:
    """Whether the text has any letter or digit."""
    return any(char.isalnum() for char in text)


def _is_cjk(char: str) -> bool:
    """Chinese, Japanese and full-width characters: written without spaces between words."""
    return _CJK_CHAR.match(char) is not None


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without surrounding whitespace, or None when it is all whitespace."""
    piece = text[start:end]
    stripped = piece.lstrip()
    if not stripped:
        return None
    start += len(piece) - len(stripped)
    return start, start + len(stripped.rstrip())


# ---------------------------------------------------------------- blocks shared by all formats


@dataclass(frozen=True)
class _Line:
    """One line of a (possibly nested) block and where its text starts in the document."""

    start: int
    text: str


@dataclass(frozen=True)
class _Block:
    """A structural unit found by a format reader, before sentence splitting."""

    kind: Kind
    lines: Sequence[_Line]
    text: str | None = None  # None: prose to split; else the unit's whole text ("" = markup only)
    attach: Attach = "prev"  # which neighbour a markup-only or too short unit joins


@dataclass(frozen=True)
class _Unit:
    """A sentence being assembled: document span, cleaned text, and how it may be merged."""

    kind: Kind
    start: int
    end: int
    text: str
    attach: Attach
    prose: bool

    @property
    def filler(self) -> bool:
        """Markup or punctuation only: joins a neighbour instead of standing alone."""
        if self.kind == "code" and self.text:
            return False
        return not _has_word(self.text)


Reader = Callable[[Sequence[_Line], int], tuple[list[_Block], int] | None]


def _lines(text: str) -> list[_Line]:
    """The document's lines with their start offsets."""
    lines, start = [], 0
    for part in text.split("\n"):
        lines.append(_Line(start, part))
        start += len(part) + 1
    return lines


def _read_blocks(lines: Sequence[_Line], readers: Sequence[Reader]) -> Iterator[_Block]:
    """Run the first reader that accepts each non-blank line; the last reader must accept all."""
    index = 0
    while index < len(lines):
        if _blank(lines[index]):
            index += 1
            continue
        for reader in readers:
            result = reader(lines, index)
            if result is not None:
                blocks, index = result
                yield from blocks
                break


def _blank(line: _Line) -> bool:
    """Whether the line is empty or whitespace."""
    return not line.text.strip()


def _indent(text: str) -> int:
    """Leading indentation in columns (a tab advances to the next multiple of 4)."""
    width = 0
    for char in text:
        if char == " ":
            width += 1
        elif char == "\t":
            width += 4 - width % 4
        else:
            break
    return width


def _dedent(line: _Line, columns: int) -> _Line:
    """The line with up to `columns` columns of indentation removed."""
    width = cut = 0
    for char in line.text:
        if width >= columns or char not in " \t":
            break
        width += 1 if char == " " else 4 - width % 4
        cut += 1
    return _Line(line.start + cut, line.text[cut:])


def _dedent_all(lines: Sequence[_Line]) -> list[_Line]:
    """Remove the indentation common to all non-blank lines."""
    widths = [_indent(line.text) for line in lines if not _blank(line)]
    columns = min(widths, default=0)
    return [_dedent(line, columns) for line in lines]


def _joined(lines: Sequence[_Line]) -> str:
    """The lines' text joined with newlines."""
    return "\n".join(line.text for line in lines)


def _whole_text(lines: Sequence[_Line]) -> str:
    """Text of a verbatim block: common indentation removed, blank edges dropped."""
    return textwrap.dedent(_joined(lines)).strip()


def _prose(kind: Kind, lines: Sequence[_Line]) -> list[_Block]:
    """A prose block to be split into sentences (nothing when all blank)."""
    lines = _trim_blank_lines(lines)
    return [_Block(kind, lines)] if lines else []


def _trim_blank_lines(lines: Sequence[_Line]) -> Sequence[_Line]:
    """Drop blank lines at both ends."""
    start, end = 0, len(lines)
    while start < end and _blank(lines[start]):
        start += 1
    while end > start and _blank(lines[end - 1]):
        end -= 1
    return lines[start:end]


def _relabel(blocks: Sequence[_Block], kind: Kind) -> list[_Block]:
    """Prose inside a list item is of kind "list"."""
    return [replace(block, kind=kind) if block.kind == "text" else block for block in blocks]


# ---------------------------------------------------------------- blocks → units


def _block_units(block: _Block, fmt: str) -> list[_Unit]:
    """A whole block becomes one unit; a prose block one unit per sentence."""
    if block.text is not None:
        span = _lines_span(block.lines)
        if span is None:
            return []
        text = block.text.strip()
        if len(text) > config.MAX_SENTENCE_CHARS:
            return _long_block_units(block)
        return [_Unit(block.kind, span[0], span[1], text, block.attach, prose=False)]
    return list(_prose_units(block, fmt))


def _long_block_units(block: _Block) -> list[_Unit]:
    """A code block or table row too long for one unit, cut into pieces of its raw text."""
    units = []
    for line in block.lines:
        for start, end in _cap_spans(line.text, [(0, len(line.text))]):
            text = line.text[start:end]
            units.append(
                _Unit(block.kind, line.start + start, line.start + end, text, "prev", False)
            )
    merged: list[_Unit] = []
    for unit in units:
        if (
            merged
            and merged[-1].end - merged[-1].start + len(unit.text) < config.MAX_SENTENCE_CHARS
        ):
            last = merged[-1]
            text = f"{last.text}\n{unit.text}"
            merged[-1] = replace(last, end=unit.end, text=text)
        else:
            merged.append(unit)
    return merged


def _lines_span(lines: Sequence[_Line]) -> tuple[int, int] | None:
    """Document span from the first to the last non-whitespace character of the lines."""
    content = [line for line in lines if not _blank(line)]
    if not content:
        return None
    first, last = content[0], content[-1]
    start = first.start + len(first.text) - len(first.text.lstrip())
    return start, last.start + len(last.text.rstrip())


def _prose_units(block: _Block, fmt: str) -> Iterator[_Unit]:
    """Split a prose block into sentences and map their spans back to the document."""
    paragraph = _joined(block.lines)
    to_document = _OffsetMap(block.lines)
    for start, end in split_sentences(paragraph):
        text = _clean(paragraph[start:end], fmt)
        # Markup-only prose (an HTML anchor, an rst "::") belongs to what follows it.
        attach: Attach = "next" if not text else block.attach
        yield _Unit(block.kind, to_document(start), to_document(end - 1) + 1, text, attach, True)


class _OffsetMap:
    """Maps offsets in the newline-joined text of some lines back to document offsets."""

    def __init__(self, lines: Sequence[_Line]) -> None:
        self.joined_starts = list(
            itertools.accumulate((len(line.text) + 1 for line in lines), initial=0)
        )
        self.document_starts = [line.start for line in lines]

    def __call__(self, pos: int) -> int:
        index = bisect.bisect_right(self.joined_starts, pos) - 1
        return self.document_starts[index] + pos - self.joined_starts[index]


def _absorb_fillers(units: list[_Unit], document: str) -> list[_Unit]:
    """Fold markup- and punctuation-only units into a neighbour's span."""
    kept: list[_Unit] = []
    waiting: list[_Unit] = []
    for unit in units:
        if unit.filler:
            if unit.attach == "prev" and kept and not waiting:
                kept[-1] = _combine(kept[-1], unit)
            else:
                waiting.append(unit)
            continue
        for filler in waiting:
            unit = _combine(unit, filler)
        waiting = []
        kept.append(unit)
    if waiting and kept:
        for filler in waiting:
            kept[-1] = _combine(kept[-1], filler)
    elif waiting:
        kept = [_lone_filler(waiting, document)]
    return kept


def _lone_filler(fillers: list[_Unit], document: str) -> _Unit:
    """A document of nothing but markup still needs one unit to cover its characters."""
    return replace(_lone_unit(document, fillers[0].start, fillers[-1].end), kind=fillers[0].kind)


def _lone_unit(document: str, start: int, end: int) -> _Unit:
    """A unit showing the raw text of a span."""
    text = " ".join(document[start:end].split())
    return _Unit("text", start, end, text, "prev", prose=False)


def _combine(host: _Unit, other: _Unit, *, spaced: bool = False) -> _Unit:
    """The host unit extended over another one; prose hosts take its text too."""
    first, second = (host, other) if other.start >= host.start else (other, host)
    text = host.text
    # Markup around an over-long unit widens its span but not its text.
    if host.prose and other.text and len(host.text) + len(other.text) < config.MAX_SENTENCE_CHARS:
        text = f"{first.text} {second.text}" if spaced else _join_text(first.text, second.text)
    return replace(host, start=first.start, end=max(host.end, other.end), text=text)


def _join_text(left: str, right: str) -> str:
    """Join two texts: nothing between CJK characters, one space otherwise."""
    if not left or not right:
        return left or right
    if _is_cjk(left[-1]) and _is_cjk(right[0]):
        return left + right
    return f"{left} {right}"


#: Merging stops growing a unit past this many characters, so a run of short list items
#: becomes a few medium units rather than one huge one.
_MERGE_LIMIT = 300


def _merge_short_blocks(units: list[_Unit]) -> list[_Unit]:
    """A prose block that is one short sentence joins the neighbouring prose unit."""
    merged: list[_Unit] = []
    waiting: _Unit | None = None
    for unit in units:
        if waiting is not None and unit.prose:
            unit, waiting = _combine(unit, waiting, spaced=True), None
        elif waiting is not None:
            merged.append(waiting)
            waiting = None
        if not _is_short_prose(unit):
            merged.append(unit)
        elif unit.attach == "prev" and _can_host(merged[-1] if merged else None):
            merged[-1] = _combine(merged[-1], unit, spaced=True)
        else:
            waiting = unit
    if waiting is not None:
        merged.append(waiting)
    return merged


def _can_host(unit: _Unit | None) -> bool:
    """Whether a unit can take in a short neighbour."""
    return unit is not None and unit.prose and len(unit.text) < _MERGE_LIMIT


def _is_short_prose(unit: _Unit) -> bool:
    """A prose unit below the minimum length."""
    return unit.prose and _is_short(unit.text)


def _cover_gaps(units: list[_Unit], document: str) -> list[_Unit]:
    """Stretch spans over stray markup between units (list bullets, "|", underlines, fences)."""
    if not units:
        span = _trim(document, 0, len(document))
        return [] if span is None else [_lone_unit(document, *span)]
    covered: list[_Unit] = []
    for unit in units:
        gap_start = covered[-1].end if covered else 0
        # Markup on the unit's own line (a bullet, "> ") belongs to it; the rest to the one before.
        cut = max(gap_start, document.rfind("\n", gap_start, unit.start) + 1)
        head = _trim(document, gap_start, cut)
        tail = _trim(document, cut, unit.start)
        if tail:
            unit = replace(unit, start=tail[0])
        if head and covered:
            covered[-1] = replace(covered[-1], end=head[1])
        elif head:
            unit = replace(unit, start=head[0])
        covered.append(unit)
    if covered:
        rest = _trim(document, covered[-1].end, len(document))
        if rest:
            covered[-1] = replace(covered[-1], end=rest[1])
    return covered


def _to_sentences(units: list[tuple[int, _Unit]], document: str, *, paged: bool) -> list[Sentence]:
    """Final records with positions, 1-based line numbers and (paged formats) page numbers."""
    newlines = [match.start() for match in re.finditer("\n", document)]
    return [
        Sentence(
            text=unit.text or " ".join(document[unit.start : unit.end].split()),
            kind=unit.kind,
            line_start=bisect.bisect_left(newlines, unit.start) + 1,
            line_end=bisect.bisect_left(newlines, unit.end - 1) + 1,
            char_start=unit.start,
            char_end=unit.end,
            position=position,
            page=page if paged else None,
        )
        for position, (page, unit) in enumerate(units)
    ]


# ---------------------------------------------------------------- inline markup

_MD_INLINE = re.compile(
    r"(?P<tick>`+)(?P<code>.+?)(?P=tick)"
    r"|!?\[(?P<label>[^\]\n]*)\](?:\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\)|\[[^\]\n]*\])"
    r"|<(?P<url>https?://[^>\s]+)>"
    r"|(?P<br><br\s*/?>)"
    r"|<!--.*?-->|</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"
    r"|(?P<mark>\*\*|~~)(?P<strong>[^\s*~](?:.*?[^\s*~])?)(?P=mark)"
    r"|\*(?P<em>[^\s*](?:[^*\n]*?[^\s*])?)\*"
    r"|\\(?P<escaped>[!-/:-@\[-`{-~])",
    re.S,
)
_RST_INLINE = re.compile(
    r"``(?P<code>.+?)``"
    r"|(?::[\w:+.-]+:)?`(?P<ref>[^`]+?)`(?::[\w:+.-]+:)?_{0,2}"
    r"|\[(?:#[\w-]*|\*|\d+)\]_"
    r"|\*\*(?P<strong>[^*]+?)\*\*"
    r"|\\ "
    r"|(?P<literal>\s*::)$",
    re.S,
)
_RST_REF_TARGET = re.compile(r"\s*<[^<>]+>$")


def _clean(raw: str, fmt: str) -> str:
    """Displayed text: inline markup stripped, lines joined, whitespace collapsed."""
    if fmt == "markdown":
        raw = _MD_INLINE.sub(_md_inline, raw)
    elif fmt == "rst":
        raw = _RST_INLINE.sub(_rst_inline, raw)
    return " ".join(_CJK_LINE_BREAK.sub("", raw).split())


def _md_inline(match: re.Match[str]) -> str:
    """Replacement for one piece of Markdown inline markup."""
    for group in ("code", "label", "url", "strong", "em", "escaped"):
        value = match.group(group)
        if value is not None:
            return value
    return "\n" if match.group("br") else ""


def _rst_inline(match: re.Match[str]) -> str:
    """Replacement for one piece of reStructuredText inline markup."""
    if match.group("code") is not None:
        return match.group("code")
    if match.group("ref") is not None:
        ref = match.group("ref")
        return _RST_REF_TARGET.sub("", ref) or ref.strip("<>")
    if match.group("strong") is not None:
        return match.group("strong")
    literal = match.group("literal")
    if literal is not None:
        # "Example::" reads "Example:"; " ::" and a lone "::" disappear
        return "" if literal.startswith((" ", "\t", "\n")) or match.start() == 0 else ":"
    return ""


# ---------------------------------------------------------------- Markdown

_MD_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_MD_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+|$)")
_MD_ATX_END = re.compile(r"(?:[ \t]+#+)?[ \t]*$|^#+[ \t]*$")
_MD_HEADING_ATTR = re.compile(r"[ \t]*\{[#.][^{}]*\}[ \t]*$")
_MD_SETEXT = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_MD_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_MD_QUOTE = re.compile(r"^ {0,3}> ?")
_MD_ITEM = re.compile(r"^( {0,3})([-+*]|(\d{1,9})[.)])([ \t]+|$)")
_MD_TABLE_SEP = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_MD_CELL = re.compile(r"(?<!\\)\|")
_MD_COMMENT = re.compile(r"^ {0,3}<!--")
_MD_LINK_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*\S")
#: A line that is only a template tag ("{{book.console}}", "{% raw %}") is configuration.
_TEMPLATE_TAG = re.compile(r"^\s*(?:\{\{.*\}\}|\{%.*%\})\s*$")
_MD_RAW_HTML = re.compile(r"^ {0,3}<(script|style|pre|textarea)(?:[\s>]|$)", re.I)
_FRONT_MATTER = {"---": ("---", "..."), "+++": ("+++",)}
_FRONT_MATTER_KEY = re.compile(r"^\s*(?:[\w\"'-]+\s*[:=]|#|$)")


def _md_blocks(lines: Sequence[_Line], *, top: bool = False) -> Iterator[_Block]:
    """Markdown blocks: front matter, code, headings, tables, quotes, list items, paragraphs."""
    start = 0
    if top:
        front = _md_front_matter(lines)
        if front is not None:
            yield from front[0]
            start = front[1]
    yield from _read_blocks(lines[start:], _MD_READERS)


def _md_front_matter(lines: Sequence[_Line]) -> tuple[list[_Block], int] | None:
    """YAML (---) or TOML (+++) front matter on the very first line: one "meta" unit."""
    closers = _FRONT_MATTER.get(lines[0].text.rstrip())
    if closers is None or len(lines) < 2 or not _FRONT_MATTER_KEY.match(lines[1].text):
        return None
    for end in range(1, len(lines)):
        if lines[end].text.rstrip() in closers:
            text = _whole_text(lines[1:end])
            return [_Block("meta", lines[: end + 1], text)], end + 1
    return None


def _md_fence(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """A ``` or ~~~ fenced code block, kept whole; unterminated fences run to the end."""
    match = _MD_FENCE.match(lines[index].text)
    if match is None or (match.group(2)[0] == "`" and "`" in match.group(3)):
        return None
    fence, indent = match.group(2), len(match.group(1))
    end = index + 1
    while end < len(lines) and not _closes_fence(lines[end].text, fence):
        end += 1
    body = [_dedent(line, indent) for line in lines[index + 1 : end]]
    end = min(end + 1, len(lines))
    return [_Block("code", lines[index:end], _whole_text(body))], end


def _closes_fence(text: str, fence: str) -> bool:
    """Whether the line closes a fence opened with `fence`."""
    stripped = text.strip()
    return (
        _indent(text) <= 3 and len(stripped) >= len(fence) and stripped == fence[0] * len(stripped)
    )


def _md_comment(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """An HTML comment block: one "meta" unit (markup only when empty)."""
    if not _MD_COMMENT.match(lines[index].text):
        return None
    end = index
    while end < len(lines) - 1 and "-->" not in lines[end].text:
        end += 1
    raw = _joined(lines[index : end + 1])
    inner = raw.strip()[4:].rsplit("-->", 1)[0]
    return [_Block("meta", lines[index : end + 1], textwrap.dedent(inner).strip())], end + 1


def _md_raw_html(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """A <script>, <style>, <pre> or <textarea> block up to its closing tag, kept whole as code."""
    match = _MD_RAW_HTML.match(lines[index].text)
    if match is None:
        return None
    closing = f"</{match.group(1).lower()}>"
    end = index
    while end < len(lines) - 1 and closing not in lines[end].text.lower():
        end += 1
    block = lines[index : end + 1]
    return [_Block("code", block, _whole_text(block))], end + 1


def _md_heading(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """An ATX heading ("## Title {#id}")."""
    line = lines[index]
    match = _MD_ATX.match(line.text)
    if match is None:
        return None
    title = _MD_ATX_END.sub("", line.text[match.end() :])
    title = _clean(_MD_HEADING_ATTR.sub("", title), "markdown")
    return [_Block("heading", [line], title)], index + 1


def _md_break(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """A thematic break ("---", "***"): markup only."""
    if not _MD_BREAK.match(lines[index].text):
        return None
    return [_Block("text", [lines[index]], "")], index + 1


def _md_table(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """A GFM table: one "table" unit per row; the |---| row joins the header row."""
    if not _md_table_start(lines, index):
        return None
    blocks, end = [], index
    while end < len(lines) and "|" in lines[end].text and not _blank(lines[end]):
        if end > index + 1 and _md_interrupts(lines, end) and not _md_table_start(lines, end):
            break
        line = lines[end]
        is_separator = end == index + 1 or _MD_TABLE_SEP.match(line.text)
        blocks.append(_Block("table", [line], "" if is_separator else _md_row_text(line.text)))
        end += 1
    return blocks, end


def _md_table_start(lines: Sequence[_Line], index: int) -> bool:
    """A row containing "|" followed by a |---| separator row."""
    if index + 1 >= len(lines) or "|" not in lines[index].text:
        return False
    separator = lines[index + 1].text
    return "|" in separator and _MD_TABLE_SEP.match(separator) is not None


def _md_row_text(text: str) -> str:
    """Cells of one table row joined by " | "."""
    cells = [_clean(cell, "markdown") for cell in _MD_CELL.split(text)]
    return " | ".join(cell for cell in cells if cell)


def _md_quote(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """A block quote: its content parsed as Markdown with the ">" markers removed."""
    if not _MD_QUOTE.match(lines[index].text):
        return None
    inner: list[_Line] = []
    end = index
    while end < len(lines) and not _blank(lines[end]):
        match = _MD_QUOTE.match(lines[end].text)
        if match:
            inner.append(_Line(lines[end].start + match.end(), lines[end].text[match.end() :]))
        elif _md_interrupts(lines, end):
            break
        else:
            inner.append(lines[end])  # lazy continuation of a quoted paragraph
        end += 1
    return list(_md_blocks(inner)), end


def _md_item(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """One list item (nested items become their own units); its prose is of kind "list"."""
    match = _MD_ITEM.match(lines[index].text)
    if match is None:
        return None
    # CommonMark: content starts after the spaces, unless there are none or more than four.
    gap = len(match.group(4))
    width = match.end() if 0 < gap <= 4 else match.end(2) + 1
    first = lines[index]
    body = [_Line(first.start + match.end(), first.text[match.end() :])]
    end = index + 1
    while end < len(lines):
        line = lines[end]
        if _blank(line):
            following = _next_content(lines, end)
            if following is None or _indent(lines[following].text) < width:
                break
            body.extend(lines[end:following])
            end = following
        elif _indent(line.text) >= width:
            body.append(_dedent(line, width))
            end += 1
        elif _MD_ITEM.match(line.text):
            break  # the next item of this list
        elif not _blank(body[-1]) and not _md_interrupts(lines, end):
            body.append(_dedent(line, width))  # lazy continuation
            end += 1
        else:
            break
    return _relabel(list(_md_blocks(body)), "list"), end


def _next_content(lines: Sequence[_Line], index: int) -> int | None:
    """Index of the next non-blank line at or after `index`."""
    while index < len(lines):
        if not _blank(lines[index]):
            return index
        index += 1
    return None


def _md_indented_code(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """An indented (4 spaces) code block, kept whole."""
    if _indent(lines[index].text) < 4:
        return None
    end = last = index
    while end < len(lines) and (_blank(lines[end]) or _indent(lines[end].text) >= 4):
        if not _blank(lines[end]):
            last = end
        end += 1
    body = [_dedent(line, 4) for line in lines[index : last + 1]]
    return [_Block("code", lines[index : last + 1], _whole_text(body))], last + 1


def _md_paragraph(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int]:
    """A paragraph (or a setext heading, or link reference definitions)."""
    end = index + 1
    while end < len(lines) and not _blank(lines[end]):
        if _MD_SETEXT.match(lines[end].text):
            title = _clean(_joined(lines[index:end]), "markdown")
            return [_Block("heading", lines[index : end + 1], title)], end + 1
        if _md_interrupts(lines, end):
            break
        end += 1
    body = lines[index:end]
    if all(_MD_LINK_DEF.match(line.text) or _TEMPLATE_TAG.match(line.text) for line in body):
        return [_Block("meta", body, "\n".join(line.text.strip() for line in body))], end
    return [_Block("text", body)], end


def _md_interrupts(lines: Sequence[_Line], index: int) -> bool:
    """Whether the line starts a block that can interrupt a paragraph."""
    text = lines[index].text
    if _MD_FENCE.match(text) or _MD_ATX.match(text) or _MD_QUOTE.match(text):
        return True
    if _MD_BREAK.match(text) or _MD_COMMENT.match(text) or _MD_RAW_HTML.match(text):
        return True
    if _md_table_start(lines, index):
        return True
    item = _MD_ITEM.match(text)
    # Only bullets and "1." interrupt a paragraph, so "2019. Next" in prose stays prose.
    return bool(item and text[item.end() :].strip() and item.group(3) in (None, "1"))


_MD_READERS: tuple[Reader, ...] = (
    _md_fence,
    _md_comment,
    _md_raw_html,
    _md_heading,
    _md_break,
    _md_table,
    _md_quote,
    _md_item,
    _md_indented_code,
    _md_paragraph,
)


# ---------------------------------------------------------------- reStructuredText

_RST_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")
_RST_EXPLICIT = re.compile(r"^\.\.(?:[ \t]|$)")
_RST_DIRECTIVE = re.compile(r"^\.\.[ \t]+(?:\|[^|]+\|[ \t]+)?([\w:+.-]+)[ \t]*::(?:[ \t]+|$)")
_RST_TARGET = re.compile(r"^\.\.[ \t]+_")
_RST_FOOTNOTE = re.compile(r"^\.\.[ \t]+\[[^\]]+\](?:[ \t]+|$)")
_RST_OPTION = re.compile(r"^[ \t]+:[^:\s][^:]*:(?:[ \t]|$)")
_RST_BULLET = re.compile(r"^[-*+•‣⁃]([ \t]+|$)")
_RST_ENUM = re.compile(
    r"^(?:(?:\d+|[A-Za-z#]|[ivxlcdm]+|[IVXLCDM]+)[.)]|\((?:\d+|[A-Za-z#]|[ivxlcdm]+)\))([ \t]+|$)"
)
_RST_GRID_BORDER = re.compile(r"^\+(?:[-=]+\+)+[ \t]*$")
_RST_SIMPLE_BORDER = re.compile(r"^=+(?:[ \t]+=+)+[ \t]*$")
_RST_COLUMNS = re.compile(r"\s{2,}")
_RST_DOCTEST = re.compile(r"^>>>(?:[ \t]|$)")
#: Directives whose content is verbatim: one whole "code" unit.
_RST_CODE = _words(
    "code-block code sourcecode literalinclude raw doctest math testcode testoutput "
    "parsed-literal highlight productionlist"
)
#: Directives that are configuration, not text: one whole "meta" unit.
_RST_META = _words(
    "include image contents toctree index meta default-role role sectnum section-numbering "
    "target-notes title translated tabularcolumns header footer autosummary"
)
#: Directives whose header is configuration but whose content is ordinary text.
_RST_WRAPPERS = _words(
    "only ifconfig container rst-class class cssclass figure tab tabs tab-set tab-item"
)


def _rst_blocks(lines: Sequence[_Line]) -> Iterator[_Block]:
    """reStructuredText blocks: titles, directives, tables, list items, paragraphs, literals."""
    yield from _read_blocks(lines, _RST_READERS)


def _rst_title(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """A section title: a text line with an underline (and maybe an overline) of punctuation."""
    text = lines[index].text
    over = _RST_ADORNMENT.match(text)
    if over and index + 2 < len(lines) and not _blank(lines[index + 1]):
        under = _RST_ADORNMENT.match(lines[index + 2].text)
        if under and under.group(1) == over.group(1):
            title = _clean(lines[index + 1].text, "rst")
            return [_Block("heading", lines[index : index + 3], title)], index + 3
    if over or _indent(text) > 0 or _RST_EXPLICIT.match(text) or index + 1 >= len(lines):
        return None
    if not _RST_ADORNMENT.match(lines[index + 1].text):
        return None
    return [_Block("heading", lines[index : index + 2], _clean(text, "rst"))], index + 2


def _rst_transition(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """A transition (a lone line of punctuation): markup only."""
    if not _RST_ADORNMENT.match(lines[index].text):
        return None
    return [_Block("text", [lines[index]], "")], index + 1


def _rst_explicit(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """Explicit markup ".. ": directives, targets, footnotes, comments."""
    first = lines[index]
    if not _RST_EXPLICIT.match(first.text):
        return None
    end = _indented_end(lines, index + 1, _indent(first.text))
    block = lines[index:end]
    directive = _RST_DIRECTIVE.match(first.text)
    if directive:
        return _rst_directive(directive, block), end
    if _RST_TARGET.match(first.text):
        return [_Block("meta", block, "", attach="next")], end
    footnote = _RST_FOOTNOTE.match(first.text)
    if footnote:
        head = _Line(first.start + footnote.end(), first.text[footnote.end() :])
        return _prose("text", [head, *_dedent_all(block[1:])]), end
    comment = _joined([_Line(first.start + 2, first.text[2:]), *block[1:]])
    return [_Block("meta", block, textwrap.dedent(comment).strip())], end


def _indented_end(lines: Sequence[_Line], index: int, base: int) -> int:
    """End of the lines indented deeper than `base` (blank lines inside included)."""
    end = index
    while index < len(lines):
        if _blank(lines[index]):
            index += 1
        elif _indent(lines[index].text) > base:
            index += 1
            end = index
        else:
            break
    return end


def _rst_directive(match: re.Match[str], block: Sequence[_Line]) -> list[_Block]:
    """A directive: verbatim code, configuration, or a header followed by ordinary content."""
    name = match.group(1).lower()
    header_end = 1
    while header_end < len(block) and not _blank(block[header_end]):
        header_end += 1
    header, body = block[:header_end], _dedent_all(block[header_end:])
    if name in _RST_CODE:
        options = 1
        while options < len(block) and _RST_OPTION.match(block[options].text):
            options += 1
        return [_Block("code", block, _whole_text(_dedent_all(block[options:])))]
    if name in _RST_META:
        return [_Block("meta", block, _meta_text(block))]
    inner = _rst_prose_or_table(name, body)
    if name in _RST_WRAPPERS:
        return [_Block("meta", header, _meta_text(header)), *inner]
    return _rst_directive_header(match, header) + inner


def _meta_text(lines: Sequence[_Line]) -> str:
    """Text of explicit markup kept as configuration: each line stripped, ".." dropped."""
    texts = [lines[0].text.strip()[2:].strip()] + [line.text.strip() for line in lines[1:]]
    return "\n".join(text for text in texts if text)


def _rst_directive_header(match: re.Match[str], header: Sequence[_Line]) -> list[_Block]:
    """The argument (and lines continuing it) as prose; option lines are markup."""
    first = header[0]
    argument = [_Line(first.start + match.end(), first.text[match.end() :])]
    options = 1
    while options < len(header) and not _RST_OPTION.match(header[options].text):
        options += 1
    argument.extend(_dedent_all(header[1:options]))
    blocks = _prose("text", argument)
    if not argument[0].text.strip():
        # ".. note::" alone on its line introduces what follows.
        blocks.insert(0, _Block("meta", [first], "", attach="next"))
    if options < len(header):
        attach: Attach = "prev" if blocks else "next"
        blocks.append(_Block("meta", header[options:], "", attach=attach))
    return blocks


def _rst_prose_or_table(name: str, body: Sequence[_Line]) -> list[_Block]:
    """A directive's content: rows for list-table, ordinary blocks otherwise."""
    if name == "list-table":
        return _rst_list_table(body)
    return list(_rst_blocks(body))


def _rst_list_table(body: Sequence[_Line]) -> list[_Block]:
    """list-table rows ("* - a\\n  - b") as "table" units with cells joined by " | "."""
    blocks: list[_Block] = []
    index = 0
    while index < len(body):
        item = _rst_item_span(body, index)
        if item is None:
            if not _blank(body[index]):
                blocks.extend(_prose("text", [body[index]]))
            index += 1
            continue
        content, end = item
        cells = _rst_cells(content)
        blocks.append(_Block("table", body[index:end], " | ".join(cell for cell in cells if cell)))
        index = end
    return blocks


def _rst_cells(lines: Sequence[_Line]) -> list[str]:
    """Texts of the sub-items of one list-table row."""
    cells, index = [], 0
    while index < len(lines):
        item = _rst_item_span(lines, index)
        if item is None:
            if not _blank(lines[index]):
                cells.append(_clean(lines[index].text, "rst"))
            index += 1
            continue
        content, index = item
        cells.append(_clean(_joined(content), "rst"))
    return cells


def _rst_item_span(lines: Sequence[_Line], index: int) -> tuple[list[_Line], int] | None:
    """A bullet or enumerated item starting at `index`: its content lines and where it ends."""
    first = lines[index]
    match = _RST_BULLET.match(first.text) or _RST_ENUM.match(first.text)
    if match is None:
        return None
    width = match.end() if match.group(1) else match.end() + 1
    end = _indented_end(lines, index + 1, 0)
    content = [_Line(first.start + match.end(), first.text[match.end() :])]
    content.extend(_dedent(line, width) for line in lines[index + 1 : end])
    return content, end


def _rst_item(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """One bullet or enumerated list item; its content is parsed as rst of kind "list"."""
    item = _rst_item_span(lines, index)
    if item is None:
        return None
    content, end = item
    return _relabel(list(_rst_blocks(content)), "list"), end


def _rst_grid_table(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """A grid table: each "|" line is a "table" unit, "+---+" borders are markup."""
    if not _RST_GRID_BORDER.match(lines[index].text):
        return None
    blocks, end = [], index
    while end < len(lines) and lines[end].text.startswith(("+", "|")):
        line = lines[end]
        cells = [_clean(cell, "rst") for cell in line.text.split("|")]
        text = " | ".join(cell for cell in cells if cell) if line.text[0] == "|" else ""
        blocks.append(_Block("table", [line], text, attach="next" if end == index else "prev"))
        end += 1
    return blocks, end


def _rst_simple_table(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """A simple table between "=====  =====" borders: each row is a "table" unit."""
    if not _RST_SIMPLE_BORDER.match(lines[index].text):
        return None
    blocks, end = [_Block("table", [lines[index]], "", attach="next")], index + 1
    while end < len(lines) and not _blank(lines[end]):
        line = lines[end]
        if _RST_SIMPLE_BORDER.match(line.text):
            blocks.append(_Block("table", [line], ""))
        else:
            cells = [_clean(cell, "rst") for cell in _RST_COLUMNS.split(line.text.strip())]
            blocks.append(_Block("table", [line], " | ".join(cells)))
        end += 1
    return blocks, end


def _rst_doctest(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """A doctest block (">>> ..."), kept whole as code."""
    if not _RST_DOCTEST.match(lines[index].text):
        return None
    end = index
    while end < len(lines) and not _blank(lines[end]):
        end += 1
    return [_Block("code", lines[index:end], _whole_text(lines[index:end]))], end


def _rst_quote(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """An indented block quote: parsed as rst."""
    if _indent(lines[index].text) == 0:
        return None
    end = _indented_end(lines, index, 0)
    return list(_rst_blocks(_dedent_all(lines[index:end]))), end


def _rst_paragraph(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int]:
    """A paragraph, a definition (term + indented body), or a paragraph ending in a "::" literal."""
    end = index + 1
    while end < len(lines) and not _blank(lines[end]) and _indent(lines[end].text) == 0:
        end += 1
    if end < len(lines) and not _blank(lines[end]):
        # A definition list item: the term, then the indented lines right below it.
        term = [_Block("text", lines[index:end], attach="next")]
        body_end = _indented_end(lines, end, 0)
        return term + list(_rst_blocks(_dedent_all(lines[end:body_end]))), body_end
    blocks = _prose("text", lines[index:end])
    if lines[end - 1].text.rstrip().endswith("::"):
        literal = _rst_literal(lines, end)
        if literal is not None:
            return blocks + literal[0], literal[1]
    return blocks, end


def _rst_literal(lines: Sequence[_Line], index: int) -> tuple[list[_Block], int] | None:
    """The indented literal block after a paragraph ending in "::", kept whole as code."""
    start = _next_content(lines, index)
    if start is None or _indent(lines[start].text) == 0:
        return None
    end = _indented_end(lines, start, 0)
    return [_Block("code", lines[start:end], _whole_text(lines[start:end]))], end


_RST_READERS: tuple[Reader, ...] = (
    _rst_title,
    _rst_transition,
    _rst_explicit,
    _rst_grid_table,
    _rst_simple_table,
    _rst_doctest,
    _rst_item,
    _rst_quote,
    _rst_paragraph,
)


# ---------------------------------------------------------------- plain text

_TITLE_END = re.compile(f"[.!?。！？．…:;,、，：；{_SCRIPT_STOPS}]$")
_TITLE_MAX_CHARS = 100


def _text_blocks(lines: Sequence[_Line]) -> list[_Block]:
    """Paragraphs separated by blank lines; a short unpunctuated one-line paragraph is a title."""
    blocks: list[_Block] = []
    index = 0
    while index < len(lines):
        if _blank(lines[index]):
            index += 1
            continue
        end = index
        while end < len(lines) and not _blank(lines[end]):
            end += 1
        paragraph = lines[index:end]
        if _looks_like_title(paragraph, more=_next_content(lines, end) is not None):
            title = " ".join(paragraph[0].text.split())
            blocks.append(_Block("heading", paragraph, title))
        else:
            blocks.append(_Block("text", paragraph))
        index = end
    return blocks


def _looks_like_title(paragraph: Sequence[_Line], *, more: bool) -> bool:
    """One short line without final punctuation, followed by more text."""
    title = paragraph[0].text.strip()
    if not more or len(paragraph) != 1 or len(title) > _TITLE_MAX_CHARS:
        return False
    return not _TITLE_END.search(title)
