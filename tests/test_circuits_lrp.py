"""LRP rules: forward bit-identical, each backward equal to its formula, relevance conserved."""

from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch

from integrand import InputError, ModelError
from integrand.circuits import GRADIENT, Gate, Layout, LRPRules, layout_for, lrp_rules
from tests.reference import lrp_oracle as oracle
from tests.reference.circuit_models import tiny_bert, tiny_gpt2, tiny_llama, token_pairs

D = torch.float64
NO_LAYOUT = Layout(blocks=(), attn_out=(), mlp=(), n_heads=1)


def _grad(
    module: torch.nn.Module,
    x: torch.Tensor,
    g: torch.Tensor,
    layout: Layout | None,
    rules: LRPRules,
    call: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    with lrp_rules(module, layout, rules):
        y = module(x) if call is None else call(module, x)
    (grad,) = torch.autograd.grad((y * g).sum(), x)
    return grad


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama, tiny_bert], ids=["gpt2", "llama", "bert"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_is_bit_identical_and_backward_changes(
    build: Callable[[], torch.nn.Module], dtype: torch.dtype, state_guard: Any
) -> None:
    model = build().to(dtype)
    guard = state_guard(model)
    ids, _ = token_pairs(n=2, length=6)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    plain = model(inputs_embeds=embeds).logits
    with lrp_rules(model, layout_for(model)):
        ruled = model(inputs_embeds=embeds).logits
    assert torch.equal(plain, ruled)
    (g_plain,) = torch.autograd.grad(plain[:, -1, 3].sum(), embeds)
    (g_rule,) = torch.autograd.grad(ruled[:, -1, 3].sum(), embeds)
    assert float((g_plain - g_rule).abs().max()) > 1e-3 * float(g_plain.abs().max())
    guard.assert_unchanged()


def test_layernorm_rule_matches_formula() -> None:
    ln = torch.nn.LayerNorm(6, eps=1e-3).to(D)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(6))
        ln.bias.copy_(torch.randn(6))
    x, g = torch.randn(4, 6, dtype=D) * 3, torch.randn(4, 6, dtype=D)
    got = _grad(ln, x, g, None, LRPRules())
    torch.testing.assert_close(got, oracle.layernorm_constant_scale(x, ln.weight.detach(), 1e-3, g))
    plain = _grad(ln, x, g, None, GRADIENT)
    assert float((plain - got).abs().max()) > 1e-2


def test_rmsnorm_rule_matches_formula() -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = LlamaRMSNorm(6, eps=1e-4).to(D)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
    x, g = torch.randn(4, 6, dtype=D), torch.randn(4, 6, dtype=D)
    got = _grad(norm, x, g, None, LRPRules())
    torch.testing.assert_close(got, oracle.rmsnorm_constant_scale(x, norm.weight.detach(), 1e-4, g))


@pytest.mark.parametrize(
    ("module", "act"),
    [(torch.nn.GELU(), oracle.gelu_exact), (torch.nn.SiLU(), oracle.silu)],
    ids=["gelu", "silu"],
)
def test_identity_rule_matches_formula(module: torch.nn.Module, act: Callable[[float], float]) -> None:
    x = torch.randn(3, 7, dtype=D) * 2
    x[0, :3] = 0.0  # the rule's limit act'(0) = 1/2 for both
    g = torch.randn(3, 7, dtype=D)
    got = _grad(module, x, g, None, LRPRules())
    torch.testing.assert_close(got, oracle.identity_rule(x, act, 0.5, g), rtol=1e-6, atol=1e-7)
    # Relevance passes unchanged: x * grad == act(x) * g entrywise.
    torch.testing.assert_close(x * got, module(x) * g)


@pytest.mark.parametrize("activation", ["gradient", "identity"])
def test_gated_mlp_half_rule_matches_formula(activation: str) -> None:
    mlp = tiny_llama().model.layers[0].mlp
    layout = Layout(blocks=(), attn_out=(), mlp=(), n_heads=1, gates=(Gate("act_fn", "up_proj", "down_proj"),))
    x, g = torch.randn(3, 16, dtype=D), torch.randn(3, 16, dtype=D)
    got = _grad(mlp, x, g, layout, LRPRules(activation=activation))

    def silu_grad(v: float) -> float:
        s = 1 / (1 + math.exp(-v))
        return s * (1 + v * (1 - s))

    slope = silu_grad if activation == "gradient" else (lambda v: oracle.silu(v) / v)
    w = {n: getattr(mlp, n).weight.detach() for n in ("gate_proj", "up_proj", "down_proj")}
    want = oracle.gated_mlp_half(x, w["gate_proj"], w["up_proj"], w["down_proj"], oracle.silu, slope, g)
    torch.testing.assert_close(got, want)


def test_attention_rule_matches_formula_separate_qk() -> None:
    attn = tiny_bert().bert.encoder.layer[0].attention.self
    layout = Layout(blocks=(), attn_out=(), mlp=(), n_heads=2, qk=("query", "key"))
    x, g = torch.randn(1, 5, 16, dtype=D), torch.randn(1, 5, 16, dtype=D)
    got = _grad(attn, x, g, layout, LRPRules(), call=lambda m, v: m(v)[0])
    with torch.no_grad():
        q, k = attn.query(x[0]), attn.key(x[0])
    want = oracle.attention_constant(q, k, attn.value.weight.detach(), 2, causal=False, g=g[0])
    torch.testing.assert_close(got[0], want)


def test_attention_rule_matches_formula_fused_qkv() -> None:
    attn = tiny_gpt2().transformer.h[0].attn
    layout = Layout(blocks=(), attn_out=(), mlp=(), n_heads=2, qkv=("c_attn",))
    x, g = torch.randn(1, 5, 16, dtype=D), torch.randn(1, 5, 16, dtype=D)
    call: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] = lambda m, v: m(v)[0]  # noqa: E731
    # The module is causal without a mask: position 0 does not see later positions.
    xr = x.clone().requires_grad_(True)
    (early,) = torch.autograd.grad(call(attn, xr)[0, 0].sum(), xr)
    assert float(early[0, 1:].abs().max()) == 0.0
    got = _grad(attn, x, g, layout, LRPRules(), call=call)
    w_attn, w_proj = attn.c_attn.weight.detach(), attn.c_proj.weight.detach()  # Conv1D: y = x @ W + b
    with torch.no_grad():
        q, k = x[0] @ w_attn[:, :16] + attn.c_attn.bias[:16], x[0] @ w_attn[:, 16:32] + attn.c_attn.bias[16:32]
    want = oracle.attention_constant(q, k, w_attn[:, 32:].T, 2, causal=True, g=g[0] @ w_proj.T)
    torch.testing.assert_close(got[0], want)


def _relevance_gap(model: torch.nn.Module, rules: LRPRules) -> torch.Tensor:
    """sum(input x modified gradient) - logit, per sequence."""
    ids, _ = token_pairs(n=2, length=6)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    with lrp_rules(model, layout_for(model), rules):
        logits = model(inputs_embeds=embeds).logits[:, -1, 5]
    (grad,) = torch.autograd.grad(logits.sum(), embeds)
    return ((embeds * grad).sum(dim=(1, 2)) - logits).detach().abs()


def test_relevance_is_conserved_through_a_bias_free_network() -> None:
    # GPT-2 with every bias and the (additive, bias-like) position embeddings zeroed computes in float64 throughout.
    model = tiny_gpt2(bias=False)
    with torch.no_grad():
        model.transformer.wpe.weight.zero_()
    assert float(_relevance_gap(model, LRPRules()).max()) < 1e-12
    assert float(_relevance_gap(model, GRADIENT).min()) > 1e-3
    # Llama has no biases at all; its RMSNorm normalises in float32 internally, hence the looser bound.
    llama = tiny_llama(layers=3)
    assert not any(n.endswith("bias") for n, _ in llama.named_parameters())
    assert float(_relevance_gap(llama, LRPRules()).max()) < 1e-6
    assert float(_relevance_gap(llama, GRADIENT).min()) > 1e-2


def test_rules_are_validated() -> None:
    with pytest.raises(InputError) as err:
        LRPRules(norm="epsilon")
    assert err.value.argument == "rules"
    with pytest.raises(InputError), lrp_rules(torch.nn.Linear(2, 2), None, "half"):  # type: ignore[arg-type]
        pass


def test_hooks_removed_on_error_and_unknown_norms_refused(state_guard: Any) -> None:
    class ShiftedRMSNorm(torch.nn.Module):  # Gemma-style (1 + w): not what the RMSNorm rule assumes
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(4))
            self.eps = 1e-6

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (1 + self.weight) * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), ShiftedRMSNorm())
    guard = state_guard(model)
    with pytest.raises(ModelError) as err, lrp_rules(model, NO_LAYOUT):
        model(torch.randn(2, 4))
    assert err.value.argument == "rules"
    with pytest.raises(RuntimeError, match="boom"), lrp_rules(model, NO_LAYOUT, LRPRules(norm="gradient")):
        raise RuntimeError("boom")
    guard.assert_unchanged()


def test_gate_rule_refuses_a_non_product() -> None:
    class NotGated(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act_fn, self.up_proj, self.down_proj = torch.nn.SiLU(), torch.nn.Linear(3, 5), torch.nn.Linear(5, 3)
            self.gate_proj = torch.nn.Linear(3, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down_proj(self.act_fn(self.gate_proj(x)) + self.up_proj(x))

    layout = Layout(blocks=(), attn_out=(), mlp=(), n_heads=1, gates=(Gate("act_fn", "up_proj", "down_proj"),))
    model = NotGated()
    with pytest.raises(ModelError, match="not act"), lrp_rules(model, layout):
        model(torch.randn(2, 3))
