"""LRP rules for transformers as configurations of one backward-modifying mechanism.

The mechanism: a module's forward value ``y`` is kept bit for bit, and the gradient that reaches
``y`` is routed into a *surrogate* expression whose value equals ``y`` but whose Jacobian is the
rule's (``rewire(y, surrogate)``). Each rule is only a choice of surrogate:

======================  ==============================  ========================================
module type             rule (default first)            surrogate
======================  ==============================  ========================================
LayerNorm / RMSNorm     ``constant-scale``, gradient    ``weight * (x - mean) * stop(1/sigma) + bias``
GELU / SiLU / ...       ``identity``, gradient          ``x * stop(act(x) / x)``
gated MLP ``a * b``     ``half``, gradient              ``(a * stop(b) + stop(a) * b) / 2``
attention softmax       ``constant`` (AH), ``attnlrp``,  queries and keys ``stop(q)``, ``stop(k)``;
                        gradient                        AttnLRP: gradient x 1/4 at q, k, x 1/2 at v
linear layers           gradient, ``epsilon``           ``y * stop(z / (z + eps sign z))`` (value kept)
======================  ==============================  ========================================

Holding queries and keys constant is exactly holding the softmax pattern constant: they reach
the output only through it. With every default on, gradient x activation is the LRP relevance
of Ali et al. (2022), as used by relevance patching (RelP, 2025).

``ATTNLRP`` is AttnLRP (Achtibat et al., ICML 2024) in gradient x input form. The softmax is
explained by its first-order Taylor expansion at its input with the bias term dropped: relevance
``x_i (R_i - s_i sum_j R_j)``, which is ``x_i`` times the softmax's true gradient, so the softmax
keeps its gradient. The two matrix products around it (``q k^T`` and ``A v``) take the uniform
rule (half of the relevance to each factor, i.e. gradient x 1/2 on both inputs); every operation
between the projections and those products (head split, RoPE, scaling, masking, GQA repetition)
is linear, so the factors are applied at the projection outputs: 1/2 x 1/2 at queries and keys,
1/2 at values.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterator, Sequence

import torch

from ..errors import ConvergenceWarning, InputError, ModelError, caller_stacklevel
from .components import Layout, get_module, layout_for

_CHOICES: dict[str, tuple[str, ...]] = {
    "norm": ("constant-scale", "gradient"),
    "activation": ("identity", "gradient"),
    "gate": ("half", "gradient"),
    "attention": ("constant", "attnlrp", "gradient"),
    "linear": ("gradient", "epsilon"),
}

# Linear layers the epsilon rule applies to (torch and Hugging Face's GPT-2 ``Conv1D``).
LINEARS: frozenset[str] = frozenset({"Linear", "Conv1D"})

# Elementwise activations the identity rule applies to (torch and Hugging Face class names).
ACTIVATIONS: frozenset[str] = frozenset(
    {
        "GELU",
        "SiLU",
        "ReLU",
        "Tanh",
        "GELUActivation",
        "NewGELUActivation",
        "FastGELUActivation",
        "QuickGELUActivation",
        "GELUTanh",
        "PytorchGELUTanh",
        "SiLUActivation",
    }
)


@dataclass(frozen=True)
class LRPRules:
    """The backward rule of each module type; every field but ``epsilon`` is a rule name or ``"gradient"``.

    ``epsilon`` is the stabiliser of the linear layers' epsilon rule (used with ``linear="epsilon"``).
    """

    norm: str = "constant-scale"
    activation: str = "identity"
    gate: str = "half"
    attention: str = "constant"
    linear: str = "gradient"
    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (eps > 0 and math.isfinite(eps)):
            raise InputError("rules", f"epsilon={eps!r}; expected a finite number > 0")
        for f in fields(self):
            if f.name == "epsilon":
                continue
            value = getattr(self, f.name)
            if value not in _CHOICES[f.name]:
                raise InputError("rules", f"{f.name}={value!r}; expected one of {_CHOICES[f.name]}")


LRP_TOL = 0.1
"""Tolerance on the conservation error ``|score - sum(R)| / |score|`` that ``converged`` is judged by.

AttnLRP does not conserve exactly: the softmax rule drops its bias term and every bias keeps its
share. On SmolLM2-135M-Instruct the logit of a forced answer token keeps most of its relevance
(see docs/generation.md, "LRP"); a relative loss above 10 % says the explanation misses a large
part of the score (e.g. a log-probability score, whose log-sum-exp is not explained).
"""

GRADIENT = LRPRules(norm="gradient", activation="gradient", gate="gradient", attention="gradient")
ATTNLRP = LRPRules(attention="attnlrp", linear="epsilon")
"""AttnLRP (Achtibat et al., 2024): epsilon, LN, identity and uniform rules, softmax by its Taylor expansion."""


class _Rewire(torch.autograd.Function):
    """Forward: ``value``. Backward: the incoming gradient goes to ``surrogate`` only."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, grad


def rewire(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, differentiated as ``surrogate`` in the backward pass."""
    if surrogate.shape != value.shape:
        raise ModelError("rules", f"surrogate shape {tuple(surrogate.shape)} != value shape {tuple(value.shape)}")
    out: torch.Tensor = _Rewire.apply(value, surrogate)  # type: ignore[no-untyped-call]
    return out


def _check_close(name: str, surrogate: torch.Tensor, value: torch.Tensor) -> None:
    # A surrogate that does not reproduce the forward value means the module is not what the rule assumes.
    err = float((surrogate.detach().float() - value.detach().float()).abs().max()) if value.numel() else 0.0
    tol = max(1e-3, 8 * torch.finfo(value.dtype).eps) if value.is_floating_point() else 1e-3
    if err > tol * (1.0 + float(value.detach().float().abs().max())):
        raise ModelError("rules", f"{name}: the rule's surrogate differs from the module output by {err:.3g}")


def norm_surrogate(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm/RMSNorm/L2 normalisation with the normalising scale held constant (LN rule)."""
    if type(module).__name__ == "L2Normalize":
        dim, floor = int(module.dim), float(module.eps)  # type: ignore[arg-type]
        norm = x.norm(p=2, dim=dim, keepdim=True).clamp_min(floor).detach()
        scaled: torch.Tensor = x / norm
        return scaled
    weight = getattr(module, "weight", None)
    if isinstance(module, torch.nn.LayerNorm):
        dims = tuple(range(-len(module.normalized_shape), 0))
        centred = x - x.mean(dim=dims, keepdim=True)
        scale = torch.rsqrt(x.var(dim=dims, unbiased=False, keepdim=True) + module.eps).detach()
        out = centred * scale
        if weight is not None:
            out = out * weight
        if module.bias is not None:
            out = out + module.bias
        return out
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    if not isinstance(eps, float) or not isinstance(weight, torch.Tensor):
        raise ModelError("rules", f"{type(module).__name__} has no float eps and weight tensor; not an RMSNorm")
    x32 = x.float()
    scale = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps).detach()
    return weight * (x32 * scale).to(x.dtype)


def identity_surrogate(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x * stop(act(x)/x)``: relevance passes through the activation unchanged (identity rule)."""
    zero = x == 0
    ratio = y.detach() / torch.where(zero, torch.ones_like(x), x.detach())
    if bool(zero.any()):
        # act(x)/x -> act'(0) at 0 for act(0) = 0; a central difference evaluates it without hooks.
        eps = torch.tensor([1e-3, -1e-3], dtype=x.dtype, device=x.device)
        with torch.no_grad():
            e = module.forward(eps)
        ratio = torch.where(zero, (e[0] - e[1]) / (2e-3), ratio)
    return x * ratio


def half_surrogate(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Half rule for a product of two activations: each factor gets half the relevance."""
    return 0.5 * (a * b.detach()) + 0.5 * (a.detach() * b)


def scaled(y: torch.Tensor, factor: float) -> torch.Tensor:
    """Value ``y`` exactly, gradient ``factor`` times the incoming one (the uniform rule's 1/2 per product)."""
    frozen = y.detach()
    return frozen + factor * (y - frozen)


def epsilon_surrogate(y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Epsilon rule for ``z = W x + b``: relevance ``x_i w_ji R_j / (z_j + eps sign(z_j))``.

    In gradient x input form that is the gradient at ``z`` times ``z / (z + eps sign z)``.
    """
    frozen = y.detach()
    sign = torch.where(frozen >= 0, 1.0, -1.0).to(frozen.dtype)
    ratio = frozen / (frozen + epsilon * sign)
    return frozen + ratio * (y - frozen)


def uniform_qkv(y: torch.Tensor) -> torch.Tensor:
    """A fused ``[q | k | v]`` projection under AttnLRP: gradient x 1/4 at queries and keys, x 1/2 at values."""
    if y.shape[-1] % 3:
        raise ModelError("rules", f"fused qkv width {y.shape[-1]} is not a multiple of 3")
    q, k, v = y.split(y.shape[-1] // 3, dim=-1)  # type: ignore[no-untyped-call]
    return torch.cat([scaled(q, 0.25), scaled(k, 0.25), scaled(v, 0.5)], dim=-1)


def constant_qkv(y: torch.Tensor) -> torch.Tensor:
    """A fused ``[q | k | v]`` projection with queries and keys held constant."""
    if y.shape[-1] % 3:
        raise ModelError("rules", f"fused qkv width {y.shape[-1]} is not a multiple of 3")
    q, k, v = y.split(y.shape[-1] // 3, dim=-1)  # type: ignore[no-untyped-call]
    return torch.cat([q.detach(), k.detach(), v], dim=-1)


Hook = Callable[..., Any]


def _output_rule(name: str, surrogate: Callable[..., torch.Tensor], check: bool = True) -> Hook:
    """``check=False`` for surrogates that equal the output by construction (``frozen + f * 0``)."""

    def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if not isinstance(output, torch.Tensor) or not args or not isinstance(args[0], torch.Tensor):
            raise ModelError("rules", f"{name}: expected a tensor input and output")
        sur = surrogate(module, args[0], output)
        if check:
            _check_close(name, sur, output)
        return rewire(output, sur)

    return hook


def _gate_hooks(name: str) -> tuple[Hook, Hook, Hook]:
    seen: dict[str, torch.Tensor] = {}

    def record(key: str) -> Hook:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
            seen[key] = output

        return hook

    def down(module: torch.nn.Module, args: tuple[Any, ...]) -> Any:
        a, b = seen.pop("act", None), seen.pop("up", None)
        p = args[0]
        if a is None or b is None or a.shape != p.shape or not torch.equal(a * b, p):
            raise ModelError("rules", f"{name}: the input of the down projection is not act(gate(x)) * up(x)")
        return (rewire(p, half_surrogate(a, b)), *args[1:])

    return record("act"), record("up"), down


def _is_norm(module: torch.nn.Module) -> bool:
    name = type(module).__name__
    return isinstance(module, torch.nn.LayerNorm) or name.endswith("RMSNorm") or name == "L2Normalize"


@contextmanager
def lrp_rules(model: torch.nn.Module, layout: Layout | None, rules: LRPRules = LRPRules()) -> Iterator[None]:
    """Switch the rules on for every forward pass inside the block; hooks removed on exit.

    Norms and activations are found by type anywhere in the model; the attention and gate rules
    need a ``layout`` (``None`` applies only the type-based rules).
    """
    if not isinstance(rules, LRPRules):
        raise InputError("rules", f"expected LRPRules, got {type(rules).__name__}")
    handles: list[torch.utils.hooks.RemovableHandle] = []
    eps = float(rules.epsilon)
    try:
        for name, module in model.named_modules():
            if rules.linear == "epsilon" and type(module).__name__ in LINEARS:
                hook = _output_rule(name, lambda m, x, y: epsilon_surrogate(y, eps), check=False)
                handles.append(module.register_forward_hook(hook))
            if rules.norm == "constant-scale" and _is_norm(module):
                sur = _output_rule(name, lambda m, x, y: norm_surrogate(m, x))
                handles.append(module.register_forward_hook(sur))
            elif rules.activation == "identity" and type(module).__name__ in ACTIVATIONS:
                handles.append(module.register_forward_hook(_output_rule(name, identity_surrogate)))
        if layout is not None and rules.attention == "constant":
            for path in layout.qk:
                hook = _output_rule(path, lambda m, x, y: y.detach())
                handles.append(get_module(model, path).register_forward_hook(hook))
            for path in layout.qkv:
                hook = _output_rule(path, lambda m, x, y: constant_qkv(y))
                handles.append(get_module(model, path).register_forward_hook(hook))
        if layout is not None and rules.attention == "attnlrp":
            if layout.qk and len(layout.v) * 2 != len(layout.qk):
                raise ModelError("layout", "the AttnLRP attention rule needs the value projections (Layout.v)")
            for path, factor in [*((p, 0.25) for p in layout.qk), *((p, 0.5) for p in layout.v)]:
                hook = _output_rule(path, lambda m, x, y, f=factor: scaled(y, f), check=False)
                handles.append(get_module(model, path).register_forward_hook(hook))
            for path in layout.qkv:
                hook = _output_rule(path, lambda m, x, y: uniform_qkv(y), check=False)
                handles.append(get_module(model, path).register_forward_hook(hook))
        if layout is not None and rules.gate == "half":
            for gate in layout.gates:
                act, up, down = _gate_hooks(gate.down)
                # Registered after the activation rule, so the recorded factor is the rewired one.
                handles.append(get_module(model, gate.act).register_forward_hook(act))
                handles.append(get_module(model, gate.up).register_forward_hook(up))
                handles.append(get_module(model, gate.down).register_forward_pre_hook(down))
        yield
    finally:
        for handle in handles:
            handle.remove()


RULES_TEXT = (
    "the AttnLRP rules: epsilon on linear layers, LN (constant scale) on LayerNorm/RMSNorm, identity on "
    "activations, uniform on the attention products and gates, the softmax by its Taylor expansion"
)


def lrp_layout(model: torch.nn.Module) -> Layout:
    """The model's layout for the attention and gate rules, or an InputError naming ``method``."""
    try:
        return layout_for(model)
    except InputError as exc:
        raise InputError(
            "method",
            f"'lrp' applies {RULES_TEXT}, which are defined for GPT-2, Llama-family and BERT transformers only "
            f"({exc.args[0] if exc.args else exc}); for other models use 'input_x_gradient' or 'integrated_gradients'",
        ) from exc


@dataclass(frozen=True)
class Conservation:
    """How much of each score the relevance accounts for: ``delta = score - sum(R)`` and the flags."""

    delta: torch.Tensor
    relative_error: torch.Tensor
    share: torch.Tensor
    converged: torch.Tensor


def conservation(total: torch.Tensor, score: torch.Tensor, valid: torch.Tensor | None = None) -> Conservation:
    """Judge relevance sums ``total`` against ``score`` (same shape) at :data:`LRP_TOL`, in float64.

    ``share`` is ``sum(R) / score`` (NaN where ``valid`` is False); ``converged`` is
    ``|delta| / |score| <= LRP_TOL`` on valid entries (on the CPU).
    """
    score64, total64 = score.detach().double(), total.detach().double()
    delta = score64 - total64
    rel = delta.abs() / score64.abs().clamp_min(torch.finfo(torch.float64).tiny)
    ok = torch.ones_like(rel, dtype=torch.bool) if valid is None else valid.to(rel.device)
    share = (total64 / score64).where(ok, torch.full_like(rel, math.nan))
    return Conservation(delta, rel, share, ((rel <= LRP_TOL) & ok).cpu())


def warn_unconserved(where: str, items: Sequence[object], *, stacklevel: int = 3) -> None:
    """One ConvergenceWarning naming the targets whose relevance misses the score by more than LRP_TOL.

    It points at the first frame outside integrand (the user's call); ``stacklevel`` is ignored.
    """
    warnings.warn(
        f"{where} {', '.join(map(str, items))}: relevance misses more than {LRP_TOL:g} of the score "
        "(LRP conservation; see .relative_error and params['lrp_conservation'])",
        ConvergenceWarning,
        stacklevel=caller_stacklevel(),
    )


def conservation_line(shares: Sequence[float], unit: str = "") -> str:
    """``relevance conserved: 31% (LRP tolerance 10%)``: the share ``sum(R) / score`` in words (a range for many).

    LRP results are never said to have "converged": there is no integral, only the share of the
    score the relevance accounts for. ``unit`` names the items (``"tokens"``) to count those outside.
    """
    kept = [float(s) for s in shares if math.isfinite(float(s))]
    if not kept:
        return f"relevance conserved: n/a (LRP tolerance {LRP_TOL:.0%})"
    low, high = min(kept), max(kept)
    share = f"{low:.0%}" if f"{low:.0%}" == f"{high:.0%}" else f"{low:.0%} to {high:.0%}"
    line = f"relevance conserved: {share} (LRP tolerance {LRP_TOL:.0%})"
    outside = sum(abs(1 - s) > LRP_TOL for s in kept)
    if unit and len(kept) > 1:
        line += f", {outside} of {len(kept)} {unit} outside it"
    return line
