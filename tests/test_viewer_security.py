"""Only files inside RESULTS_DIR: traversal in every spelling (raw, encoded, absolute, symlinks) is a 404."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrand.viewer import create_app
from integrand.viewer.files import ResultsDir
from tests.test_viewer_data import LiveServer, build_results_dir


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("security")
    return build_results_dir(base / "results", base / "outside"), base / "outside"


@pytest.fixture(scope="module")
def client(dirs: tuple[Path, Path]) -> Iterator[TestClient]:
    with TestClient(create_app(dirs[0])) as c:
        yield c


@pytest.fixture(scope="module")
def live(dirs: tuple[Path, Path]) -> Iterator[LiveServer]:
    server = LiveServer(dirs[0])
    yield server
    server.stop()


def _escapes(outside: Path) -> list[str]:
    secret = str(outside / "secret.safetensors")
    return [
        "../outside/secret.safetensors",
        "images/../../outside/secret.safetensors",
        "%2e%2e/outside/secret.safetensors",
        "..%2Foutside%2Fsecret.safetensors",
        "%2E%2E%2F%2E%2E%2Foutside%2Fsecret.safetensors",
        "..%5Coutside%5Csecret.safetensors",
        "%252e%252e/outside/secret.safetensors",
        "/" + secret.lstrip("/"),
        secret.replace("/", "%2F"),
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "escape.safetensors",  # symlink to a file outside
        "escape_dir/secret.safetensors",  # symlinked folder pointing outside
        "images/cnn_ig.safetensors%00.html",
        ".hidden.safetensors",
    ]


def test_result_traversal_is_404(client: TestClient, dirs: tuple[Path, Path]) -> None:
    for target in _escapes(dirs[1]):
        response = client.get("/api/results/" + target)
        assert response.status_code == 404, target
        assert b"secret" not in response.content
    assert client.get("/api/results/images/cnn_ig.safetensors").status_code == 200


def test_report_and_corpus_traversal_is_404(client: TestClient, dirs: tuple[Path, Path]) -> None:
    outside = dirs[1]
    for target in ("escape.html", "../outside/secret.html", "%2e%2e/outside/secret.html", str(outside / "secret.html")):
        response = client.get("/reports/" + target)
        assert response.status_code == 404 and b"secret" not in response.content, target
    for run in ("..", "../outside", "escape_dir", str(outside), "corpus/run1/../../..", "/", ".", "corpus"):
        for route in ("/api/corpus/documents", "/api/corpus/cues"):
            assert client.get(route, params={"run": run}).status_code == 404, (route, run)


def test_raw_requests_on_a_live_server(live: LiveServer, dirs: tuple[Path, Path]) -> None:
    """Request targets sent verbatim over a socket, so no client library normalises ``..`` first."""
    status, body = live.raw_get("/api/results/images/cnn_ig.safetensors")
    assert status == 200
    for target in _escapes(dirs[1]) + ["../../../../etc/passwd", "images/%2e%2e/%2e%2e/outside/secret.safetensors"]:
        status, body = live.raw_get("/api/results/" + target)
        assert status in (400, 404), target  # 400: the HTTP layer rejected the request line itself
        assert b"secret" not in body and b"root:" not in body
    status, body = live.raw_get("/reports/../outside/secret.html")
    assert status in (400, 404) and b"secret" not in body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.sampled_from(
            [".", "..", "/", "\\", "%2e", "~", " ", "\x00", "escape", "escape_dir", "escape.safetensors", "outside",
             "images", "cnn_ig.safetensors", "secret.safetensors", "corpus", "run1", ".hidden"]
        ),
        max_size=12,
    ).map("".join)
)
def test_resolve_never_leaves_the_root(dirs: tuple[Path, Path], relative: str) -> None:
    results = ResultsDir.open(dirs[0])
    for kwargs in ({}, {"directory": True}, {"suffix": ".safetensors"}):
        found = results.resolve(relative, **kwargs)  # type: ignore[arg-type]
        if found is not None:
            assert found.is_relative_to(results.root) and found.resolve() == found


def test_listing_stays_inside(dirs: tuple[Path, Path]) -> None:
    results = ResultsDir.open(dirs[0])
    for suffix in (".safetensors", ".html"):
        for rel in results.files(suffix):
            assert (results.root / rel).resolve().is_relative_to(results.root)
            assert not rel.startswith("escape")
    assert results.corpora() == ["corpus/run1", "corpus/store"]
    assert all(Path(s).is_relative_to(results.root) for s in results.shards("corpus/run1"))
    assert results.shards("escape_dir") == []


def test_store_shard_linked_outside_is_refused(tmp_path: Path) -> None:
    root = build_results_dir(tmp_path / "results", tmp_path / "outside")
    tokens = root / "corpus" / "store" / "tokens"
    (tmp_path / "outside" / "part-000009.parquet").write_bytes((tokens / "part-000000.parquet").read_bytes())
    (tokens / "part-000009.parquet").symlink_to(tmp_path / "outside" / "part-000009.parquet")
    with TestClient(create_app(root)) as c:
        response = c.get("/api/corpus/cues", params={"run": "corpus/store"})
        assert response.status_code == 422 and "link out" in response.json()["detail"]
        # The documents table reads only the shards that stay inside: the linked copy adds no rows.
        assert c.get("/api/corpus/documents", params={"run": "corpus/store"}).json()["total"] == 8
