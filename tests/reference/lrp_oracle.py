"""Slow, explicit re-implementations of the LRP rules' backward passes, written from their formulas.

Each function returns the modified gradient with respect to a module's input given the gradient
``g`` arriving at its output, with explicit loops over rows and entries (float64, no autograd).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

D = torch.float64


def layernorm_constant_scale(x: torch.Tensor, weight: torch.Tensor, eps: float, g: torch.Tensor) -> torch.Tensor:
    """LN rule: y_i = w_i (x_i - mean) / sigma + b_i with sigma held constant, so
    dy_i/dx_j = w_i (delta_ij - 1/n) / sigma."""
    rows, n = x.shape
    out = torch.zeros(rows, n, dtype=D)
    for r in range(rows):
        mean = sum(float(v) for v in x[r]) / n
        sigma = math.sqrt(sum((float(v) - mean) ** 2 for v in x[r]) / n + eps)
        for j in range(n):
            out[r, j] = sum(float(g[r, i] * weight[i]) * ((i == j) - 1 / n) / sigma for i in range(n))
    return out


def rmsnorm_constant_scale(x: torch.Tensor, weight: torch.Tensor, eps: float, g: torch.Tensor) -> torch.Tensor:
    """RMSNorm with the scale held constant: y_i = w_i x_i / rms, dy_i/dx_j = delta_ij w_i / rms."""
    rows, n = x.shape
    out = torch.zeros(rows, n, dtype=D)
    for r in range(rows):
        rms = math.sqrt(sum(float(v) ** 2 for v in x[r]) / n + eps)
        for j in range(n):
            out[r, j] = float(g[r, j] * weight[j]) / rms
    return out


def identity_rule(
    x: torch.Tensor, act: Callable[[float], float], slope_at_zero: float, g: torch.Tensor
) -> torch.Tensor:
    """Identity rule: the local derivative is act(x)/x (its limit act'(0) at x = 0)."""
    flat_x, flat_g = x.reshape(-1).tolist(), g.reshape(-1).tolist()
    out = [gi * (act(xi) / xi if xi != 0 else slope_at_zero) for xi, gi in zip(flat_x, flat_g)]
    return torch.tensor(out, dtype=D).reshape(x.shape)


def gelu_exact(v: float) -> float:
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


def silu(v: float) -> float:
    return v / (1 + math.exp(-v))


def gated_mlp_half(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    act: Callable[[float], float],
    act_grad: Callable[[float], float],
    g: torch.Tensor,
) -> torch.Tensor:
    """y = W_down (act(W_gate x) * W_up x) with the half rule at the product and the plain derivative
    of act: each factor of p = a * b gets grad_p * (other factor) / 2. Weights are [out, in]."""
    rows, n = x.shape
    hidden = w_gate.shape[0]
    out = torch.zeros(rows, n, dtype=D)
    for r in range(rows):
        z = [sum(float(w_gate[h, i] * x[r, i]) for i in range(n)) for h in range(hidden)]
        b = [sum(float(w_up[h, i] * x[r, i]) for i in range(n)) for h in range(hidden)]
        a = [act(v) for v in z]
        grad_p = [sum(float(w_down[o, h] * g[r, o]) for o in range(w_down.shape[0])) for h in range(hidden)]
        grad_z = [0.5 * grad_p[h] * b[h] * act_grad(z[h]) for h in range(hidden)]
        grad_b = [0.5 * grad_p[h] * a[h] for h in range(hidden)]
        for i in range(n):
            out[r, i] = sum(float(w_gate[h, i]) * grad_z[h] + float(w_up[h, i]) * grad_b[h] for h in range(hidden))
    return out


def attention_constant(
    q: torch.Tensor, k: torch.Tensor, w_v: torch.Tensor, n_heads: int, causal: bool, g: torch.Tensor
) -> torch.Tensor:
    """AH rule for one sequence: out_i = sum_j A_ij v_j per head with A = softmax(q k^T / sqrt(d))
    held constant, so only v = W_v x carries gradient: grad_x_j = W_v^T sum_i A_ij g_i.

    ``q``, ``k`` are [T, H*d] (already projected), ``w_v`` is [H*d, D_in], ``g`` is [T, H*d]."""
    t, width = q.shape
    d = width // n_heads
    grad_v = torch.zeros(t, width, dtype=D)
    for h in range(n_heads):
        cols = range(h * d, (h + 1) * d)
        for i in range(t):
            keys = range(i + 1) if causal else range(t)
            logits = [sum(float(q[i, c] * k[j, c]) for c in cols) / math.sqrt(d) for j in keys]
            top = max(logits)
            weights = [math.exp(v - top) for v in logits]
            total = sum(weights)
            for j, w in zip(keys, weights):
                for c in cols:
                    grad_v[j, c] += w / total * float(g[i, c])
    return grad_v @ w_v.to(D)
