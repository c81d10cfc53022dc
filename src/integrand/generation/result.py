"""``GenerationAttribution``: attribution of each target token to every earlier token of one sequence."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import storage
from ..convergence import relative_error as _relative_error
from ..errors import InputError, MissingExtraError
from ..protocol import ResultMixin

FORMAT = "integrand.GenerationAttribution"
FORMAT_VERSION = 1
_TENSORS = ("token_ids", "matrix", "score_input", "score_baseline", "delta", "steps", "converged", "quadrature_error")


@dataclass(frozen=True, repr=False)
class GenerationAttribution(ResultMixin):
    """One prompt's attribution.

    ``tokens`` is the full sequence (prompt then targets); target ``k`` is token ``n_prompt + k``.
    ``matrix[k, j]`` is the attribution of target ``k``'s score to source token ``j`` (``j`` runs
    over all tokens but the last; entries at ``j >= n_prompt + k`` are zero: later tokens cannot
    matter). ``delta`` is the completeness error ``score_input - score_baseline - matrix.sum(1)``
    (``None`` for methods without completeness); ``fixed_positions`` were not interpolated.
    For encoder-decoder models ``n_encoder`` counts the leading encoder (source) tokens; the
    decoder inputs follow (decoder start token, then the targets), so ``n_prompt = n_encoder + 1``.
    """

    tokens: tuple[str, ...]
    token_ids: torch.Tensor  # [L]
    n_prompt: int
    matrix: torch.Tensor  # [T, L - 1]
    step_scores: dict[str, torch.Tensor]  # name -> [T]
    score_input: torch.Tensor  # [T]
    score_baseline: torch.Tensor | None
    delta: torch.Tensor | None
    steps: torch.Tensor  # [T]
    converged: torch.Tensor  # [T]
    method: str
    score: str
    fixed_positions: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)
    quadrature_error: torch.Tensor | None = None
    source_groups: dict[str, tuple[int, int]] | None = None
    n_encoder: int | None = None

    AXES = ("target", "source")

    def __post_init__(self) -> None:
        # params record what was explained whoever built the result: method and score, then the explainer's own.
        object.__setattr__(self, "params", {"method": self.method, "score": self.score, **dict(self.params)})

    @property
    def values(self) -> torch.Tensor:
        """The protocol's name for ``matrix``: [targets, sources]."""
        return self.matrix

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"target": self.target_tokens, "source": self.source_tokens}

    @property
    def target_tokens(self) -> tuple[str, ...]:
        return self.tokens[self.n_prompt :]

    @property
    def source_tokens(self) -> tuple[str, ...]:
        return self.tokens[:-1]

    @property
    def relative_error(self) -> torch.Tensor | None:
        """``|delta| / |score_input - score_baseline|`` per target token."""
        if self.delta is None or self.score_baseline is None:
            return None
        return _relative_error(self.delta, self.score_input - self.score_baseline)

    def grouped(self) -> tuple[list[str], torch.Tensor]:
        """Matrix summed over source groups (chat messages): names and [T, groups]."""
        if not self.source_groups:
            raise InputError("source_groups", "this result has no source groups (use GenerationExplainer.chat)")
        names = list(self.source_groups)
        cols = [self.matrix[:, a : min(b, self.matrix.shape[1])].sum(dim=1) for a, b in self.source_groups.values()]
        return names, torch.stack(cols, dim=1)

    def top_sources(self, k: int = 3, target: int = 0) -> list[tuple[int, str, float]]:
        """The ``k`` source tokens with the largest attribution for target ``target``: (position, token, value)."""
        row = self.matrix[target]
        order = row.argsort(descending=True)[:k].tolist()
        return [(j, self.tokens[j], float(row[j])) for j in order]

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a ``.safetensors`` file with JSON metadata (no pickle)."""
        tensors = {n: getattr(self, n).detach().cpu().clone() for n in _TENSORS if getattr(self, n) is not None}
        tensors["converged"] = tensors["converged"].to(torch.uint8)
        for name, value in self.step_scores.items():
            tensors[f"step_scores/{name}"] = value.detach().cpu().clone()
        meta = {
            "tokens": list(self.tokens),
            "n_prompt": self.n_prompt,
            "method": self.method,
            "score": self.score,
            "fixed_positions": list(self.fixed_positions),
            "params": self.params,
            "step_scores": list(self.step_scores),
            "source_groups": self.source_groups,
            "n_encoder": self.n_encoder,
        }
        return storage.write(path, tensors, meta, FORMAT, FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | Path) -> GenerationAttribution:
        """Read a file written by :meth:`save`."""
        what = "a GenerationAttribution"
        stored, meta = storage.read(path, FORMAT, FORMAT_VERSION, what)
        with storage.parsing(path, what):
            return cls._from_stored(stored, meta)

    @classmethod
    def _from_stored(cls, stored: dict[str, torch.Tensor], meta: dict[str, Any]) -> GenerationAttribution:
        groups = meta["source_groups"]
        tokens, matrix = tuple(meta["tokens"]), stored["matrix"]
        if matrix.dim() != 2 or matrix.shape[1] != len(tokens) - 1:
            raise ValueError(f"the matrix has shape {tuple(matrix.shape)} for {len(tokens)} tokens")
        return cls(
            tokens=tokens,
            n_prompt=int(meta["n_prompt"]),
            step_scores={n: stored[f"step_scores/{n}"] for n in meta["step_scores"]},
            method=meta["method"],
            score=meta["score"],
            fixed_positions=tuple(meta["fixed_positions"]),
            params=meta["params"],
            source_groups=None if groups is None else {k: (int(v[0]), int(v[1])) for k, v in groups.items()},
            converged=stored["converged"].bool(),
            token_ids=stored["token_ids"],
            matrix=matrix,
            score_input=stored["score_input"],
            score_baseline=stored.get("score_baseline"),
            delta=stored.get("delta"),
            steps=stored["steps"],
            quadrature_error=stored.get("quadrature_error"),
            n_encoder=meta.get("n_encoder"),
        )

    # ---- views -------------------------------------------------------------------------------
    def summary(self, top: int = 3) -> str:
        """A plain-text table: one line per target token with its scores, error and top sources."""
        rel = self.relative_error
        foil = self.params.get("contrast")
        versus = f" (target {self.params['target']!r} vs foil {foil!r})" if isinstance(foil, str) else ""
        lines = [f"{self.method} of {self.score}{versus}; fixed positions {list(self.fixed_positions)}"]
        for k, tok in enumerate(self.target_tokens):
            logged = "  ".join(f"{n}={float(v[k]):.4g}" for n, v in self.step_scores.items())
            err = "" if rel is None else f"  rel.err={float(rel[k]):.2g}"
            flag = "" if bool(self.converged[k]) else "  NOT CONVERGED"
            if self.method == "lrp" and self.delta is not None:  # a share of the score, not a convergence
                flag = f"  relevance conserved {1 - float(self.delta[k]) / float(self.score_input[k]):.0%}"
                flag += "" if bool(self.converged[k]) else " (outside the LRP tolerance)"
            tops = ", ".join(f"{t!r}:{v:+.3g}" for _, t, v in self.top_sources(top, k))
            lines.append(f"{tok!r:>14}  {logged}{err}  steps={int(self.steps[k])}{flag}  top: {tops}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_html(self, *, title: str | None = None) -> str:
        """A token x token heatmap table (targets as rows, sources as columns); all text escaped."""
        from ..viz.adapters import generation_caption
        from ..viz.html import STYLE, diverging_rgb
        from ..viz.labels import visible_token

        rgb = diverging_rgb(self.matrix).tolist()
        rel = self.relative_error
        head = "".join(f"<th>{escape(visible_token(t))}</th>" for t in self.source_tokens)
        rows = []
        for k, tok in enumerate(self.target_tokens):
            cells = []
            for j in range(self.matrix.shape[1]):
                r, g, b = rgb[k][j]
                value = float(self.matrix[k, j])
                later = j >= self.n_prompt + k
                cells.append(
                    f'<td style="background:rgb({r},{g},{b})" '
                    f'title="{escape(visible_token(self.tokens[j]))}: {value:.4g}">'
                    f"{'' if later else f'{value:.2g}'}</td>"
                )
            status = "" if bool(self.converged[k]) else ' <span class="bad">not converged</span>'
            err = "" if rel is None else f" ({float(rel[k]):.1e})"
            rows.append(f"<tr><th>{escape(visible_token(tok))}{escape(err)}{status}</th>{''.join(cells)}</tr>")
        heading = title or f"{self.method}: {generation_caption(self)}"
        caption = (
            f"{escape(heading)}: {escape(self.score)} of each target token (rows) attributed to earlier "
            f"tokens (columns); fixed positions {escape(str(list(self.fixed_positions)))}"
        )
        return f"{STYLE}<table><caption>{caption}</caption><tr><th></th>{head}</tr>{''.join(rows)}</table>"

    def _repr_html_(self) -> str:
        return self.to_html()

    def plot(self, ax: Any = None) -> Any:
        """Matplotlib heatmap of the matrix; returns the axes."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise MissingExtraError("matplotlib", "viz") from exc
        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.0, 0.35 * self.matrix.shape[1]), max(2.0, 0.35 * self.matrix.shape[0])))
        limit = float(self.matrix.abs().max()) or 1.0
        ax.imshow(self.matrix.double().cpu().numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(self.source_tokens)), self.source_tokens, rotation=90)
        ax.set_yticks(range(len(self.target_tokens)), self.target_tokens)
        return ax
