"""`index serve` over real HTTP on 127.0.0.1 (urllib and raw sockets, no test client): the
answers are `index ask --json`'s records, bad requests get one-line JSON errors and the server
keeps serving, tokens, the discovery file, and `index ask` through a running server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from indexer import Index, client
from indexer.cli import cli
from indexer.serve import Server, TokenRequiredError
from tests.files import DOCS, write, write_docs
from tests.serving import (
    answered,
    dead_pid,
    get,
    served,
    serving_process,
)
from tests.test_crash import write_corpus

QUESTIONS = [
    ("How fast is the NPU?", "hybrid", 3, 1),
    ("NPUの速度", "hybrid", 5, 2),
    ("VPN buddy", "keyword", 2, 0),
    ("天気", "dense", 4, 1),
]


@pytest.fixture(scope="module")
def idx(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("serve")
    index = Index(root / "idx", model=tiny_model_dir)
    index.build(write_docs(root / "docs", DOCS))
    index.close()
    return root / "idx"


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def local_ask(idx: Path, question: str, *options: object) -> Result:
    """`index ask` with no server announced for idx."""
    assert not Path(client.discovery_file(idx)).exists()
    result = run("ask", question, "--index", idx, *options)
    assert result.exit_code == 0, result.output
    return result


def ask_target(question: str, mode: str, k: int, context: int) -> str:
    query = {"q": question, "mode": mode, "k": k, "context": context}
    return "/ask?" + urllib.parse.urlencode(query)


def test_ask_answers_the_records_of_index_ask_json(idx: Path, tiny_model_dir: Path) -> None:
    expected = {
        (q, m, k, c): local_ask(idx, q, "--mode", m, "-k", k, "--context", c, "--json")
        for q, m, k, c in QUESTIONS
    }
    with served(idx, tiny_model_dir) as server:
        for asked, result in expected.items():
            status, hits = get(server.url, ask_target(*asked))
            assert status == 200, hits
            assert hits == [json.loads(line) for line in result.stdout.splitlines()]
            assert hits, asked


def test_index_ask_through_the_server_prints_what_a_local_ask_prints(
    idx: Path, tiny_model_dir: Path
) -> None:
    plain = {q: local_ask(idx, q, "--mode", m).stdout for q, m, _, _ in QUESTIONS}
    lines = {q: local_ask(idx, q, "--mode", m, "--json").stdout for q, m, _, _ in QUESTIONS}
    with served(idx, tiny_model_dir) as server:
        before = answered(server.url)
        for question, mode, _, _ in QUESTIONS:
            assert run("ask", question, "--index", idx, "--mode", mode).stdout == plain[question]
            through = run("ask", question, "--index", idx, "--mode", mode, "--json")
            assert through.stdout == lines[question]
        assert answered(server.url) == before + 2 * len(QUESTIONS)
        # The same model by its own path is the same model; a copy elsewhere is asked locally.
        run("ask", "VPN", "--index", idx, "--model", tiny_model_dir)
        assert answered(server.url) == before + 2 * len(QUESTIONS) + 1
        copy = shutil.copytree(tiny_model_dir, idx.parent / "model-copy")
        result = run("ask", "VPN", "--index", idx, "--model", copy)
        assert result.exit_code == 0, result.output
        assert answered(server.url) == before + 2 * len(QUESTIONS) + 1


#: The rest of a discovery record (the model filled in by the test).
SERVES = {"model": "MODEL", "token": ""}


@pytest.mark.parametrize(
    "record",
    [
        "not a discovery file",
        {"host": "127.0.0.1", "port": 9, "pid": "dead"},
        {"host": "127.0.0.1", "port": 9, "pid": os.getpid(), "index": "elsewhere", **SERVES},
        {"host": "127.0.0.1", "port": 9, "pid": "DEAD", "index": "IDX", **SERVES},
        {"host": "127.0.0.1", "port": "CLOSED", "pid": os.getpid(), "index": "IDX", **SERVES},
    ],
    ids=["garbage", "incomplete", "other-index", "dead-pid", "nothing-listening"],
)
def test_a_stale_discovery_file_falls_back_to_a_local_ask(
    idx: Path, tiny_model_dir: Path, tmp_path: Path, record: object
) -> None:
    expected = local_ask(idx, "How fast is the NPU?", "--json").stdout
    idx_copy = shutil.copytree(idx, tmp_path / "idx")
    if isinstance(record, dict):
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        fill = {"IDX": str(idx_copy.resolve()), "MODEL": str(tiny_model_dir), "DEAD": dead_pid()}
        fill["CLOSED"] = port
        record = {key: fill.get(str(value), value) for key, value in record.items()}
    lines = record if isinstance(record, str) else "".join(f"{k}={v}\n" for k, v in record.items())
    write(Path(client.discovery_file(idx_copy)), lines)
    result = run("ask", "How fast is the NPU?", "--index", idx_copy, "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout == expected


@pytest.fixture(scope="module")
def served_idx(idx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of idx for the module's shared server (other tests announce servers on idx)."""
    return shutil.copytree(idx, tmp_path_factory.mktemp("served") / "idx")


@pytest.fixture(scope="module")
def server(served_idx: Path, tiny_model_dir: Path) -> Iterator[Server]:
    with served(served_idx, tiny_model_dir) as running:
        yield running


BAD_REQUESTS = [
    ("/ask?q=", 400, "the question is empty"),
    ("/ask?q=%20%09", 400, "the question is empty"),
    ("/ask", 400, "no question"),
    ("/ask?q=" + urllib.parse.quote("あ" * 2001), 400, "2001 characters; at most 2000"),
    ("/ask?q=a%00b", 400, "not text"),
    ("/ask?q=%ff%fe%00%01", 400, "not text"),
    ("/ask?q=VPN&colour=red", 400, "unknown parameter 'colour'"),
    ("/ask?q=VPN&q=NPU", 400, "given more than once"),
    ("/ask?q=VPN&k=0", 400, "k must be a whole number from 1 to 100"),
    ("/ask?q=VPN&k=101", 400, "k must be a whole number from 1 to 100"),
    ("/ask?q=VPN&k=%EF%BC%95", 400, "k must be a whole number"),
    ("/ask?q=VPN&k=1e3", 400, "k must be a whole number"),
    ("/ask?q=VPN&context=-1", 400, "context must be a whole number from 0 to 20"),
    ("/ask?q=VPN&mode=fuzzy", 400, "unknown mode 'fuzzy' — choose one of hybrid, dense, keyword"),
    ("/doc", 400, "no path"),
    ("/doc?path=../../../etc/passwd", 404, "is not an indexed file"),
    ("/doc?path=/etc/passwd", 404, "is not an indexed file"),
    ("/doc?path=en/../en/faq.txt", 404, "is not an indexed file"),
    ("/doc?path=en%00/faq.txt", 404, "is not an indexed file"),
    ("/doc?path=" + "a/" * 3000, 400, "longer than 4096"),
    ("/status?verbose=1", 400, "unknown parameter 'verbose'"),
    ("/etc/passwd", 404, "no such page"),
    ("/../../etc/passwd", 404, "no such page"),
]


@pytest.mark.parametrize(("target", "code", "message"), BAD_REQUESTS)
def test_a_bad_request_gets_a_one_line_json_error(
    server: Server, target: str, code: int, message: str
) -> None:
    status, body = get(server.url, target)
    assert (status, list(body)) == (code, ["error"]), body
    assert message in body["error"] and "\n" not in body["error"]
    status, hits = get(server.url, "/ask?q=VPN&k=1")
    assert status == 200 and len(hits) == 1


def raw(server: Server, request: bytes, *, read: bool = True) -> bytes:
    """Send raw bytes to the server; its whole answer (or nothing when read is False)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        with contextlib.suppress(ConnectionError):  # a server may hang up before reading all
            sock.sendall(request)
        if not read:
            # RST instead of FIN: the connection is gone while the server still answers.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        chunks = []
        with contextlib.suppress(OSError):  # ... or close before the request is sent
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"POST /ask HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 405),
        (b"GET /ask?q=VPN HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413),
        (b"PUT /doc?path=x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    ],
)
def test_only_bodyless_gets_are_served(server: Server, request_bytes: bytes, code: int) -> None:
    status, body = status_and_json(raw(server, request_bytes))
    assert status == code and list(body) == ["error"]


def test_requests_beyond_the_size_limit_are_refused_and_serving_goes_on(server: Server) -> None:
    answer = raw(server, b"GET /ask?q=" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") or answer == b""
    assert b"Traceback" not in answer
    assert get(server.url, "/ask?q=VPN&k=1")[0] == 200


def test_clients_that_disconnect_mid_response_do_not_stop_the_server(server: Server) -> None:
    ask = b"GET /ask?q=NPU&k=100&context=20 HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(5):
        raw(server, ask, read=False)
    raw(server, b"GET /ask?q=NPU", read=False)  # half a request line
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(ask)
        assert sock.recv(10).startswith(b"HTTP/1.1")  # read a little, then hang up
    status, hits = get(server.url, "/ask?q=NPU&k=2")
    assert status == 200 and len(hits) == 2


def test_concurrent_questions_are_all_answered_by_the_one_worker(server: Server) -> None:
    # SQLite refuses a connection used from another thread: any stray call would fail here.
    results: list[tuple[int, object]] = []
    targets = [ask_target(*asked) for asked in QUESTIONS] * 6 + ["/status", "/doc?path=en/faq.txt"]

    def ask(target: str) -> None:
        results.append(get(server.url, target))

    threads = [threading.Thread(target=ask, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in results] == [200] * len(targets)


def test_doc_returns_the_stored_sentences_of_an_indexed_file(
    server: Server, served_idx: Path
) -> None:
    status, doc = get(server.url, "/doc?path=" + urllib.parse.quote("ja/npu.md"))
    assert status == 200 and doc["path"] == "ja/npu.md"
    index = Index(served_idx)
    assert [s["text"] for s in doc["sentences"]] == [r.text for r in index.document("ja/npu.md")]
    index.close()
    status, hits = get(server.url, "/ask?q=NNAPI&mode=keyword&k=1")
    assert hits[0]["path"] == "ja/npu.md"
    assert hits[0]["sentence_id"] in {s["sentence_id"] for s in doc["sentences"]}
    assert {"line", "line_end", "page", "kind"} <= set(doc["sentences"][0])


def test_status_and_healthz(server: Server, served_idx: Path) -> None:
    status, info = get(server.url, "/status")
    assert status == 200 and info["files"] == len(DOCS) and info["generation"] >= 1
    status, health = get(server.url, "/healthz")
    assert status == 200 and health["ok"] and health["pid"] == os.getpid()
    assert health["index"] == str(served_idx.resolve())


def test_ask_renders_the_lines_of_index_ask(server: Server, idx: Path) -> None:
    # What a served `index ask` prints (indexer.client asks for it): the same bytes as a
    # local ask, for people (in colour on request) and with --json.
    for question, mode, k, context in QUESTIONS:
        options = ("--mode", mode, "-k", k, "--context", context)
        target = ask_target(question, mode, k, context)
        for shape, flags in (("text", ()), ("jsonl", ("--json",))):
            with urllib.request.urlopen(f"{server.url}{target[1:]}&format={shape}") as answer:
                assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
                assert answer.read().decode() == local_ask(idx, question, *options, *flags).stdout
    with urllib.request.urlopen(f"{server.url}ask?q=NNAPI&format=text&color=1") as answer:
        styled = answer.read().decode()
    assert styled.startswith("\x1b[36m1. ") and "\x1b[1m > " in styled
    status, error = get(server.url, "/ask?q=NNAPI&format=xml")
    assert status == 400
    assert error["error"] == "unknown format 'xml' — choose one of json, text, jsonl"
    status, error = get(server.url, "/ask?q=NNAPI&format=text&color=2")
    assert status == 400 and "color must be a whole number from 0 to 1" in error["error"]


def test_healthz_names_its_process_in_a_header(server: Server) -> None:
    # A served ask checks it before asking: the port may now belong to another program.
    with urllib.request.urlopen(f"{server.url}healthz") as answer:
        assert answer.headers[client.PID_HEADER] == str(os.getpid())


def test_the_page_is_one_offline_file(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"text/html; charset=utf-8" in head
    assert b"content-security-policy: default-src 'none'" in head.lower()
    assert b"access-control-allow-origin" not in head.lower()
    page = body.decode("utf-8")
    assert "isComposing" in page and "innerHTML" not in page
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere


def test_the_discovery_file_is_private_and_removed_on_exit(idx: Path, tiny_model_dir: Path) -> None:
    announced = Path(client.discovery_file(idx))
    with served(idx, tiny_model_dir, token="s3cret") as server:
        assert announced.stat().st_mode & 0o777 == 0o600
        record = client.find(idx)
        assert record is not None
        assert record["port"] == str(server.port) and record["pid"] == str(os.getpid())
        assert record["token"] == "s3cret" and record["model"] == str(tiny_model_dir.resolve())
    assert not announced.exists()


def test_with_a_token_every_request_needs_it(idx: Path, tiny_model_dir: Path) -> None:
    with served(idx, tiny_model_dir, token="s3cret") as server:
        for target in ["/", "/healthz", "/status", "/ask?q=VPN", "/doc?path=en/faq.txt"]:
            status, body = get(server.url, target)
            assert status == 401 and "token is required" in body["error"]
            assert get(server.url, target, token="wrong")[0] == 401
            sep = "&" if "?" in target else "?"
            assert get(server.url, f"{target}{sep}token=wrong")[0] == 401
        assert get(server.url, "/ask?q=VPN", token="s3cret")[0] == 200
        assert get(server.url, "/ask?q=VPN&token=s3cret")[0] == 200
        before = answered(server.url, token="s3cret")
        result = run("ask", "VPN", "--index", idx, "--json")
        assert result.exit_code == 0 and answered(server.url, token="s3cret") == before + 1


def test_other_addresses_than_loopback_need_a_token(idx: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(TokenRequiredError):
        Server(lambda: Index(idx), host="0.0.0.0")
    result = run("serve", "--index", idx, "--host", "0.0.0.0")
    assert result.exit_code == 2 and "pass --token" in result.stderr
    assert "Traceback" not in result.output


def test_serve_without_an_index_says_what_to_do(tmp_path: Path) -> None:
    result = run("serve", "--index", tmp_path / "none", "--port", "0")
    assert result.exit_code == 1 and "index build" in result.stderr


def test_serve_on_a_busy_port_says_so(idx: Path, tiny_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--index", idx, "--model", tiny_model_dir, "--port", port)
    assert result.exit_code == 1 and "cannot listen on 127.0.0.1" in result.stderr


# -- as a user runs it: child processes


def ask_command(idx: Path, question: str) -> list[str]:
    """`index ask` in a child process that lists the modules it imports on stderr."""
    python = [sys.executable, "-X", "importtime", "-m", "indexer"]
    return [*python, "ask", question, "--index", str(idx)]


def assert_quiet_when_the_reader_leaves(args: list[str]) -> None:
    """`python ARGS | head -0`: the answer meets a closed pipe; the process exits 1 (as click
    does) without a traceback."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, *args], stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert done.returncode == 1 and b"Traceback" not in done.stderr, done.stderr.decode()


@pytest.mark.slow
def test_index_serve_and_ask_as_processes(idx: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(idx, tmp_path / "idx")
    command = [*ask_command(copy, "NPUの速度"), "--json"]
    local = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "onnxruntime" in local.stderr
    with serving_process(copy, tiny_model_dir) as (process, base):
        before = answered(base)
        through = subprocess.run(command, capture_output=True, text=True, check=True)
        assert answered(base) == before + 1
        assert through.stdout == local.stdout
        loaded = through.stderr
        for heavy in ("numpy", "onnxruntime", "faiss", "starlette", "uvicorn", "sentencepiece"):
            assert f" {heavy}\n" not in loaded and f" {heavy}." not in loaded, heavy
        assert_quiet_when_the_reader_leaves(ask_command(copy, "NPUの速度")[3:])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert not Path(client.discovery_file(copy)).exists()
    # Killed outright, the server leaves its file behind: ask falls back to loading.
    with serving_process(copy, tiny_model_dir) as (process, base):
        process.kill()
        process.wait(timeout=60)
        assert Path(client.discovery_file(copy)).exists()
        again = subprocess.run(command, capture_output=True, text=True, check=True)
        assert again.stdout == local.stdout and "onnxruntime" in again.stderr


@pytest.mark.slow
def test_a_build_while_serving_never_fails_a_request(tiny_model_dir: Path, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", DOCS)
    idx = tmp_path / "idx"
    first = Index(idx, model=tiny_model_dir)
    first.build(docs)
    first.close()
    write_corpus(docs / "more", 60)  # 1,800 new sentences: a build of a few seconds
    write(docs / "en/new.txt", "Zebra crossings are painted on the road.\n")
    with serving_process(idx, tiny_model_dir) as (_, base):
        generation = get(base, "/status")[1]["generation"]
        command = [sys.executable, "-m", "indexer", "build", str(docs), "--index", str(idx)]
        build = subprocess.Popen([*command, "--model", str(tiny_model_dir), "--quiet"])
        statuses, asked = [], 0
        while build.poll() is None or asked < 20:
            status, _ = get(base, ask_target(*QUESTIONS[asked % len(QUESTIONS)]))
            statuses.append(status)
            asked += 1
        assert build.wait() == 0
        assert statuses == [200] * asked
        assert get(base, "/status")[1]["generation"] > generation
        status, hits = get(base, "/ask?q=Zebra&mode=keyword&k=1")
        assert status == 200 and hits[0]["path"] == "en/new.txt"
