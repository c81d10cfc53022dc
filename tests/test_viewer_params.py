"""The viewer shows a result's parameters as a table of names and values, every value as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from torch import nn

import integrand
from tests.test_viewer_browser import ARGS, CHROMIUM, _require_browser
from tests.test_viewer_data import XSS, LiveServer


def _result_with_markup_in_params(root: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)

    def score(output: torch.Tensor) -> torch.Tensor:
        return output[:, 0]

    score.__name__ = XSS  # a user-named target callable ends up in params as text
    result = integrand.integrated_gradients(model, x, score, steps=4)
    root.mkdir(parents=True)
    result.save(root / "params.safetensors")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("params") / "results"
    _result_with_markup_in_params(root)
    live = LiveServer(root)
    yield live
    live.stop()


def test_api_lists_params_in_the_results_order(server: LiveServer) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(server.url + "/api/results/params.safetensors") as response:
        data = json.loads(response.read())
    params = data["params"]
    assert list(params)[:3] == ["method", "baseline", "rule"] and params["target"] == XSS
    assert all(isinstance(v, str) for v in params.values()) and params["steps"] == "4"


def test_params_table_shows_every_value_as_text(server: LiveServer) -> None:
    sync_playwright = _require_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(15_000)
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.goto(server.url + "/")
        page.click('li[data-kind="result"][data-path="params.safetensors"] a')
        page.wait_for_selector("#params tr td")
        rows: list[Any] = page.locator("#params tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
        browser.close()
    assert rows[0] == ["parameter", "value"]
    table = {k: v for k, v in rows[1:]}
    assert table["method"] == "integrated_gradients" and table["baseline"] == "zeros" and table["steps"] == "4"
    assert table["target"] == XSS  # shown as text, not turned into an element
    assert [r[0] for r in rows[1:3]] == ["method", "baseline"]
    assert problems == []
