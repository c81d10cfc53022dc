"""AttnLRP: each rule against a loop oracle, conservation reporting, forward and model state, LXT agreement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from integrand.circuits import ATTNLRP, Layout, LRPRules, layout_for, lrp_rules
from integrand.errors import InputError
from integrand.generation import GenerationExplainer
from integrand.generation.lrp import LRP_TOL
from tests.reference import lrp_oracle as oracle
from tests.reference.circuit_models import tiny_bert, tiny_gpt2, tiny_llama, token_pairs
from tests.reference.generation_oracle import tiny_lm

D = torch.float64
ROOT = Path(__file__).resolve().parents[1]


def test_epsilon_rule_matches_formula() -> None:
    torch.manual_seed(1)
    lin = torch.nn.Linear(5, 4).to(D)
    x, g = torch.randn(3, 5, dtype=D), torch.randn(3, 4, dtype=D)
    rules = LRPRules(linear="epsilon", epsilon=0.5)  # large enough to matter
    xr = x.clone().requires_grad_(True)
    with lrp_rules(lin, None, rules):
        z = lin(xr)
    (grad,) = torch.autograd.grad((z * g).sum(), xr)
    want = oracle.linear_epsilon(x, lin.weight.detach(), lin.bias.detach(), 0.5, z.detach() * g)
    torch.testing.assert_close(x * grad, want)
    with torch.no_grad():
        plain = torch.autograd.functional.vjp(lin, x, g)[1]
    assert float((plain * x - want).abs().max()) > 1e-3


def _attention_relevance(attn: torch.nn.Module, x: torch.Tensor, g: torch.Tensor, layout: Layout) -> torch.Tensor:
    xr = x.clone().requires_grad_(True)
    with lrp_rules(attn, layout, LRPRules(attention="attnlrp")):
        out = attn(xr)[0]
    (grad,) = torch.autograd.grad((out * g).sum(), xr)
    return (xr * grad).detach()[0]


def test_attention_rule_matches_formula_separate_qkv() -> None:
    attn = tiny_bert().bert.encoder.layer[0].attention.self
    layout = Layout(blocks=(), attn_out=(), mlp=(), n_heads=2, qk=("query", "key"), v=("value",))
    torch.manual_seed(2)
    x, g = torch.randn(1, 5, 16, dtype=D), torch.randn(1, 5, 16, dtype=D)
    got = _attention_relevance(attn, x, g, layout)
    with torch.no_grad():
        q, k, v = attn.query(x[0]), attn.key(x[0]), attn.value(x[0])
        out = attn(x)[0][0]
    weights = (attn.query.weight, attn.key.weight, attn.value.weight)
    want = oracle.attention_attnlrp(x[0], q, k, v, weights, 2, causal=False, r_out=out * g[0])
    torch.testing.assert_close(got, want)


def test_attention_rule_matches_formula_fused_causal_qkv() -> None:
    attn = tiny_gpt2().transformer.h[0].attn
    layout = Layout(blocks=(), attn_out=(), mlp=(), n_heads=2, qkv=("c_attn",))
    torch.manual_seed(3)
    x, g = torch.randn(1, 5, 16, dtype=D), torch.randn(1, 5, 16, dtype=D)
    # Relevance at the c_proj input (the heads' output): take the gradient there, not after c_proj.
    with torch.no_grad():
        w, b = attn.c_attn.weight, attn.c_attn.bias  # Conv1D: y = x @ W + b
        q, k, v = (x[0] @ w[:, i * 16 : (i + 1) * 16] + b[i * 16 : (i + 1) * 16] for i in range(3))
    heads: list[torch.Tensor] = []
    hook = attn.c_proj.register_forward_pre_hook(lambda m, a: heads.append(a[0]))
    xr = x.clone().requires_grad_(True)
    try:
        with lrp_rules(attn, layout, LRPRules(attention="attnlrp")):
            attn(xr)
    finally:
        hook.remove()
    (grad,) = torch.autograd.grad((heads[0] * g).sum(), xr)
    weights = tuple(w[:, i * 16 : (i + 1) * 16].T for i in range(3))
    want = oracle.attention_attnlrp(x[0], q, k, v, weights, 2, causal=True, r_out=heads[0][0].detach() * g[0])
    torch.testing.assert_close((xr * grad).detach()[0], want)


def test_attnlrp_needs_value_projections() -> None:
    attn = tiny_bert().bert.encoder.layer[0].attention.self
    layout = Layout(blocks=(), attn_out=(), mlp=(), n_heads=2, qk=("query", "key"))
    with pytest.raises(Exception) as err, lrp_rules(attn, layout, ATTNLRP):
        pass
    assert getattr(err.value, "argument", None) == "layout"


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama, tiny_bert], ids=["gpt2", "llama", "bert"])
def test_forward_bit_identical_and_state_unchanged(build: Callable[[], torch.nn.Module], state_guard: Any) -> None:
    model = build()
    guard = state_guard(model)
    ids, _ = token_pairs(n=2, length=6)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    plain = model(inputs_embeds=embeds).logits
    with lrp_rules(model, layout_for(model), ATTNLRP):
        ruled = model(inputs_embeds=embeds).logits
    assert torch.equal(plain, ruled)
    (g_plain,) = torch.autograd.grad(plain[:, -1, 3].sum(), embeds)
    (g_rule,) = torch.autograd.grad(ruled[:, -1, 3].sum(), embeds)
    assert float((g_plain - g_rule).abs().max()) > 1e-3 * float(g_plain.abs().max())
    guard.assert_unchanged()


def _without_attention(model: torch.nn.Module) -> torch.nn.Module:
    """Zero every bias, additive position/type embedding and attention output projection."""
    layout = layout_for(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or any(k in name for k in ("wpe", "position_embeddings", "token_type")):
                p.zero_()
        for path in layout.attn_out:
            model.get_submodule(path).weight.zero_()
    return model


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama, tiny_bert], ids=["gpt2", "llama", "bert"])
def test_conservation(build: Callable[[], torch.nn.Module]) -> None:
    ids, _ = token_pairs(n=2, length=6)

    def share(model: torch.nn.Module) -> torch.Tensor:
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        with lrp_rules(model, layout_for(model), LRPRules(attention="attnlrp")):
            logit = model(inputs_embeds=embeds).logits[:, -1, 5]
        (grad,) = torch.autograd.grad(logit.sum(), embeds)
        return ((embeds * grad).sum(dim=(1, 2)) / logit).detach()

    # Norm, activation, gate and linear rules are conservative: with no biases and no attention
    # output, all of the logit is accounted for.
    torch.testing.assert_close(share(_without_attention(build())), torch.ones(2, dtype=D), rtol=0, atol=1e-6)
    # With attention the softmax's Taylor bias term (and the biases) keep a share: reported, not hidden.
    assert float((share(build()) - 1).abs().max()) > 1e-3


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_generation_lrp_reports_conservation(kind: str, state_guard: Any) -> None:
    model, tok = tiny_lm(kind)
    guard = state_guard(model)
    explainer = GenerationExplainer(model, tok)
    r = explainer("the cat sat on", target=" the mat", method="lrp", progress=False)
    assert r.method == "lrp" and r.score == "logit"
    torch.testing.assert_close(r.score_input, r.step_scores["logit"])
    rel = (r.score_input.double() - r.matrix.double().sum(dim=1)).abs() / r.score_input.double().abs()
    torch.testing.assert_close(r.relative_error.double(), rel, rtol=1e-6, atol=1e-9)
    share = torch.tensor(r.params["lrp_conservation"][0], dtype=D)
    torch.testing.assert_close(share, r.matrix.double().sum(1) / r.score_input.double())
    assert r.converged.tolist() == (rel <= LRP_TOL).tolist()
    assert r.params["converged_tol"] == LRP_TOL and r.params["rules"]["attention"] == "attnlrp"
    # Later tokens get no relevance; several targets share one forward pass.
    assert float(r.matrix[0, r.n_prompt :].abs().max()) == 0.0
    # One target alone gives the same row as within the batch of targets, with as many forward passes.
    alone = explainer("the cat sat on", target=" the", method="lrp", progress=False)
    torch.testing.assert_close(alone.matrix[0], r.matrix[0, : alone.matrix.shape[1]])
    assert r.params["forward_points"] == alone.params["forward_points"]
    guard.assert_unchanged()


def test_log_probability_is_not_conserved_and_says_so() -> None:
    model, tok = tiny_lm("llama")
    with pytest.warns(Warning, match="LRP"):
        r = GenerationExplainer(model, tok)("the cat sat on", target=" the", method="lrp", score="log_probability")
    assert not bool(r.converged.all())


def test_lrp_refuses_unknown_architectures() -> None:
    class Tiny(torch.nn.Module):
        def __init__(self, vocab: int) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, 4)
            self.head = torch.nn.Linear(4, vocab)

        def get_input_embeddings(self) -> torch.nn.Module:
            return self.emb

        def forward(
            self, input_ids: torch.Tensor, attention_mask: Any = None, position_ids: Any = None, use_cache: Any = None
        ) -> Any:
            return type("Out", (), {"logits": self.head(self.emb(input_ids))})()

    _, tok = tiny_lm("gpt2")
    with pytest.raises(InputError) as err:
        GenerationExplainer(Tiny(len(tok)), tok)("the cat", target=" sat", method="lrp", progress=False)
    assert err.value.argument == "method"


@pytest.mark.slow
def test_agrees_with_lxt() -> None:
    pytest.importorskip("lxt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests/reference/lxt_agreement.py")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, got in json.loads(proc.stdout).items():
        ours, lxt = torch.tensor(got["ours"]), torch.tensor(got["lxt"])
        # Our linear layers take eps = 1e-6, LXT's efficient mode none; its identity rule adds 1e-10.
        assert float((ours - lxt).abs().max()) <= 1e-3 * float(lxt.abs().max()), name
