"""``GenerationExplainer``: generate (or force) target tokens, then attribute each to its prefix.

All prompts of a call are left-padded into one batch; each integration point runs the full
interpolated sequence once and every target token takes its gradient from that pass.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, Mapping, Sequence, overload

import torch

from ..checks import check_model
from ..defaults import GENERATION, GENERATION_MAX_STEPS, canonical_baseline, canonical_method
from ..errors import InputError, ModelError
from ..integration import EXACT, Integration
from ..models import embedding_layer, logits_of
from ..quadrature import make_rule
from .attribute import BaselineSpec, Request, attribute_rows
from .batching import Prompts, Row, as_list, check_fixed, context_window, contrast_logprobs, per_prompt
from .forward_mode import check_gradient_mode
from .occlusion import Scores, check_exact, occlusion_rows
from .result import GenerationAttribution
from .seq2seq import Seq2Seq, is_encoder_decoder
from .steps import DEFAULT_LOGGED, StepFunction, StepSpec, needs_contrast_ids, needs_contrast_prompt, resolve_step

METHODS: tuple[str, ...] = ("integrated_gradients", "saliency", "input_x_gradient", "lrp", "occlusion")
DEFAULT_METHOD = "occlusion"
"""The method ``GenerationExplainer`` and ``integrand generate`` use unless ``method=`` is given: leave-one-out
occlusion, the most faithful method on the 38 held-out facts of ``bench/faithfulness_lm.py`` (selection score 1.39
[1.10, 1.74] against -0.11 for integrated gradients; docs/faithfulness.md) at about 0.1 s per target token.
Ask for "integrated_gradients" for completeness and the IG axioms."""
BASELINES: tuple[str, ...] = ("mean", "zeros", "unk", "pad", "eos", "bos")
DEFAULT_MAX_STEPS = GENERATION_MAX_STEPS
DEFAULT_NEW_TOKENS = 8


class GenerationExplainer:
    """Attribute tokens generated (or forced) by a Hugging Face causal LM to the tokens before them.

    Encoder-decoder models attribute each target to the source and the target prefix (``seq2seq.py``).

    Args:
        model: a ``transformers`` causal LM or encoder-decoder model (``get_input_embeddings()`` is required).
        tokenizer: its tokenizer.
        baseline: what replaces each interpolated position at alpha = 0: "mean" (default: the
            mean input embedding of the ordinary tokens; never a special token, which the model
            reads as structure), "unk" (Inseq's convention; falls back to pad, then eos), "pad",
            "eos", "bos", a token id, or "zeros".
        fixed: leading positions kept at their real embedding along the path: "auto" (the
            leading BOS tokens: the attention sink) or a count.
        add_bos: prepend the tokenizer's BOS token when the encoded prompt lacks it (default: when
            the tokenizer has one and the model is decoder-only).
        batch_size: integration points per forward pass; memory_budget: bytes per pass otherwise.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        baseline: BaselineSpec = "mean",
        fixed: int | str = "auto",
        add_bos: bool | None = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
    ) -> None:
        self.embedding = embedding_layer(model)
        if tokenizer is None or not callable(tokenizer):
            raise InputError("tokenizer", "expected a Hugging Face tokenizer")
        self.model = model
        self.tokenizer = tokenizer
        self.baseline = baseline
        self.fixed = check_fixed(fixed)
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        self.window = context_window(model)
        # Encoder-decoder models: source tokens as the tokenizer encodes them, positions checked per stack.
        self.seq2seq = Seq2Seq(model, tokenizer, self.embedding, self.window) if is_encoder_decoder(model) else None
        default_bos = tokenizer.bos_token_id is not None and self.seq2seq is None
        self.add_bos = default_bos if add_bos is None else bool(add_bos)
        self.window = None if self.seq2seq else self.window

    # ---- public entry points ------------------------------------------------------------------
    @overload
    def __call__(
        self,
        prompt: str,
        max_new_tokens: int | None = ...,
        target: str | None = ...,
        contrast: str | None = ...,
        **options: Any,
    ) -> GenerationAttribution: ...
    @overload
    def __call__(
        self,
        prompt: Sequence[str],
        max_new_tokens: int | None = ...,
        target: Sequence[str] | None = ...,
        contrast: Sequence[str] | None = ...,
        **options: Any,
    ) -> list[GenerationAttribution]: ...

    def __call__(
        self,
        prompt: Prompts,
        max_new_tokens: int | None = None,
        target: Prompts | None = None,
        contrast: Prompts | None = None,
        **options: Any,
    ) -> GenerationAttribution | list[GenerationAttribution]:
        """Attribute ``target`` (teacher-forced) or ``max_new_tokens`` greedy tokens after each prompt.

        Options (keyword-only): ``contrast_prompt`` (for "kl_divergence"), ``method``
        ("occlusion", the default ``DEFAULT_METHOD``: exact leave-one-out, see ``occlusion.py``;
        "integrated_gradients", "saliency", "input_x_gradient", "lrp": AttnLRP, see
        docs/generation.md), ``score`` (the attributed step function; default "log_probability",
        or "contrast_log_prob_diff" with ``contrast``; for "lrp" "logit" and "contrast_logit_diff"),
        ``log_scores`` (more step functions to log), ``integration`` (an ``integrand.integration.Integration``;
        the keywords that follow are shorthand for its fields over ``defaults.GENERATION``, not both),
        ``steps``/``rule`` (fixed rule) or ``tol`` (error control per target token, the default with
        ``tol=1e-2``), ``max_steps``, ``atol``,
        ``baseline``, ``fixed``, ``gradient_mode`` ("auto", "reverse", "forward"; see docs/generation.md),
        ``progress`` (a bar of points done and targets converged; None: on when stderr is a terminal,
        see ``integrand.progress``). "ig" and "zero" are accepted for "integrated_gradients" and "zeros".
        """
        single = isinstance(prompt, str)
        prompts = as_list(prompt, "prompt")
        targets = per_prompt(target, len(prompts), "target")
        contrasts = per_prompt(contrast, len(prompts), "contrast")
        for p in prompts:
            if not p.strip():
                raise InputError("prompt", "the prompt is empty")
        encoded = [self._encode(p, add_special_tokens=True) for p in prompts]
        results = self._explain(encoded, max_new_tokens, targets, contrasts, None, **options)
        results = [_explained(r, t, c) for r, t, c in zip(results, targets, contrasts)]
        return results[0] if single else results

    def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        max_new_tokens: int | None = None,
        target: str | None = None,
        contrast: str | None = None,
        **options: Any,
    ) -> GenerationAttribution:
        """Apply the tokenizer's chat template, then attribute; ``source_groups`` spans each message."""
        if not messages or not all(isinstance(m, Mapping) and "role" in m and "content" in m for m in messages):
            raise InputError("messages", "expected a non-empty list of {'role': ..., 'content': ...} mappings")
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise InputError("messages", "the tokenizer has no chat template")
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        ids = self._encode(text, add_special_tokens=False)
        groups: dict[str, tuple[int, int]] = {}
        start = 0
        for i, message in enumerate(messages):
            part = self.tokenizer.apply_chat_template(list(messages[: i + 1]), tokenize=False)
            end = len(self._encode(part, add_special_tokens=False)) if text.startswith(part) else start
            groups[f"{i}:{message['role']}"] = (start, min(end, len(ids)))
            start = min(end, len(ids))
        groups["generation prompt"] = (start, len(ids))
        result = self._explain([ids], max_new_tokens, [target], [contrast], groups, **options)[0]
        return _explained(result, target, contrast)

    # ---- internals ---------------------------------------------------------------------------
    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        ids = list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])
        bos = self.tokenizer.bos_token_id
        if self.add_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids

    def _tokens(self, text: str | None, argument: str) -> list[int] | None:
        if text is None:
            return None
        if not isinstance(text, str):
            raise InputError(argument, f"expected a string, got {type(text).__name__}")
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if not ids:
            raise InputError(argument, f"{text!r} tokenises to no tokens")
        return ids

    def _fixed_count(self, ids: list[int], fixed: int | str) -> int:
        if fixed == "auto":
            bos = self.tokenizer.bos_token_id
            n = 0
            while bos is not None and n < len(ids) and ids[n] == bos:
                n += 1
            return n
        assert isinstance(fixed, int)
        return fixed

    def _baseline_id(self, spec: BaselineSpec) -> int | None:
        """The baseline's token id; None for "zeros" and "mean" (vectors, not tokens)."""
        if isinstance(spec, bool):
            raise InputError("baseline", "expected a token name, a token id, 'mean' or 'zeros', got a bool")
        if isinstance(spec, int):
            weight = getattr(self.embedding, "weight", None)
            vocab = int(weight.shape[0]) if isinstance(weight, torch.Tensor) else None
            if spec < 0 or (vocab is not None and spec >= vocab):
                raise InputError("baseline", f"token id {spec} is out of range")
            return spec
        if spec in ("zeros", "mean"):
            return None
        order = {"unk": ("unk", "pad", "eos"), "pad": ("pad",), "eos": ("eos",), "bos": ("bos",)}.get(str(spec))
        if order is None:
            raise InputError(
                "baseline", f"expected 'mean', 'zeros', 'pad', 'unk', 'eos', 'bos' or a token id, got {spec!r}"
            )
        for name in order:
            value = getattr(self.tokenizer, f"{name}_token_id", None)
            if isinstance(value, int):
                return value
        raise InputError("baseline", f"the tokenizer has no {spec} token; pass a token id, 'mean' or 'zeros'")

    def special_token_ids(self) -> set[int]:
        """Ids of the tokenizer's special (control) tokens: bos/eos/pad/unk/..., chat and added special tokens."""
        ids = {int(i) for i in getattr(self.tokenizer, "all_special_ids", []) if isinstance(i, int)}
        added = getattr(self.tokenizer, "added_tokens_decoder", None)
        if isinstance(added, Mapping):
            ids |= {int(i) for i, token in added.items() if bool(getattr(token, "special", False))}
        return ids

    def baseline_embedding(self, baseline: BaselineSpec | None = None) -> torch.Tensor:
        """The vector ``[hidden]`` that interpolated positions start from (detached)."""
        spec = self.baseline if baseline is None else baseline
        token = self._baseline_id(spec)
        if token is not None:
            return self._embed(torch.tensor([[token]], device=self._device()))[0, 0]
        if spec == "zeros":
            return self._embed(torch.zeros((1, 1), dtype=torch.long, device=self._device()))[0, 0].zero_()
        weight = getattr(self.embedding, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise InputError("baseline", "'mean' needs an embedding weight matrix; pass 'zeros' or a token id")
        # Rows past the tokenizer's vocabulary are padding that no text produces.
        n_rows = int(weight.shape[0])
        if hasattr(self.tokenizer, "__len__"):
            n_rows = min(n_rows, len(self.tokenizer))
        keep = torch.ones(n_rows, dtype=torch.bool)
        keep[[i for i in self.special_token_ids() if 0 <= i < n_rows]] = False
        ids = torch.arange(n_rows)[keep].to(weight.device)
        if ids.numel() == 0:
            raise InputError("baseline", "the tokenizer has no ordinary tokens to average")
        # Through the layer (not weight rows) so that any scaling the module applies is kept; chunked.
        total = sum(self._embed(ids[None, i : i + 4096])[0].sum(dim=0) for i in range(0, ids.numel(), 4096))
        assert isinstance(total, torch.Tensor)
        return total / ids.numel()

    def _device(self) -> torch.device:
        weight = getattr(self.embedding, "weight", None)
        return weight.device if isinstance(weight, torch.Tensor) else torch.device("cpu")

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.embedding(ids)
        if not isinstance(out, torch.Tensor) or out.dim() != 3:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelError("model", f"expected input embeddings [batch, seq, hidden], got {got}")
        return out.detach()

    def _generate(self, ids: list[int], n: int) -> list[int]:
        """Greedy continuation, stopping after EOS (kept as a target)."""
        if self.seq2seq is not None:
            return self.seq2seq.generate(ids, n)
        seq = torch.tensor([ids], device=self._device())
        eos = self.tokenizer.eos_token_id
        out: list[int] = []
        with torch.no_grad():
            for _ in range(n):
                result = self.model(input_ids=seq, use_cache=False)
                logits = logits_of(result)
                nxt = int(logits[0, -1].argmax())
                out.append(nxt)
                seq = torch.cat([seq, seq.new_tensor([[nxt]])], dim=1)
                if nxt == eos:
                    break
        return out

    def _explain(
        self,
        encoded: list[list[int]],
        max_new_tokens: int | None,
        targets: list[str | None],
        contrasts: list[str | None],
        groups: dict[str, tuple[int, int]] | None,
        *,
        contrast_prompt: str | None = None,
        method: str = DEFAULT_METHOD,
        score: StepSpec | None = None,
        log_scores: Sequence[StepSpec] = (),
        integration: Integration | None = None,
        steps: int | None = None,
        rule: str | None = None,
        tol: float | None = None,
        max_steps: int | None = None,
        atol: float | None = None,
        baseline: BaselineSpec | None = None,
        fixed: int | str | None = None,
        gradient_mode: str = "auto",
        progress: bool | None = None,
    ) -> list[GenerationAttribution]:
        check_model(self.model)
        method = canonical_method(method, METHODS)
        check_gradient_mode(gradient_mode, method)
        if method == "occlusion":
            check_exact(steps=steps, rule=rule, tol=tol, max_steps=max_steps, atol=atol, gradient_mode=gradient_mode)
        if max_new_tokens is not None and (
            isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1
        ):
            raise InputError("max_new_tokens", f"expected an integer >= 1, got {max_new_tokens!r}")
        if max_new_tokens is not None and any(t is not None for t in targets):
            raise InputError("max_new_tokens", "give either target= (forced) or max_new_tokens= (generated), not both")
        policy = dataclasses.replace(GENERATION, batch_size=self.batch_size, memory_budget=self.memory_budget)
        config = Integration.from_kwargs(
            integration, default=policy, steps=steps, rule=rule, tol=tol, max_steps=max_steps, atol=atol
        )
        if config.batch_size is None and config.memory_budget is None:  # the explainer's own chunking
            config = dataclasses.replace(config, batch_size=self.batch_size, memory_budget=self.memory_budget)
        if config.rule == EXACT:
            raise InputError("rule", "'exact' applies to integrated_gradients of piecewise-linear models only")
        rule_obj = make_rule(config.rule, config.steps) if config.steps is not None else None
        fixed_spec = self.fixed if fixed is None else check_fixed(fixed)
        baseline_spec = canonical_baseline(self.baseline if baseline is None else baseline, BASELINES)
        # LRP explains a logit (a linear read-out); the log-sum-exp of a log-probability is not conserved.
        lrp = method == "lrp"
        default_score = ("contrast_logit_diff", "logit") if lrp else ("contrast_log_prob_diff", "log_probability")
        score_name, score_fn = resolve_step(
            score if score is not None else (default_score[0] if contrasts[0] is not None else default_score[1]),
            "score",
        )
        logged = {n: f for n, f in (resolve_step(s, "log_scores") for s in (*DEFAULT_LOGGED, *log_scores))}
        logged[score_name] = score_fn
        for fn in logged.values():
            self._check_step(fn, contrasts, contrast_prompt)

        rows = []
        for b, ids in enumerate(encoded):
            forced = self._tokens(targets[b], "target")
            foil = self._tokens(contrasts[b], "contrast")
            if forced is not None and foil is not None and len(forced) != len(foil):
                raise InputError(
                    "contrast", f"contrast has {len(foil)} tokens but target has {len(forced)}; they must align"
                )
            if foil is not None and forced is None:
                raise InputError("contrast", "contrast= needs a forced target=")
            n_new = max_new_tokens if max_new_tokens is not None else DEFAULT_NEW_TOKENS
            if self.window is not None and len(ids) + (len(forced) if forced else n_new) > self.window:
                raise InputError(
                    "prompt",
                    f"{len(ids)} prompt tokens plus {len(forced) if forced else n_new} targets exceed "
                    f"the model's context window of {self.window} tokens",
                )
            if self.seq2seq is not None:
                self.seq2seq.check(ids, len(forced) if forced else n_new)
            n_fixed = self._fixed_count(ids, fixed_spec)
            if n_fixed >= len(ids):
                raise InputError(
                    "fixed", f"{n_fixed} fixed positions leave no prompt token to attribute (prompt has {len(ids)})"
                )
            with_targets = forced if forced is not None else self._generate(ids, n_new)
            rows.append(Row(prompt=ids, targets=with_targets, contrast=foil, fixed=n_fixed, groups=groups))
        device = self._device()
        contrast = None
        if contrast_prompt is not None:
            other = self._encode(contrast_prompt, add_special_tokens=True)
            source = self.seq2seq.contrast_logprobs if self.seq2seq else partial(contrast_logprobs, self.model)
            contrast = source(other, rows, device)
        if method == "occlusion":
            scores = Scores(score_name, score_fn, {n: f for n, f in logged.items()}, contrast)
            removed = self.baseline_embedding(baseline_spec)
            results = occlusion_rows(
                self.model, self.tokenizer, self._embed, rows, removed, device, scores, self.seq2seq, progress
            )
            return [dataclasses.replace(r, params={**r.params, "removal": str(baseline_spec)}) for r in results]
        request = Request(
            method=method,
            score_name=score_name,
            score_fn=score_fn,
            logged=logged,
            integration=config,
            rule=rule_obj,
            baseline=baseline_spec,
            baseline_id=self._baseline_id(baseline_spec),
            baseline_vector=self.baseline_embedding(baseline_spec),
            gradient_mode=gradient_mode,
            progress=progress,
        )
        if self.seq2seq is not None:
            return self.seq2seq.attribute(rows, request, contrast, self._embed, device)
        return attribute_rows(self.model, self.embedding, self.tokenizer, self._embed, rows, request, contrast, device)

    def _check_step(self, fn: StepFunction, contrasts: list[str | None], contrast_prompt: str | None) -> None:
        if needs_contrast_ids(fn) and any(c is None for c in contrasts):
            raise InputError("contrast", "a contrastive step function needs contrast= for every prompt")
        if needs_contrast_prompt(fn) and contrast_prompt is None:
            raise InputError("contrast_prompt", "'kl_divergence' needs contrast_prompt=")


def _explained(result: GenerationAttribution, target: str | None, contrast: str | None) -> GenerationAttribution:
    """Record what was explained in ``params``: the target text (generated or forced) and the foil, if any."""
    recorded: dict[str, Any] = {"target": target if target is not None else "".join(result.target_tokens)}
    if contrast is not None:
        recorded["contrast"] = contrast
    return dataclasses.replace(result, params={**result.params, **recorded})
