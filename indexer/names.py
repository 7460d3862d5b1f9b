"""Names shared across writing systems: "Arrizabalaga" and "アリザバラガ" compared by sound.

Keyword terms cannot match across scripts, and the dense model often misses a name that a
language writes by sound (katakana in Japanese, Hangul in Korean). Both sides are brought to
Latin letters (anyascii) and reduced to a rough consonant key that survives what those
languages do to foreign names: vowels added between consonants, l/r, b/v and m/n merged, an
English final r dropped. Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from anyascii import anyascii
from rapidfuzz.distance import Levenshtein

#: Runs of scripts that write foreign names by sound (katakana with its long-vowel mark and
#: middle dot, Hangul syllables).
_SOUND_RUN = re.compile(r"[\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f]+|[\uac00-\ud7af]+")
_SOUND_PARTS = re.compile(r"[・･\s]+")
#: A capitalised Latin word: in an English question, a name (the first word aside).
_LATIN_NAME = re.compile(r"(?<![^\W\d_])[A-Z][A-Za-z'’-]+")
_LETTER = re.compile(r"[A-Za-z]")
#: Spelling → sound, in order; then vowels go and doubled letters collapse.
_SOUNDS = (
    ("ph", "f"), ("th", "s"), ("gh", ""), ("ck", "k"), ("sh", "s"), ("ch", "c"), ("x", "ks"),
    ("q", "k"), ("c", "k"), ("l", "r"), ("v", "b"), ("z", "s"), ("m", "n"), ("j", "z"),
    ("y", "i"), ("w", "u"), ("h", ""),
)  # fmt: skip
_VOWELS = re.compile(r"[aeiou]")
_DOUBLED = re.compile(r"(.)\1+")


@dataclass(frozen=True)
class NameKeys:
    """A text's names as sound keys: those written in Latin letters and those written by sound."""

    latin: frozenset[str]
    sound: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.latin or self.sound)


@functools.lru_cache(maxsize=1 << 16)  # the same words recur in candidates, question after question
def sound_key(word: str) -> str:
    """A rough consonant key of a word in any script ("Trump" and "トランプ" both give "trnp")."""
    key = re.sub(r"[^a-z]", "", anyascii(word).lower())
    for spelling, sound in _SOUNDS:
        key = key.replace(spelling, sound)
    return _DOUBLED.sub(r"\1", _VOWELS.sub("", key))


def question_keys(question: str, *, min_key: int) -> NameKeys:
    """A question's names: capitalised Latin words but the first, and words written by sound;
    keys shorter than `min_key` ("tn" for Tom, "pr" for Palu) are left out."""
    latin = [
        m.group() for m in _LATIN_NAME.finditer(question) if _LETTER.search(question[: m.start()])
    ]
    return NameKeys(_keys(latin, min_key), _sound_keys(question, min_key))


def shared(question: NameKeys, text: str, *, fuzzy_from: int) -> float:
    """The share of the question's names that a text writes in the other script.

    A Latin name counts when the text writes it by sound, and a name written by sound when the
    text has it in Latin letters; names in the same script are the keyword side's to match.
    Keys of `fuzzy_from` letters or more may differ by one letter ("nrkn" ~ "nrkrn").
    """
    total = len(question.latin) + len(question.sound)
    if not total:
        return 0.0
    found = 0
    if question.latin and _SOUND_RUN.search(text):
        found += _matched(question.latin, _sound_keys(text, 1), fuzzy_from)
    if question.sound:
        latin = _keys((m.group() for m in _LATIN_NAME.finditer(text)), 1)
        found += _matched(question.sound, latin, fuzzy_from)
    return found / total


def _sound_keys(text: str, shortest: int) -> frozenset[str]:
    words = (w for run in _SOUND_RUN.findall(text) for w in _SOUND_PARTS.split(run))
    return _keys(words, shortest)


def _keys(words: Iterable[str], shortest: int) -> frozenset[str]:
    keys = (sound_key(w) for w in words)
    return frozenset(k for k in keys if len(k) >= shortest)


def _matched(names: frozenset[str], keys: frozenset[str], fuzzy_from: int) -> int:
    return sum(any(_near(name, key, fuzzy_from) for key in keys) for name in names)


def _near(a: str, b: str, fuzzy_from: int) -> bool:
    # English drops a final r, so Japanese writes "Peter" (ptr) as ピーター (pt).
    if a.removesuffix("r") == b.removesuffix("r"):
        return True
    fuzzy = min(len(a), len(b)) >= fuzzy_from
    return fuzzy and Levenshtein.distance(a, b, score_cutoff=1) <= 1
