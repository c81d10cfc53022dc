"""Prompt comprehension scores: which paraphrase of a prompt makes the model's answer use its words.

Following the "Sorry, Come Again?" prompting idea: attribute the answer to each paraphrase's
prompt tokens, take the per-token profile of |attribution|, and rank the paraphrases by a
statistic of that profile. The attribution is either exact leave-one-out occlusion (the
default: one forward pass per prompt token, no integration error), integrated gradients (error
controlled; the completeness error is reported and non-converged results warn), or one of the
generation explainer's one-pass gradient methods. See docs/comprehension.md for the choice of
method and statistic and the evaluation on a fact set.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from ..errors import ConvergenceWarning, InputError, caller_stacklevel
from ..models import logits_of
from ..protocol import ResultMixin
from .explainer import GenerationExplainer
from .result import GenerationAttribution
from .runner import embedding_override

METHODS: tuple[str, ...] = ("occlusion", "integrated_gradients", "saliency", "input_x_gradient")
STATISTICS: tuple[str, ...] = ("sensitivity", "mean", "above", "minimum", "middle", "coverage")
DEFAULT_RANK_BY = "sensitivity"
# An IG result counts as converged when the explainer says so *and* its completeness error is at most this.
COMPLETENESS_RTOL = 0.05
OCCLUSION_BATCH = 16


@dataclass(frozen=True, repr=False)
class ComprehensionScore(ResultMixin):
    """One paraphrase: the profile its statistics are computed from, and how it was obtained.

    ``tokens`` are the attributed prompt tokens (leading fixed BOS tokens excluded) and
    ``effects[j]`` is |attribution| of the target's log-probability to token ``j`` summed over the
    target tokens, in nats; ``profile`` is ``effects`` divided by its maximum. ``converged`` is None
    for methods without an integral (occlusion, saliency, input x gradient).
    """

    paraphrase: str
    tokens: tuple[str, ...]
    effects: torch.Tensor
    profile: torch.Tensor
    stats: dict[str, float]
    target: tuple[str, ...]
    log_prob: float
    method: str
    converged: bool | None = None
    relative_error: float | None = None
    attribution: GenerationAttribution | None = None

    AXES = ("token",)

    @property
    def values(self) -> torch.Tensor:
        """The protocol's name for ``effects``: one effect per paraphrase token."""
        return self.effects

    @property
    def delta(self) -> None:
        """``None``: occlusion effects have no completeness sum; IG runs report ``relative_error``."""
        return None

    @property
    def params(self) -> dict[str, Any]:
        return {
            "paraphrase": self.paraphrase,
            "target": "".join(self.target),
            "method": self.method,
            "log_prob": self.log_prob,
        }

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"token": self.tokens}

    def table(self) -> str:
        """One line per prompt token: token, effect (nats), share of the maximum, a bar."""
        width = max([len(repr(t)) for t in self.tokens] + [5])
        lines = [f"{'token':<{width}}  effect  profile"]
        for tok, eff, prof in zip(self.tokens, self.effects.tolist(), self.profile.tolist()):
            lines.append(f"{tok!r:<{width}}  {eff:6.3f}  {prof:7.3f}  {'#' * round(20 * prof)}")
        return "\n".join(lines)

    def summary(self) -> str:
        """The paraphrase, its target and log-probability, the statistics and the convergence status."""
        stats = ", ".join(f"{k}={v:.3f}" for k, v in self.stats.items())
        conv = "" if self.converged is None else f", converged={self.converged} (rel. error {self.relative_error:.3g})"
        return (
            f"{self.paraphrase!r} -> {''.join(self.target)!r} (log p {self.log_prob:.3f}; {self.method}{conv}): {stats}"
        )


def profile(result: GenerationAttribution) -> torch.Tensor:
    """|attribution| of the prompt tokens (fixed positions excluded) summed over targets, max-normalised."""
    values = effects_of(result)
    peak = float(values.max())
    return values / peak if peak > 0 else values


def effects_of(result: GenerationAttribution) -> torch.Tensor:
    """|attribution| of the prompt tokens (fixed positions excluded) summed over targets, in score units."""
    start = len(result.fixed_positions)
    return result.matrix[:, start : result.n_prompt].abs().sum(dim=0).double()


def statistics(prof: torch.Tensor, threshold: float, effects: torch.Tensor | None = None) -> dict[str, float]:
    """Statistics of a profile (max-normalised) and, when given, of the raw ``effects`` (nats).

    sensitivity: mean effect in nats (how much the answer's log-probability moves, on average,
    when one prompt token is taken away); mean, above (share above ``threshold``), minimum and
    middle (the middle third's share of the total) of the max-normalised profile; coverage:
    exp(entropy of the effect shares) / n, the effective share of tokens carrying attribution.
    """
    n = prof.numel()
    third = n // 3
    middle = prof[third : n - third] if n >= 3 else prof
    total = float(prof.sum())
    raw = prof if effects is None else effects
    shares = raw / raw.sum() if float(raw.sum()) > 0 else torch.full_like(raw, 1.0 / max(n, 1))
    entropy = -float((shares * shares.clamp_min(1e-300).log()).sum())
    out = {
        "mean": float(prof.mean()),
        "above": float((prof > threshold).double().mean()),
        "minimum": float(prof.min()),
        "middle": float(middle.sum()) / total if total > 0 else 0.0,
        "coverage": math.exp(entropy) / n,
    }
    if effects is not None:
        out = {"sensitivity": float(effects.mean()), **out}
    return out


def comprehension(
    model: Any,
    tokenizer: Any,
    paraphrases: Sequence[str],
    target: str | None = None,
    *,
    method: str = "occlusion",
    rank_by: str = DEFAULT_RANK_BY,
    threshold: float = 0.1,
    max_new_tokens: int = 1,
    steps: int | None = None,
    tol: float | None = None,
    explainer: GenerationExplainer | None = None,
    progress: bool = True,
) -> list[ComprehensionScore]:
    """Score each paraphrase by its attribution profile; best first by ``rank_by``.

    ``target`` is forced after every paraphrase; without it each paraphrase is scored on its own
    greedy continuation of ``max_new_tokens`` tokens (the model's answer, not a known one).
    ``steps``/``tol`` apply to "integrated_gradients" only (default ``tol=1e-2``).
    """
    if method not in METHODS:
        raise InputError("method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    if rank_by not in STATISTICS:
        raise InputError("rank_by", f"expected one of {', '.join(STATISTICS)}, got {rank_by!r}")
    if isinstance(paraphrases, str) or not paraphrases or not all(isinstance(p, str) for p in paraphrases):
        raise InputError("paraphrases", "expected a non-empty list of prompt strings")
    if any(not p.strip() for p in paraphrases):
        raise InputError("paraphrases", "a paraphrase is empty")
    if not 0 <= threshold < 1:
        raise InputError("threshold", f"expected a number in [0, 1), got {threshold!r}")
    if target is not None and (not isinstance(target, str) or not target):
        raise InputError("target", f"expected a non-empty string or None, got {target!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError("max_new_tokens", f"expected an integer >= 1, got {max_new_tokens!r}")
    if method != "integrated_gradients" and (steps is not None or tol is not None):
        raise InputError("steps" if steps is not None else "tol", f"only integrated_gradients integrates; not {method}")
    gx = explainer or GenerationExplainer(model, tokenizer)
    baseline = gx.baseline_embedding() if method == "occlusion" else None
    scores = []
    with progress_bar(len(paraphrases), progress and len(paraphrases) > 1, f"comprehension ({method})") as advance:
        for text in paraphrases:
            if method == "occlusion":
                assert baseline is not None
                score = _occlusion(gx, baseline, text, target, max_new_tokens, threshold)
            else:
                score = _explained(gx, text, target, max_new_tokens, threshold, method, steps, tol)
            scores.append(score)
            advance()
    failed = sum(s.converged is False for s in scores)
    if failed:
        warnings.warn(
            f"{failed} of {len(scores)} paraphrases did not converge (completeness error above "
            f"{COMPLETENESS_RTOL} or max_steps reached); their ranks are unreliable",
            ConvergenceWarning,
            stacklevel=caller_stacklevel(),
        )
    return sorted(scores, key=lambda s: -s.stats[rank_by])


def _explained(
    gx: GenerationExplainer,
    text: str,
    target: str | None,
    max_new_tokens: int,
    threshold: float,
    method: str,
    steps: int | None,
    tol: float | None,
) -> ComprehensionScore:
    options: dict[str, Any] = {"method": method}
    if method == "integrated_gradients":
        options.update(steps=steps, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # counted and reported once by the caller
        res = gx(text, target=target, max_new_tokens=None if target is not None else max_new_tokens, **options)
    eff = effects_of(res)
    peak = float(eff.max())
    prof = eff / peak if peak > 0 else eff
    converged = rel = None
    if method == "integrated_gradients":
        errors = res.relative_error
        rel = float(errors.max()) if errors is not None else math.inf
        converged = bool(res.converged.all()) and rel <= COMPLETENESS_RTOL
    start = len(res.fixed_positions)
    return ComprehensionScore(
        paraphrase=text,
        tokens=tuple(res.tokens[start : res.n_prompt]),
        effects=eff,
        profile=prof,
        stats=statistics(prof, threshold, eff),
        target=tuple(res.target_tokens),
        log_prob=float(res.step_scores["log_probability"].sum())
        if "log_probability" in res.step_scores
        else float(res.score_input.sum()),
        method=method,
        converged=converged,
        relative_error=rel,
        attribution=res,
    )


def encode(gx: GenerationExplainer, text: str) -> tuple[list[int], int]:
    """Token ids of ``text`` as the explainer encodes a prompt, and the number of leading fixed BOS tokens."""
    ids = list(gx.tokenizer(text)["input_ids"])
    bos = gx.tokenizer.bos_token_id
    if gx.add_bos and bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    fixed = 0
    while bos is not None and fixed < len(ids) - 1 and ids[fixed] == bos:
        fixed += 1
    return ids, fixed


def target_log_probs(
    model: Any, gx: GenerationExplainer, seqs: torch.Tensor, embeds: torch.Tensor, n: int
) -> torch.Tensor:
    """Log-probabilities [variants, targets] of ``seqs[:, n:]`` given the (replaced) input embeddings."""
    out = []
    with torch.no_grad(), embedding_override(gx.embedding) as slot:
        for i in range(0, seqs.shape[0], OCCLUSION_BATCH):
            slot[0] = embeds[i : i + OCCLUSION_BATCH]
            result = model(input_ids=seqs[i : i + OCCLUSION_BATCH], use_cache=False)
            logits = logits_of(result)[:, n - 1 : -1].double()
            picked = logits.log_softmax(-1).gather(-1, seqs[i : i + OCCLUSION_BATCH, n:, None])[..., 0]
            out.append(picked)
    return torch.cat(out)


def greedy(model: Any, ids: list[int], n: int, device: torch.device) -> list[int]:
    """``n`` greedy next tokens after ``ids``."""
    seq = torch.tensor([ids], device=device)
    with torch.no_grad():
        for _ in range(n):
            result = model(input_ids=seq, use_cache=False)
            logits = logits_of(result)
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return [int(t) for t in seq[0, len(ids) :]]


def _occlusion(
    gx: GenerationExplainer,
    baseline: torch.Tensor,
    text: str,
    target: str | None,
    max_new_tokens: int,
    threshold: float,
) -> ComprehensionScore:
    """Leave-one-out: each prompt token's embedding replaced by the explainer's baseline vector, one at a time."""
    if gx.seq2seq is not None:
        raise InputError("method", "occlusion supports decoder-only models; use method='integrated_gradients'")
    ids, fixed = encode(gx, text)
    device = baseline.device
    if target is not None:
        forced = list(gx.tokenizer(target, add_special_tokens=False)["input_ids"])
        if not forced:
            raise InputError("target", f"{target!r} tokenises to no tokens")
    else:
        forced = greedy(gx.model, ids, max_new_tokens, device)
    n = len(ids)
    seq = torch.tensor([ids + forced], device=device)
    with torch.no_grad():
        base = gx.embedding(seq)
    positions = list(range(fixed, n))
    variants = base.repeat(len(positions) + 1, 1, 1)
    for row, j in enumerate(positions, start=1):
        variants[row, j] = baseline.to(variants.dtype)
    lp = target_log_probs(gx.model, gx, seq.repeat(len(positions) + 1, 1), variants, n)
    eff = (lp[0:1] - lp[1:]).abs().sum(dim=1)
    peak = float(eff.max())
    prof = eff / peak if peak > 0 else eff
    tokens = tuple(gx.tokenizer.convert_ids_to_tokens(ids[fixed:n]))
    names = tuple(gx.tokenizer.decode([t]) for t in ids[fixed:n])
    return ComprehensionScore(
        paraphrase=text,
        tokens=names if all(names) else tokens,
        effects=eff,
        profile=prof,
        stats=statistics(prof, threshold, eff),
        target=tuple(gx.tokenizer.decode([t]) for t in forced),
        log_prob=float(lp[0].sum()),
        method="occlusion",
    )


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool, label: str) -> Iterator[Any]:
    """A transient rich progress bar; yields ``advance()``. A no-op when disabled or rich is missing."""
    if not enabled:
        yield lambda: None
        return
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    except ImportError:
        yield lambda: None
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("paraphrases", total=total)
        yield lambda: bar.advance(task)
