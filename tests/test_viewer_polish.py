"""Viewer polish through the API: document ids in natural order, the manifest as data, the digits demo's
predicted class, and a contrastive generation's foil in the panel name. (The browser side of the same
features is checked in test_viewer_browser.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

IDS = ["10", "2", "1", "doc10", "doc9", "9"]
NATURAL = ["1", "2", "9", "10", "doc9", "doc10"]
MANIFEST = {"model": "toy", "settings": {"steps": 16, "tol": 0.01}, "documents": 6}


def write_ids_run(run: Path) -> None:
    """A run whose ids sort wrongly as text, with no label or error column (only predictions)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps(MANIFEST))
    rows: dict[str, list[Any]] = {k: [] for k in ("doc_id", "position", "token", "score", "predicted_label")}
    for doc in IDS:
        for pos, tok in enumerate(["hello", "\n", "there"]):
            rows["doc_id"].append(doc)
            rows["position"].append(pos)
            rows["token"].append(tok)
            rows["score"].append(0.1 * (pos + 1))
            rows["predicted_label"].append("none")
    pq.write_table(pa.table(rows), run / "shard-00000.parquet")


def contrastive_generation() -> Any:
    from integrand.generation import GenerationAttribution

    tokens = ("The", " capital", " is", " Paris")
    score_input, score_baseline = torch.tensor([2.0]), torch.tensor([0.5])
    matrix = torch.tensor([[0.5, 0.5, 0.5]])
    return GenerationAttribution(
        tokens=tokens, token_ids=torch.arange(4), n_prompt=3, matrix=matrix, step_scores={},
        score_input=score_input, score_baseline=score_baseline, delta=score_input - score_baseline - matrix.sum(1),
        steps=torch.tensor([8]), converged=torch.tensor([True]), method="integrated_gradients",
        score="contrast_log_prob_diff", fixed_positions=(0,), params={"foil_tokens": [" Lyon"]},
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("duckdb")
    from fastapi.testclient import TestClient

    from integrand.viewer import create_app

    root = tmp_path_factory.mktemp("polish")
    write_ids_run(root / "ids")
    (root / "gen").mkdir()
    contrastive_generation().save(root / "gen" / "contrast.safetensors")
    with TestClient(create_app(root)) as c:
        yield c


def test_natural_key() -> None:
    from integrand.viewer.corpus import natural_key

    assert sorted(IDS, key=natural_key) == NATURAL
    assert sorted(["a10b2", "a10b10", "a9"], key=natural_key) == ["a9", "a10b2", "a10b10"]


def test_documents_come_in_natural_order_and_pages_follow_it(client: Any) -> None:
    table = client.get("/api/corpus/documents", params={"run": "ids"}).json()
    assert [r["doc_id"] for r in table["rows"]] == NATURAL and table["total"] == 6
    page = client.get("/api/corpus/documents", params={"run": "ids", "limit": 2, "offset": 2}).json()
    assert [r["doc_id"] for r in page["rows"]] == ["9", "10"] and page["total"] == 6
    # No label or error column in this run: every row has None there (the page leaves such columns out).
    assert all(r["label"] is None and r["relative_error"] is None for r in table["rows"])
    manifest = table["corpus"]["manifest"]
    assert manifest["model"] == "toy" and json.loads(manifest["settings"]) == MANIFEST["settings"]


def test_contrastive_generation_names_the_foil(client: Any) -> None:
    detail = client.get("/api/results/gen/contrast.safetensors").json()
    (panel,) = detail["examples"][0]["panels"]
    assert panel["name"] == "' Paris' vs ' Lyon'"


def test_digits_demo_cards_name_the_predicted_class(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from integrand.demo import run_demo
    from integrand.result import Attribution
    from integrand.viz.adapters import as_view

    report = run_demo(tmp_path, sections=["image"]).read_text(encoding="utf-8")
    assert report.count("<figcaption>attribution</figcaption>") == 8
    assert report.count("<figcaption>overlay on the input</figcaption>") == 8
    view = as_view(Attribution.load(tmp_path / "digits_ig.safetensors"))
    infos = [e.info for e in view.examples]
    assert all(i.prediction is not None and i.label is not None for i in infos)
    assert sum(i.prediction == i.label for i in infos) >= 6  # the CNN is > 95% accurate on held-out digits
    assert f"prediction {infos[0].prediction}" in report
