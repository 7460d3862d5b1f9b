"""Make the reverse of a sentence-pair eval set: its passages ask, its questions are the documents.

    python -m scripts.reverse_set SET_DIR [--out DIR]

Tatoeba en-ja pairs each English sentence (the question) with its Japanese translation (the
passage). Reversed, Japanese sentences are asked over English documents, a direction the sets
in ../shared/eval do not cover. Each question becomes a document `docs/<question id>.txt` and a
passage of that id; each passage's text becomes a question whose answer is that document. Only
sets with exactly one question per passage can be reversed. Prints OUT.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import click

from indexer import config
from scripts.common import read_jsonl


def reversed_name(name: str) -> str:
    """tatoeba_en-ja → tatoeba_ja-en; a name without a language pair gets "-reversed"."""
    pair = re.fullmatch(r"(.+_)([^_-]+)-([^_-]+)", name)
    return f"{pair[1]}{pair[3]}-{pair[2]}" if pair else f"{name}-reversed"


def default_out(set_dir: Path) -> Path:
    """eval-reversed/<reversed name> under the indexer cache (~/.cache/indexer)."""
    return config.cache_dir() / "eval-reversed" / reversed_name(set_dir.name)


def write_jsonl(path: Path, records: list[dict]) -> None:
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_text("".join(lines), encoding="utf-8")


def make_reversed(set_dir: Path, out: Path) -> Path:
    """Write the reversed set at `out` (replacing what was there) and return it."""
    passages = {p["id"]: p for p in read_jsonl(set_dir / "passages.jsonl")}
    queries = list(read_jsonl(set_dir / "queries.jsonl"))
    asked = Counter(q["passage_id"] for q in queries)
    if any(n > 1 for n in asked.values()) or set(asked) != set(passages):
        raise click.ClickException(
            f"{set_dir} does not pair each passage with exactly one question — only "
            "sentence-pair sets (like tatoeba_en-ja) can be reversed"
        )
    if out.exists():
        shutil.rmtree(out)
    (out / "docs").mkdir(parents=True)
    new_passages, new_queries = [], []
    for q in queries:
        passage = passages[q["passage_id"]]
        (out / "docs" / f"{q['id']}.txt").write_text(q["question"] + "\n", encoding="utf-8")
        new_passages.append({"id": q["id"], "lang": q.get("lang", ""), "title": "",
                             "text": q["question"]})  # fmt: skip
        new_queries.append({"id": passage["id"], "lang": passage.get("lang", ""),
                            "question": passage["text"], "passage_id": q["id"]})  # fmt: skip
    write_jsonl(out / "passages.jsonl", new_passages)
    write_jsonl(out / "queries.jsonl", new_queries)
    return out


@click.command()
@click.argument("set_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the set [default: eval-reversed/NAME in the indexer cache].",
)
def main(set_dir: Path, out: Path | None) -> None:
    """Write SET_DIR with questions and passages swapped; print the new set's path."""
    click.echo(make_reversed(set_dir, out or default_out(set_dir)))


if __name__ == "__main__":
    main()
