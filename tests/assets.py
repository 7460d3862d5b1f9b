"""Real documents built inside the tests: PDF (reportlab, pypdf), DOCX (python-docx), PPTX, ODT.

Nothing binary is committed; every file a test reads is made here from text.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

import docx
import pypdf
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

#: A Japanese font every PDF viewer knows (Adobe-Japan1, not embedded): no font file needed.
JAPANESE_FONT = "HeiseiMin-W3"
pdfmetrics.registerFont(UnicodeCIDFont(JAPANESE_FONT))

#: One line of a PDF page: (text, font size), or (text, font size, "chars") to place each
#: character separately, the way slide and DTP software often writes Japanese.
Line = tuple[str, float] | tuple[str, float, str]


def pdf(pages: Sequence[Sequence[Line]], *, gap: float = 1.2) -> bytes:
    """A PDF with a text layer: each page's lines top-down, `gap` font sizes apart."""
    out = io.BytesIO()
    page = canvas.Canvas(out)
    for lines in pages:
        y = 760.0
        for text, size, *mode in lines:
            font = JAPANESE_FONT if any(ord(char) > 0x2E80 for char in text) else "Helvetica"
            page.setFont(font, size)
            if mode:
                x = 72.0
                for char in text:
                    page.drawString(x, y, char)
                    x += pdfmetrics.stringWidth(char, font, size)
            else:
                page.drawString(72, y, text)
            y -= size * gap
        page.showPage()
    page.save()
    return out.getvalue()


def scanned_pdf(pages: int = 2) -> bytes:
    """A PDF whose pages hold only drawings (as a scan holds only images): no text layer."""
    out = io.BytesIO()
    page = canvas.Canvas(out)
    for _ in range(pages):
        page.rect(72, 72, 400, 600, fill=1)
        page.showPage()
    page.save()
    return out.getvalue()


def encrypted_pdf(data: bytes, *, user_password: str, algorithm: str = "AES-256") -> bytes:
    """The PDF encrypted; an empty user password opens it without asking (owner-only)."""
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def word() -> bytes:
    """A Word file with headings, prose, list items, a table with merged cells."""
    document = docx.Document()
    document.add_heading("Travel policy", level=1)
    document.add_paragraph(
        "Employees book trains through the portal. Receipts are kept for seven years."
    )
    document.add_heading("出張の手続き", level=2)
    document.add_paragraph("出張は一週間前までに申請してください。", style="List Bullet")
    document.add_paragraph("Hotels are booked by the travel desk.", style="List Number")
    table = document.add_table(rows=3, cols=3)
    for row, cells in enumerate(
        [("Class", "Limit", "Notes"), ("Economy", "20,000 yen", ""), ("Business", "40,000 yen", "")]
    ):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    table.cell(1, 1).merge(table.cell(1, 2))
    document.add_paragraph("Questions go to the travel desk in building B.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


_CT = "http://schemas.openxmlformats.org"


def slides(decks: Sequence[tuple[str, Sequence[str]]]) -> bytes:
    """A minimal PowerPoint file: per slide a title placeholder and a body text box."""
    files = {
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="'
        f'{_CT}/package/2006/content-types"/>',
        "ppt/_rels/presentation.xml.rels": '<?xml version="1.0"?><Relationships xmlns="'
        f'{_CT}/package/2006/relationships">'
        + "".join(
            f'<Relationship Id="rId{i}" Type="slide" Target="slides/slide{i}.xml"/>'
            for i in range(1, len(decks) + 1)
        )
        + "</Relationships>",
        # Presentation order differs from file order: slide2.xml comes first.
        "ppt/presentation.xml": f'<?xml version="1.0"?><p:presentation xmlns:p="{_CT}'
        f'/presentationml/2006/main" xmlns:r="{_CT}/officeDocument/2006/relationships">'
        "<p:sldIdLst>"
        + "".join(f'<p:sldId id="{255 + i}" r:id="rId{i}"/>' for i in _order(len(decks)))
        + "</p:sldIdLst></p:presentation>",
    }
    for number, (title, body) in enumerate(decks, 1):
        files[f"ppt/slides/slide{number}.xml"] = _slide(title, body)
    return _zip(files)


def _order(count: int) -> list[int]:
    return [2, 1, *range(3, count + 1)] if count >= 2 else [1]


def _slide(title: str, body: Sequence[str]) -> str:
    ns = f'xmlns:p="{_CT}/presentationml/2006/main" xmlns:a="{_CT}/drawingml/2006/main"'
    paragraphs = "".join(f"<a:p><a:r><a:t>{text}</a:t></a:r></a:p>" for text in body)
    return (
        f'<?xml version="1.0"?><p:sld {ns}><p:cSld><p:spTree>'
        '<p:sp><p:nvSpPr><p:cNvPr id="2" name="Title"/><p:cNvSpPr/><p:nvPr>'
        '<p:ph type="title"/></p:nvPr></p:nvSpPr>'
        f"<p:txBody><a:p><a:r><a:t>{title}</a:t></a:r></a:p></p:txBody></p:sp>"
        '<p:sp><p:nvSpPr><p:cNvPr id="3" name="Body"/><p:cNvSpPr/><p:nvPr/></p:nvSpPr>'
        f"<p:txBody>{paragraphs}</p:txBody></p:sp>"
        "</p:spTree></p:cSld></p:sld>"
    )


def odt(body_xml: str) -> bytes:
    """A minimal OpenDocument text file around some office:text content."""
    content = (
        '<?xml version="1.0"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0">'
        f"<office:body><office:text>{body_xml}</office:text></office:body>"
        "</office:document-content>"
    )
    return _zip({"mimetype": "application/vnd.oasis.opendocument.text", "content.xml": content})


def zip_bomb(uncompressed: int) -> bytes:
    """A zip holding `uncompressed` zero bytes (deflated to a few hundred KB), like a bomb."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("word/document.xml", "w", force_zip64=True) as member,
    ):
        block = bytes(1 << 20)
        for _ in range(uncompressed >> 20):
            member.write(block)
    return out.getvalue()


def _zip(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()
