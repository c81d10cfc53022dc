"""Encoder-decoder models (T5, BART, Marian, ...): each target token attributed to source and target-prefix tokens.

One batch position axis holds the encoder tokens (right-padded to ``n_source``) followed by the
decoder inputs (decoder start token + targets[:-1], teacher forcing). Each integration point runs
encoder and decoder once on the interpolated embeddings of both; decoder position ``k`` scores
target ``k``, and causal decoder attention makes that score depend only on the source and on the
decoder inputs up to ``k``, exactly as attributing target ``k`` on its own prefix would.

Encoder and decoder may share one embedding module (T5, Marian) or hold two with tied weights
(BART): either way the module's output is replaced from a queue served in call order (the
encoder embeds before the decoder), so each call gets its own interpolated tensor while any
scaling the model applies around its embedding module is kept.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch

from ..errors import InputError, ModelError
from ..models import logits_of, stack_embeddings
from .attribute import Request, integrate_batch, make_result
from .batching import Row
from .result import GenerationAttribution
from .runner import Batch, Runner


def is_encoder_decoder(model: Any) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def decoder_start_id(model: Any) -> int:
    """The token the decoder starts from (generation config first, then model config)."""
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "decoder_start_token_id", None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise ModelError("model", "the model defines no decoder_start_token_id; set model.generation_config's")


def embedding_layers(model: Any, embedding: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The encoder's and decoder's token-embedding modules, checked to embed like ``embedding``."""
    layers = stack_embeddings(model)
    weight = getattr(embedding, "weight", None)
    n = min(8, int(weight.shape[0])) if isinstance(weight, torch.Tensor) else 8
    probe = torch.arange(n, device=weight.device if isinstance(weight, torch.Tensor) else None)[None]
    with torch.no_grad():
        reference = embedding(probe)
        # Baselines ("mean", token ids) are built with the shared input embedding: both stacks must agree with it.
        if not all(torch.equal(layer(probe), reference) for layer in layers):
            raise ModelError(
                "model",
                "the encoder and decoder embed tokens differently from get_input_embeddings(); "
                "models with separate source and target embeddings are not supported",
            )
    return layers[0], layers[1]


@contextmanager
def embedding_queue(layers: Sequence[torch.nn.Module]) -> Iterator[list[torch.Tensor]]:
    """While active, each call of any of ``layers`` returns the next queued tensor (its own output when empty)."""
    queue: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        if not queue:
            return output
        value = queue.pop(0)
        if value.shape != output.shape:
            raise ModelError(
                "model", f"embedding output has shape {tuple(output.shape)}, expected {tuple(value.shape)}"
            )
        return value

    unique = list({id(layer): layer for layer in layers}.values())
    handles = [layer.register_forward_hook(hook) for layer in unique]
    try:
        yield queue
    finally:
        for handle in handles:
            handle.remove()


class Seq2SeqRunner(Runner):
    """Encoder + decoder on embeddings ``[points, n_source + T, H]``; logits of every decoder position.

    With ``use_head_per_target`` (when the model's logits are its output-embedding layer applied to
    the decoder's hidden states plus a constant, e.g. BART's ``final_logits_bias``; checked on the
    real input), each target's logits come from the head applied to its own position: target ``k``'s
    backward pass then never runs through the other positions' vocabulary projections.
    """

    def __init__(self, model: Any, queue: list[torch.Tensor], n_source: int) -> None:
        super().__init__(model, [None])
        self.queue = queue
        self.n_source = n_source
        self.head: torch.nn.Module | None = None
        self.offset: torch.Tensor | None = None  # [vocab]

    def use_head_per_target(self, batch: Batch, embeds: torch.Tensor) -> bool:
        getter = getattr(self.model, "get_output_embeddings", None)
        head = getter() if callable(getter) else None
        if not isinstance(head, torch.nn.Module):
            return False
        with torch.no_grad():
            logits, hidden = self._run(batch, torch.arange(batch.ids.shape[0]), embeds, head)
            if hidden is None or hidden.shape[:2] != logits.shape[:2]:
                return False
            offset = logits - head(hidden)
            constant = offset[:1, :1].expand_as(offset)
            if not torch.allclose(offset, constant, rtol=1e-5, atol=1e-5 * float(logits.abs().max()) + 1e-6):
                return False
        self.head, self.offset = head, constant[0, 0].clone()
        return True

    def logits(self, batch: Batch, rows: torch.Tensor, embeds: torch.Tensor) -> list[torch.Tensor]:
        self.forwards += int(rows.shape[0])
        if self.head is None or self.offset is None:
            return self._full(batch, rows, embeds)
        _, hidden = self._run(batch, rows, embeds, self.head)
        assert hidden is not None
        return [self.head(hidden[:, k]) + self.offset for k in range(hidden.shape[1])]

    def _full(self, batch: Batch, rows: torch.Tensor, embeds: torch.Tensor) -> list[torch.Tensor]:
        logits, _ = self._run(batch, rows, embeds, None)
        return list(logits.unbind(dim=1))

    def _run(
        self, batch: Batch, rows: torch.Tensor, embeds: torch.Tensor, capture: torch.nn.Module | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [points, T, vocab] and, with ``capture``, what that module received (the decoder states)."""
        n = self.n_source
        seen: list[torch.Tensor] = []

        def record(_module: torch.nn.Module, args: Any) -> None:
            if args and isinstance(args[0], torch.Tensor):
                seen.append(args[0])

        handle = capture.register_forward_pre_hook(record) if capture is not None else None
        self.queue[:] = [embeds[:, :n], embeds[:, n:]]
        try:
            out = self.model(
                input_ids=batch.ids[rows, :n],
                attention_mask=batch.attention_mask[rows, :n],
                decoder_input_ids=batch.ids[rows, n:],
                decoder_attention_mask=batch.attention_mask[rows, n:],
                use_cache=False,
            )
            unserved = len(self.queue)
        finally:
            self.queue.clear()
            if handle is not None:
                handle.remove()
        if unserved:
            raise ModelError("model", "the encoder and decoder did not each call their embedding layer once")
        logits = logits_of(out)
        n_targets = batch.target_ids.shape[1]
        if logits.dim() != 3 or logits.shape[1] != n_targets:
            raise ModelError("model", f"expected logits [points, {n_targets}, vocab], got {tuple(logits.shape)}")
        return logits, seen[-1] if len(seen) == 1 else None


class Seq2Seq:
    """The encoder-decoder side of ``GenerationExplainer``: checks, generation and attribution of rows."""

    def __init__(self, model: Any, tokenizer: Any, embedding: torch.nn.Module, window: int | None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.layers = embedding_layers(model, embedding)
        self.start = decoder_start_id(model)
        self.window = window

    def check(self, ids: list[int], n_targets: int) -> None:
        """Encoder and decoder inputs each within the model's position limit (when it has one)."""
        if self.window is not None and len(ids) > self.window:
            raise InputError("prompt", f"{len(ids)} prompt tokens exceed the model's {self.window} source positions")
        if self.window is not None and n_targets > self.window:
            raise InputError("target", f"{n_targets} target tokens exceed the model's {self.window} decoder positions")

    def generate(self, ids: list[int], n: int) -> list[int]:
        """Greedy ``model.generate`` continuation (its logits processors included), cut after EOS."""
        weight = getattr(self.layers[0], "weight", None)
        source = torch.tensor([ids], device=weight.device if isinstance(weight, torch.Tensor) else None)
        if not callable(getattr(self.model, "generate", None)):
            raise ModelError("model", "the model has no generate(); pass target= to attribute a forced target")
        with torch.no_grad():
            out = self.model.generate(
                input_ids=source,
                attention_mask=torch.ones_like(source),
                max_new_tokens=n,
                do_sample=False,
                num_beams=1,
                decoder_start_token_id=self.start,
            )
        new = [int(i) for i in out[0, 1:].tolist()]
        eos = self.tokenizer.eos_token_id
        return new[: new.index(eos) + 1] if eos in new else new

    def build(self, rows: list[Row], device: torch.device) -> tuple[Batch, int, torch.Tensor | None]:
        """Encoder ids right-padded to ``n_source``, then decoder inputs right-padded to the longest target."""
        n_source, n_t = max(len(r.prompt) for r in rows), max(len(r.targets) for r in rows)
        tok = self.tokenizer
        pad = next((v for v in (tok.pad_token_id, tok.eos_token_id, 0) if isinstance(v, int)), 0)
        ids = torch.full((len(rows), n_source + n_t), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        target_ids = torch.zeros((len(rows), n_t), dtype=torch.long)
        contrast = torch.zeros_like(target_ids) if rows[0].contrast is not None else None
        valid = torch.zeros((len(rows), n_t), dtype=torch.bool)
        for b, r in enumerate(rows):
            n, t = len(r.prompt), len(r.targets)
            ids[b, :n] = torch.tensor(r.prompt)
            ids[b, n_source : n_source + t] = torch.tensor([self.start, *r.targets[:-1]])
            mask[b, :n] = 1
            mask[b, n_source : n_source + t] = 1
            target_ids[b, :t] = torch.tensor(r.targets)
            valid[b, :t] = True
            if contrast is not None and r.contrast is not None:
                contrast[b, :t] = torch.tensor(r.contrast)
        score_positions = (n_source + torch.arange(n_t)).expand(len(rows), n_t)
        batch = Batch(
            ids.to(device),
            mask.to(device),
            torch.zeros_like(ids).to(device),  # positions are the model's own concern in each stack
            score_positions.to(device),
            target_ids.to(device),
            valid.to(device),
        )
        return batch, n_source, None if contrast is None else contrast.to(device)

    def contrast_logprobs(self, ids: list[int], rows: list[Row], device: torch.device) -> torch.Tensor:
        """Log-distributions [B, T, V] of each row's teacher-forced targets with ``ids`` as the source."""
        n_t = max(len(r.targets) for r in rows)
        out = []
        with torch.no_grad():
            for r in rows:
                res = self.model(
                    input_ids=torch.tensor([ids], device=device),
                    decoder_input_ids=torch.tensor([[self.start, *r.targets[:-1]]], device=device),
                    use_cache=False,
                )
                logp = logits_of(res)[0].log_softmax(dim=-1)
                out.append(torch.cat([logp, logp.new_zeros(n_t - len(r.targets), logp.shape[1])]))
        return torch.stack(out)

    def attribute(
        self,
        rows: list[Row],
        request: Request,
        contrast_logprobs: torch.Tensor | None,
        embed: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
    ) -> list[GenerationAttribution]:
        """Attribute every target of every row to its source tokens and decoder inputs."""
        batch, n_source, contrast_ids = self.build(rows, device)
        inputs = embed(batch.ids)
        baselines = request.baseline_vector.to(inputs).expand_as(inputs)
        # Padding, the fixed source positions and the decoder start token keep their real embedding.
        keep = batch.attention_mask == 0
        keep[:, n_source] = True
        for b, r in enumerate(rows):
            keep[b, : r.fixed] = True
        baselines = torch.where(keep[..., None], inputs, baselines)
        with embedding_queue(self.layers) as queue:
            runner = Seq2SeqRunner(self.model, queue, n_source)
            runner.use_head_per_target(batch, inputs)
            done = integrate_batch(runner, batch, inputs, baselines, request, contrast_ids, contrast_logprobs)
        results = []
        for b, r in enumerate(rows):
            n, t = len(r.prompt), len(r.targets)
            columns = [*range(n), *range(n_source, n_source + t)]
            groups = {**(r.groups or {}), "source": (0, n), "target prefix": (n, n + t)}
            seq = [*r.prompt, self.start, *r.targets]
            fixed = (*range(r.fixed), n)
            results.append(make_result(done, b, request, self.tokenizer, seq, n + 1, columns, fixed, groups, n))
        return results
