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


def linear_epsilon(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float, r_out: torch.Tensor) -> torch.Tensor:
    """Epsilon rule for z = W x + b (one row per example): R_i = sum_j x_i w_ji R_j / (z_j + eps sign z_j)."""
    rows, n = x.shape
    out = torch.zeros(rows, n, dtype=D)
    for r in range(rows):
        z = [sum(float(w[j, i] * x[r, i]) for i in range(n)) + float(b[j]) for j in range(w.shape[0])]
        for i in range(n):
            out[r, i] = sum(
                float(x[r, i] * w[j, i]) * float(r_out[r, j]) / (z[j] + (eps if z[j] >= 0 else -eps))
                for j in range(w.shape[0])
            )
    return out


def attention_attnlrp(
    x: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    n_heads: int,
    causal: bool,
    r_out: torch.Tensor,
) -> torch.Tensor:
    """AttnLRP relevance of one sequence's attention input, written from the paper's rules.

    ``out_ic = sum_j A_ij v_jc`` with ``A = softmax(S)``, ``S_ij = sum_c q_ic k_jc / sqrt(d)`` per head.
    Sums take the epsilon rule (eps -> 0), each product ``a * b`` gives half of its share to each
    factor (uniform rule), the softmax gives ``R_S_i = S_i (R_A_i - A_i sum_j R_A_j)`` (Taylor at the
    input, bias dropped), and the projections ``q = W_q x + b_q`` (same for k, v) the epsilon rule.
    ``x`` is [T, D_in], ``q``/``k``/``v`` and ``r_out`` are [T, H*d], ``w`` the projection weights [H*d, D_in].
    """
    t, width = q.shape
    d = width // n_heads
    rq, rk, rv = (torch.zeros(t, width, dtype=D) for _ in range(3))
    for h in range(n_heads):
        cols = range(h * d, (h + 1) * d)
        for i in range(t):
            keys = list(range(i + 1)) if causal else list(range(t))
            s = {j: sum(float(q[i, c] * k[j, c]) for c in cols) / math.sqrt(d) for j in keys}
            top = max(s.values())
            e = {j: math.exp(s[j] - top) for j in keys}
            a = {j: e[j] / sum(e.values()) for j in keys}
            r_a = dict.fromkeys(keys, 0.0)
            for c in cols:
                out = sum(a[j] * float(v[j, c]) for j in keys)
                for j in keys:
                    share = float(r_out[i, c]) * a[j] * float(v[j, c]) / out
                    r_a[j] += share / 2
                    rv[j, c] += share / 2
            total = sum(r_a.values())
            for j in keys:
                r_s = s[j] * (r_a[j] - a[j] * total)
                for c in cols:
                    share = r_s * (float(q[i, c] * k[j, c]) / math.sqrt(d)) / s[j]
                    rq[i, c] += share / 2
                    rk[j, c] += share / 2
    relevance = torch.zeros(t, x.shape[1], dtype=D)
    for r_proj, proj, weight in ((rq, q, w[0]), (rk, k, w[1]), (rv, v, w[2])):
        for p in range(t):
            for m in range(x.shape[1]):
                relevance[p, m] += sum(
                    float(x[p, m] * weight[c, m]) * float(r_proj[p, c]) / float(proj[p, c]) for c in range(width)
                )
    return relevance
