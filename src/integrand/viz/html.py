"""Self-contained HTML views. Every piece of user or model text goes through ``escape``."""

from __future__ import annotations

import base64
import struct
import zlib
from html import escape
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:
    from ..result import Attribution

STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 6px;font-size:12px;text-align:right}"
    ".grid{display:flex;flex-wrap:wrap;gap:14px}.card{border:1px solid #eee;padding:6px}"
    "img.heat{image-rendering:pixelated;width:128px;height:128px}.bad{color:#b00}</style>"
)


def diverging_rgb(values: torch.Tensor) -> torch.Tensor:
    """Map values to a blue-white-red scale symmetric around 0: uint8 [..., 3]."""
    v = values.detach().double().cpu()
    limit = float(v.abs().max()) or 1.0
    t = (v / limit).clamp(-1, 1)
    pos, neg = t.clamp_min(0), (-t).clamp_min(0)
    red = 1 - neg * 0.8
    green = 1 - (pos + neg) * 0.8
    blue = 1 - pos * 0.8
    return (torch.stack([red, green, blue], dim=-1) * 255).round().to(torch.uint8)


def png_bytes(rgb: torch.Tensor) -> bytes:
    """Encode a uint8 [H, W, 3] image as PNG (stdlib zlib only)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + bytes(rgb[i].flatten().tolist()) for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def heatmap_img(values: torch.Tensor, alt: str) -> str:
    """An <img> tag with a signed heatmap of a 2-D tensor."""
    data = base64.b64encode(png_bytes(diverging_rgb(values))).decode("ascii")
    return f'<img class="heat" alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _is_image(t: torch.Tensor) -> bool:
    return t.dim() in (3, 4) and t.shape[-1] >= 4 and t.shape[-2] >= 4


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def attribution_html(result: "Attribution", title: str | None = None) -> str:
    """HTML for an ``Attribution``: per-example heatmaps for images, a feature table otherwise."""
    parts = [STYLE, f"<h2>{escape(title or result.method)}</h2>"]
    rel = result.relative_error
    values = result.values if isinstance(result.values, dict) else {"input": result.values}
    cards = []
    for b in range(result.batch):
        err = "n/a" if rel is None else _fmt(float(rel[b]))
        status = "" if bool(result.converged[b]) else ' <span class="bad">not converged</span>'
        inner = [f"<div>example {b}: score {_fmt(float(result.score_input[b]))}, rel. error {escape(err)}, "
                 f"steps {int(result.steps[b])}{status}</div>"]
        for name, v in values.items():
            vb = v[b]
            if _is_image(v):
                img = vb.sum(dim=0) if vb.dim() == 3 else vb
                inner.append(heatmap_img(img, f"{name} example {b}"))
            else:
                flat = vb.reshape(-1)
                labels = (result.labels or {}).get(name) or [str(i) for i in range(flat.numel())]
                order = flat.abs().argsort(descending=True)[:20].tolist()
                inner.append(table(["feature", name], [[labels[i], _fmt(float(flat[i]))] for i in order]))
        cards.append('<div class="card">' + "".join(inner) + "</div>")
    parts.append('<div class="grid">' + "".join(cards) + "</div>")
    return "".join(parts)
