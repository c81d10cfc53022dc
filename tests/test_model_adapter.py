"""The model adapter (``integrand.models``): logits from any output, the embedding layer, blocks and their parts."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from torch import nn

from integrand import InputError, ModelError
from integrand.circuits import intervene, layout_for
from integrand.models import (
    FAMILIES,
    Families,
    Family,
    decoder_blocks,
    embedding_layer,
    family_of,
    logits_of,
    stack_embeddings,
    structure,
)
from integrand.steering.hooks import capture
from integrand.text.modelinfo import find_embedding
from integrand.text.toxicity import ToxicityBiLSTM

from .reference.circuit_models import VOCAB, tiny_bert, tiny_gpt2, tiny_llama
from .reference.seq2seq_oracle import tiny_bart, tiny_t5

IDS = torch.tensor([[1, 5, 7, 3, 2], [4, 4, 9, 1, 6]])
DEC = IDS[:, :3].contiguous()
LAYERS = 2


def bilstm() -> nn.Module:
    torch.manual_seed(0)
    return ToxicityBiLSTM().to(torch.float64).eval()


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "gpt2": tiny_gpt2,
    "llama": tiny_llama,
    "bert": tiny_bert,
    "t5": lambda: tiny_t5(VOCAB),
    "bart": lambda: tiny_bart(VOCAB),
    "bilstm": bilstm,
}
# family -> (blocks, per-block parts that must be found, per-block parts that must be absent)
EXPECTED: dict[str, tuple[int, tuple[str, ...], tuple[str, ...]]] = {
    "gpt2": (LAYERS, ("attention", "attn_out", "mlp", "qkv"), ("q", "k", "v", "gate")),
    "llama": (LAYERS, ("attention", "attn_out", "mlp", "q", "k", "v", "gate"), ("qkv",)),
    "bert": (LAYERS, ("attention", "attn_out", "mlp", "q", "k", "v"), ("qkv", "gate")),
    "t5": (2 * LAYERS, ("attention", "attn_out", "mlp", "q", "k", "v", "gate"), ("qkv",)),
    "bart": (2 * LAYERS, ("attention", "attn_out", "mlp", "q", "k", "v"), ("qkv", "gate")),
    "bilstm": (1, (), ("attention", "attn_out", "mlp", "q", "k", "v", "qkv", "gate")),
}


def run(model: nn.Module, **kwargs: Any) -> Any:
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return model(input_ids=IDS, decoder_input_ids=DEC, **kwargs)
    return model(input_ids=IDS, **kwargs)


@pytest.fixture(scope="module", params=list(BUILDERS))
def built(request: Any) -> tuple[str, nn.Module]:
    return request.param, BUILDERS[request.param]()


def test_logits_from_every_output_kind(built: tuple[str, nn.Module]) -> None:
    name, model = built
    with torch.no_grad():
        out = run(model)
        reference = out if isinstance(out, torch.Tensor) else out.logits
        assert torch.equal(logits_of(out), reference)
        assert torch.equal(logits_of((reference, "cache")), reference)
        assert torch.equal(logits_of({"logits": reference, "loss": torch.tensor(1.0)}), reference)
        if name != "bilstm":
            with_loss = run(model, labels=DEC if name in ("t5", "bart") else IDS)
            assert with_loss.loss is not None  # the ModelOutput's first element is the loss, not the logits
            assert torch.equal(logits_of(with_loss), reference)
            as_tuple = run(model, return_dict=False)
            assert isinstance(as_tuple, tuple) and torch.equal(logits_of(as_tuple), reference)


def test_logits_of_rejects_what_holds_no_logits() -> None:
    for bad in (None, (), ("text",), {"scores": 1}):
        with pytest.raises(ModelError) as info:
            logits_of(bad)
        assert info.value.argument == "model"


def _changes_output(model: nn.Module, layers: tuple[nn.Module, ...]) -> tuple[bool, int]:
    """Whether zeroing ``layers``' outputs changes the logits, and how often they were called."""
    calls = [0]

    def zero(_m: nn.Module, _a: Any, output: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return torch.zeros_like(output)

    with torch.no_grad():
        plain = logits_of(run(model))
        handles = [layer.register_forward_hook(zero) for layer in layers]
        try:
            zeroed = logits_of(run(model))
        finally:
            for handle in handles:
                handle.remove()
    return not torch.allclose(plain, zeroed), calls[0]


def test_embedding_layer_is_the_one_the_model_uses(built: tuple[str, nn.Module]) -> None:
    name, model = built
    layer = embedding_layer(model)
    assert isinstance(layer, nn.Embedding) and layer.num_embeddings >= VOCAB
    if name in ("t5", "bart"):
        # The stacks call modules of their own that share the input embedding's weight.
        layers = stack_embeddings(model)
        assert all(e.weight is layer.weight for e in layers)
    else:
        layers = (layer,)
    changed, calls = _changes_output(model, layers)
    assert changed and calls == len(layers)
    # A second embedding (positions) is never mistaken for the token embedding.
    assert structure(model).embedding == next(n for n, m in model.named_modules() if m is layer)


def test_blocks_and_parts_exist_with_expected_counts(built: tuple[str, nn.Module]) -> None:
    name, model = built
    assert family_of(model).name == name
    info = structure(model)
    n_blocks, present, absent = EXPECTED[name]
    assert info.family == name and len(info.blocks) == n_blocks
    modules = dict(model.named_modules())
    for block in info.blocks:
        assert type(modules[block.path]).__name__ in family_of(model).block_types
        for part in present:
            value = getattr(block, part)
            paths = (value.act, value.up, value.down) if part == "gate" else (value,)
            assert all(p in modules and p.startswith(block.path + ".") for p in paths), (part, value)
        assert all(getattr(block, part) is None for part in absent)
    if name in ("t5", "bart"):
        assert [b.stack for b in info.blocks] == ["encoder"] * LAYERS + ["decoder"] * LAYERS
        assert decoder_blocks(model) == tuple(modules[b.path] for b in info.blocks[LAYERS:])
    else:
        assert {b.stack for b in info.blocks} == {""}
        assert decoder_blocks(model) == tuple(modules[b.path] for b in info.blocks)
    if name != "bilstm":
        assert info.n_heads == model.config.num_attention_heads


def test_mlp_path_is_what_the_block_adds_to_the_residual() -> None:
    """In T5 the MLP is the last sub-layer, whichever index that has (1 in the encoder, 2 in the decoder)."""
    model = tiny_t5(VOCAB)
    info = structure(model)
    assert info.blocks[0].mlp == "encoder.block.0.layer.1.DenseReluDense"
    assert info.blocks[LAYERS].mlp == "decoder.block.0.layer.2.DenseReluDense"


def test_circuit_layouts_come_from_the_adapter() -> None:
    model = tiny_llama()
    layout = layout_for(model)
    info = structure(model)
    assert layout.blocks == info.paths("path") and layout.n_heads == 4
    assert len(layout.qk) == 2 * LAYERS and len(layout.v) == LAYERS and len(layout.gates) == LAYERS
    for enc_dec in (tiny_t5(VOCAB), bilstm()):
        with pytest.raises(InputError) as info_err:
            layout_for(enc_dec)
        assert info_err.value.argument == "model"


def test_unknown_model_is_a_typed_error_listing_families() -> None:
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 3))
    with pytest.raises(ModelError) as info:
        structure(model)
    assert info.value.argument == "model"
    assert all(name in str(info.value) for name in ("gpt2", "llama", "bert", "t5", "bart", "bilstm"))
    with pytest.raises(ModelError) as info:
        family_of(object())
    assert info.value.argument == "model"
    with pytest.raises(ModelError) as info:
        embedding_layer(nn.Sequential(nn.Embedding(5, 3), nn.Embedding(4, 3)))
    assert info.value.argument == "model" and "0, 1" in str(info.value)
    assert embedding_layer(model) is model[0]  # the only nn.Embedding


def test_registry_refuses_bad_families() -> None:
    with pytest.raises(InputError) as info:
        Family(name="x", block_types=())
    assert info.value.argument == "family"
    with pytest.raises(InputError):
        Family(name="x", block_types=("Block",), mlp="")
    families = Families([Family(name="a", block_types=("Block",))])
    with pytest.raises(InputError, match="already registered"):
        families.register(Family(name="a", block_types=("Other",)))
    with pytest.raises(InputError, match="already belong"):
        families.register(Family(name="b", block_types=("Block",)))
    with pytest.raises(InputError) as info:
        families.unregister("zzz")
    assert info.value.argument == "name"


TOY = """
import torch
from torch import nn

from integrand.models import Family

class ToyBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.mix = nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        self.n_heads = 2

    def forward(self, x):
        x = x + self.out(torch.tanh(self.mix(x)))
        return x + self.ff(x)

class ToyLM(nn.Module):
    def __init__(self, vocab=12, d=8, layers=3):
        super().__init__()
        self.tokens = nn.Embedding(vocab, d)
        self.positions = nn.Embedding(16, d)
        self.stack = nn.ModuleList(ToyBlock(d) for _ in range(layers))
        self.head = nn.Linear(d, vocab)

    def forward(self, input_ids):
        x = self.tokens(input_ids) + self.positions(torch.arange(input_ids.shape[1]))
        for block in self.stack:
            x = block(x)
        return self.head(x)

FAMILY = Family(name="toy", block_types=("ToyBlock",), attention="mix", attn_out="out", mlp="ff.-1",
                embedding="tokens")
"""


@pytest.fixture()
def toy(tmp_path: Path) -> Iterator[Any]:
    """A model family defined in one module file, registered for the test and removed after it."""
    path = tmp_path / "toy_family.py"
    path.write_text(textwrap.dedent(TOY))
    spec = importlib.util.spec_from_file_location("toy_family", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_family"] = module
    spec.loader.exec_module(module)
    FAMILIES.register(module.FAMILY)
    try:
        yield module
    finally:
        FAMILIES.unregister("toy")
        del sys.modules["toy_family"]


def test_a_registered_family_is_found_by_circuits_steering_and_text(toy: Any) -> None:
    torch.manual_seed(0)
    model = toy.ToyLM().to(torch.float64).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    # circuits: the layout names the toy's blocks and parts; an edit at the MLP site changes the output
    layout = layout_for(model)
    assert layout.blocks == ("stack.0", "stack.1", "stack.2") and layout.mlp[1] == "stack.1.ff.2"
    assert layout.attn_out == ("stack.0.out", "stack.1.out", "stack.2.out") and layout.n_heads == 2
    with torch.no_grad():
        plain = model(ids)
        with intervene(model, layout, {("mlp", 1): torch.zeros_like}):
            assert not torch.allclose(model(ids), plain)
    # steering: the blocks are the toy's, and capture reads block outputs
    assert decoder_blocks(model) == tuple(model.stack)
    with torch.no_grad(), capture(model, [2]) as records:
        model(ids)
    assert records[2][0].shape == (1, 4, 8)
    # text: of two nn.Embedding modules, the family's path decides the token embedding
    assert find_embedding(model, None) == ("tokens", model.tokens)
    assert embedding_layer(model) is model.tokens


def test_without_the_family_the_toy_is_unknown(toy: Any) -> None:
    model = toy.ToyLM()
    FAMILIES.unregister("toy")
    try:
        with pytest.raises(InputError) as info:
            layout_for(model)
        assert info.value.argument == "model"
        with pytest.raises(InputError) as info:
            find_embedding(model, None)
        assert info.value.argument == "embedding"
    finally:
        FAMILIES.register(toy.FAMILY)
