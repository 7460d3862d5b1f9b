"""Sentence splitting: concrete rules per language and format, invariants as properties."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer import config
from indexer.split import Sentence, split_document, split_sentences

SHARED = Path(__file__).resolve().parents[2] / "shared"


def texts(text: str, fmt: str = "text") -> list[str]:
    """Sentence texts of a document."""
    return [sentence.text for sentence in split_document(text, fmt)]


def kinds(text: str, fmt: str) -> list[tuple[str, str]]:
    """(kind, text) of each sentence."""
    return [(sentence.kind, sentence.text) for sentence in split_document(text, fmt)]


def assert_invariants(text: str, sentences: list[Sentence]) -> None:
    """Spans ordered and disjoint, every visible character covered, positions and lines right."""
    covered = bytearray(len(text))
    previous_end = 0
    for position, sentence in enumerate(sentences):
        assert sentence.position == position
        assert previous_end <= sentence.char_start < sentence.char_end <= len(text)
        previous_end = sentence.char_end
        covered[sentence.char_start : sentence.char_end] = b"\1" * (
            sentence.char_end - sentence.char_start
        )
        assert sentence.text and sentence.text == sentence.text.strip()
        assert sentence.line_start == text.count("\n", 0, sentence.char_start) + 1
        assert sentence.line_end == text.count("\n", 0, sentence.char_end - 1) + 1
    lost = [i for i, char in enumerate(text) if not char.isspace() and not covered[i]]
    assert not lost, f"characters outside every sentence: {[text[i] for i in lost[:10]]}"


# ---------------------------------------------------------------- Japanese and Chinese


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "今日は晴れています。明日は雨が降るでしょう！本当にそうでしょうか？",
            ["今日は晴れています。", "明日は雨が降るでしょう！", "本当にそうでしょうか？"],
        ),
        (
            "彼は「今日は晴れです。明日も晴れです。」と言いました。次の日は雨でした。",
            ["彼は「今日は晴れです。明日も晴れです。」と言いました。", "次の日は雨でした。"],
        ),
        (
            "この関数は重要です（詳しくは後述します。例外もあります。）。次の節で説明します。",
            [
                "この関数は重要です（詳しくは後述します。例外もあります。）。",
                "次の節で説明します。",
            ],
        ),
        (
            "『吾輩は猫である。名前はまだ無い。』は有名な書き出しです。覚えておきましょう。",
            ["『吾輩は猫である。名前はまだ無い。』は有名な書き出しです。", "覚えておきましょう。"],
        ),
        (
            "社長はこう言いました。「来年も頑張りましょう。」会場は拍手に包まれました。",
            ["社長はこう言いました。", "「来年も頑張りましょう。」", "会場は拍手に包まれました。"],
        ),
        (
            "これは本当にすごいですね!次の例に進みましょう。",
            ["これは本当にすごいですね!", "次の例に進みましょう。"],
        ),
        (
            "これはペンですよね．あれは本だと思います．",
            ["これはペンですよね．", "あれは本だと思います．"],
        ),
        (
            "黑豹队的防守只丢了 308分，排名第六。职业碗防守截锋以 11 分领先全队！"
            "他贡献了几次擒杀？",
            [
                "黑豹队的防守只丢了 308分，排名第六。",
                "职业碗防守截锋以 11 分领先全队！",
                "他贡献了几次擒杀？",
            ],
        ),
        (
            "これはチームの勝利です。、そして貢献できてとても嬉しいです。",
            ["これはチームの勝利です。、そして貢献できてとても嬉しいです。"],
        ),
        (
            "値は１．５倍になりました。これは大きな変化です。",
            ["値は１．５倍になりました。", "これは大きな変化です。"],
        ),
    ],
)
def test_japanese_and_chinese(text: str, expected: list[str]) -> None:
    assert texts(text) == expected


def test_closing_quote_stays_with_its_sentence() -> None:
    sentences = texts("「ここで終わりにします。」\n次の話題に移りましょう。")
    assert sentences == ["「ここで終わりにします。」", "次の話題に移りましょう。"]


# ---------------------------------------------------------------- English and German


@pytest.mark.parametrize(
    "text",
    [
        "Use a short name, e.g. Tokyo or Osaka, for the region.",
        "Pick one format, i.e. Markdown, for every document.",
        "Apples, pears, etc. Are all fine for this recipe.",
        "We met Dr. Smith and Mr. Jones at the station.",
        "Mrs. Brown spoke after Ms. Green yesterday.",
        "It was Python vs. Ruby again in the meeting.",
        "As shown in Fig. 3 the curve rises quickly.",
        "See No. 5 in the list of open issues.",
        "The book was written by J. R. R. Tolkien in England.",
        "The value grew to 3.5 percent last year.",
        "Upgrade to v2.0 before the next release.",
        "Read https://example.com/docs/index.html for the details.",
        "Edit config.yaml and restart the server.",
        "He paused... Then he went on talking.",
        "The U.S. Senate voted on Tuesday.",
        "Am 3. Oktober 1990 wurde Deutschland wiedervereinigt.",
        "Das ist z.B. ein Beispiel, u.a. für Abkürzungen.",
    ],
)
def test_no_split_inside_abbreviations_numbers_urls_and_names(text: str) -> None:
    assert texts(text) == [text]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "The first sentence ends here. The second one follows. "
            "Does a third exist? Yes, it does!",
            [
                "The first sentence ends here.",
                "The second one follows.",
                "Does a third exist?",
                "Yes, it does!",
            ],
        ),
        (
            'He said "Stop right there." Then he left the room.',
            ['He said "Stop right there."', "Then he left the room."],
        ),
        (
            "Open the settings (the gear icon.) Then choose a theme.",
            ["Open the settings (the gear icon.)", "Then choose a theme."],
        ),
        (
            "Visit https://example.com/a.b. Then read the guide.",
            ["Visit https://example.com/a.b.", "Then read the guide."],
        ),
        (
            "The steps are explained on a Pixel 8. The procedure may vary.",
            ["The steps are explained on a Pixel 8.", "The procedure may vary."],
        ),
        (
            "Die Verteidigung gab nur 308 Punkte ab. Mario Addison addierte 6½ Sacks hinzu.",
            ["Die Verteidigung gab nur 308 Punkte ab.", "Mario Addison addierte 6½ Sacks hinzu."],
        ),
        (
            "Node.js is fast. 次の章で説明します。",
            ["Node.js is fast.", "次の章で説明します。"],
        ),
    ],
)
def test_english_and_german_boundaries(text: str, expected: list[str]) -> None:
    assert texts(text) == expected


def test_lowercase_after_full_stop_does_not_start_a_sentence() -> None:
    assert texts("Call the helper with care. then continue as before.") == [
        "Call the helper with care. then continue as before."
    ]


# ---------------------------------------------------------------- other scripts' full stops


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "भारत दक्षिण एशिया में स्थित एक देश है। यह जनसंख्या के हिसाब से सबसे बड़ा देश है।"
            "इसकी राजधानी नई दिल्ली है।",
            [
                "भारत दक्षिण एशिया में स्थित एक देश है।",
                "यह जनसंख्या के हिसाब से सबसे बड़ा देश है।",
                "इसकी राजधानी नई दिल्ली है।",
            ],
        ),
        (
            "धर्मो रक्षति रक्षितः॥१॥ सत्यमेव जयते नानृतम्॥२॥",
            ["धर्मो रक्षति रक्षितः॥१॥", "सत्यमेव जयते नानृतम्॥२॥"],
        ),
        (
            "বাংলাদেশ দক্ষিণ এশিয়ার একটি দেশ। এর রাজধানী ঢাকা শহর।",
            ["বাংলাদেশ দক্ষিণ এশিয়ার একটি দেশ।", "এর রাজধানী ঢাকা শহর।"],
        ),
        (
            "القاهرة هي عاصمة جمهورية مصر العربية. هل زرت القاهرة من قبل؟ إنها مدينة جميلة جدا.",
            [
                "القاهرة هي عاصمة جمهورية مصر العربية.",
                "هل زرت القاهرة من قبل؟",
                "إنها مدينة جميلة جدا.",
            ],
        ),
        (
            "پاکستان جنوبی ایشیا کا ایک ملک ہے۔ اس کا دارالحکومت اسلام آباد ہے۔",
            ["پاکستان جنوبی ایشیا کا ایک ملک ہے۔", "اس کا دارالحکومت اسلام آباد ہے۔"],
        ),
        (
            "Հայաստանը լեռնային երկիր է։ Նրա մայրաքաղաքը Երևանն է։",
            ["Հայաստանը լեռնային երկիր է։", "Նրա մայրաքաղաքը Երևանն է։"],
        ),
        (
            "ኢትዮጵያ በአፍሪካ ቀንድ የምትገኝ አገር ናት። ዋና ከተማዋ አዲስ አበባ ነው።አዲስ አበባን ጎብኝተሃል፧",
            ["ኢትዮጵያ በአፍሪካ ቀንድ የምትገኝ አገር ናት።", "ዋና ከተማዋ አዲስ አበባ ነው።", "አዲስ አበባን ጎብኝተሃል፧"],
        ),
        (
            "မြန်မာနိုင်ငံသည် အရှေ့တောင်အာရှတွင် တည်ရှိသည်။ မြို့တော်မှာ နေပြည်တော် ဖြစ်သည်။",
            ["မြန်မာနိုင်ငံသည် အရှေ့တောင်အာရှတွင် တည်ရှိသည်။", "မြို့တော်မှာ နေပြည်တော် ဖြစ်သည်။"],
        ),
        (
            "ប្រទេសកម្ពុជាស្ថិតនៅអាស៊ីអាគ្នេយ៍។ រាជធានីរបស់ប្រទេសនេះគឺភ្នំពេញ៕ប្រជាជនភាគច្រើននិយាយភាសាខ្មែរ។",
            [
                "ប្រទេសកម្ពុជាស្ថិតនៅអាស៊ីអាគ្នេយ៍។",
                "រាជធានីរបស់ប្រទេសនេះគឺភ្នំពេញ៕",
                "ប្រជាជនភាគច្រើននិយាយភាសាខ្មែរ។",
            ],
        ),
    ],
    ids=[
        "hindi",
        "sanskrit-double-danda",
        "bengali",
        "arabic",
        "urdu",
        "armenian",
        "amharic",
        "burmese",
        "khmer",
    ],
)
def test_full_stops_of_other_scripts(text: str, expected: list[str]) -> None:
    assert texts(text) == expected
    assert_invariants(text, split_document(text, "text"))


def test_tibetan_shad_runs_stay_with_their_sentence() -> None:
    text = "༄༅། །བོད་ནི་ས་མཐོ་ཤོས་ཡིན། །ལྷ་ས་ནི་བོད་ཀྱི་རྒྱལ་ས་ཡིན།། ཡུལ་འདིར་མི་མང་པོ་སྡོད༎ འབྲོག་པ་མང་པོ་ཡོད།"
    assert texts(text) == [
        "༄༅། །བོད་ནི་ས་མཐོ་ཤོས་ཡིན། །",
        "ལྷ་ས་ནི་བོད་ཀྱི་རྒྱལ་ས་ཡིན།།",
        "ཡུལ་འདིར་མི་མང་པོ་སྡོད༎",
        "འབྲོག་པ་མང་པོ་ཡོད།",
    ]
    assert_invariants(text, split_document(text, "text"))


def test_one_line_paragraph_ending_in_a_danda_is_not_a_title() -> None:
    doc = "यह पहला अनुच्छेद है।\n\nयह दूसरा अनुच्छेद है।\n"
    assert kinds(doc, "text") == [
        ("text", "यह पहला अनुच्छेद है।"),
        ("text", "यह दूसरा अनुच्छेद है।"),
    ]


# ---------------------------------------------------------------- Thai and Lao


def test_space_between_thai_phrases_ends_a_sentence() -> None:
    text = (
        "ประเทศไทยตั้งอยู่ในเอเชียตะวันออกเฉียงใต้ กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย  ภาษาราชการคือภาษาไทย"
    )
    assert texts(text) == [
        "ประเทศไทยตั้งอยู่ในเอเชียตะวันออกเฉียงใต้",
        "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
        "ภาษาราชการคือภาษาไทย",
    ]
    assert_invariants(text, split_document(text, "text"))


def test_space_between_lao_phrases_ends_a_sentence() -> None:
    text = "ປະເທດລາວຕັ້ງຢູ່ໃນອາຊີຕາເວັນອອກສຽງໃຕ້ ນະຄອນຫຼວງແມ່ນວຽງຈັນ"
    assert texts(text) == ["ປະເທດລາວຕັ້ງຢູ່ໃນອາຊີຕາເວັນອອກສຽງໃຕ້", "ນະຄອນຫຼວງແມ່ນວຽງຈັນ"]


@pytest.mark.parametrize(
    "text",
    [
        "สินค้าชิ้นนี้ราคา 100 บาทต่อกิโลกรัม",  # a Thai letter and a digit
        "สินค้าชิ้นนี้ราคา ๑๐๐ บาทต่อกิโลกรัม",  # Thai digits
        "เราเขียนโปรแกรมด้วย Python ทุกวันในที่ทำงาน",  # Latin text
        "ในโรงเรียนมีเด็กๆ เล่นฟุตบอลที่สนาม",  # after ๆ (repeat the word) a space is the convention
        "ประชาชนในกรุงเทพฯ ใช้รถไฟฟ้าทุกวัน",  # after ฯ (abbreviation) too
        "เขาพูดว่า (สวัสดีครับ ยินดีที่ได้รู้จัก) แล้วยิ้ม",  # inside brackets
        "ประเทศไทยตั้งอยู่ในเอเชีย\nตะวันออกเฉียงใต้",  # a bare line break, as in PDF text
    ],
    ids=["digits", "thai-digits", "latin", "mai-yamok", "paiyannoi", "brackets", "line-break"],
)
def test_thai_spaces_that_do_not_end_a_sentence(text: str) -> None:
    assert len(texts(text)) == 1


def test_thai_sentence_with_digits_and_latin_splits_only_between_thai_letters() -> None:
    text = "สินค้านี้ราคา 100 บาท ซื้อได้ที่ร้าน Central World ทุกสาขา"
    assert texts(text) == ["สินค้านี้ราคา 100 บาท", "ซื้อได้ที่ร้าน Central World ทุกสาขา"]


def test_short_thai_phrase_joins_its_neighbour() -> None:
    # "น่ารักดี" is 8 code points but 5 letters: its vowel and tone marks do not count.
    assert texts("ลูกแมวตัวนี้ขนสีขาว น่ารักดี") == ["ลูกแมวตัวนี้ขนสีขาว น่ารักดี"]
    assert texts("ใช่ไหม แมวชอบนอนทั้งวันทั้งคืน") == ["ใช่ไหม แมวชอบนอนทั้งวันทั้งคืน"]


def test_thai_spans_point_back_at_the_raw_text() -> None:
    paragraph = " ภาษาราชการคือภาษาไทย \t กรุงเทพมหานครเป็นเมืองหลวง "
    spans = split_sentences(paragraph)
    assert [paragraph[a:b] for a, b in spans] == [
        "ภาษาราชการคือภาษาไทย",
        "กรุงเทพมหานครเป็นเมืองหลวง",
    ]


# ---------------------------------------------------------------- short fragments


def test_short_fragment_joins_previous_sentence() -> None:
    assert texts("This is the first full sentence. OK.") == ["This is the first full sentence. OK."]


def test_short_fragment_joins_next_sentence_when_first() -> None:
    assert texts("OK. This is the first full sentence.") == ["OK. This is the first full sentence."]


def test_lone_punctuation_never_stands_alone() -> None:
    assert texts("これで説明は終わりです。。") == ["これで説明は終わりです。。"]
    assert texts("First paragraph is long enough.\n\n...") == [
        "First paragraph is long enough. ..."
    ]
    assert texts("。") == ["。"]  # the document's only character still needs a sentence


def test_short_paragraph_joins_neighbouring_prose() -> None:
    doc = "This paragraph is long enough to stand.\n\nYes.\n"
    sentences = split_document(doc, "text")
    assert [s.text for s in sentences] == ["This paragraph is long enough to stand. Yes."]
    assert (sentences[0].line_start, sentences[0].line_end) == (1, 3)


def test_merge_threshold_comes_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "MIN_SENTENCE_CHARS", 2)
    assert texts("Go now. Stop here.") == ["Go now.", "Stop here."]


def test_split_sentences_returns_trimmed_spans() -> None:
    paragraph = "  これが最初の文です。 そして二番目の文です。  "
    spans = split_sentences(paragraph)
    assert [paragraph[a:b] for a, b in spans] == ["これが最初の文です。", "そして二番目の文です。"]


# ---------------------------------------------------------------- Markdown


def test_markdown_headings() -> None:
    doc = (
        "# Title\n\n## Section two ##\n\n### 設定 {#settings}\n\n"
        "Setext one\n==========\n\nSetext two\n---\n"
    )
    assert kinds(doc, "markdown") == [
        ("heading", "Title"),
        ("heading", "Section two"),
        ("heading", "設定"),
        ("heading", "Setext one"),
        ("heading", "Setext two"),
    ]


def test_short_heading_stays_whole() -> None:
    assert kinds("## A\n\nThis paragraph is long enough.\n", "markdown") == [
        ("heading", "A"),
        ("text", "This paragraph is long enough."),
    ]


def test_markdown_list_items() -> None:
    doc = (
        "- The first item is here.\n"
        "- The second item has two sentences. It goes on here.\n"
        "  - A nested item is its own unit.\n"
        "1. An ordered item follows now.\n"
        "2. Another ordered item\n"
        "   continues on the next line.\n"
    )
    sentences = split_document(doc, "markdown")
    assert [(s.kind, s.text) for s in sentences] == [
        ("list", "The first item is here."),
        ("list", "The second item has two sentences."),
        ("list", "It goes on here."),
        ("list", "A nested item is its own unit."),
        ("list", "An ordered item follows now."),
        ("list", "Another ordered item continues on the next line."),
    ]
    assert (sentences[-1].line_start, sentences[-1].line_end) == (5, 6)
    assert doc[sentences[0].char_start] == "-"  # the bullet is inside the span


def test_short_list_items_are_grouped() -> None:
    doc = "- Java\n- Kotlin\n- Swift\n"
    assert kinds(doc, "markdown") == [("list", "Java Kotlin Swift")]


def test_markdown_table_rows() -> None:
    doc = (
        "| 機能 | 操作 |\n| --- | :---: |\n| 追加 | フォームを送信 |\n| 削除 | `delete` ボタン |\n"
    )
    sentences = split_document(doc, "markdown")
    assert [(s.kind, s.text) for s in sentences] == [
        ("table", "機能 | 操作"),
        ("table", "追加 | フォームを送信"),
        ("table", "削除 | delete ボタン"),
    ]
    assert (sentences[0].line_start, sentences[0].line_end) == (1, 2)  # separator row joined


def test_fenced_code_is_one_unit() -> None:
    doc = (
        "Run the following code.\n\n```js\nconst a = 1.5;\n"
        "console.log(a.toFixed(2)); // done. Next.\n```\n\n~~~\nplain. tilde. fence.\n~~~\n"
    )
    assert kinds(doc, "markdown") == [
        ("text", "Run the following code."),
        ("code", "const a = 1.5;\nconsole.log(a.toFixed(2)); // done. Next."),
        ("code", "plain. tilde. fence."),
    ]


def test_unterminated_fence_runs_to_the_end() -> None:
    doc = "Intro text is here.\n\n```python\nx = 1. y = 2.\n\n# Not a heading\n"
    assert kinds(doc, "markdown") == [
        ("text", "Intro text is here."),
        ("code", "x = 1. y = 2.\n\n# Not a heading"),
    ]


def test_indented_code_block() -> None:
    doc = "A paragraph comes first.\n\n    let x = 1.\n    let y = 2.\n\nAnd prose after it.\n"
    assert kinds(doc, "markdown") == [
        ("text", "A paragraph comes first."),
        ("code", "let x = 1.\nlet y = 2."),
        ("text", "And prose after it."),
    ]


def test_front_matter_is_meta() -> None:
    yaml = "---\nauthor: azu\ndescription: 説明です。\n---\n\n# 見出し\n"
    assert kinds(yaml, "markdown") == [
        ("meta", "author: azu\ndescription: 説明です。"),
        ("heading", "見出し"),
    ]
    toml = '+++\ntitle = "Hello"\n+++\nBody text is right here.\n'
    assert kinds(toml, "markdown")[0] == ("meta", 'title = "Hello"')


def test_thematic_break_is_not_front_matter_or_a_sentence() -> None:
    doc = "First paragraph is long enough.\n\n---\n\nSecond paragraph is long enough.\n"
    sentences = split_document(doc, "markdown")
    assert [s.text for s in sentences] == [
        "First paragraph is long enough.",
        "Second paragraph is long enough.",
    ]
    assert sentences[0].line_end == 3


def test_html_comments_and_anchors() -> None:
    doc = (
        '<!-- 編集メモ: 後で直す -->\n\n<a name="imports"></a>\n\n### インポート\n\nText is here.\n'
    )
    sentences = split_document(doc, "markdown")
    assert [(s.kind, s.text) for s in sentences] == [
        ("meta", "編集メモ: 後で直す"),
        ("heading", "インポート"),
        ("text", "Text is here."),
    ]
    assert sentences[1].line_start == 3  # the anchor belongs to the heading it names


def test_markdown_inline_markup_and_line_joining() -> None:
    doc = (
        "**モデル**という概念を\n導入します。See [the guide](https://example.com/x_(y)) and\n"
        "`npm install` for *more*.\n"
    )
    sentences = split_document(doc, "markdown")
    assert [s.text for s in sentences] == [
        "モデルという概念を導入します。",
        "See the guide and npm install for more.",
    ]
    assert [(s.line_start, s.line_end) for s in sentences] == [(1, 2), (2, 3)]


def test_blockquote_and_link_definitions() -> None:
    doc = "> Quoted text is here. It has two sentences.\n\n[guide]: https://example.com\n"
    assert kinds(doc, "markdown") == [
        ("text", "Quoted text is here."),
        ("text", "It has two sentences."),
        ("meta", "[guide]: https://example.com"),
    ]


def test_template_tags_are_meta() -> None:
    doc = "{{book.console}}\n```js\nconsole.log(1);\n```\n"
    assert kinds(doc, "markdown") == [("meta", "{{book.console}}"), ("code", "console.log(1);")]


def test_script_block_is_code() -> None:
    doc = "<style>\n.a { margin: 0.5em; }\n</style>\n\nText after the style block.\n"
    assert kinds(doc, "markdown") == [
        ("code", "<style>\n.a { margin: 0.5em; }\n</style>"),
        ("text", "Text after the style block."),
    ]


# ---------------------------------------------------------------- reStructuredText


def test_rst_titles() -> None:
    doc = (
        "#####\nForms\n#####\n\nIntro paragraph is here.\n\n"
        "NVDAのインストール\n==================\n"
    )
    sentences = split_document(doc, "rst")
    assert [(s.kind, s.text) for s in sentences] == [
        ("heading", "Forms"),
        ("text", "Intro paragraph is here."),
        ("heading", "NVDAのインストール"),
    ]
    assert (sentences[0].line_start, sentences[0].line_end) == (1, 3)
    assert (sentences[2].line_start, sentences[2].line_end) == (7, 8)


def test_rst_code_blocks_and_literals() -> None:
    doc = (
        "Install it like this::\n\n    pip install foo. bar.\n\n"
        ".. code-block:: javascript\n   :linenos:\n\n   const x = 1.5;\n   x.toFixed();\n\n"
        "After the code.\n"
    )
    assert kinds(doc, "rst") == [
        ("text", "Install it like this:"),
        ("code", "pip install foo. bar."),
        ("code", "const x = 1.5;\nx.toFixed();"),
        ("text", "After the code."),
    ]


def test_rst_admonitions_are_prose_and_images_meta() -> None:
    doc = (
        ".. note::\n\n   This is a note. It has two sentences.\n\n"
        ".. image:: /img/a.png\n   :alt: スクリーン・ショット\n\n"
        ".. _label-name:\n\nTitle\n-----\n"
    )
    sentences = split_document(doc, "rst")
    assert [(s.kind, s.text) for s in sentences] == [
        ("text", "This is a note."),
        ("text", "It has two sentences."),
        ("meta", "image:: /img/a.png\n:alt: スクリーン・ショット"),
        ("heading", "Title"),
    ]
    assert sentences[0].line_start == 1  # ".. note::" belongs to its content
    assert sentences[-1].line_start == 8  # the target belongs to the title it labels


def test_rst_lists_and_tables() -> None:
    doc = (
        "*  The first bullet item here.\n*  The second bullet item\n   continues here.\n\n"
        "#. An enumerated item is here.\n\n"
        ".. list-table:: Key commands\n   :header-rows: 1\n\n   *  -  Key\n      -  Description\n"
        "   *  -  :kbd:`Ctrl`\n      -  Stop reading\n\n"
        "+-------+--------+\n| Left  | Right  |\n+-------+--------+\n"
    )
    assert kinds(doc, "rst") == [
        ("list", "The first bullet item here."),
        ("list", "The second bullet item continues here."),
        ("list", "An enumerated item is here."),
        ("text", "Key commands"),
        ("table", "Key | Description"),
        ("table", "Ctrl | Stop reading"),
        ("table", "Left | Right"),
    ]


def test_rst_simple_table_rows() -> None:
    border = "=====  ===========\n"
    doc = f"{border}Key    Description\n{border}Ctrl   Stop reading\n{border}"
    sentences = split_document(doc, "rst")
    assert [(s.kind, s.text) for s in sentences] == [
        ("table", "Key | Description"),
        ("table", "Ctrl | Stop reading"),
    ]
    assert (sentences[0].line_start, sentences[-1].line_end) == (1, 5)


def test_rst_inline_markup_and_comments() -> None:
    doc = (
        ".. a comment for editors\n\n"
        "See :ref:`the guide <guide-label>` and ``code``\\ を参照。 "
        "Visit `the site <https://example.com>`__ now.\n"
    )
    assert kinds(doc, "rst") == [
        ("meta", "a comment for editors"),
        ("text", "See the guide and codeを参照。"),
        ("text", "Visit the site now."),
    ]


def test_rst_definition_term_joins_its_definition() -> None:
    doc = "Ctrl\n   Stop reading now.\nShift\n   Pause or resume.\n"
    assert texts(doc, "rst") == ["Ctrl Stop reading now.", "Shift Pause or resume."]


# ---------------------------------------------------------------- plain text


def test_plain_text_title_line_is_its_own_unit() -> None:
    doc = "梅雨\n\n梅雨は東アジアの気象現象です。雨季の一種である。\n"
    assert kinds(doc, "text") == [
        ("heading", "梅雨"),
        ("text", "梅雨は東アジアの気象現象です。"),
        ("text", "雨季の一種である。"),
    ]


def test_plain_text_joins_lines_and_keeps_markup_characters() -> None:
    doc = "A sentence that\nspans two lines. **Not markdown** here.\n"
    sentences = split_document(doc, "text")
    assert [s.text for s in sentences] == [
        "A sentence that spans two lines.",
        "**Not markdown** here.",
    ]
    assert (sentences[0].line_start, sentences[0].line_end) == (1, 2)


def test_empty_and_blank_documents() -> None:
    for fmt in ("markdown", "rst", "text"):
        assert split_document("", fmt) == []
        assert split_document(" \n\t\n", fmt) == []


def test_markup_only_document_still_has_one_unit() -> None:
    sentences = split_document("---\n", "markdown")
    assert len(sentences) == 1
    assert sentences[0].text == "---"


# ---------------------------------------------------------------- properties

FRAGMENTS = [
    "# ",
    "## ",
    "- ",
    "* ",
    "1. ",
    "#. ",
    "> ",
    "| ",
    " |",
    "|---|",
    "```",
    "~~~",
    "---",
    "+++",
    "===",
    "    ",
    "\t",
    "\n",
    "\n\n",
    ".. ",
    ".. code-block:: js\n",
    ".. note::",
    "::",
    ":kbd:`",
    "`",
    "``",
    "**",
    "[a](b)",
    "<!--",
    "-->",
    "<a>",
    "「",
    "」",
    "（",
    "）",
    "(",
    ")",
    "。",
    "！",
    "？",
    ".",
    "!",
    "?",
    "...",
    "e.g.",
    "Dr.",
    "3.5",
    "Hello",
    "world",
    "日本語の文",
    "x",
    "।",
    "॥",
    "\u0f0d",
    "؟",
    "ภาษาไทย",
    "ๆ",
    " ",
    "{{a}}",
]
documents = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3))).map("".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents, fmt=st.sampled_from(["markdown", "rst", "text"]))
def test_split_document_invariants(text: str, fmt: str) -> None:
    assert_invariants(text, split_document(text, fmt))


@settings(max_examples=300, deadline=None)
@given(paragraph=documents)
def test_split_sentences_invariants(paragraph: str) -> None:
    spans = split_sentences(paragraph)
    covered = set()
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end <= len(paragraph)
        assert paragraph[start:end] == paragraph[start:end].strip()
        covered.update(range(start, end))
        previous_end = end
    assert all(i in covered for i, char in enumerate(paragraph) if not char.isspace())


# ---------------------------------------------------------------- pages (form feeds)


def test_form_feeds_number_the_pages_of_paged_formats() -> None:
    text = "Title of the report\n\nFirst page sentence that goes on\fand second page text.\f\fLast."
    sentences = split_document(text, "pdf")
    assert [(s.page, s.text) for s in sentences] == [
        (1, "Title of the report"),
        (1, "First page sentence that goes on"),
        (2, "and second page text."),
        (4, "Last."),
    ]
    assert_invariants(text, sentences)


def test_form_feed_is_a_boundary_but_no_page_in_text_files() -> None:
    text = "A paragraph that ends without a stop\fA new page starts here."
    sentences = split_document(text, "text")
    assert [(s.page, s.text) for s in sentences] == [
        (None, "A paragraph that ends without a stop"),
        (None, "A new page starts here."),
    ]


def test_front_matter_only_on_the_first_page() -> None:
    text = "---\ntitle: x\n---\nBody text of page one.\f---\nkey: value\n---\nBody two."
    kinds = [(s.page, s.kind) for s in split_document(text, "pptx")]
    assert kinds[0] == (1, "meta") and (2, "meta") not in kinds


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("A" * 9000, "text"),  # a base64 blob
        ("var a=function(b){return b+1}; " * 400, "markdown"),  # minified code
        ("日本語の長い文、" * 800, "text"),  # no spaces, commas only
        ("```\n" + "x = 1  # a line of code\n" * 500 + "```\n", "markdown"),  # a code block
        ("| " + " | ".join(["cell"] * 1500) + " |\n|---|\n", "markdown"),  # a table row
    ],
    ids=["blob", "minified", "cjk", "code", "table"],
)
def test_over_long_units_are_cut(text: str, fmt: str) -> None:
    sentences = split_document(text, fmt)
    assert len(sentences) > 1
    assert all(len(s.text) <= config.MAX_SENTENCE_CHARS for s in sentences)
    assert_invariants(text, sentences)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pages=st.lists(documents, min_size=1, max_size=4),
    fmt=st.sampled_from(["pdf", "pptx", "html", "markdown", "text"]),
)
def test_paged_documents_keep_the_invariants(pages: list[str], fmt: str) -> None:
    text = "\f".join(pages)
    sentences = split_document(text, fmt)
    assert_invariants(text, sentences)
    for sentence in sentences:
        page = text.count("\f", 0, sentence.char_start) + 1
        assert sentence.page == (page if fmt in ("pdf", "pptx") else None)
        assert "\f" not in text[sentence.char_start : sentence.char_end]


# ---------------------------------------------------------------- the real corpus


def _corpus_documents() -> list[tuple[str, str]]:
    corpus = SHARED / "corpus"
    if not corpus.is_dir():
        pytest.skip("../shared/corpus is not available")
    suffixes = {".md": "markdown", ".rst": "rst"}
    return [
        (path.read_text(encoding="utf-8"), suffixes[path.suffix])
        for path in sorted(corpus.rglob("*"))
        if path.suffix in suffixes
    ]


def _cpu_seconds(text: str, fmt: str, runs: int = 3) -> float:
    """The least CPU time of a few splits of text: the run other processes disturbed least."""
    times = []
    for _ in range(runs):
        started = time.process_time()
        split_document(text, fmt)
        times.append(time.process_time() - started)
    return min(times)


def test_real_corpus_invariants_and_speed() -> None:
    documents = _corpus_documents()
    started = time.process_time()
    results = [split_document(text, fmt) for text, fmt in documents]
    elapsed = time.process_time() - started
    for (text, _), sentences in zip(documents, results, strict=True):
        assert_invariants(text, sentences)
    assert sum(map(len, results)) > 10_000
    # About 0.4 s of CPU on a 2-core CI machine: the bound only catches a collapse.
    assert elapsed < 20.0, f"splitting the corpus took {elapsed:.2f} s of CPU"


def test_splitting_time_grows_linearly_with_the_document() -> None:
    """Markdown documents of whole corpus files, about 100,000 and 400,000 characters long: the
    time may grow with the length (linear), not with its square. A ratio within one run holds on
    a fast machine and a loaded one alike, where a bound in seconds does not."""
    markdown = [text for text, fmt in _corpus_documents() if fmt == "markdown"]
    short, long = "", ""
    for text in markdown:
        if len(long) >= 400_000:
            break
        long += text + "\n\n"
        if len(short) < 100_000:
            short = long
    growth = len(long) / len(short)
    ratio = _cpu_seconds(long, "markdown") / _cpu_seconds(short, "markdown")
    assert ratio < 2 * growth, f"{growth:.1f}× the text took {ratio:.1f}× the CPU time"
