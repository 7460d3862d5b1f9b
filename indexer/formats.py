"""Document formats → text: PDF pages, HTML pages and Word, PowerPoint and OpenDocument files.

PDF text is plain text with one paragraph per line, blank lines between paragraphs and a form
feed between pages (split.py counts pages on them). The other formats become light Markdown
(headings, list items, table rows, code blocks), so split.py finds their units as in Markdown.
"""

from __future__ import annotations

import codecs
import errno
import logging
import math
import re
import unicodedata
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import IO, TYPE_CHECKING

from indexer import config
from indexer.errors import UnreadableDocument
from indexer.split import CJK

if TYPE_CHECKING:
    import pypdf
    from docx.table import Table
    from docx.text.paragraph import Paragraph

# pypdf logs every repaired cross-reference table; without a handler Python would print those
# warnings on stderr, in the middle of a cron mail.
logging.getLogger("pypdf").addHandler(logging.NullHandler())

ENCRYPTED_PDF = "encrypted PDF (needs a password)"
NO_CRYPTOGRAPHY = "encrypted PDF (pip install cryptography to read it)"
CORRUPT_PDF = "corrupt PDF (cannot be parsed)"
NO_TEXT_LAYER = "PDF without a text layer (scanned? OCR is not supported)"
ZIP_BOMB = "archive expands to more than the size limit (zip bomb?)"
LEGACY_OFFICE = "encrypted or old-format Office file (save it as .docx/.pptx without a password)"

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_CJK_CHAR = re.compile(f"[{CJK}]")


@dataclass(frozen=True)
class Extracted:
    """The text of a document and whether it was cut at the character limit."""

    text: str
    truncated: bool


def extract(fmt: str, handle: IO[bytes], *, max_chars: int) -> Extracted:
    """Text of a PDF, DOCX, PPTX or ODT file; raises UnreadableDocument with a one-line reason."""
    return CONTAINERS[fmt](handle, max_chars=max_chars)


class _Budget:
    """Collects blocks of text until a character limit is reached."""

    def __init__(self, max_chars: int) -> None:
        self.blocks: list[str] = []
        self.left = max_chars
        self.truncated = False

    @property
    def full(self) -> bool:
        """True once the limit is reached."""
        return self.left <= 0

    def add(self, block: str) -> None:
        """Keep a block (cut at the limit); nothing more once full."""
        if not block:
            return
        if self.full:
            self.truncated = True
            return
        if len(block) > self.left:
            block, self.truncated = block[: self.left], True
        self.blocks.append(block)
        self.left -= len(block) + 2  # and a separator

    def result(self, separator: str = "\n\n") -> Extracted:
        """The blocks kept, joined."""
        return Extracted(separator.join(self.blocks), self.truncated)


# ---------------------------------------------------------------- PDF


@dataclass
class _Run:
    """One line of pypdf's output, with where it starts on the page."""

    text: str
    y: float | None = None
    size: float = 0.0


def pdf_text(handle: IO[bytes], *, max_chars: int) -> Extracted:
    """Text of every page (pages separated by form feeds); page order kept, failed pages empty."""
    reader = _open_pdf(handle)
    pages: list[str] = []
    failed = 0
    left, truncated = max_chars, False
    for number in range(len(reader.pages)):
        text = _page_text(reader, number)
        failed += text is None
        text = (text or "")[:left]
        pages.append(text)
        left -= len(text) + 1
        if left <= 0:
            truncated = True
            break
    if not any(page.strip() for page in pages):
        raise UnreadableDocument(CORRUPT_PDF if pages and failed == len(pages) else NO_TEXT_LAYER)
    return Extracted("\f".join(pages), truncated)


def _open_pdf(handle: IO[bytes]) -> pypdf.PdfReader:
    # Imported here, like python-docx: a cron run with nothing new to read never pays for them.
    import pypdf

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = pypdf.PdfReader(handle, strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                raise UnreadableDocument(ENCRYPTED_PDF)
            len(reader.pages)
    except UnreadableDocument:
        raise
    except pypdf.errors.FileNotDecryptedError:
        raise UnreadableDocument(ENCRYPTED_PDF) from None
    except pypdf.errors.DependencyError:
        raise UnreadableDocument(NO_CRYPTOGRAPHY) from None
    except Exception as error:
        _raise_read_failure(error)
        raise UnreadableDocument(CORRUPT_PDF) from None
    return reader


def _page_text(reader: pypdf.PdfReader, number: int) -> str | None:
    """One page as paragraphs, or None when pypdf fails on it."""
    runs: list[_Run] = [_Run("")]

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        for index, part in enumerate(text.split("\n")):
            if index:
                runs.append(_Run(""))
            run = runs[-1]
            if run.y is None and part.strip():
                run.y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
                run.size = abs(size) * math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3])
            run.text += part

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader.pages[number].extract_text(visitor_text=visit)
    except Exception as error:
        _raise_read_failure(error)
        return None
    return "\n\n".join(join_pdf_lines(lines) for lines in _paragraphs(runs))


#: A vertical gap above this many font sizes between two lines starts a new paragraph
#: (single-spaced text advances about 1.2 font sizes per line).
_PARAGRAPH_GAP = 1.5
#: Lines whose font sizes differ by more than this factor are in different paragraphs
#: (a title above body text).
_SIZE_CHANGE = 1.2


def _paragraphs(runs: Sequence[_Run]) -> Iterator[list[str]]:
    """Group pypdf's lines into visual lines and those into paragraphs by position and size."""
    lines: list[list[str]] = []
    last: _Run | None = None
    spaced = False  # a lone space drawn by itself separates the pieces around it
    for run in runs:
        if run.y is None or not run.text.strip():
            spaced = spaced or bool(run.text)
            continue
        if last is None or _new_paragraph(last, run):
            lines.append([run.text])
        elif abs(run.y - last.y) < 0.5 * max(run.size, last.size, 1e-6):  # type: ignore[operator]
            lines[-1][-1] = _join_same_line(lines[-1][-1], run.text, last.text, spaced=spaced)
        else:
            lines[-1].append(run.text)
        last, spaced = run, False
    yield from lines


def _new_paragraph(last: _Run, run: _Run) -> bool:
    size = max(run.size, last.size, 1e-6)
    drop = last.y - run.y  # type: ignore[operator]
    if drop > _PARAGRAPH_GAP * size or drop < -0.5 * size:
        return True  # a gap, or back up the page (the next column or text box)
    small, large = sorted((max(run.size, 1e-6), max(last.size, 1e-6)))
    return large / small > _SIZE_CHANGE


def _join_same_line(line: str, right: str, previous: str, *, spaced: bool) -> str:
    """A piece of text placed on the line so far (pypdf puts each text object on its own line).

    Without a drawn space, CJK pieces touch and so do single characters placed one by one; words
    placed one by one are separate words.
    """
    if line[-1].isspace() or right[0].isspace():
        return line + right
    if spaced:
        return f"{line} {right}"
    if _is_cjk(line[-1]) or _is_cjk(right[0]):
        return line + right
    if len(previous.strip()) == 1 and len(right.strip()) == 1:
        return line + right
    return f"{line} {right}"


_HYPHENATED = re.compile(r"[^\W\d_]-$")
_SOFT_HYPHEN = "\u00ad"


def join_pdf_lines(lines: Sequence[str]) -> str:
    """One paragraph's lines as one line: hyphenation undone, CJK lines joined without space."""
    text = ""
    for raw in lines:
        line = repair_pdf_spacing(raw)
        if not line:
            continue
        if not text:
            text = line
        elif text.endswith(_SOFT_HYPHEN) or (_HYPHENATED.search(text) and line[0].islower()):
            text = text[:-1] + line
        elif _is_cjk(text[-1]) and _is_cjk(line[0]):
            text += line
        else:
            text += " " + line
    return text.replace(_SOFT_HYPHEN, "")


_LETTER_SPACED = re.compile(f"[{CJK}](?: [{CJK}]){{2,}}")
_SPACE_BY_CJK_PUNCTUATION = re.compile(
    f"(?<=[{CJK}]) +(?=[、。，．！？）」』】〕〉》])|(?<=[、。，．！？（「『【〔〈《]) +(?=[{CJK}])"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LIGATURES = re.compile("[\ufb00-\ufb06]")


def repair_pdf_spacing(line: str) -> str:
    """Undo what PDF text extraction adds: spaces between spaced-out CJK characters, ligatures."""
    line = _CONTROL.sub("", line)
    line = _LIGATURES.sub(lambda m: unicodedata.normalize("NFKC", m.group()), line)
    line = _LETTER_SPACED.sub(lambda m: m.group().replace(" ", ""), line)
    line = _SPACE_BY_CJK_PUNCTUATION.sub("", line)
    return " ".join(line.split())


def _is_cjk(chars: str) -> bool:
    """Whether every character is Chinese, Japanese or full-width."""
    return all(_CJK_CHAR.match(char) for char in chars)


# ---------------------------------------------------------------- Markdown output helpers

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>~])")
_MD_LINE_START = re.compile(r"^([#>+=-]|\d+(?=[.)]))")


def md_escape(text: str) -> str:
    """Plain text that Markdown reads back as the same plain text (one line)."""
    text = _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))
    match = _MD_LINE_START.match(text)
    if match and match.group(1)[0].isdigit():
        end = match.end()
        return f"{text[:end]}\\{text[end:]}"
    return f"\\{text}" if match else text


def md_heading(level: int, text: str) -> str:
    """A Markdown heading ("" for empty text)."""
    return f"{'#' * min(max(level, 1), 6)} {md_escape(text)}" if text.strip() else ""


def md_item(text: str) -> str:
    """A Markdown list item ("" for empty text)."""
    return f"- {md_escape(text)}" if text.strip() else ""


def md_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as a Markdown table; the first row is the header."""
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    lines = [
        "| " + " | ".join(md_escape(cell).replace("|", "\\|") for cell in row) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + " --- |" * width)
    return "\n".join(lines)


def md_code(text: str) -> str:
    """A fenced code block longer than any backtick run inside it."""
    text = text.strip("\n")
    if not text.strip():
        return ""
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence}\n{text}\n{fence}"


# ---------------------------------------------------------------- HTML

_META_CHARSET = re.compile(rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_:.+-]+)""", re.I)
_XML_DECLARATION = re.compile(rb"""^<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""")
#: Labels that browsers read as a superset (WHATWG Encoding Standard).
_BROWSER_ENCODINGS = {
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "gb2312": "gbk",
    "euc-kr": "cp949",
    # A page declaring UTF-16 in ASCII bytes cannot be UTF-16.
    "utf-16": "utf-8",
    "utf-16le": "utf-8",
    "utf-16be": "utf-8",
}


def declared_html_encoding(head: bytes) -> str | None:
    """The encoding named by <meta charset>, <meta http-equiv> or an XML declaration, if known."""
    match = _XML_DECLARATION.match(head) or _META_CHARSET.search(head[:4096])
    if match is None:
        return None
    label = match.group(1).decode("ascii").lower()
    name = _BROWSER_ENCODINGS.get(label, label)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


_VOID = frozenset(
    "area base br col embed hr img input link meta param source track wbr keygen".split()
)
_SKIPPED = frozenset(
    "script style noscript template svg math nav aside iframe object canvas select button "
    "dialog".split()
)
_BOILERPLATE_ROLES = frozenset(
    "navigation banner contentinfo complementary search menu menubar dialog".split()
)
#: Exact class or id values that mark navigation boilerplate.
_BOILERPLATE_NAMES = frozenset(
    "nav navbar navigation menu sidebar breadcrumb breadcrumbs site-header site-footer "
    "skip-link cookie-banner cookie-notice".split()
)
_CONTENT = frozenset({"article", "main"})
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_BLOCKS = frozenset(
    "p div section article main blockquote li dd dt figcaption address header footer "
    "form fieldset details summary table tr ul ol dl pre hr center h1 h2 h3 h4 h5 h6 "
    "caption legend body html".split()
)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_BREAK = "\ue000"  # stands for <br> until whitespace is collapsed
_SPACES = re.compile(r"\s+")
#: Unparsed text HTMLParser may hold (an unclosed comment or tag) before we stop feeding it.
_MAX_PENDING = 4_000_000


class HtmlText(HTMLParser):
    """Visible text of an HTML page as Markdown blocks, fed in chunks with bounded memory."""

    def __init__(self, *, max_chars: int) -> None:
        super().__init__(convert_charrefs=True)
        self.out = _Budget(max_chars)
        self.stack: list[str] = []
        self.skip_depth: int | None = None
        self.buffer: list[str] = []
        self.title: list[str] | None = None
        self.title_text = ""
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.tables = 0
        self.stopped = False

    @property
    def full(self) -> bool:
        """True once no more input is wanted (text limit reached, or nothing parseable)."""
        return self.out.full or self.stopped

    def feed(self, data: str) -> None:
        if self.full:
            return
        super().feed(data)
        # An unclosed comment or tag makes HTMLParser hold everything that follows.
        if len(self.rawdata) > _MAX_PENDING:
            self.stopped = self.out.truncated = True

    def result(self) -> Extracted:
        """Everything collected so far, once the input has ended."""
        if not self.full:
            self.close()
        self._end_title()
        self._flush()
        self._end_table()
        return self.out.result()

    # -- parser callbacks

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if self.skip_depth is None:
                self._void(tag)
            return
        self._end_title()
        if self.skip_depth is None and not self.tables and (tag in _BLOCKS or tag == "table"):
            self._flush()
        self.stack.append(tag)
        if self.skip_depth is not None:
            return
        if tag == "title" and not self.title_text:
            self.title = []
        elif _hidden(tag, dict(attrs), self.stack):
            self.skip_depth = len(self.stack) - 1
        elif self.tables:
            self._open_in_table(tag)
        elif tag == "table":
            self.tables, self.rows = 1, []

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.stack:
            return
        while self.stack:
            closed = self.stack.pop()
            if self.skip_depth is not None and len(self.stack) <= self.skip_depth:
                self.skip_depth = None
            elif self.skip_depth is None:
                self._close(closed)
            if closed == tag:
                return

    def handle_data(self, data: str) -> None:
        if self.skip_depth is not None:
            return
        if self.title is not None:
            self.title.append(data)
        elif self.cell is not None:
            self.cell.append(data)
        else:
            self.buffer.append(data)

    # -- blocks

    def _void(self, tag: str) -> None:
        if tag == "br":
            self.handle_data(_BREAK)
        elif tag == "hr" and not self.tables:
            self._flush()

    def _close(self, tag: str) -> None:
        if tag == "title":
            self._end_title()
        elif self.tables:
            self._close_in_table(tag)
        elif tag in _BLOCKS:
            # The kind of the text collected so far depends on the elements still open.
            self._flush(self._kind() if tag not in _KINDS else _KINDS[tag])

    def _open_in_table(self, tag: str) -> None:
        if tag == "table":
            self.tables += 1
        elif self.tables == 1 and tag == "tr":
            self._end_cell()
            self.rows.append([])
        elif self.tables == 1 and tag in ("td", "th"):
            self._end_cell()
            if not self.rows:
                self.rows.append([])
            self.cell = []
        elif tag in _BLOCKS:
            self.handle_data(" ")

    def _close_in_table(self, tag: str) -> None:
        if tag == "table":
            self.tables -= 1
            if not self.tables:
                self._end_table()
        elif self.tables == 1 and tag in ("td", "th", "tr"):
            self._end_cell()
        elif self.tables == 1 and tag == "caption":
            self._flush(("h", 6))
        elif tag in _BLOCKS:
            self.handle_data(" ")

    def _end_title(self) -> None:
        if self.title is not None:
            self.title_text = " ".join("".join(self.title).split())
            self.title = None
            self.out.add(md_heading(1, self.title_text))

    def _end_cell(self) -> None:
        if self.cell is not None and self.rows:
            self.rows[-1].append(_visible("".join(self.cell)))
        self.cell = None

    def _end_table(self) -> None:
        self._end_cell()
        self._flush()  # a caption
        self.out.add(md_table(self.rows))
        self.rows, self.tables = [], 0

    def _kind(self) -> tuple[str, int]:
        """What the innermost open heading, list item or <pre> makes of text: ("p", 0) if none."""
        for tag in reversed(self.stack):
            if tag in _KINDS:
                return _KINDS[tag]
        return ("p", 0)

    def _flush(self, kind: tuple[str, int] | None = None) -> None:
        """Emit the text collected since the last block boundary."""
        raw, self.buffer = "".join(self.buffer), []
        if not raw.strip():
            return
        name, level = kind or self._kind()
        if name == "pre":
            self.out.add(md_code(raw.replace(_BREAK, "\n")))
            return
        # Two <br> in a row separate paragraphs on old pages.
        for part in re.split(f"{_BREAK}\\s*{_BREAK}[\\s{_BREAK}]*", raw):
            text = _visible(part)
            if name == "h":
                self.out.add(md_heading(level, text) if text != self.title_text else "")
            else:
                self.out.add(md_item(text) if name == "li" else md_escape(text))


_KINDS = {**{tag: ("h", level) for tag, level in _HEADINGS.items()}, "li": ("li", 0)}
_KINDS["pre"] = ("pre", 0)


def _hidden(tag: str, attrs: dict[str, str | None], stack: Sequence[str]) -> bool:
    """Elements that are not shown, or are navigation and page furniture."""
    if tag in _SKIPPED or "hidden" in attrs or attrs.get("aria-hidden") == "true":
        return True
    if _HIDDEN_STYLE.search(attrs.get("style") or ""):
        return True
    if (attrs.get("role") or "").lower() in _BOILERPLATE_ROLES:
        return True
    names = {attrs.get("id") or "", *(attrs.get("class") or "").split()}
    if names & _BOILERPLATE_NAMES:
        return True
    # A page's header and footer are furniture; an article's are content.
    return tag in ("header", "footer") and not _CONTENT.intersection(stack)


def _visible(text: str) -> str:
    """HTML whitespace rules: runs collapse to one space, line breaks between CJK vanish."""

    def space(match: re.Match[str]) -> str:
        start, end = match.start(), match.end()
        joins_cjk = start > 0 and end < len(text) and _is_cjk(text[start - 1] + text[end])
        return "" if "\n" in match.group() and joins_cjk else " "

    return _SPACES.sub(space, text.replace(_BREAK, "\n")).strip()


# ---------------------------------------------------------------- Office files (zip archives)


def _open_archive(handle: IO[bytes]) -> zipfile.ZipFile:
    """The zip archive inside an Office file, after checking it cannot explode in memory."""
    head = handle.read(8)
    handle.seek(0)
    if head == _OLE_MAGIC:
        raise UnreadableDocument(LEGACY_OFFICE)
    try:
        archive = zipfile.ZipFile(handle)
        members = archive.infolist()
    except Exception as error:  # BadZipFile, and worse from a hostile central directory
        _raise_read_failure(error)
        raise UnreadableDocument("not a valid Office file (corrupt zip archive)") from None
    if sum(member.file_size for member in members) > config.MAX_ARCHIVE_BYTES:
        raise UnreadableDocument(ZIP_BOMB)
    return archive


def _guarded(kind: str, read: Callable[[], Extracted]) -> Extracted:
    """Run a parser on a hostile file: anything it raises becomes a one-line reason."""
    try:
        return read()
    except UnreadableDocument:
        raise
    except Exception as error:
        _raise_read_failure(error)
        raise UnreadableDocument(f"corrupt {kind} (cannot be parsed)") from None


def _raise_read_failure(error: Exception) -> None:
    """Let a real read failure (EIO, the file vanished) through; the caller reports the rest.

    Parsers on hostile input raise anything, OSError(EINVAL) from a wild seek included: that is
    a corrupt file, not a failing disk.
    """
    if isinstance(error, OSError) and error.errno not in (None, errno.EINVAL):
        raise error


def docx_text(handle: IO[bytes], *, max_chars: int) -> Extracted:
    """Paragraphs, headings (as Markdown headings), list items and table rows of a Word file."""
    _open_archive(handle).close()  # python-docx opens the archive again, checked
    handle.seek(0)
    return _guarded("DOCX", lambda: _docx_blocks(handle, max_chars))


_HEADING_STYLE = re.compile(r"^(?:heading|見出し)\s*(\d)", re.I)


def _docx_blocks(handle: IO[bytes], max_chars: int) -> Extracted:
    import docx
    from docx.table import Table

    out = _Budget(max_chars)
    for block in docx.Document(handle).iter_inner_content():
        if out.full:
            break
        if isinstance(block, Table):
            out.add(md_table(_docx_rows(block)))
        else:
            out.add(_docx_paragraph(block))
    return out.result()


def _docx_paragraph(paragraph: Paragraph) -> str:
    text = paragraph.text
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    heading = _HEADING_STYLE.match(style)
    if heading:
        return md_heading(int(heading.group(1)), text)
    if style.lower() in ("title", "subtitle"):
        return md_heading(1, text)
    numbered = paragraph._p.pPr is not None and paragraph._p.pPr.numPr is not None
    if numbered or style.lower().startswith("list"):
        return md_item(text)
    return md_escape(text)


def _docx_rows(table: Table) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) not in seen:  # a merged cell appears once per column it spans
                seen.add(id(cell._tc))
                cells.append(" ".join(cell.text.split()))
        rows.append(cells)
    return rows


_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"


def pptx_text(handle: IO[bytes], *, max_chars: int) -> Extracted:
    """Slide titles (as headings), text boxes (list items) and tables; slides split like pages."""
    archive = _open_archive(handle)
    return _guarded("PPTX", lambda: _pptx_slides(archive, max_chars))


def _pptx_slides(archive: zipfile.ZipFile, max_chars: int) -> Extracted:
    out = _Budget(max_chars)
    for name in _slide_names(archive):
        if out.full:
            break
        root = ET.fromstring(archive.read(name))
        out.add("\n\n".join(block for block in _slide_blocks(root) if block) or " ")
    return out.result("\f")


def _slide_names(archive: zipfile.ZipFile) -> list[str]:
    """Slide parts in presentation order."""
    presentation = ET.fromstring(archive.read("ppt/presentation.xml"))
    rels = ET.fromstring(archive.read("ppt/_rels/presentation.xml.rels"))
    targets = {rel.get("Id"): rel.get("Target", "") for rel in rels.iter(f"{_PKG_REL}Relationship")}
    names = []
    for slide in presentation.iter(f"{_P}sldId"):
        target = targets.get(slide.get(f"{_R}id"), "")
        names.append("ppt/" + target.lstrip("/").removeprefix("ppt/"))
    return [name for name in names if name in archive.NameToInfo]


def _slide_blocks(root: ET.Element) -> Iterator[str]:
    for shape in root.iter():
        if shape.tag == f"{_P}sp":
            placeholder = shape.find(f"{_P}nvSpPr/{_P}nvPr/{_P}ph")
            title = placeholder is not None and placeholder.get("type") in ("title", "ctrTitle")
            for paragraph in shape.iter(f"{_A}p"):
                text = "".join(t.text or "" for t in paragraph.iter(f"{_A}t"))
                yield md_heading(1, text) if title else md_item(text)
        elif shape.tag == f"{_A}tbl":
            rows = [
                [" ".join(t.text or "" for t in cell.iter(f"{_A}t")) for cell in row]
                for row in shape.iter(f"{_A}tr")
            ]
            yield md_table(rows)


_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"


def odt_text(handle: IO[bytes], *, max_chars: int) -> Extracted:
    """Headings, paragraphs, list items and table rows of an OpenDocument text file."""
    archive = _open_archive(handle)
    return _guarded("ODT", lambda: _odt_blocks(archive, max_chars))


def _odt_blocks(archive: zipfile.ZipFile, max_chars: int) -> Extracted:
    out = _Budget(max_chars)
    body = ET.fromstring(archive.read("content.xml"))
    for block in _odt_walk(body, in_list=False):
        if out.full:
            break
        out.add(block)
    return out.result()


def _odt_walk(element: ET.Element, *, in_list: bool) -> Iterator[str]:
    for child in element:
        if child.tag == f"{_TEXT}h":
            yield md_heading(int(child.get(f"{_TEXT}outline-level") or 1), _odt_inline(child))
        elif child.tag == f"{_TEXT}p":
            text = _odt_inline(child)
            yield md_item(text) if in_list else md_escape(text)
        elif child.tag == f"{_TABLE}table":
            rows = [
                [_odt_inline(cell) for cell in row.iter(f"{_TABLE}table-cell")]
                for row in child.iter(f"{_TABLE}table-row")
            ]
            yield md_table(rows)
        else:
            yield from _odt_walk(child, in_list=in_list or child.tag == f"{_TEXT}list")


_ODT_SPACES = frozenset({f"{_TEXT}s", f"{_TEXT}tab", f"{_TEXT}line-break"})


def _odt_inline(element: ET.Element) -> str:
    """All text inside an element; <text:s/>, tabs and line breaks count as spaces."""
    return " ".join("".join(_odt_pieces(element)).split())


def _odt_pieces(element: ET.Element) -> Iterator[str]:
    if element.tag in _ODT_SPACES:
        yield " "
    yield element.text or ""
    for child in element:
        yield from _odt_pieces(child)
        yield child.tail or ""


CONTAINERS: dict[str, Callable[..., Extracted]] = {
    "pdf": pdf_text,
    "docx": docx_text,
    "pptx": pptx_text,
    "odt": odt_text,
}
