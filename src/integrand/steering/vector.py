"""``SteeringVector``: per-layer directions with their provenance; save/load; the steering context."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .. import storage
from ..errors import InputError
from ..protocol import NoCompleteness
from .hooks import check_layers, steering

FORMAT = "integrand.SteeringVector"
FORMAT_VERSION = 1


@dataclass(frozen=True, repr=False)
class SteeringVector(NoCompleteness):
    """Steering directions for some decoder blocks of one model.

    ``vectors[l]`` is added at block ``l`` (scaled by the strength); for GrAInS with
    ``variant="both"`` it is ``positive[l] - negative[l]``, where ``positive[l]`` (``v+``) is the
    unit first principal direction of the hidden-state shifts caused by masking each example's
    top-k positively attributed tokens and ``negative[l]`` (``v-``) that of the top-k negatively
    attributed ones, each signed to agree with the mean shift. ``v+`` thus points from
    dispreferred to preferred and ``v-`` the other way, so ``vectors[l]`` points to preferred.
    ``explained[kind][l]`` is the share of the shifts' second moment along the direction.
    """

    vectors: dict[int, torch.Tensor]
    model_name: str
    method: str
    variant: str
    reducer: str
    k: int | None
    n_examples: int
    positive: dict[int, torch.Tensor] | None = None
    negative: dict[int, torch.Tensor] | None = None
    explained: dict[str, dict[int, float]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    AXES = ("layer", "unit")

    @property
    def values(self) -> torch.Tensor:
        """The vectors stacked in layer order: [layers, hidden]."""
        return torch.stack([self.vectors[i] for i in self.layers])

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"layer": [str(i) for i in self.layers]}

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted(self.vectors))

    @property
    def hidden_size(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])

    def select(self, layers: int | Sequence[int]) -> SteeringVector:
        """The same vector restricted to some of its layers."""
        chosen = [layers] if isinstance(layers, int) and not isinstance(layers, bool) else layers
        if isinstance(chosen, (str, bytes)) or not isinstance(chosen, Sequence) or not chosen:
            raise InputError("layers", f"expected a layer or a non-empty list of layers, got {layers!r}")
        missing = [layer for layer in chosen if layer not in self.vectors]
        if missing:
            raise InputError("layers", f"layers {missing} are not in this vector (it has {list(self.layers)})")

        def pick(d: dict[int, torch.Tensor] | None) -> dict[int, torch.Tensor] | None:
            return None if d is None else {layer: d[layer] for layer in chosen}

        return replace(
            self,
            vectors={layer: self.vectors[layer] for layer in chosen},
            positive=pick(self.positive),
            negative=pick(self.negative),
            explained={kind: {layer: v[layer] for layer in chosen if layer in v} for kind, v in self.explained.items()},
        )

    @contextmanager
    def apply(self, model: Any, strength: float = 1.0, layers: Sequence[int] | None = None) -> Iterator[None]:
        """While active, each chosen block's output ``h`` becomes ``h + strength * v`` rescaled per token to ``|h|``.

        Works for any forward pass, including KV-cached ``model.generate``; the hooks are
        removed on every exit path. ``strength=0`` leaves the model's outputs bit-identical.
        """
        chosen = self.layers if layers is None else self.select(list(layers)).layers
        check_layers(model, list(chosen))
        with steering(model, {layer: self.vectors[layer] for layer in chosen}, strength):
            yield

    # ---- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a ``.safetensors`` file: tensors plus JSON provenance (never pickle)."""
        tensors = {f"vector/{layer}": v for layer, v in self.vectors.items()}
        for kind, values in (("positive", self.positive), ("negative", self.negative)):
            for layer, v in (values or {}).items():
                tensors[f"{kind}/{layer}"] = v
        meta = {
            "model_name": self.model_name,
            "method": self.method,
            "variant": self.variant,
            "reducer": self.reducer,
            "k": self.k,
            "n_examples": self.n_examples,
            "layers": list(self.layers),
            "has_positive": self.positive is not None,
            "has_negative": self.negative is not None,
            "explained": {kind: {str(k): v for k, v in d.items()} for kind, d in self.explained.items()},
            "params": self.params,
        }
        return storage.write(path, tensors, meta, FORMAT, FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        """Read a file written by :meth:`save`."""
        stored, meta = storage.read(path, FORMAT, FORMAT_VERSION, "a steering vector")
        layers = [int(layer) for layer in meta["layers"]]

        def part(kind: str) -> dict[int, torch.Tensor]:
            return {layer: stored[f"{kind}/{layer}"] for layer in layers}

        return cls(
            vectors=part("vector"),
            model_name=meta["model_name"],
            method=meta["method"],
            variant=meta["variant"],
            reducer=meta["reducer"],
            k=meta["k"],
            n_examples=meta["n_examples"],
            positive=part("positive") if meta["has_positive"] else None,
            negative=part("negative") if meta["has_negative"] else None,
            explained={kind: {int(k): float(v) for k, v in d.items()} for kind, d in meta["explained"].items()},
            params=meta["params"],
        )
