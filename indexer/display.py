"""Text from documents and file names made safe to print: it cannot drive the terminal."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from indexer.search import Hit


#: C0 controls but tab, DEL, C1 controls, bidi embeddings/overrides/isolates (which reorder
#: what follows them on screen), and lone surrogates (undecodable bytes of a file name).
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def printable(text: str, *, indent: str | None = None) -> str:
    """`text` with every character that could control a terminal shown as an escape.

    ESC becomes `\\x1b`, BEL `\\x07`, a bidi override `\\u202e`, a newline `\\n`: Python's
    notation, so the output stays one line per record and a reader sees what is there (a
    backslash already in the text is left as it is; `--json` has the exact text). With
    `indent`, a newline is kept and the next line starts with `indent` instead, so text that
    spans lines (a code block) stays readable but cannot start a line of its own.
    """
    if indent is not None:
        return ("\n" + indent).join(printable(line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


#: How `index ask` shows hits on a terminal: click's cyan, dim and bold.
_STYLES = {"place": "\x1b[36m", "context": "\x1b[2m", "hit": "\x1b[1m"}
_RESET = "\x1b[0m"
NO_HITS = "no hits — is the index empty? run `index status`"


def hit_lines(hits: Sequence[Hit], *, as_json: bool, color: bool) -> list[str]:
    """The lines `index ask` prints: JSON lines with the exact text, or for people the score,
    place, sentence and context with text and names passed through `printable`."""
    if as_json:
        return [json.dumps(hit.to_dict(), ensure_ascii=False) for hit in hits]
    if not hits:
        return [NO_HITS]
    lines: list[str] = []
    for hit in hits:
        # People read similarity; the fused hybrid score only orders the hits (both in --json).
        shown = hit.dense_score if hit.dense_score is not None else hit.score
        styled = [("place", f"{hit.rank}. {shown:.3f}  {printable(hit.location)}")]
        styled += [("context", f"   {printable(t, indent='   ')}") for t in hit.before]
        styled.append(("hit", f" > {printable(hit.text, indent='   ')}"))
        styled += [("context", f"   {printable(t, indent='   ')}") for t in hit.after]
        lines += [f"{_STYLES[s]}{text}{_RESET}" if color else text for s, text in styled]
        lines.append("")
    return lines
