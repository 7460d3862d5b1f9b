"""Text from documents and file names made safe to print: it cannot drive the terminal."""

from __future__ import annotations

import re

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
