"""The viewer in real headless Chromium (Debian's package) driven by Playwright's Python client.

Outside CI the test is skipped when Chromium or Playwright is missing; with CI set it fails instead.
Screenshots go to tests/artifacts/ (gitignored; `make test` leaves them there to look at): the viewer pages,
the real demo report (demo_report.png) and the viewer on the demo results (viewer_demo_digits.png).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.test_viewer_data import CUES, TOKENS, XSS, LiveServer, build_results_dir

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts"


def _require_browser() -> Any:
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -c constraints.txt playwright)"
    if reason is None and not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("browser")
    live = LiveServer(build_results_dir(base / "results", base / "outside"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def page(server: LiveServer) -> Iterator[Any]:
    sync_playwright = _require_browser()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        pg.problems = []  # console errors, page errors and dialogs (an alert would mean XSS)
        pg.on("console", lambda m: pg.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        pg.on("pageerror", lambda e: pg.problems.append(f"pageerror: {e}"))
        pg.on("dialog", lambda d: (pg.problems.append(f"dialog: {d.message}"), d.dismiss()))
        pg.goto(server.url + "/")
        yield pg
        context.close()
        browser.close()


def _open(page: Any, kind: str, path: str) -> None:
    page.click(f'li[data-kind="{kind}"][data-path="{path}"] a')


def test_lists_results_corpora_and_reports(page: Any) -> None:
    page.wait_for_selector('li[data-kind="report"][data-path="reports/demo.html"]')  # the last list filled
    results = page.locator('#results li[data-kind="result"]')
    assert results.count() == 6
    assert page.locator('#corpora li[data-kind="corpus"]').count() == 2
    assert page.locator('#reports li[data-kind="report"]').count() == 1
    corrupt = page.locator('li[data-path="bad/corrupt.safetensors"]').inner_text()
    assert "unreadable" in corrupt
    page.screenshot(path=str(ARTIFACTS / "viewer_list.png"), full_page=True)
    assert page.problems == []


def test_text_result_renders_the_xss_token_as_text(page: Any) -> None:
    _open(page, "result", "text/toxic.safetensors")
    page.wait_for_selector("[data-panel=tokens] .tok")
    tokens = page.locator("[data-panel=tokens]").first.locator(".tok").all_text_contents()
    assert tokens == list(TOKENS)
    assert page.locator('img[src="x"]').count() == 0  # the token did not become an element
    assert page.evaluate("() => document.querySelectorAll('[onerror]').length") == 0
    colours = page.locator("[data-panel=tokens] .tok").evaluate_all("els => els.map(e => e.style.backgroundColor)")
    assert all(c.startswith("rgb(") for c in colours)
    assert "label toxic" in page.locator(".card .info").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "viewer_text.png"), full_page=True)
    assert page.problems == []


def test_image_result_shows_heatmaps_and_overlays(page: Any) -> None:
    _open(page, "result", "images/cnn_ig.safetensors")
    page.wait_for_selector("img.heat")
    page.wait_for_function("() => [...document.querySelectorAll('img.heat')].every(i => i.complete && i.naturalWidth)")
    assert page.locator(".card").count() == 3
    sizes = page.locator("img.heat").evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert sizes == [[8, 8]] * 6  # a heatmap and an overlay per example, decoded by the browser
    page.screenshot(path=str(ARTIFACTS / "viewer_image.png"), full_page=True)
    assert page.problems == []


def test_filters_narrow_the_list_and_the_examples(page: Any) -> None:
    _open(page, "result", "images/cnn_ig.safetensors")
    page.wait_for_selector(".card")
    page.select_option("#f-label", "dog")
    page.wait_for_function("() => document.querySelectorAll('#results li[data-kind=result]').length === 1")
    page.wait_for_function("() => document.querySelectorAll('.card').length === 1")
    assert "label dog" in page.locator(".card .info").inner_text()
    page.screenshot(path=str(ARTIFACTS / "viewer_filtered.png"), full_page=True)
    page.select_option("#f-label", "")
    page.fill("#f-max-error", "0")
    page.dispatch_event("#f-max-error", "change")
    page.wait_for_function("() => document.querySelectorAll('.card').length === 0")
    page.click("#f-clear")
    page.wait_for_function("() => document.querySelectorAll('#results li[data-kind=result]').length === 6")
    assert page.problems == []


def test_corpus_tables(page: Any) -> None:
    _open(page, "corpus", "corpus/run1")
    page.wait_for_selector("#documents tr.doc")
    assert page.locator("#documents tr.doc").count() == 12
    assert XSS in page.locator("#documents").inner_text()  # the preview shows the token as text
    page.wait_for_selector("#cues td")
    read_rows = "rows => rows.slice(1).map(r => [...r.cells].map(c => c.textContent))"
    cells = page.locator("#cues tr").evaluate_all(read_rows)
    top2 = {c: {r[2] for r in cells if r[0] == c and r[1] in ("1", "2")} for c in CUES}
    assert top2 == {c: set(words) for c, words in CUES.items()}
    page.click('#documents tr[data-doc="d00"]')
    page.wait_for_selector("#document .tok")
    assert XSS in page.locator("#document .tok").all_text_contents()
    page.screenshot(path=str(ARTIFACTS / "viewer_corpus.png"), full_page=True)
    assert page.locator('img[src="x"]').count() == 0
    assert page.problems == []


def test_generation_and_report(page: Any) -> None:
    _open(page, "result", "generation/capital.safetensors")
    page.wait_for_selector("table[data-panel=matrix]")
    sources = page.locator("table[data-panel=matrix] th.src").all_text_contents()
    assert sources == ["<s>", "The", "capital", "is", " Paris"]
    assert "not converged" in page.locator(".card .info").inner_text()
    _open(page, "report", "reports/demo.html")
    frame = page.frame_locator("iframe.report")
    frame.locator("img.heat").first.wait_for()
    assert frame.locator("img.heat").count() == 6
    page.screenshot(path=str(ARTIFACTS / "viewer_report.png"), full_page=True)
    assert page.problems == []


# ---- the real demo report, viewer polish, and screenshots of both --------------------------------------


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits section of the real demo, plus a corpus run whose ids sort wrongly as text."""
    pytest.importorskip("sklearn")
    from integrand.demo import run_demo
    from tests.test_viewer_polish import contrastive_generation, write_ids_run

    root = tmp_path_factory.mktemp("demo_results")
    run_demo(root / "demo", sections=["image"])
    write_ids_run(root / "ids")
    contrastive_generation().save(root / "demo" / "generation_contrast.safetensors")
    return root


@pytest.fixture(scope="module")
def demo_page(page: Any, demo_root: Path) -> Iterator[Any]:
    live = LiveServer(demo_root)
    page.goto(live.url + "/")
    page.wait_for_selector('li[data-kind="report"][data-path="demo/report.html"]')
    yield page
    live.stop()


def test_demo_report_screenshot(page: Any, demo_root: Path) -> None:
    """The demo report as a user opens it: each digit's two images are captioned and the cards name the
    predicted class. Saved as tests/artifacts/demo_report.png."""
    page.goto((demo_root / "demo" / "report.html").as_uri())
    page.wait_for_selector("img.heat")
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth)")
    captions = page.locator("figure.img figcaption").all_text_contents()
    assert captions.count("attribution") == 8 and captions.count("overlay on the input") == 8
    assert all("prediction" in t for t in page.locator(".card .info").all_text_contents())
    page.screenshot(path=str(ARTIFACTS / "demo_report.png"), full_page=True)
    assert page.problems == []


def test_viewer_demo_digits_and_foil(demo_page: Any) -> None:
    page = demo_page
    _open(page, "result", "demo/digits_ig.safetensors")
    page.wait_for_function("() => document.querySelectorAll('[data-panel=image] figcaption').length === 16")
    page.wait_for_function("() => [...document.querySelectorAll('img.heat')].every(i => i.complete && i.naturalWidth)")
    captions = page.locator("[data-panel=image] figcaption").all_text_contents()
    assert captions.count("attribution") == 8 and captions.count("overlay on the input") == 8
    infos = page.locator(".card .info").all_text_contents()
    assert len(infos) == 8 and all("label" in t and "prediction" in t for t in infos)
    page.screenshot(path=str(ARTIFACTS / "viewer_demo_digits.png"), full_page=True)
    _open(page, "result", "demo/generation_contrast.safetensors")
    page.wait_for_selector("table[data-panel=matrix]")
    assert "' Paris' vs ' Lyon'" in page.locator(".card .panel-name").first.inner_text()
    assert page.problems == []


def test_viewer_corpus_natural_order_columns_and_manifest(demo_page: Any) -> None:
    page = demo_page
    _open(page, "corpus", "ids")
    page.wait_for_selector("#documents tr.doc")
    ids = page.locator("#documents tr.doc").evaluate_all("rows => rows.map(r => r.dataset.doc)")
    assert ids == ["1", "2", "9", "10", "doc9", "doc10"]
    headers = page.locator("#documents th").all_text_contents()
    assert headers == ["document", "prediction", "tokens", "text"]  # no all-empty label or error column
    assert "⏎" in page.locator("#documents").inner_text()  # the newline token is a visible label
    manifest = page.locator("#manifest tr").evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert ["model", "toy"] in manifest and ["documents", "6"] in manifest
    page.wait_for_selector("#cues td")
    cue_headers = page.locator("#cues th").all_text_contents()
    assert "tf-idf weight" not in cue_headers and "mean" in cue_headers
    page.click('#documents tr[data-doc="10"]')
    page.wait_for_selector("#document .tok")
    assert page.locator("#document .tok").all_text_contents() == ["hello", "⏎", "there"]
    page.screenshot(path=str(ARTIFACTS / "viewer_corpus_ids.png"), full_page=True)
    assert page.problems == []
