"""Terminal views (rich): literal tokens, sign colours, block heatmaps and sparklines."""

from __future__ import annotations

import io

import torch
from rich.console import Console

from integrand.viz import ImagePanel, SeriesPanel, TokenPanel, show
from integrand.viz.terminal import image_text, render, series_text, tokens_text
from tests.test_viewer_data import XSS, _generation_result, _image_result, _text_result


def _console() -> Console:
    return Console(file=io.StringIO(), width=120, color_system="truecolor", record=True)


def test_tokens_print_literally_with_sign_colours() -> None:
    text = tokens_text(TokenPanel("t", ("[bold]", XSS, "ok"), torch.tensor([2.0, -2.0, 0.0])))
    assert text.plain == f"[bold] {XSS} ok "
    styles = [str(span.style) for span in text.spans]
    assert styles == ["black on #ff3333", "black on #3333ff", "black on #ffffff"]


def test_image_uses_two_rows_per_line() -> None:
    values = torch.zeros(7, 10)
    values[0, 0] = 1.0
    text = image_text(ImagePanel("img", values))
    lines = text.plain.split("\n")
    assert len(lines) == 4 + 1 and all(len(line) == 10 for line in lines[:4])  # ceil(7 / 2) rows + legend
    assert str(text.spans[0].style) == "#ff3333 on #ffffff"
    big = image_text(ImagePanel("img", torch.randn(100, 100)), max_cols=40)
    assert max(len(line) for line in big.plain.split("\n")[:-1]) <= 40


def test_series_sparklines_scale_with_magnitude() -> None:
    values = torch.tensor([[0.0, 0.5, 1.0, -1.0]])
    text = series_text(SeriesPanel("s", ("chan",), values))
    assert text.plain == "chan ▁▅██\n"


def test_render_and_show_every_result_type(capsys) -> None:  # type: ignore[no-untyped-def]
    console = _console()
    for result in (_image_result(), _text_result(), _generation_result()):
        console.print(render(result))
    out = console.export_text()
    assert XSS in out and "example 2" in out and "not converged" in out and "prediction toxic" in out
    show(_text_result(), backend="terminal")
    assert XSS in capsys.readouterr().out
