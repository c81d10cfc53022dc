"""A small CNN on scikit-learn's bundled 8x8 digits, trained in seconds and cached as safetensors."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..cache import cache_dir
from ..errors import MissingExtraError


@dataclass(frozen=True)
class DigitsConfig:
    """Architecture and training settings; the cache key is derived from them."""

    activation: str = "relu"
    channels: tuple[int, int] = (8, 16)
    epochs: int = 15
    seed: int = 0
    lr: float = 3e-3


def build_cnn(config: DigitsConfig) -> nn.Sequential:
    act: type[nn.Module] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[config.activation]
    c1, c2 = config.channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        act(),
        nn.Conv2d(c1, c2, 3, padding=1),
        act(),
        nn.MaxPool2d(2) if config.activation == "relu" else nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 16, 10),
    )


@dataclass(frozen=True)
class DigitsData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_digits_data(seed: int = 0) -> DigitsData:
    """Digits scaled to [0, 1] as [N, 1, 8, 8] float32 with a fixed 80/20 split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise MissingExtraError("scikit-learn", "demo") from exc
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(y))
    return DigitsData(x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]])


def train_digits_cnn(config: DigitsConfig = DigitsConfig(), use_cache: bool = True) -> tuple[nn.Sequential, DigitsData]:
    """The trained CNN (eval mode) and its data; cached by a hash of ``config``."""
    from safetensors.torch import load_file, save_file

    data = load_digits_data(config.seed)
    model = build_cnn(config)
    key = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"digits-cnn-{key}.safetensors"
    if use_cache and path.exists():
        model.load_state_dict(load_file(str(path)))
        return model.eval(), data
    torch.manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    model.train()
    for _ in range(config.epochs):
        for idx in torch.split(torch.randperm(len(data.train_y), generator=gen), 64):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        os.replace(tmp, path)
    return model, data


def accuracy(model: nn.Module, data: DigitsData) -> float:
    with torch.no_grad():
        return float((model(data.test_x).argmax(1) == data.test_y).float().mean())
