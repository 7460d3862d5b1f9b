"""PDF, HTML, DOCX, PPTX and ODT files → text → units, on documents generated in the tests."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from indexer import config, formats
from indexer.errors import FileSkipped, UnreadableDocument
from indexer.load import FileInfo, read_document
from indexer.split import Sentence, split_document
from tests import assets


def units(data: bytes, name: str, tmp_path: Path) -> list[Sentence]:
    """Write a file, read it like a build does, split it."""
    (tmp_path / name).write_bytes(data)
    doc = read_document(tmp_path, FileInfo(name, len(data), 0))
    return split_document(doc.text, doc.format)


def texts(sentences: list[Sentence], kind: str | None = None) -> list[str]:
    return [s.text for s in sentences if kind is None or s.kind == kind]


def reason(data: bytes, name: str, tmp_path: Path) -> str:
    with pytest.raises(FileSkipped) as skipped:
        units(data, name, tmp_path)
    return skipped.value.reason


# ---------------------------------------------------------------- PDF

REPORT = [
    [
        ("Quarterly report", 20),
        ("NNAPI経由でNPUを使うと、CPUより約15倍速くなりま", 12),
        ("した。消費電力も大きく下がりました。", 12),
        ("The new firmware improves battery life sig-", 12),
        ("nificantly on every device we measured.", 12),
    ],
    [("一部の演算はCPUにフォールバックします。", 12, "chars"), ("Page two ends here.", 12)],
]


def test_pdf_pages_become_page_numbers(tmp_path: Path) -> None:
    sentences = units(assets.pdf(REPORT), "report.pdf", tmp_path)
    pages = {s.text: s.page for s in sentences}
    assert pages["Quarterly report"] == 1
    assert pages["消費電力も大きく下がりました。"] == 1
    assert pages["一部の演算はCPUにフォールバックします。"] == 2
    assert pages["Page two ends here."] == 2
    assert [s.position for s in sentences] == list(range(len(sentences)))


def test_pdf_lines_are_joined_into_sentences(tmp_path: Path) -> None:
    sentences = units(assets.pdf(REPORT), "report.pdf", tmp_path)
    assert texts(sentences) == [
        "Quarterly report",
        "NNAPI経由でNPUを使うと、CPUより約15倍速くなりました。",
        "消費電力も大きく下がりました。",
        "The new firmware improves battery life significantly on every device we measured.",
        "一部の演算はCPUにフォールバックします。",
        "Page two ends here.",
    ]
    # A larger font on its own line is a title; one character per text object still reads as
    # one line.
    assert sentences[0].kind == "heading"


def test_pdf_paragraph_gap_separates_paragraphs(tmp_path: Path) -> None:
    data = assets.pdf([[("First paragraph without a full stop", 12)], [("x", 1)]], gap=3)
    spaced = assets.pdf(
        [[("Line one of the first paragraph", 12), ("Second paragraph starts here", 12)]], gap=3
    )
    assert "\n\n" in formats.pdf_text(io.BytesIO(spaced), max_chars=1000).text
    assert formats.pdf_text(io.BytesIO(data), max_chars=1000).text.count("\f") == 1


def test_pdf_text_is_cut_at_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "MAX_FILE_CHARS", 30)
    (tmp_path / "long.pdf").write_bytes(assets.pdf([[("A sentence of some length.", 12)]] * 5))
    doc = read_document(tmp_path, FileInfo("long.pdf", 0, 0))
    assert doc.truncated and len(doc.text) <= 30 and doc.format == "pdf"


def test_scanned_pdf_is_reported(tmp_path: Path) -> None:
    assert reason(assets.scanned_pdf(), "scan.pdf", tmp_path) == formats.NO_TEXT_LAYER


def test_encrypted_pdf_needs_its_password(tmp_path: Path) -> None:
    locked = assets.encrypted_pdf(assets.pdf(REPORT), user_password="secret")
    assert reason(locked, "locked.pdf", tmp_path) == formats.ENCRYPTED_PDF


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_pdf_with_an_empty_user_password_is_read(tmp_path: Path, algorithm: str) -> None:
    # "Protected" PDFs that open without a password only restrict printing or copying.
    data = assets.encrypted_pdf(assets.pdf(REPORT), user_password="", algorithm=algorithm)
    assert "Page two ends here." in texts(units(data, "restricted.pdf", tmp_path))


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n" + bytes(range(256)) * 40,
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>",
        b"",
        b"not a pdf at all, just words",
    ],
    ids=["garbage", "dangling", "empty", "words"],
)
def test_corrupt_pdf_is_reported(tmp_path: Path, data: bytes) -> None:
    assert reason(data, "broken.pdf", tmp_path) in (formats.CORRUPT_PDF, formats.NO_TEXT_LAYER)


def test_truncated_pdf_is_read_as_far_as_it_goes_or_reported(tmp_path: Path) -> None:
    data = assets.pdf(REPORT)
    for cut in (len(data) // 3, len(data) // 2, len(data) - 100):
        try:
            units(data[:cut], "cut.pdf", tmp_path)
        except FileSkipped as skipped:
            assert skipped.reason in (formats.CORRUPT_PDF, formats.NO_TEXT_LAYER)


def test_pdf_spacing_repairs() -> None:
    repair = formats.repair_pdf_spacing
    assert repair("日 本 語 の 文 章 で す 。") == "日本語の文章です。"
    assert repair("第1章 概要") == "第1章 概要"  # a real space between words stays
    assert repair("「 引用 」 と 述べた") == "「引用」と述べた"
    assert repair("the e\ufb03cient \ufb01le") == "the efficient file"
    assert repair("tab\tand\x00control") == "tab andcontrol"
    join = formats.join_pdf_lines
    assert join(["日本語の文章が次の", "行に続きます。"]) == "日本語の文章が次の行に続きます。"
    assert join(["a hyphen-", "ated word"]) == "a hyphenated word"
    assert join(["keeps the hyphen-", "Capitalised"]) == "keeps the hyphen- Capitalised"
    assert join(["soft\u00ad", "hyphen"]) == "softhyphen"
    assert join(["English line", "次の行"]) == "English line 次の行"
    assert join(["", "  ", "only"]) == "only"


# ---------------------------------------------------------------- HTML

PAGE = """<!DOCTYPE html>
<html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">
<title>在宅勤務の手引き</title>
<style>body { color: red } p::after { content: "style text" }</style>
<script>document.write("<p>script text</p>");</script></head>
<body>
<header class="site-header"><a href="/">ホーム</a> | <a href="/faq">FAQ</a></header>
<nav><ul><li>メニュー項目</li></ul></nav>
<div role="navigation">Breadcrumb trail</div>
<main>
<h1>在宅勤務の手引き</h1>
<h2>コアタイム</h2>
<p>コアタイムは10時から15時です。
申請は前日までに行ってください。</p>
<ul><li>ノートパソコンは初日に届きます。</li><li><p>VPNの設定は情報システム部に相談。</p></li></ul>
<table><caption>上限</caption><tr><th>項目</th><th>日数</th></tr><tr><td>在宅勤務</td><td>週3日</td></tr></table>
<pre><code>vpn connect --profile office</code></pre>
<p hidden>Hidden paragraph.</p><div style="display: none">Invisible block.</div>
<article><header><h3>記事の見出し</h3></header><p>記事の本文です。</p>
<footer>記事の脚注です。</footer></article>
<p>1. 数字で始まる普通の文です。</p>
</main>
<aside>関連リンク</aside>
<footer>Copyright 2024 Example Corp.</footer>
<noscript>Enable JavaScript.</noscript>
</body></html>
"""


def page_units(tmp_path: Path, page: str = PAGE, encoding: str = "cp932") -> list[Sentence]:
    return units(page.encode(encoding), "page.html", tmp_path)


def test_html_keeps_visible_text_only(tmp_path: Path) -> None:
    shown = " ".join(texts(page_units(tmp_path)))
    for hidden in (
        "style text",
        "script text",
        "ホーム",
        "メニュー項目",
        "Breadcrumb",
        "Hidden",
        "Invisible",
        "関連リンク",
        "Copyright",
        "JavaScript",
        "color",
    ):
        assert hidden not in shown, hidden
    for visible in ("記事の見出し", "記事の本文です。", "記事の脚注です。", "上限"):
        assert visible in shown, visible


def test_html_structure_becomes_units(tmp_path: Path) -> None:
    sentences = page_units(tmp_path)
    assert texts(sentences, "heading") == ["在宅勤務の手引き", "コアタイム", "上限", "記事の見出し"]
    assert texts(sentences, "list") == [
        "ノートパソコンは初日に届きます。",
        "VPNの設定は情報システム部に相談。",
    ]
    assert texts(sentences, "table") == ["項目 | 日数", "在宅勤務 | 週3日"]
    assert texts(sentences, "code") == ["vpn connect --profile office"]
    # A line break inside Japanese text is no space; Markdown-looking text stays text.
    assert "コアタイムは10時から15時です。" in texts(sentences, "text")
    assert "1. 数字で始まる普通の文です。" in texts(sentences, "text")


@pytest.mark.parametrize(
    "head",
    [
        '<meta charset="shift_jis">',
        "<meta charset=Shift_JIS>",
        '<?xml version="1.0" encoding="Shift_JIS"?><html>',
    ],
)
def test_html_meta_charset_is_honoured(tmp_path: Path, head: str) -> None:
    page = f"{head}<p>ｶﾀｶﾅと漢字の混ざった文章です。</p>"
    (tmp_path / "sjis.html").write_bytes(page.encode("cp932"))
    doc = read_document(tmp_path, FileInfo("sjis.html", 0, 0))
    assert doc.encoding == "cp932"
    assert "ｶﾀｶﾅと漢字の混ざった文章です。" in doc.text


def test_html_with_a_wrong_charset_is_detected(tmp_path: Path) -> None:
    page = '<meta charset="utf-8"><p>本当はEUC-JPで書かれたページです。</p>'
    (tmp_path / "wrong.html").write_bytes(page.encode("euc-jp"))
    doc = read_document(tmp_path, FileInfo("wrong.html", 0, 0))
    assert doc.encoding == "euc-jp" and "本当はEUC-JPで書かれたページです。" in doc.text


def test_html_double_break_separates_paragraphs() -> None:
    parser = formats.HtmlText(max_chars=1000)
    parser.feed("<body>一行目の文<br>二行目の文<br><br>Second paragraph.<br/>Same one.</body>")
    assert parser.result().text == "一行目の文二行目の文\n\nSecond paragraph. Same one."


def test_html_is_streamed_and_cut_at_the_limit() -> None:
    parser = formats.HtmlText(max_chars=10_000)
    chunks = 0
    while not parser.full:
        parser.feed("<p>Another paragraph of a very long page.</p>" * 100)
        chunks += 1
    result = parser.result()
    assert result.truncated and len(result.text) <= 10_000 and chunks < 10


def test_html_unclosed_comment_stops_the_parser() -> None:
    parser = formats.HtmlText(max_chars=1_000_000)
    parser.feed("<p>Visible text before the comment.</p><!-- never closed ")
    for _ in range(10):
        parser.feed("x" * 1_000_000)
    assert parser.full
    result = parser.result()
    assert result.truncated and result.text == "Visible text before the comment."


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/=\"' abp!-&;#\n日本trscipylehd")), max_size=300))
def test_html_parser_never_fails(markup: str) -> None:
    parser = formats.HtmlText(max_chars=500)
    parser.feed(markup)
    result = parser.result()
    assert len(result.text) <= 500
    split_document(result.text, "html")


# ---------------------------------------------------------------- Office files


def test_docx_headings_lists_and_tables(tmp_path: Path) -> None:
    sentences = units(assets.word(), "policy.docx", tmp_path)
    assert texts(sentences, "heading") == ["Travel policy", "出張の手続き"]
    assert texts(sentences, "list") == [
        "出張は一週間前までに申請してください。",
        "Hotels are booked by the travel desk.",
    ]
    # A merged cell is one cell, not repeated.
    assert texts(sentences, "table") == [
        "Class | Limit | Notes",
        "Economy | 20,000 yen",
        "Business | 40,000 yen",
    ]
    assert "Receipts are kept for seven years." in texts(sentences, "text")
    assert texts(sentences)[-1] == "Questions go to the travel desk in building B."


def test_zip_bomb_is_refused_before_it_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "MAX_ARCHIVE_BYTES", 8 << 20)
    assert reason(assets.zip_bomb(16 << 20), "bomb.docx", tmp_path) == formats.ZIP_BOMB


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), formats.LEGACY_OFFICE),
        (b"PK\x03\x04 broken zip", "not a valid Office file (corrupt zip archive)"),
        (assets.odt("<text:p>an ODT renamed</text:p>"), "corrupt DOCX (cannot be parsed)"),
    ],
    ids=["ole", "broken-zip", "not-word"],
)
def test_bad_docx_is_reported(tmp_path: Path, data: bytes, expected: str) -> None:
    assert reason(data, "bad.docx", tmp_path) == expected


def test_pptx_slides_are_pages_in_presentation_order(tmp_path: Path) -> None:
    deck = assets.slides(
        [
            ("Second in the file", ["Body of the slide stored first."]),
            ("Opening slide", ["Shown first, stored second.", "Another point here."]),
            ("Closing", ["Thanks for listening to all of this."]),
        ]
    )
    sentences = units(deck, "deck.pptx", tmp_path)
    assert [(s.page, s.kind, s.text) for s in sentences] == [
        (1, "heading", "Opening slide"),
        (1, "list", "Shown first, stored second."),
        (1, "list", "Another point here."),
        (2, "heading", "Second in the file"),
        (2, "list", "Body of the slide stored first."),
        (3, "heading", "Closing"),
        (3, "list", "Thanks for listening to all of this."),
    ]


def test_odt_headings_lists_tables(tmp_path: Path) -> None:
    body = (
        '<text:h text:outline-level="2">会議の<text:span>手順</text:span></text:h>'
        "<text:p>Words<text:s/>with<text:tab/>odd spacing are kept apart.</text:p>"
        "<text:list><text:list-item><text:p>An item of a list.</text:p></text:list-item>"
        "</text:list>"
        "<table:table><table:table-row><table:table-cell><text:p>A</text:p></table:table-cell>"
        "<table:table-cell><text:p>B</text:p></table:table-cell></table:table-row>"
        "</table:table>"
    )
    sentences = units(assets.odt(body), "notes.odt", tmp_path)
    assert [(s.kind, s.text) for s in sentences] == [
        ("heading", "会議の手順"),
        ("text", "Words with odd spacing are kept apart."),
        ("list", "An item of a list."),
        ("table", "A | B"),
    ]


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2000))
def test_container_parsers_only_raise_unreadable(data: bytes) -> None:
    for fmt in formats.CONTAINERS:
        for blob in (data, b"%PDF-1.4\n" + data, b"PK\x03\x04" + data):
            with contextlib.suppress(UnreadableDocument):
                formats.extract(fmt, io.BytesIO(blob), max_chars=1000)


# ---------------------------------------------------------------- Markdown escaping


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=120))
def test_escaped_text_reads_back_as_the_same_text(text: str) -> None:
    assume(any(char.isalnum() for char in text))  # markup-only pages are shown raw
    escaped = formats.md_escape(text)
    shown = "".join("".join(s.text for s in split_document(escaped, "html")).split())
    assert shown == "".join(text.split())


@settings(max_examples=150, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=3000),
        st.text(max_size=500).map(lambda text: text.encode("utf-8", "surrogatepass")),
    ),
    suffix=st.sampled_from(sorted(config.TEXT_SUFFIXES)),
)
def test_any_bytes_with_any_suffix_are_read_or_skipped(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "file" + suffix).write_bytes(data)
        try:
            doc = read_document(Path(folder), FileInfo("file" + suffix, 0, 0))
        except FileSkipped as skipped:
            assert skipped.reason and "\n" not in skipped.reason
            return
        split_document(doc.text, doc.format)


def test_pdf_hit_points_at_its_page(tmp_path: Path, tiny_model_dir: Path) -> None:
    from indexer import Index

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "report.pdf").write_bytes(assets.pdf(REPORT))
    index = Index(tmp_path / "idx", model=tiny_model_dir)
    index.build(docs)
    hit = index.ask("一部の演算はCPUにフォールバックします。", k=1, mode="dense")[0]
    assert (hit.page, hit.location) == (2, "report.pdf:p2")
    assert hit.to_dict()["location"] == "report.pdf:p2"
