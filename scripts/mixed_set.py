"""Make a mixed-language eval set: one set's questions over its documents plus another set's.

    python -m scripts.mixed_set QUERY_SET DISTRACTOR_SET [...] [--out DIR]

Users keep Japanese and English documents side by side, so a question often has documents in
its own language and in another one to choose from. The sets in ../shared/eval each hold one
document language; this copies QUERY_SET (its questions, passages and docs) and adds the
documents and passages of every DISTRACTOR_SET as distractors under their own file names, so
`python -m scripts.eval OUT` measures how well the question's passage still wins. Prints OUT.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from indexer import config


def default_out(query_set: Path, distractors: tuple[Path, ...]) -> Path:
    """eval-mixed/QUERY+DISTRACTOR... under the indexer cache (~/.cache/indexer)."""
    name = "+".join([query_set.name, *(d.name for d in distractors)])
    return config.cache_dir() / "eval-mixed" / name


def make_mixed(query_set: Path, distractors: tuple[Path, ...], out: Path) -> Path:
    """Write the mixed set at `out` (replacing what was there) and return it."""
    if out.exists():
        shutil.rmtree(out)
    (out / "docs").mkdir(parents=True)
    shutil.copy(query_set / "queries.jsonl", out / "queries.jsonl")
    passages = []
    for source in (query_set, *distractors):
        passages.append((source / "passages.jsonl").read_text(encoding="utf-8"))
        for doc in sorted((source / "docs").iterdir()):
            target = out / "docs" / doc.name
            if target.exists():
                raise click.ClickException(
                    f"{doc.name} is in two sets — mixed sets need distinct document names"
                )
            shutil.copy(doc, target)
    (out / "passages.jsonl").write_text(
        "".join(p if p.endswith("\n") else p + "\n" for p in passages), encoding="utf-8"
    )
    return out


@click.command()
@click.argument("query_set", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument(
    "distractors",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the set [default: eval-mixed/QUERY+DISTRACTOR... in the indexer cache].",
)
def main(query_set: Path, distractors: tuple[Path, ...], out: Path | None) -> None:
    """Copy QUERY_SET and add the documents of each DISTRACTOR set; print the new set's path."""
    click.echo(make_mixed(query_set, distractors, out or default_out(query_set, distractors)))


if __name__ == "__main__":
    main()
