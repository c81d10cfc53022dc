"""The viewer's JSON API through FastAPI's TestClient: listing, filters, detail views, corpus tables."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from fastapi.testclient import TestClient

import integrand
from integrand.cli import build_parser, main
from integrand.viewer import create_app
from integrand.viewer.app import default_allowed_hosts
from tests.test_viewer_data import CUES, LABELS, PREDICTIONS, STORE_CUES, TOKENS, XSS, build_results_dir
from tests.test_viz_html import decode_png


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("viewer")
    return build_results_dir(base / "results", base / "outside")


@pytest.fixture(scope="module")
def client(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(root)) as c:
        yield c


def _paths(body: dict[str, Any]) -> list[str]:
    return [r["path"] for r in body["results"]]


def test_lists_every_result_and_reports_unreadable_files(client: TestClient) -> None:
    body = client.get("/api/results").json()
    assert _paths(body) == [
        "bad/corrupt.safetensors",
        "bad/foreign.safetensors",
        "generation/capital.safetensors",
        "images/cnn_ig.safetensors",
        "text/bag_of_embeddings.safetensors",
        "text/toxic.safetensors",
    ]  # the symlink escape.safetensors (pointing outside) is not listed
    by_path = {r["path"]: r for r in body["results"]}
    assert by_path["bad/corrupt.safetensors"]["error"].startswith("unreadable")
    assert "no 'integrand' metadata" in by_path["bad/foreign.safetensors"]["error"]
    assert by_path["images/cnn_ig.safetensors"]["kind"] == "image"
    assert by_path["text/toxic.safetensors"]["kind"] == "tokens"
    assert by_path["generation/capital.safetensors"]["kind"] == "matrix"
    assert body["labels"] == ["cat", "dog", "toxic"] and body["predictions"] == ["cat", "dog", "toxic"]


def test_filters_by_label_prediction_error_and_kind(client: TestClient, root: Path) -> None:
    saved = integrand.Attribution.load(root / "images" / "cnn_ig.safetensors")
    rel = saved.relative_error
    assert rel is not None
    body = client.get("/api/results", params={"label": "dog"}).json()
    assert _paths(body) == ["images/cnn_ig.safetensors"]
    assert [e["index"] for e in body["results"][0]["examples"]] == [i for i, lab in enumerate(LABELS) if lab == "dog"]
    body = client.get("/api/results", params={"prediction": "dog", "label": "cat"}).json()
    assert [e["index"] for e in body["results"][0]["examples"]] == [2]
    cut = float(rel.median())
    body = client.get("/api/results", params={"max_error": cut, "kind": "image"}).json()
    kept = [e["index"] for r in body["results"] for e in r["examples"]]
    assert _paths(body) == ["images/cnn_ig.safetensors"] and kept == [i for i in range(3) if float(rel[i]) <= cut]
    body = client.get("/api/results", params={"min_error": cut}).json()
    cnn = next(r for r in body["results"] if r["path"] == "images/cnn_ig.safetensors")
    assert [e["index"] for e in cnn["examples"]] == [i for i in range(3) if float(rel[i]) >= cut]
    assert _paths(client.get("/api/results", params={"kind": "tokens"}).json()) == [
        "text/bag_of_embeddings.safetensors",
        "text/toxic.safetensors",
    ]
    assert client.get("/api/results", params={"min_error": 2, "max_error": 1}).json()["results"] == []
    assert client.get("/api/results", params={"max_error": -1}).status_code == 422
    assert client.get("/api/results", params={"max_error": "nan"}).status_code == 422


def test_image_detail_sends_pngs_of_the_right_size(client: TestClient, root: Path) -> None:
    body = client.get("/api/results/images/cnn_ig.safetensors", params={"label": "cat"}).json()
    assert [e["info"]["index"] for e in body["examples"]] == [0, 2]
    assert [e["info"]["prediction"] for e in body["examples"]] == [PREDICTIONS[0], PREDICTIONS[2]]
    panel = body["examples"][0]["panels"][0]
    saved = integrand.Attribution.load(root / "images" / "cnn_ig.safetensors")
    heat = decode_png("data:image/png;base64," + panel["heatmap_png"])
    assert heat.shape == (8, 8, 3) and panel["overlay_png"]
    assert panel["limit"] == pytest.approx(float(saved.values[0].abs().max()))  # type: ignore[index]
    assert body["params"]["steps"] == "16"


def test_text_and_generation_detail(client: TestClient, root: Path) -> None:
    body = client.get("/api/results/text/toxic.safetensors").json()
    tokens, words = body["examples"][0]["panels"]
    assert tokens["tokens"] == list(TOKENS) and XSS in words["tokens"]
    from integrand.text.result import TokenAttribution

    saved = TokenAttribution.load(root / "text" / "toxic.safetensors")
    assert tokens["scores"] == pytest.approx(saved.scores.tolist())
    body = client.get("/api/results/generation/capital.safetensors").json()
    (matrix,) = body["examples"][0]["panels"]
    assert matrix["values"][0][4:] == [None] and matrix["values"][1][5:] == []  # later tokens are null, never NaN
    assert all(v is not None for v in matrix["values"][1][:5])
    assert body["examples"][0]["info"]["converged"] is False


def test_unknown_and_unreadable_results_are_404(client: TestClient) -> None:
    assert client.get("/api/results/nope.safetensors").status_code == 404
    response = client.get("/api/results/bad/corrupt.safetensors")
    assert response.status_code == 404 and response.json()["detail"].startswith("unreadable")


def test_corpus_tables(client: TestClient) -> None:
    run, store = client.get("/api/corpora").json()["corpora"]
    assert store["path"] == "corpus/store" and store["documents"] == 8 and store["error"] is None
    assert run["path"] == "corpus/run1" and run["documents"] == 12 and run["classes"] == ["clean", "toxic"]
    assert run["manifest"]["note"] == XSS and run["shards"] == 2
    table = client.get("/api/corpus/documents", params={"run": "corpus/run1"}).json()
    assert table["total"] == 12 and len(table["rows"]) == 12
    noisy = {"run": "corpus/run1", "label": "toxic", "prediction": "clean"}
    table = client.get("/api/corpus/documents", params=noisy).json()
    assert [r["doc_id"] for r in table["rows"]] == ["d04", "d14"]  # planted label noise
    table = client.get("/api/corpus/documents", params={"run": "corpus/run1", "max_error": 1e-3, "limit": 2}).json()
    assert table["total"] == 8 and len(table["rows"]) == 2
    cues = client.get("/api/corpus/cues", params={"run": "corpus/run1", "top": 2}).json()
    got = {c: sorted(r["token"] for r in cues["rows"] if r["cls"] == c) for c in CUES}
    assert got == {c: sorted(words) for c, words in CUES.items()} and cues["by"] == "predicted_label"
    doc = client.get("/api/corpus/document", params={"run": "corpus/run1", "doc_id": "d01"}).json()
    assert doc["tokens"][-2:] == CUES["toxic"] and doc["scores"][-2:] == pytest.approx([1.5, 1.6])
    assert client.get("/api/corpus/document", params={"run": "corpus/run1", "doc_id": "zz"}).status_code == 404
    assert client.get("/api/corpus/documents", params={"run": "corpus"}).status_code == 404


def _digest(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_read_only(client: TestClient, root: Path) -> None:
    before = _digest(root)
    paths = ("/api/results", "/api/results/images/cnn_ig.safetensors", "/api/corpora", "/reports/reports/demo.html")
    for path in paths:
        assert client.get(path).status_code == 200
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert client.request(method, path).status_code == 405
    client.get("/api/corpus/cues", params={"run": "corpus/run1"})
    assert _digest(root) == before
    assert sorted(p.name for p in root.rglob("*.wal")) == []


def test_security_headers_and_sandboxed_reports(client: TestClient) -> None:
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert page.headers["x-content-type-options"] == "nosniff"
    report = client.get("/reports/reports/demo.html")
    assert report.headers["content-security-policy"].startswith("sandbox")
    assert client.get("/api/reports").json()["reports"] == ["reports/demo.html"]  # escape.html is a link out: hidden
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/secret.js").status_code == 404
    js = client.get("/static/app.js").text
    assert "innerHTML" not in js.replace("never innerHTML", "")


def test_host_header_is_checked_on_loopback(root: Path) -> None:
    app = create_app(root, allowed_hosts=default_allowed_hosts("127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get("/api/results").status_code == 200
        assert c.get("/api/results", headers={"host": "evil.example"}).status_code == 400
    assert default_allowed_hosts("0.0.0.0") is None


def test_serve_command(root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["serve", str(root)])
    assert (args.host, args.port) == ("127.0.0.1", 8765)
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr("integrand.viewer.app.run_server", lambda d, host, port: calls.append((d, host, port)))
    assert main(["serve", str(root), "--port", "9001"]) == 0
    assert calls == [(root, "127.0.0.1", 9001)]
    assert main(["serve", str(root / "missing")]) == 2
    assert main(["serve", str(root), "--port", "0"]) == 2
    assert "results_dir" in capsys.readouterr().err


def test_files_changed_on_disk_are_reloaded(tmp_path: Path) -> None:
    model = lambda x: (x**2).sum(1)  # noqa: E731
    res = integrand.integrated_gradients(model, torch.ones(1, 3, dtype=torch.float64), steps=4)
    res.save(tmp_path / "r.safetensors")
    with TestClient(create_app(tmp_path)) as c:
        first = c.get("/api/results/r.safetensors").json()["examples"][0]["panels"][0]["scores"]
        import os

        res2 = integrand.integrated_gradients(model, 2 * torch.ones(1, 3, dtype=torch.float64), steps=4)
        res2.save(tmp_path / "r.safetensors")
        os.utime(tmp_path / "r.safetensors", ns=(1, 10**18))
        second = c.get("/api/results/r.safetensors").json()["examples"][0]["panels"][0]["scores"]
    assert second == pytest.approx([4 * v for v in first])


def test_store_runs_use_the_store_cue_query(client: TestClient, root: Path) -> None:
    """Runs written by integrand.corpus.run: token shards only, cues from the store's TF-IDF word query."""
    from integrand.corpus import Corpus

    table = client.get("/api/corpus/documents", params={"run": "corpus/store"}).json()
    assert table["total"] == 8 and table["rows"][0]["preview"].startswith("[CLS] the film")
    cues = client.get("/api/corpus/cues", params={"run": "corpus/store", "top": 3, "min_df": 1}).json()
    firsts = {r["cls"]: r["token"] for r in cues["rows"] if r["rank"] == 1}
    assert firsts == {c: words[0] for c, words in STORE_CUES.items()}
    with Corpus(root / "corpus" / "store") as corpus:
        expected = corpus.top("positive", level="word", min_df=1, top=3).rows
    got = [(r["token"], r["weight"]) for r in cues["rows"] if r["cls"] == "positive"]
    assert got == [(unit, pytest.approx(weight)) for unit, weight, *_ in expected]
