"""Relevance from integrand's AttnLRP rules and from LXT 2.1 (``lxt.efficient``) on the same model.

Run as a script in its own process: LXT patches transformers' classes and modules for the rest of
the process, so it must not run inside the test session. Prints one JSON object:
``{"model": {"ours": [...], "lxt": [...], "logit": ...}}`` (per-token relevance of one logit).

Glue, not rules: LXT 2.1 replaces a modelling module's ``ALL_ATTENTION_FUNCTIONS`` registry by a
plain dict, which transformers >= 5 no longer accepts (it calls ``.get_interface``). So the
attention rule is installed by wrapping ``eager_attention_forward`` with LXT's own
``wrap_attention_forward`` and running the models with eager attention; norms and MLPs are
patched with LXT's own patch maps. ``import lxt.efficient`` itself fails under transformers 5
(its bundled BERT copy imports a removed helper) and needs torchvision (its ViT map), so the
``lxt`` packages are registered without running their ``__init__`` and only the GPT-2 and
Llama maps are imported.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import torch


def _lxt_packages() -> None:
    """Register ``lxt``, ``lxt.efficient`` and its ``models`` as bare packages (their ``__init__`` not run)."""
    spec = importlib.util.find_spec("lxt")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("lxt is not installed (pip install lxt==2.1)")
    root = Path(list(spec.submodule_search_locations)[0])
    for name, path in (
        ("lxt", root),
        ("lxt.efficient", root / "efficient"),
        ("lxt.efficient.models", root / "efficient" / "models"),
    ):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package


def _relevance(model: Any, ids: torch.Tensor, target: int) -> tuple[list[float], float]:
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logit = model(inputs_embeds=embeds, use_cache=False).logits[0, -1, target]
    (grad,) = torch.autograd.grad(logit, embeds)
    return (embeds * grad).sum(-1)[0].tolist(), float(logit)


def _ours(model: Any, ids: torch.Tensor, target: int) -> tuple[list[float], float]:
    from integrand.circuits import ATTNLRP, layout_for, lrp_rules

    with lrp_rules(model, layout_for(model), ATTNLRP):
        return _relevance(model, ids, target)


def _patch_lxt() -> None:
    _lxt_packages()
    from lxt.efficient.models import gpt2, llama
    from lxt.efficient.patches import wrap_attention_forward
    from transformers.models.gpt2 import modeling_gpt2
    from transformers.models.llama import modeling_llama

    patched: set[Any] = set()
    for module, patch_map in ((modeling_llama, llama.attnLRP), (modeling_gpt2, gpt2.attnLRP)):
        for target, patch in patch_map.items():
            if target is module or target in patched:  # Dropout is in both maps
                continue
            if not patch(target):
                raise SystemExit(f"LXT could not patch {target}")
            patched.add(target)
        module.eager_attention_forward = wrap_attention_forward(module.eager_attention_forward)  # type: ignore[attr-defined]


def main() -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, ".")
    from tests.reference.circuit_models import tiny_gpt2, tiny_llama

    builds: dict[str, Any] = {"gpt2": tiny_gpt2, "llama": tiny_llama}
    if "--smollm2" in sys.argv:
        from integrand.generation.smollm import load_smollm2

        builds["smollm2"] = lambda: load_smollm2()[0]
    models, out = {}, {}
    for name, build in builds.items():
        torch.manual_seed(0)
        model = build().eval()
        model.config._attn_implementation = "eager"
        vocab = int(model.get_input_embeddings().weight.shape[0])
        ids = torch.randint(0, min(vocab, 5000), (1, 7))
        models[name] = (model, ids)
        ours, logit = _ours(model, ids, target=3)
        out[name] = {"ours": ours, "logit": logit}
    _patch_lxt()
    for name, (model, ids) in models.items():
        # LXT recomputes LayerNorm/RMSNorm by hand: its forward may differ from the model's by rounding.
        out[name]["lxt"], out[name]["lxt_logit"] = _relevance(model, ids, target=3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
