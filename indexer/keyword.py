"""Keyword terms for SQLite FTS5 that work without spaces: CJK and Thai as character bigrams.

FTS5's own tokenizers either split on spaces (unicode61: a Japanese sentence becomes one
token) or need three characters (trigram: most Japanese words are two). So terms are made
here, the same way for stored text and for questions, and FTS5 indexes them as words.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

# Scripts written without spaces between words: Han, Hiragana, Katakana, Hangul, Thai, Lao, Khmer.
_NO_SPACE = (
    "\u0e00-\u0eff\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff"
)
_NO_SPACE_RUN = re.compile(rf"[{_NO_SPACE}]+")


@functools.cache
def _word_runs() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """A word (letters and digits, no underscore, with their combining marks), and a word
    or a run of the scripts without spaces; made on first use (_marks reads Unicode data)."""
    spaced = re.compile(rf"(?:[^\W_{_NO_SPACE}]|[{_marks()}])+")
    return spaced, re.compile(f"{_NO_SPACE_RUN.pattern}|{spaced.pattern}")


def _marks() -> str:
    """Character-class ranges of the combining marks (Unicode categories M*) of the Basic
    Multilingual Plane outside the scripts without spaces: the vowel signs and viramas of
    Indic scripts, Arabic and Hebrew vowel points. Python's \\w leaves them out, which cut
    हिन्दी into ह, न and द."""
    no_space = re.compile(rf"[{_NO_SPACE}]")
    marks = [
        c
        for c in range(0x300, 0x10000)
        if unicodedata.category(chr(c))[0] == "M" and not no_space.match(chr(c))
    ]
    starts = [c for i, c in enumerate(marks) if i == 0 or marks[i - 1] != c - 1]
    ends = [c for i, c in enumerate(marks) if i == len(marks) - 1 or marks[i + 1] != c + 1]
    return "".join(
        re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "")
        for a, b in zip(starts, ends, strict=True)
    )


#: Very common English words that match everywhere and only add noise to BM25.
STOPWORDS = frozenset(
    "a an and are as at be by did do does for from had has have how i in is it its of on or "
    "the to was were what when where which who whom why with".split()
)


def terms(text: str) -> list[str]:
    """Lower-cased words, and overlapping character bigrams inside CJK/Thai runs."""
    normal = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    for match in _word_runs()[1].finditer(normal):
        run = match.group()
        if _NO_SPACE_RUN.fullmatch(run):
            out.extend(_bigrams(run))
        elif run not in STOPWORDS:
            out.append(run)
    return out


def writing(text: str) -> str | None:
    """How most of a text's terms are written: "unspaced" (CJK/Thai bigrams) or "spaced"
    (words); None when it has no terms. Texts written differently share no real words.

    Counts what terms() would make without making them, with one regex scan per kind (it
    runs on every hybrid candidate).
    """
    unspaced = sum(max(len(run) - 1, 1) for run in _NO_SPACE_RUN.findall(text))
    spaced = len(_word_runs()[0].findall(text))
    if not unspaced and not spaced:
        return None
    return "unspaced" if unspaced > spaced else "spaced"


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def document(text: str) -> str:
    """The string stored in the FTS5 column for a text."""
    return " ".join(terms(text))


def query(text: str) -> str | None:
    """A safe FTS5 MATCH expression (any term may match), or None when nothing is searchable."""
    return match_any(terms(text))


def match_any(made: Iterable[str]) -> str | None:
    """A safe FTS5 MATCH expression for any of these terms, or None when there are none."""
    return _joined(made, " OR ")


def match_all(made: Iterable[str]) -> str | None:
    """A safe FTS5 MATCH expression for rows holding all of these terms, or None when none."""
    return _joined(made, " AND ")


def _joined(made: Iterable[str], operator: str) -> str | None:
    unique = list(dict.fromkeys(made))
    if not unique:
        return None
    return operator.join('"' + term.replace('"', '""') + '"' for term in unique)
