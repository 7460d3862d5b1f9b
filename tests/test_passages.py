"""Units and passages of a document, made with a tiny real tokenizer (no ONNX session)."""

from __future__ import annotations

import itertools
from pathlib import Path

from indexer.models import load_info
from indexer.passages import (
    Recipe,
    Unit,
    make_chunks,
    make_passages,
    make_passes,
    make_sections,
    make_units,
)
from indexer.tokenize import Tokenizer

STEPS = [
    "Plug in the cable.",
    "Turn on the power.",
    "Wait for the light.",
    "Open the app.",
]


def markdown_units(text: str, model_dir: Path) -> tuple[list[Unit], Tokenizer]:
    """The units of a Markdown document, and the tokenizer that made them."""
    tokenizer = Tokenizer(load_info(model_dir))
    return make_units(text, "markdown", tokenizer), tokenizer


#: Passages made by the model as it is (new indexes make them with its int8 copy).
FP32 = Recipe(precision="fp32")


def test_chunks_under_a_heading_carry_its_text(tiny_model_dir: Path) -> None:
    steps = [f"Step {i} is done by hand." for i in range(1, 6)]
    units, tokenizer = markdown_units("# Setup\n\n" + " ".join(steps) + "\n", tiny_model_dir)
    chunks = make_chunks(units, tokenizer)
    assert [u.text for u in units] == ["Setup", *steps]
    # The chunk the heading opens holds it once; later chunks get it in front of their text.
    assert chunks[0].text == " ".join(["Setup", *steps[:2]])
    assert chunks[1].text == "Setup\n" + " ".join(steps[2:])
    assert all(c.key not in {u.key for u in units} for c in chunks)


def test_a_section_longer_than_a_chunk_gets_its_own_vector(tiny_model_dir: Path) -> None:
    text = "# Setup\n\n" + " ".join(STEPS) + "\n\n# Short\n\nOne line.\n"
    units, tokenizer = markdown_units(text, tiny_model_dir)
    chunks = make_chunks(units, tokenizer)
    sections = make_sections(units, tokenizer, chunks)
    # "Setup" spans two chunks, so it has a section; "Short" is one chunk, which stands for it.
    assert [(s.first, s.last, s.kind) for s in sections] == [(0, 4, "section")]
    assert sections[0].text == " ".join(["Setup", *STEPS])
    assert make_passages(units, tokenizer, FP32) == chunks + sections
    passages = make_passages(units, tokenizer, Recipe(chunks="pooled", precision="fp32"))
    assert [(p.first, p.last, p.kind) for p in passages] == [
        (c.first, c.last, c.kind) for c in chunks + sections
    ]
    # Pooled: both chunks of "Setup" come from its section's pass, under keys no text has;
    # "Short" is embedded alone as before.
    pooled = passages[:2]
    assert all(p.within == sections[0].key for p in pooled)
    assert not {p.key for p in pooled} & {c.key for c in chunks}
    assert passages[2:] == chunks[2:] + sections


def test_passes_run_each_token_once_for_its_sentence_and_once_for_its_section(
    tiny_model_dir: Path,
) -> None:
    text = "# Setup\n\n" + " ".join(STEPS) + "\n\n# Short\n\nOne line.\n"
    units, tokenizer = markdown_units(text, tiny_model_dir)
    prefix = tokenizer.model.passage_prefix
    # Embedded chunks: every unit and passage is a pass of its own.
    embedded = make_passages(units, tokenizer)
    assert [run.keys for run in make_passes(units, embedded, prefix)] == [
        [item.key] for item in [*units, *embedded]
    ]
    passages = make_passages(units, tokenizer, Recipe(chunks="pooled", precision="fp32"))
    passes = make_passes(units, passages, prefix)
    # One pass per unit, one for "Short"'s chunk, one for "Setup"'s section and its chunks.
    assert len(passes) == len(units) + 2
    section = next(run for run in passes if len(run.outputs) > 1)
    assert section.texts == [prefix.rstrip(), "Setup", *STEPS]
    assert section.outputs == [
        (passages[-1].key, None),
        (passages[0].key, (1, 3)),  # the heading and the first two steps
        (passages[1].key, (4, 5)),  # the last two steps (the heading is read, not pooled)
    ]
    # Joined token by token, the pass reads what the section's own text would.
    joined = [t for piece in section.texts for t in tokenizer.encode(piece)]
    assert joined == tokenizer.encode(prefix + passages[-1].text)


def test_a_section_is_cut_where_the_model_stops(tiny_model_dir: Path) -> None:
    sentences = [f"Item {i} is here." for i in range(30)]
    units, tokenizer = markdown_units("# Long\n\n" + " ".join(sentences) + "\n", tiny_model_dir)
    sections = make_chunks(units, tokenizer, size=None, kind="section")
    assert len(sections) > 1 and sections[0].first == 0 and sections[-1].last == len(units) - 1
    assert all(a.last + 1 == b.first for a, b in itertools.pairwise(sections))
    prefix = tokenizer.model.passage_prefix
    assert all(tokenizer.count(prefix + s.text) <= tokenizer.max_content_tokens for s in sections)
    assert all(s.text.startswith("Long\n") for s in sections[1:]), "later parts carry the heading"


def test_a_sentence_longer_than_the_model_is_windowed(tiny_model_dir: Path) -> None:
    long = " ".join(f"word{i}" for i in range(2000)) + "."
    units, tokenizer = markdown_units(long + "\n", tiny_model_dir)
    assert len(units) > 1 and all(u.windowed for u in units)
    prefix = tokenizer.model.passage_prefix
    assert all(tokenizer.count(prefix + u.text) <= tokenizer.max_content_tokens for u in units)
    assert len({u.key for u in units}) == len(units)


def test_int8_passages_are_keyed_for_the_copy_and_run_on_it(tiny_model_dir: Path) -> None:
    # The opening line is a chunk of one unit; "Setup" has two chunks and a section.
    text = "Just one opening line.\n\n# Setup\n\n" + " ".join(STEPS) + "\n"
    units, tokenizer = markdown_units(text, tiny_model_dir)
    fp32 = make_passages(units, tokenizer, FP32)
    int8 = make_passages(units, tokenizer, Recipe(precision="int8"))
    unit_keys = {u.key for u in units}
    assert [(p.first, p.last, p.kind) for p in int8] == [(p.first, p.last, p.kind) for p in fp32]
    for a, b in zip(fp32, int8, strict=True):
        # A passage of one unit keeps its unit's (fp32) vector; the others get keys of their own.
        assert (a.key == b.key) == (b.key in unit_keys)
    assert any(p.key in unit_keys for p in int8), "no one-unit passage in the document"
    prefix = tokenizer.model.passage_prefix
    passes = make_passes(units, int8, prefix, "int8")
    assert [r.precision for r in passes[: len(units)]] == ["fp32"] * len(units)
    extra = passes[len(units) :]
    assert {r.precision for r in extra} == {"int8"}
    # Units run once: no pass for a passage that is its unit.
    assert sorted(k for r in extra for k in r.keys) == sorted(
        p.key for p in int8 if p.key not in unit_keys
    )


def test_averaged_sections_are_keyed_by_their_chunks_and_need_no_pass(tiny_model_dir: Path) -> None:
    text = "# Setup\n\n" + " ".join(STEPS) + "\n\n# Short\n\nOne line.\n"
    units, tokenizer = markdown_units(text, tiny_model_dir)
    embedded = make_passages(units, tokenizer, FP32)
    averaged = make_passages(units, tokenizer, Recipe(sections="averaged", precision="fp32"))
    chunks = [p for p in averaged if p.kind == "chunk"]
    assert chunks == [p for p in embedded if p.kind == "chunk"]
    (section,) = (p for p in averaged if p.kind == "section")
    (embedded_section,) = (p for p in embedded if p.kind == "section")
    assert (section.first, section.last) == (embedded_section.first, embedded_section.last)
    # "Setup" is its two chunks, each weighing the tokens it is embedded with ("Short" is one
    # chunk, which stands for its section as before).
    prefix = tokenizer.model.passage_prefix
    assert section.parts == tuple((c.key, tokenizer.count(prefix + c.text)) for c in chunks[:2])
    assert section.key != embedded_section.key and not embedded_section.parts
    passes = make_passes(units, averaged, prefix)
    assert section.key not in {key for run in passes for key in run.keys}
    assert len(passes) == len(make_passes(units, embedded, prefix)) - 1
    # int8 chunks make int8 parts, so the averaged section is keyed apart from the fp32 one.
    int8 = make_passages(units, tokenizer, Recipe(sections="averaged", precision="int8"))
    assert [p.key for p in int8 if p.kind == "section"] != [section.key]
