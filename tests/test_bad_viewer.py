"""The viewer under bad conditions: damaged corpus shards, internal errors, and clients that never finish a header.

A damaged store is listed as damaged (with the shard at fault) and never empties the sidebar; every
response, 500s included, carries the security headers; the server closes a connection whose request head
does not arrive in time (raw loopback sockets, bounded waits).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from integrand.viewer import create_app
from integrand.viewer.app import default_allowed_hosts
from tests.test_viewer_data import build_results_dir

SECURITY = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "cache-control": "no-store"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bad_viewer")
    return build_results_dir(base / "results", base / "outside")


@pytest.fixture()
def root(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def _secured(response: Any) -> None:
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (response.status_code, name)
    assert "default-src 'none'" in response.headers.get("content-security-policy", "")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path) -> None:
    data = path.read_bytes()  # footer intact, pages and schema destroyed
    path.write_bytes(data[:4] + b"\xff" * (len(data) - 12) + data[-8:])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE: dict[str, Callable[[Path], None]] = {"truncated": _truncate, "garbled": _garble, "empty": _empty}
# (run, shard inside it, the other run that must stay intact)
SHARDS = [
    ("corpus/store", "tokens/part-000001.parquet", "corpus/run1"),
    ("corpus/store", "tokens/part-000000.parquet", "corpus/run1"),
    ("corpus/run1", "shard-00001.parquet", "corpus/store"),
]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize(("run", "shard", "other"), SHARDS, ids=[f"{r}/{s}" for r, s, _ in SHARDS])
def test_one_damaged_run_is_listed_as_damaged_and_the_others_stay(
    root: Path, damage: str, run: str, shard: str, other: str
) -> None:
    DAMAGE[damage](root / run / shard)
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        response = client.get("/api/corpora")
        assert response.status_code == 200
        _secured(response)
        listed = {c["path"]: c for c in response.json()["corpora"]}
        assert set(listed) == {"corpus/run1", "corpus/store"}
        bad, good = listed[run], listed[other]
        assert bad["damaged"] is True and bad["error"]
        assert bad["shards"] == 2
        if shard.endswith("000001.parquet") or run == "corpus/run1":
            assert f"{run}/{shard}" in bad["error"]  # the shard at fault is named
        assert good["damaged"] is False and good["error"] is None and good["documents"] > 0
        # Reading the damaged run is a clear 422 with the usual headers, not a 500.
        for url, params in (
            ("/api/corpus/documents", {"run": run}),
            ("/api/corpus/cues", {"run": run}),
            ("/api/corpus/document", {"run": run, "doc_id": "d00"}),
        ):
            answer = client.get(url, params=params)
            assert answer.status_code == 422, (url, answer.status_code)
            assert "run" in answer.json()["detail"]
            _secured(answer)


def _record_shards(store: Path) -> None:
    """Give the store the per-shard records (rows, bytes, sha256) that ``integrand run`` writes."""
    import json

    from integrand.corpus.integrity import file_record, shard_files

    manifest = json.loads((store / "manifest.json").read_text())
    manifest["shards"] = {str(k): {kind: file_record(p) for kind, p in shard_files(store, k).items()} for k in (0, 1)}
    (store / "manifest.json").write_text(json.dumps(manifest))


def _foreign(store: Path) -> None:  # readable Parquet, but the chunk's document shard in the token slot
    shutil.copyfile(store / "documents" / "part-000001.parquet", store / "tokens" / "part-000001.parquet")


def _grown(store: Path) -> None:  # readable, every row twice
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = store / "tokens" / "part-000001.parquet"
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table]), path)


# Readable shards that DuckDB would happily serve; only the manifest's record shows they are wrong.
VERIFIED = {"foreign": _foreign, "grown": _grown}


@pytest.mark.parametrize("damage", sorted(VERIFIED))
def test_a_store_shard_differing_from_its_record_is_named_not_read(root: Path, damage: str) -> None:
    """The viewer serves a store's recorded shards after checking them (as Corpus does): a readable shard
    that is not the one the manifest records is reported with its reason, and no endpoint reads it."""
    store = root / "corpus" / "store"
    _record_shards(store)
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        assert client.get("/api/corpus/documents", params={"run": "corpus/store"}).json()["total"] == 8
        VERIFIED[damage](store)
        listed = {c["path"]: c for c in client.get("/api/corpora").json()["corpora"]}
        bad = listed["corpus/store"]
        assert bad["damaged"] is True and bad["error"].startswith("damaged shards: corpus/store/tokens/part-000001")
        assert "the manifest records" in bad["error"] and str(root) not in bad["error"]
        assert listed["corpus/run1"]["damaged"] is False
        for url, params in (
            ("/api/corpus/documents", {"run": "corpus/store"}),
            ("/api/corpus/cues", {"run": "corpus/store"}),
            ("/api/corpus/document", {"run": "corpus/store", "doc_id": "s00"}),
        ):
            answer = client.get(url, params=params)
            assert answer.status_code == 422 and "part-000001.parquet" in answer.json()["detail"], url
            _secured(answer)


@pytest.mark.parametrize("manifest", ["{not json", '{"format": "other"}', "[]"])
def test_a_store_with_an_unreadable_manifest_is_damaged_not_read(root: Path, manifest: str) -> None:
    (root / "corpus" / "store" / "manifest.json").write_text(manifest)
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        listed = {c["path"]: c for c in client.get("/api/corpora").json()["corpora"]}
        bad = listed["corpus/store"]
        assert bad["damaged"] is True and "corpus/store/manifest.json" in bad["error"], bad
        assert str(root) not in bad["error"] and listed["corpus/run1"]["damaged"] is False
        answer = client.get("/api/corpus/documents", params={"run": "corpus/store"})
        assert answer.status_code == 422 and str(root) not in answer.text


def test_sidebar_marks_damaged_runs() -> None:
    from importlib import resources

    js = resources.files("integrand.viewer").joinpath("static", "app.js").read_text(encoding="utf-8")
    assert "c.damaged" in js and 'classList.add("damaged")' in js


def test_internal_errors_are_500_with_security_headers(root: Path) -> None:
    app = create_app(root, allowed_hosts=default_allowed_hosts("127.0.0.1"))

    def broken() -> list[Any]:
        raise RuntimeError("secret detail /etc/passwd")

    app.state.store.all = broken
    with TestClient(app, base_url="http://127.0.0.1:8765", raise_server_exceptions=False) as client:
        response = client.get("/api/results")
        assert response.status_code == 500
        assert response.json() == {"detail": "internal error"}  # nothing of the exception leaks
        _secured(response)
        for url, status, headers in (
            ("/no/such/route", 404, {}),
            ("/api/results/none.safetensors", 404, {}),
            ("/api/results?min_error=-1", 422, {}),
            ("/api/results", 400, {"host": "evil.example"}),
        ):
            answer = client.get(url, headers=headers)
            assert answer.status_code == status, url
            _secured(answer)
        assert client.post("/api/results").status_code == 405


class Server:
    """The viewer as ``integrand serve`` runs it (server.make_server), on a free loopback port."""

    def __init__(self, root: Path, header_timeout: float) -> None:
        from integrand.viewer.server import make_server

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        app = create_app(root, allowed_hosts=default_allowed_hosts("127.0.0.1"))
        self.server = make_server(app, host="127.0.0.1", port=self.port, header_timeout=header_timeout)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the viewer did not start"
            time.sleep(0.05)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.settimeout(10)  # an upper bound on every wait below
        return sock

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(pristine: Path) -> Iterator[Server]:
    live = Server(pristine, header_timeout=TIMEOUT)
    yield live
    live.stop()


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


PARTIAL = {
    "nothing": b"",
    "request line only": b"GET /api/results HTTP/1.1\r\n",
    "half a header": b"GET /api/results HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: appl",
}


@pytest.mark.parametrize("sent", list(PARTIAL.values()), ids=list(PARTIAL))
def test_an_incomplete_request_head_is_closed_in_time(server: Server, sent: bytes) -> None:
    with server.connect() as sock:
        start = time.monotonic()
        sock.sendall(sent)
        answer = _read_until_closed(sock)  # raises socket.timeout after 10 s if the server never closes
        elapsed = time.monotonic() - start
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + 3, elapsed
    assert answer.startswith(b"HTTP/1.1 408 ") and b"x-content-type-options: nosniff" in answer


def test_trickling_a_head_does_not_extend_the_deadline(server: Server) -> None:
    head = b"GET /api/results HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    with server.connect() as sock:
        start = time.monotonic()
        closed = False
        for byte in head * 4:  # one byte every 0.1 s: about 8 s to send it all
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - start > TIMEOUT + 1.5:
                break
        sock.settimeout(3)
        if not closed:
            answer = _read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 408 ")
        elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT + 2.5, elapsed


def test_complete_requests_are_served_and_keep_alive_works(server: Server) -> None:
    request = b"GET /api/reports HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with server.connect() as sock:
        for _ in range(2):  # a second request on the same connection, after more than the head timeout
            sock.sendall(request)
            reply = b""
            while b"reports/demo.html" not in reply:
                chunk = sock.recv(4096)
                assert chunk, reply
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200 ") and b"x-content-type-options: nosniff" in reply
            time.sleep(TIMEOUT * 1.5)


def test_browser_sidebar_shows_the_damaged_run_and_keeps_the_others(root: Path) -> None:
    """In headless Chromium (CI; skipped here when Chromium or Playwright is missing, as in test_viewer_browser)."""
    from tests.test_viewer_browser import ARGS, CHROMIUM, _require_browser
    from tests.test_viewer_data import LiveServer

    sync_playwright = _require_browser()
    _truncate(root / "corpus" / "store" / "tokens" / "part-000001.parquet")
    server = LiveServer(root)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page()
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/")
            damaged = page.locator('#corpora li.damaged[data-path="corpus/store"]')
            damaged.wait_for()
            assert "damaged: damaged shards: corpus/store/tokens/part-000001.parquet" in damaged.inner_text()
            healthy = page.locator('#corpora li[data-path="corpus/run1"]')
            assert "12 docs" in healthy.inner_text() and "damaged" not in (healthy.get_attribute("class") or "")
            assert page.locator('#results li[data-kind="result"]').count() == 6  # the rest of the sidebar is there
            browser.close()
            assert errors == []
    finally:
        server.stop()
