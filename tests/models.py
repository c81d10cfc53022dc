"""Small models with closed-form attributions, shared by the tests."""

from __future__ import annotations

import torch
from torch import nn


class Quadratic(nn.Module):
    """f(x) = sum_i a_i x_i^2 + sum_i b_i x_i: IG_i = a_i (x_i^2 - x'_i^2) + b_i (x_i - x'_i) exactly."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)
        self.b = nn.Parameter(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a * x**2 + self.b * x).sum(dim=1)


class PaperNetF(nn.Module):
    """IG paper's first ReLU net: ReLU(ReLU(x1) - 1 - ReLU(x2))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.relu(x[:, 0]) - 1 - torch.relu(x[:, 1]))


class PaperNetG(nn.Module):
    """Functionally equal to PaperNetF: ReLU(ReLU(x1 - 1) - ReLU(x2))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.relu(x[:, 0] - 1) - torch.relu(x[:, 1]))


def mlp(inputs: int = 6, hidden: int = 16, classes: int = 3, act: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, classes))


def cnn(act: type[nn.Module] = nn.ReLU, batchnorm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(4))
    layers += [act(), nn.Conv2d(4, 6, 3, padding=1), act(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5)]
    return nn.Sequential(*layers)


def fold_batchnorm(model: nn.Sequential) -> nn.Sequential:
    """The same function with the first conv's BatchNorm (eval mode) folded into the conv."""
    conv, bn = model[0], model[1]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding, dtype=conv.weight.dtype
    )
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
    return nn.Sequential(fused, *list(model)[2:]).to(conv.weight.dtype)


class TwoInputs(nn.Module):
    """A model with named inputs of different shapes: an image and a vector."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.vec = nn.Linear(4, 6)
        self.head = nn.Linear(3 * 4 * 4 + 6, 3)

    def forward(self, image: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(self.conv(image)).flatten(1)
        b = torch.nn.functional.gelu(self.vec(vector))
        return self.head(torch.cat([a, b], dim=1))
