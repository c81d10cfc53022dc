"""Fitting steering vectors: GrAInS (attribution-guided) and mean-diff (contrastive activation addition).

GrAInS, per example: contrastive IG on the prompt embeddings, then the top-k positively and
top-k negatively attributed prompt tokens (fixed positions and the last one excluded) are masked
(set to their baseline embedding) and the shift ``h(prompt) - h(masked prompt)`` of the last
prompt token's hidden state is recorded at each chosen block. Over examples the shifts reduce to one unit direction each
(``v+``, ``v-``), and the steering vector is ``v+ - v-``. Mean-diff records
``h(prompt + preferred) - h(prompt + dispreferred)`` at each sequence's last token instead.
"""

from __future__ import annotations

import statistics
import warnings
from typing import Any, Sequence

import torch

from ..checks import check_model
from ..convergence import summarize
from ..defaults import STEERING
from ..errors import ConvergenceWarning, InputError, ModelError
from ..integration import Integration
from ..progress import bar as progress_bar
from .contrastive import contrastive_ig, occlusion_attribution, one_pass_attribution
from .examples import BaselineSpec, Encoded, Encoder
from .hooks import capture, check_layers
from .vector import SteeringVector

METHODS = ("grains", "mean-diff")
VARIANTS = ("both", "positive", "negative")
REDUCERS = ("pca", "mean")
ATTRIBUTIONS = ("ig", "lrp", "input_x_gradient", "occlusion")


def _choice(value: Any, allowed: tuple[str, ...], argument: str) -> str:
    if value not in allowed:
        raise InputError(argument, f"expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return str(value)


def reduce_shifts(shifts: torch.Tensor, reducer: str) -> tuple[torch.Tensor, float]:
    """One unit direction for rows of shifts ``[n, hidden]`` and the share of their second moment it carries.

    "pca": the first principal direction of the *uncentred* shifts (top right singular
    vector): the shifts share a sign, and centring would remove exactly that shared part.
    "mean": the normalised mean. The sign makes the direction agree with the mean shift
    (ties: its largest-magnitude component is positive), so it does not depend on the SVD.
    """
    x = shifts.detach().to(torch.float64)
    total = float((x * x).sum())
    if not total > 0:
        raise ModelError("examples", "every hidden-state shift is zero: masking the chosen tokens changes nothing")
    mean = x.mean(dim=0)
    if reducer == "pca":
        direction = torch.linalg.svd(x, full_matrices=False).Vh[0]
    else:
        if not float(mean.norm()) > 0:
            raise ModelError("examples", "the mean hidden-state shift is zero; use reducer='pca'")
        direction = mean / mean.norm()
    agreement = float(direction @ mean)
    if agreement < 0 or (agreement == 0 and float(direction[direction.abs().argmax()]) < 0):
        direction = -direction
    explained = float(((x @ direction) ** 2).sum()) / total
    return direction.to(shifts.dtype), explained


def _last_hidden(
    model: Any, layers: Sequence[int], embeds: torch.Tensor, lengths: Sequence[int]
) -> dict[int, torch.Tensor]:
    """Block outputs at each row's last real position: ``{layer: [rows, hidden]}`` (rows right-padded)."""
    rows = torch.arange(embeds.shape[0], device=embeds.device)
    last = torch.tensor([n - 1 for n in lengths], device=embeds.device)
    mask = (torch.arange(embeds.shape[1], device=embeds.device)[None] < last[:, None] + 1).long()
    with torch.no_grad(), capture(model, layers) as records:
        model(inputs_embeds=embeds, attention_mask=None if bool(mask.all()) else mask, use_cache=False)
    out = {}
    for layer in layers:
        if len(records[layer]) != 1:
            raise ModelError("model", f"block {layer} ran {len(records[layer])} times in one forward pass")
        out[layer] = records[layer][0][rows, last]
    return out


def _token_scores(
    model: Any, encoder: Encoder, example: Encoded, attribution: str, ig: Integration
) -> tuple[torch.Tensor, float, float | None, bool, str | None]:
    """(token attributions [P], contrastive score, relative completeness error, converged, IG's rule)."""
    if attribution == "occlusion":
        values, score = occlusion_attribution(model, encoder.embedding, example, batch_size=ig.batch_size)
        return values, score, None, True, None  # exact: no integration, nothing to converge
    if attribution != "ig":
        one = one_pass_attribution(model, encoder.embedding, example, attribution, ig.judged_at)
        return one.values.sum(dim=-1), one.score, one.relative_error, one.converged, None
    with warnings.catch_warnings():
        # One example per call: fit() counts and names the unconverged examples itself.
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = contrastive_ig(model, encoder.embedding, example, integration=ig)
    assert isinstance(result.values, torch.Tensor)
    rel = result.relative_error
    return (
        result.values[0].sum(dim=-1),
        float(result.score_input[0]),
        None if rel is None else float(rel[0]),
        bool(result.converged[0]),
        str(result.params["rule"]),
    )


def _grains_shifts(
    model: Any,
    encoder: Encoder,
    example: Encoded,
    layers: Sequence[int],
    k: int,
    attribution: str,
    ig: Integration,
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], dict[str, Any]]:
    token_scores, score, rel, converged, rule = _token_scores(model, encoder, example, attribution, ig)
    # The read-out (last) position is never masked: masking it replaces the read-out token itself, and the
    # shift then measures token identity (on SmolLM2 the mask token's massive activation swamped every shift).
    scores = token_scores[example.fixed : -1]
    top_pos = scores.topk(k).indices + example.fixed
    top_neg = (-scores).topk(k).indices + example.fixed
    masked = example.embeds[None].repeat(3, 1, 1)
    masked[1, top_pos] = example.baseline[top_pos]
    masked[2, top_neg] = example.baseline[top_neg]
    n = example.embeds.shape[0]
    hidden = _last_hidden(model, layers, masked, [n, n, n])
    info = {
        "positive_positions": top_pos.tolist(),
        "negative_positions": top_neg.tolist(),
        "positive_tokens": [example.tokens[i] for i in top_pos.tolist()],
        "negative_tokens": [example.tokens[i] for i in top_neg.tolist()],
        "score": score,
        "relative_error": rel,
        "converged": converged,
        "rule": rule,
    }
    positive = {layer: h[0] - h[1] for layer, h in hidden.items()}
    negative = {layer: h[0] - h[2] for layer, h in hidden.items()}
    return positive, negative, info


def _mean_diff_shift(model: Any, encoder: Encoder, example: Encoded, layers: Sequence[int]) -> dict[int, torch.Tensor]:
    with torch.no_grad():
        answers = [encoder.embedding(a).detach() for a in (example.preferred, example.dispreferred)]
    longest = max(a.shape[0] for a in answers)
    seqs = [torch.cat([example.embeds, a, a.new_zeros(longest - a.shape[0], a.shape[1])]) for a in answers]
    lengths = [example.embeds.shape[0] + a.shape[0] for a in answers]
    hidden = _last_hidden(model, layers, torch.stack(seqs), lengths)
    return {layer: h[0] - h[1] for layer, h in hidden.items()}


def fit(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Any],
    *,
    layers: int | Sequence[int],
    k: int = 3,
    method: str = "grains",
    attribution: str = "ig",
    variant: str = "both",
    reducer: str | None = None,
    baseline: BaselineSpec = "pad",
    add_bos: bool | None = None,
    integration: Integration | None = None,
    steps: int | None = None,
    rule: str | None = None,
    tol: float | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    model_name: str | None = None,
    progress: bool | None = None,
) -> SteeringVector:
    """Fit a steering vector from (prompt, preferred, dispreferred) examples.

    Args:
        model: a Hugging Face causal LM that accepts ``inputs_embeds`` (for a vision-language
            model, its language model, with image tokens given as prompt embeddings).
        tokenizer: its tokenizer (None when every prompt and answer is token ids or embeddings).
        examples: :class:`Preference` objects, (prompt, preferred, dispreferred) triples or mappings.
        layers: decoder block index or indices whose output is steered.
        k: prompt tokens masked on each side (GrAInS); at most the prompt length less its fixed
            positions and its last (read-out) position.
        method: "grains" or "mean-diff" (contrastive activation addition).
        attribution: GrAInS's token attributions for the top-k choice: "ig" (contrastive IG, see
            ``steps``/``tol``), "lrp" (AttnLRP of the answer-logit contrast, one forward and backward
            pass, conservation judged at ``circuits.lrp.LRP_TOL``) or "input_x_gradient" (one pass,
            judged like a one-point IG at ``tol``) or "occlusion" (leave-one-out: each prompt token's
            drop in the contrastive score when its embedding is set to the masking baseline; batched
            no-grad passes of ``batch_size`` rows, exact, so every pair counts as converged and
            ``params["exact"]`` is True).
        variant: "both" (``v+ - v-``), "positive" (``v+``) or "negative" (``-v-``); GrAInS only.
        reducer: "pca" (default for GrAInS) or "mean" (default for mean-diff).
        baseline: the masking token and IG baseline of text prompts: "pad" (falls back to unk,
            then eos), "unk", "eos", "bos", a token id or "zeros".
        integration: the contrastive IG's quadrature (``integrand.integration.Integration``), or the
            shorthand ``steps``/``rule``/``tol``/``max_steps``/``batch_size``/``memory_budget`` over
            ``defaults.STEERING`` (16 Gauss-Legendre points); ``batch_size`` also sets occlusion's rows
            per pass, and ``tol`` the tolerance one-pass attributions are judged at.
        progress: a bar of pairs done, with the number whose IG converged (None: when stderr is a
            terminal; see ``integrand.progress``).

    GrAInS records each pair's completeness (``params["examples"][i]["converged"]``, judged at
    ``tol`` or ``convergence.DEFAULT_TOL``) and ``params["n_unconverged"]``/``["unconverged_share"]``;
    a ``ConvergenceWarning`` names the pairs when more than ``UNCONVERGED_WARN_SHARE`` missed it.
    """
    method = _choice(method, METHODS, "method")
    attribution = _choice(attribution, ATTRIBUTIONS, "attribution")
    variant = _choice(variant, VARIANTS, "variant")
    default_reducer = "pca" if method == "grains" else "mean"
    reducer = _choice(default_reducer if reducer is None else reducer, REDUCERS, "reducer")
    if method == "mean-diff" and variant != "both":
        raise InputError("variant", "mean-diff has one direction; variant applies to GrAInS only")
    chosen = check_layers(model, layers)
    check_model(model)
    if method == "grains" and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InputError("k", f"expected an integer >= 1, got {k!r}")
    encoder = Encoder(model, tokenizer, baseline=baseline, add_bos=add_bos)
    encoded = encoder.encode_all(examples)
    if method == "grains":
        for i, example in enumerate(encoded):
            n = example.embeds.shape[0] - example.fixed - 1
            if k > n:
                raise InputError("k", f"k={k} is larger than examples[{i}]'s prompt ({n} maskable tokens)")
    ig = Integration.from_kwargs(
        integration, default=STEERING, steps=steps, rule=rule, tol=tol, max_steps=max_steps,
        batch_size=batch_size, memory_budget=memory_budget,
    )  # fmt: skip
    positive: dict[int, list[torch.Tensor]] = {layer: [] for layer in chosen}
    negative: dict[int, list[torch.Tensor]] = {layer: [] for layer in chosen}
    infos = []
    with progress_bar(f"steering fit ({method}): pairs", len(encoded), progress) as bar:
        for example in encoded:
            if method == "grains":
                pos, neg, info = _grains_shifts(model, encoder, example, chosen, k, attribution, ig)
                infos.append(info)
                for layer in chosen:
                    positive[layer].append(pos[layer])
                    negative[layer].append(neg[layer])
                bar.update(note=f"{sum(1 for i in infos if i['converged'])}/{len(infos)} converged")
            else:
                shift = _mean_diff_shift(model, encoder, example, chosen)
                for layer in chosen:
                    positive[layer].append(shift[layer])
            bar.advance()
    v_pos: dict[int, torch.Tensor] = {}
    v_neg: dict[int, torch.Tensor] = {}
    first = "positive" if method == "grains" else "shift"
    explained: dict[str, dict[int, float]] = {first: {}} if method == "mean-diff" else {first: {}, "negative": {}}
    for layer in chosen:
        v_pos[layer], explained[first][layer] = reduce_shifts(torch.stack(positive[layer]), reducer)
        if method == "grains":
            v_neg[layer], explained["negative"][layer] = reduce_shifts(torch.stack(negative[layer]), reducer)
    if method == "mean-diff" or variant == "positive":
        vectors = dict(v_pos)
    elif variant == "negative":
        vectors = {layer: -v for layer, v in v_neg.items()}
    else:
        vectors = {layer: v_pos[layer] - v_neg[layer] for layer in chosen}
    params: dict[str, Any] = {"baseline": baseline, "baseline_token_id": encoder.baseline_id}
    if method == "grains":
        errors = [i["relative_error"] for i in infos if i["relative_error"] is not None]
        summary = summarize(
            [i["converged"] for i in infos], "preference pairs", "steering fit", names=range(len(infos)), stacklevel=3
        )
        from ..circuits.lrp import LRP_TOL

        converged_tol = LRP_TOL if attribution == "lrp" else ig.judged_at
        ig_run = attribution == "ig"  # the rule recorded: bisection if any pair's IG needed it
        params.update(
            attribution=attribution,
            exact=attribution == "occlusion",
            converged_tol=None if attribution == "occlusion" else converged_tol,
            n_unconverged=summary.n_unconverged,
            unconverged_share=summary.unconverged_share,
            unconverged_examples=[j for j, i in enumerate(infos) if not i["converged"]],
            steps=ig.steps if ig_run else None,
            rule=max((i["rule"] for i in infos), key=len) if ig_run and infos else None,
            tol=ig.tol if attribution in ("ig", "input_x_gradient") else None,
            integration=ig.as_params() if ig_run else None,
            median_relative_error=statistics.median(errors) if errors else None,
            max_relative_error=max(errors) if errors else None,
            examples=infos,
        )
    return SteeringVector(
        vectors=vectors,
        model_name=model_name if model_name is not None else _model_name(model),
        method=method,
        variant=variant,
        reducer=reducer,
        k=k if method == "grains" else None,
        n_examples=len(encoded),
        positive=v_pos if method == "grains" else None,
        negative=v_neg if method == "grains" else None,
        explained=explained,
        params=params,
    )


def _model_name(model: Any) -> str:
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", "") or getattr(config, "name_or_path", "")
    return str(name) if name else type(model).__name__
