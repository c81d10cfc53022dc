"""Colour scales and PNG encoding shared by the HTML, terminal and viewer views (torch + stdlib only).

Signed maps use a blue-white-red scale with limits symmetric around zero, so white always means 0
and equal magnitudes get equal intensity; absolute maps use a white-to-dark-red scale from 0.
"""

from __future__ import annotations

import base64
import struct
import zlib

import torch

from ..errors import InputError


def symmetric_limit(values: torch.Tensor) -> float:
    """The colour limit ``max |v|`` over finite values (1.0 when all are zero or non-finite)."""
    v = values.detach().double().cpu()
    finite = v[torch.isfinite(v)]
    limit = float(finite.abs().max()) if finite.numel() else 0.0
    return limit if limit > 0 else 1.0


def diverging_rgb(values: torch.Tensor, limit: float | None = None) -> torch.Tensor:
    """Map values to a blue-white-red scale on ``[-limit, limit]``: uint8 ``[..., 3]``. NaN maps to white."""
    v = torch.nan_to_num(values.detach().double().cpu(), nan=0.0)
    t = (v / (limit or symmetric_limit(v))).clamp(-1, 1)
    pos, neg = t.clamp_min(0), (-t).clamp_min(0)
    red = 1 - neg * 0.8
    green = 1 - (pos + neg) * 0.8
    blue = 1 - pos * 0.8
    return (torch.stack([red, green, blue], dim=-1) * 255).round().to(torch.uint8)


def sequential_rgb(values: torch.Tensor, limit: float | None = None) -> torch.Tensor:
    """Map ``|values|`` to a white-to-dark-red scale on ``[0, limit]``: uint8 ``[..., 3]``."""
    v = torch.nan_to_num(values.detach().double().cpu(), nan=0.0).abs()
    t = (v / (limit or symmetric_limit(v))).clamp(0, 1)
    rgb = torch.stack([1 - 0.45 * t, 1 - 0.95 * t, 1 - 0.9 * t], dim=-1)
    return (rgb * 255).round().to(torch.uint8)


def image_rgb(image: torch.Tensor) -> torch.Tensor:
    """An input image ``[H, W]``, ``[1, H, W]`` or ``[3, H, W]`` rescaled to uint8 ``[H, W, 3]`` (min-max)."""
    x = image.detach().double().cpu()
    if x.dim() == 3 and x.shape[0] == 3:
        x = x.permute(1, 2, 0)
    elif x.dim() == 3:
        x = x.mean(dim=0)[..., None].expand(*x.shape[1:], 3)
    elif x.dim() == 2:
        x = x[..., None].expand(*x.shape, 3)
    else:
        raise InputError("image", f"expected [H, W] or [C, H, W], got shape {tuple(image.shape)}")
    x = torch.nan_to_num(x)
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    return (x * 255).round().to(torch.uint8)


def overlay_rgb(image: torch.Tensor, values: torch.Tensor, limit: float | None = None) -> torch.Tensor:
    """``|values|`` in red over a greyed copy of ``image``: opacity grows with the attribution's magnitude."""
    base = image_rgb(image).double() / 255
    grey = base.mean(dim=-1, keepdim=True).expand_as(base) * 0.6 + 0.4
    v = torch.nan_to_num(values.detach().double().cpu(), nan=0.0).abs()
    if v.shape != grey.shape[:2]:
        raise InputError("values", f"shape {tuple(v.shape)} does not match the image {tuple(grey.shape[:2])}")
    alpha = (v / (limit or symmetric_limit(v))).clamp(0, 1)[..., None]
    red = torch.tensor([0.85, 0.05, 0.05], dtype=torch.float64)
    return ((grey * (1 - alpha) + red * alpha) * 255).round().to(torch.uint8)


def css_rgb(rgb: torch.Tensor) -> str:
    """A CSS ``rgb(r,g,b)`` string for one uint8 colour."""
    r, g, b = (int(c) for c in rgb.tolist())
    return f"rgb({r},{g},{b})"


def png_bytes(rgb: torch.Tensor) -> bytes:
    """Encode a uint8 ``[H, W, 3]`` image as PNG (stdlib zlib only)."""
    if rgb.dim() != 3 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
        raise InputError("rgb", f"expected a uint8 [H, W, 3] tensor, got {rgb.dtype} {tuple(rgb.shape)}")
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + bytes(rgb[i].flatten().tolist()) for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png_base64(rgb: torch.Tensor) -> str:
    """PNG of a uint8 ``[H, W, 3]`` image as base64 text (for ``data:`` URIs)."""
    return base64.b64encode(png_bytes(rgb)).decode("ascii")
