"""HTML views: structure parsed back with html.parser, colours decoded from the PNGs, and escaping."""

from __future__ import annotations

import base64
import struct
import zlib
from html.parser import HTMLParser

import torch

import integrand
from integrand.viz import FeaturePanel, ImagePanel, MatrixPanel, SeriesPanel, TokenPanel, as_view, to_html
from integrand.viz.color import diverging_rgb, sequential_rgb, symmetric_limit
from integrand.viz.html import features_html, image_html, matrix_html, page, series_html, token_html
from tests.test_viewer_data import XSS, _generation_result, _image_result, _text_result


class Tree(HTMLParser):
    """Flat record of start tags (with attributes) and text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]


def decode_png(src: str) -> torch.Tensor:
    """uint8 [H, W, 3] from a data URI written by png_bytes (8-bit RGB, filter 0)."""
    data = base64.b64decode(src.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            idat += data[pos + 8 : pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows = [raw[r * (3 * w + 1) + 1 : (r + 1) * (3 * w + 1)] for r in range(h)]
    return torch.tensor([list(r) for r in rows], dtype=torch.uint8).reshape(h, w, 3)


def test_signed_colours_are_symmetric_and_zero_is_white() -> None:
    v = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 2.0]])
    rgb = diverging_rgb(v)
    assert rgb[0, 2].tolist() == [255, 255, 255]
    # +x and -x have mirrored colours: red/blue swap, green equal.
    for i, j in ((0, 4), (1, 3)):
        assert rgb[0, i].tolist() == rgb[0, j].flip(0).tolist()
    assert rgb[0, 4].tolist() == [255, 51, 51] and rgb[0, 0].tolist() == [51, 51, 255]
    assert symmetric_limit(v) == 2.0 and symmetric_limit(torch.zeros(3)) == 1.0
    assert symmetric_limit(torch.tensor([float("nan"), -3.0])) == 3.0
    absolute = sequential_rgb(v)
    assert absolute[0, 0].tolist() == absolute[0, 4].tolist() and absolute[0, 2].tolist() == [255, 255, 255]


def test_image_html_has_heatmap_and_overlay_with_the_right_pixels() -> None:
    values = torch.zeros(6, 5, dtype=torch.float64)
    values[1, 2], values[4, 0] = 3.0, -3.0
    image = torch.rand(6, 5, dtype=torch.float64)
    tree = Tree(image_html(ImagePanel("px", values, image)))
    imgs = tree.find("img")
    assert len(imgs) == 2 and {i["alt"] for i in imgs} == {"px attribution", "px overlay"}
    heat = decode_png(imgs[0]["src"] or "")
    assert heat.shape == (6, 5, 3)
    assert heat[1, 2].tolist() == [255, 51, 51] and heat[4, 0].tolist() == [51, 51, 255]
    assert heat[0, 0].tolist() == [255, 255, 255]
    overlay = decode_png(imgs[1]["src"] or "")
    # The overlay is grey where the attribution is 0 and pure red where |attribution| is largest.
    assert overlay[1, 2].tolist() == overlay[4, 0].tolist() == [217, 13, 13]
    assert len(set(overlay[0, 0].tolist())) == 1
    assert any("-3" in t and "+3" in t for t in tree.text)  # the colour-bar legend states the symmetric limits


def test_token_html_escapes_and_colours_by_sign() -> None:
    tokens = ("ok", XSS, "</span><script>alert(1)</script>", "&amp;")
    scores = torch.tensor([1.0, -2.0, 0.0, 2.0])
    html = token_html(TokenPanel("t", tokens, scores))
    tree = Tree(html)
    assert not tree.find("img") and not tree.find("script")
    spans = tree.find("span", class_="tok")
    assert len(spans) == 4
    # Each token shows as text once in the coloured line; the two-sided evidence table repeats the scored ones.
    assert "".join(tree.text).count(XSS) == 2 and "&amp;" in "".join(tree.text)
    assert spans[1]["style"] == "background:rgb(51,51,255)" and spans[3]["style"] == "background:rgb(255,51,51)"
    assert spans[2]["style"] == "background:rgb(255,255,255)"
    assert spans[0]["title"] == "1"


def test_matrix_html_rows_columns_and_blank_cells() -> None:
    values = torch.tensor([[1.0, float("nan"), float("nan")], [0.5, -1.0, float("nan")]])
    tree = Tree(matrix_html(MatrixPanel("g", ("<s>", "a", XSS), ("b", "c"), values)))
    assert len(tree.find("tr")) == 3
    assert [a["class"] for a in tree.find("th") if a.get("class")] == ["src"] * 3
    cells = tree.find("td", class_="cell")
    assert len(cells) == 6
    assert sum("style" in c for c in cells) == 3  # NaN cells (later tokens) stay blank
    assert XSS in tree.text and not tree.find("img")


def test_features_html_orders_by_magnitude_and_series_has_one_svg_per_channel() -> None:
    scores = torch.tensor([0.1, -5.0, 2.0, 0.0])
    tree = Tree(features_html(FeaturePanel("f", ("a", "b", "c", "d"), scores)))
    names = [t for t in tree.text if t in "abcd"]
    assert names == ["b", "c", "a", "d"]
    panel = SeriesPanel("s", ("p", "q"), torch.randn(2, 30), torch.randn(2, 30))
    tree = Tree(series_html(panel))
    assert len(tree.find("svg")) == 2 and len(tree.find("rect")) == 60 and len(tree.find("polyline")) == 2


def test_result_html_for_every_result_type() -> None:
    image = Tree(_image_result().to_html(title=XSS))
    assert len(image.find("div", class_="card")) == 3 and len(image.find("img", class_="heat")) == 6
    assert XSS in image.text and not image.find("img", src="x")
    text = Tree(to_html(_text_result()))
    assert XSS in text.text and len(text.find("div", class_="tokens")) == 2  # tokens and words
    gen = Tree(to_html(_generation_result()))
    assert len(gen.find("table", class_="matrix")) == 1 and "not converged" in gen.text
    doc = Tree(page(to_html(_image_result()), title=XSS))
    assert XSS in doc.text and not doc.find("img", src="x")


def test_attribution_html_keeps_table_for_features() -> None:
    model = lambda x: (x**2).sum(1)  # noqa: E731
    res = integrand.integrated_gradients(model, torch.randn(2, 30, dtype=torch.float64), steps=4)
    tree = Tree(res.to_html())
    rows = tree.find("tr")
    assert len(tree.find("table")) == 2 and len(rows) == 2 * 21  # header + top 20 per example
    assert as_view(res).kind == "features"
