"""``TextExplainer``: token and word attributions of a text classifier, by layer IG at its embeddings.

The texts are tokenized, padded internally to a common length (models that take an attention
mask) or grouped by length (models that do not), and attributed at the embedding layer with
``integrated_gradients(..., layer=embedding)``. Padding positions, and by default special tokens,
keep their own token in the baseline, so their input-minus-baseline is exactly zero and so is
their attribution; a text scores the same alone or in a batch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence, overload

import torch
from torch import nn

from ..circuits.lrp import warn_unconserved
from ..convergence import warn_unconverged
from ..defaults import ARRAY_API
from ..errors import ConvergenceWarning, InputError, MissingExtraError, ModelError, caller_stacklevel
from ..integration import Integration
from ..progress import bar as progress_bar
from .batching import length_groups, pad_batch
from .labels import BaselineToken, LabelSpec, baseline_token_id, label_names, target_index
from .modelinfo import LabelScore, find_embedding, is_hf_model, model_labels, vocab_rows
from .result import TokenAttribution
from .rows import RowMeta, token_rows
from .tokenizers import Encoding, TextTokenizer, as_text_tokenizer, check_text

SCORES = ("logit", "probability", "log-probability")
METHODS = {"ig": "integrated_gradients", "integrated_gradients": "integrated_gradients", "lrp": "lrp"}
BUILTIN_MODELS = ("toxicity", "minilm-sentiment")


class TruncationWarning(UserWarning):
    """A text had more tokens than the model accepts and was cut; the result says ``truncated=True``."""


class TextExplainer:
    """Explain a text classifier's predictions token by token.

    Args:
        model: a Hugging Face sequence classifier or any ``nn.Module`` mapping token ids
            ``[batch, length]`` (and an attention mask, see ``attention_mask``) to logits ``[batch, labels]``.
        tokenizer: a Hugging Face tokenizer, a ``TextTokenizer`` adapter, or a callable ``text -> ids``.
        embedding: the embedding module (or its dotted name) whose output is attributed; default the
            model's ``get_input_embeddings()`` or its only ``nn.Embedding``.
        labels: label names; default the model's ``labels`` attribute or ``config.id2label``.
        multi_label: independent sigmoid per label instead of a softmax; default from the model
            (``multi_label`` attribute or ``config.problem_type``).
        attention_mask: pass ``attention_mask=`` to the model so texts can be padded to a common length;
            default True for Hugging Face models and models with ``accepts_attention_mask = True``.
            Without it, texts are batched only with texts of equal token length.
        max_length: the most tokens per text (longer texts are truncated with a ``TruncationWarning``);
            default the tokenizer's ``model_max_length``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        embedding: nn.Module | str | None = None,
        labels: Sequence[str] | None = None,
        multi_label: bool | None = None,
        attention_mask: bool | None = None,
        max_length: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError("model", f"expected a torch.nn.Module, got {type(model).__name__}")
        bad_length = isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        if max_length is not None and bad_length:
            raise InputError("max_length", f"expected an integer >= 1, got {max_length!r}")
        self.model = model
        self.tokenizer: TextTokenizer = as_text_tokenizer(tokenizer, max_length=max_length)
        self.embedding_name, self.embedding = find_embedding(model, embedding)
        self.labels = model_labels(model, labels)
        if multi_label is None:
            problem = getattr(getattr(model, "config", None), "problem_type", None)
            multi_label = bool(getattr(model, "multi_label", problem == "multi_label_classification"))
        self.multi_label = multi_label
        if attention_mask is None:
            attention_mask = is_hf_model(model) or bool(getattr(model, "accepts_attention_mask", False))
        self.attention_mask = attention_mask
        self.vocab_rows = vocab_rows(model, self.embedding)
        if self.vocab_rows is not None and self.tokenizer.vocab_size > self.vocab_rows:
            raise InputError(
                "tokenizer",
                f"the tokenizer has {self.tokenizer.vocab_size} tokens but the model's embedding "
                f"{self.embedding_name!r} has {self.vocab_rows} rows: they do not belong to the same model",
            )

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, cache_dir: str | Path | None = None, **kwargs: Any
    ) -> TextExplainer:
        """An explainer for ``"toxicity"``, ``"minilm-sentiment"``, or a Hugging Face sequence classifier
        (local directory or hub id, loaded with ``AutoModelForSequenceClassification.from_pretrained``)."""
        name = str(name_or_path)
        if name == "toxicity":
            from .toxicity import load_toxicity

            model, tok = load_toxicity()
            return cls(model, tok, **kwargs)
        if name == "minilm-sentiment":
            from .minilm import load_minilm_sentiment

            minilm, hf_tok, _ = load_minilm_sentiment(cache_dir)
            return cls(minilm, hf_tok, **kwargs)
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError:
            raise MissingExtraError("transformers", "text") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = AutoModelForSequenceClassification.from_pretrained(name)
        except (OSError, ValueError) as error:
            raise InputError(
                "model", f"cannot load {name!r} ({error}); expected one of {list(BUILTIN_MODELS)} or a model dir/hub id"
            ) from None
        return cls(model.eval(), tokenizer, **kwargs)

    # ---------------------------------------------------------------- tokens

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        """Tokenize and check each text; warns (``TruncationWarning``) for texts cut to the maximum length."""
        encodings = []
        for i, text in enumerate(texts):
            enc = self.tokenizer.encode(check_text(text, i))
            if enc.content_tokens() == 0:
                raise InputError("texts", f"text {i} ({text[:40]!r}) has no token in the model's vocabulary")
            if self.vocab_rows is not None and max(enc.ids) >= self.vocab_rows:
                raise InputError(
                    "tokenizer",
                    f"token id {max(enc.ids)} of text {i} is outside the model's embedding ({self.vocab_rows} rows): "
                    "the tokenizer does not belong to this model",
                )
            if enc.truncated:
                warnings.warn(
                    f"text {i} is longer than the model's maximum of {len(enc)} tokens and was truncated; "
                    "the result has truncated=True",
                    TruncationWarning,
                    stacklevel=caller_stacklevel(),
                )
            encodings.append(enc)
        return encodings

    def _device(self) -> torch.device:
        return next((p.device for p in self.model.parameters()), torch.device("cpu"))

    def _forward_kwargs(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"attention_mask": mask} if self.attention_mask else {}

    def _logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from ..inputs import TENSOR_KEY, InputSet, call_model

        with torch.no_grad():
            inputs = InputSet({TENSOR_KEY: ids}, named=False)
            return call_model(self.model, inputs, inputs.tensors, self._forward_kwargs(mask))

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multi_label else logits.softmax(dim=-1)

    def predict(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Label probabilities ``[len(texts), labels]`` (softmax, or sigmoid for multi-label models)."""
        batch = [texts] if isinstance(texts, str) else list(texts)
        encodings = self.encode(batch)
        out = torch.empty(0)
        for group in length_groups(encodings, self.attention_mask, 64):
            ids, mask, _, _ = pad_batch(self.tokenizer, self._device(), [encodings[i] for i in group])
            probs = self._probabilities(self._logits(ids, mask)).detach().cpu()
            if out.numel() == 0:
                out = torch.empty(len(batch), probs.shape[1], dtype=probs.dtype)
            out[torch.tensor(group)] = probs
        return out

    # ---------------------------------------------------------------- targets and baselines

    # ---------------------------------------------------------------- attribution

    @overload
    def __call__(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]
        self,
        texts: str,
        target: LabelSpec | Sequence[LabelSpec] = ...,
        *,
        method: str = ...,
        baseline: BaselineToken = ...,
        keep_special: bool = ...,
        score: str = ...,
        integration: Integration | None = ...,
        steps: int | None = ...,
        rule: str | None = ...,
        tol: float | None = ...,
        max_steps: int | None = ...,
        atol: float | None = ...,
        batch_size: int | None = ...,
        memory_budget: int | None = ...,
        text_batch: int = ...,
        progress: bool | None = ...,
    ) -> TokenAttribution: ...

    @overload
    def __call__(
        self,
        texts: Sequence[str],
        target: LabelSpec | Sequence[LabelSpec] = ...,
        *,
        method: str = ...,
        baseline: BaselineToken = ...,
        keep_special: bool = ...,
        score: str = ...,
        integration: Integration | None = ...,
        steps: int | None = ...,
        rule: str | None = ...,
        tol: float | None = ...,
        max_steps: int | None = ...,
        atol: float | None = ...,
        batch_size: int | None = ...,
        memory_budget: int | None = ...,
        text_batch: int = ...,
        progress: bool | None = ...,
    ) -> list[TokenAttribution]: ...

    def __call__(
        self,
        texts: str | Sequence[str],
        target: LabelSpec | Sequence[LabelSpec] = None,
        *,
        method: str = "ig",
        baseline: BaselineToken = "pad",
        keep_special: bool = True,
        score: str = "logit",
        integration: Integration | None = None,
        steps: int | None = None,
        rule: str | None = None,
        tol: float | None = None,
        max_steps: int | None = None,
        atol: float | None = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
        text_batch: int = 16,
        progress: bool | None = None,
    ) -> TokenAttribution | list[TokenAttribution]:
        """Attribute each text's score for ``target`` to its tokens.

        Args:
            texts: one text (returns one result) or a sequence of texts (returns a list).
            target: a label name or index, None for the predicted label, or one of those per text.
            method: "ig" (integrated gradients at the embedding layer) or "lrp" (AttnLRP relevance at the
                input embeddings of a GPT-2, Llama-family or BERT classifier: one forward and one backward
                pass per batch of texts, no baseline and no steps; ``delta = score - sum(scores)`` is judged
                against ``integrand.circuits.lrp.LRP_TOL`` and ``params["lrp_conservation"]`` is the share kept).
            baseline: the token that replaces each content token in the baseline: "pad" (default),
                "mask", "unk", a token id, or "zero" for an all-zero embedding.
            keep_special: keep special tokens ([CLS], [SEP], <s>, ...) as themselves in the baseline.
            score: what is attributed: "logit" (default), "probability" or "log-probability"
                (sigmoid-based for multi-label models).
            integration: how the path integral is computed (``integrand.integration.Integration``;
                default ``defaults.ARRAY_API``, 50 Gauss-Legendre points).
            steps, rule, tol, max_steps, atol, batch_size, memory_budget: shorthand for the fields of
                ``integration`` (not both), as for ``integrated_gradients``.
            text_batch: texts attributed together in one call (padded to a common length).
            progress: a bar of texts done (None: when stderr is a terminal and there are more texts
                than ``text_batch``; see ``integrand.progress``).
        """
        single = isinstance(texts, str)
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch:
            raise InputError("texts", "no texts given")
        if method not in METHODS:
            raise InputError("method", f"unknown method {method!r}; the text explainer supports {sorted(METHODS)}")
        if METHODS[method] == "lrp" and (steps is not None or tol is not None or integration is not None):
            which = "steps" if steps is not None else "tol" if tol is not None else "integration"
            raise InputError(which, "does not apply to method 'lrp' (one forward and one backward pass, no integral)")
        config = Integration.from_kwargs(
            integration, default=ARRAY_API, steps=steps, rule=rule, tol=tol, max_steps=max_steps, atol=atol,
            batch_size=batch_size, memory_budget=memory_budget,
        )  # fmt: skip
        if score not in SCORES:
            raise InputError("score", f"unknown score {score!r}; expected one of {list(SCORES)}")
        if isinstance(text_batch, bool) or not isinstance(text_batch, int) or text_batch < 1:
            raise InputError("text_batch", f"expected an integer >= 1, got {text_batch!r}")
        if self.model.training:
            raise ModelError("model", "is in training mode (dropout would make attributions random); call model.eval()")
        if isinstance(target, (list, tuple)):
            if len(target) != len(batch):
                raise InputError("target", f"got {len(target)} targets for {len(batch)} texts")
            targets: list[LabelSpec] = list(target)
        else:
            targets = [target] * len(batch)  # type: ignore[list-item]
        base_id = baseline_token_id(self.tokenizer, baseline, self.vocab_rows)
        encodings = self.encode(batch)
        results: list[TokenAttribution | None] = [None] * len(batch)
        groups = length_groups(encodings, self.attention_mask, text_batch)
        show = progress if progress is not None or len(groups) > 1 else False
        with progress_bar("texts", len(batch), show) as bar:
            for group in groups:
                for i, result in zip(
                    group,
                    self._attribute_group(
                        [batch[i] for i in group],
                        [encodings[i] for i in group],
                        [targets[i] for i in group],
                        base_id=base_id,
                        baseline=baseline,
                        keep_special=keep_special,
                        score=score,
                        integration=config,
                        method=METHODS[method],
                    ),
                ):
                    results[i] = result
                bar.advance(len(group))
        done = [r for r in results if r is not None]
        bad = [f"{i} {r.text[:40]!r}" for i, r in enumerate(done) if not r.converged]
        if METHODS[method] == "lrp" and bad:
            warn_unconserved("LRP of texts", bad, stacklevel=3)
        elif METHODS[method] != "lrp":
            warn_unconverged("text attribution: texts", bad, config.tol, stacklevel=3)
        return done[0] if single else done

    def _attribute_group(
        self,
        texts: list[str],
        encodings: list[Encoding],
        targets: list[LabelSpec],
        *,
        base_id: int | None,
        baseline: BaselineToken,
        keep_special: bool,
        score: str,
        integration: Integration,
        method: str = "integrated_gradients",
    ) -> list[TokenAttribution]:
        from ..methods.integrated_gradients import integrated_gradients
        from ..methods.lrp import lrp

        ids, mask, padding, special = pad_batch(self.tokenizer, self._device(), encodings)
        logits = self._logits(ids, mask)
        labels = label_names(self.labels, logits.shape[1])
        predicted = logits.argmax(dim=1).tolist()
        index = torch.tensor([target_index(t, labels, p) for t, p in zip(targets, predicted)], device=ids.device)
        fixed = padding | special if keep_special else padding
        kwargs = self._forward_kwargs(mask)
        layer_baseline: dict[str, Any] = {}
        if method == "lrp":
            pass  # LRP has no baseline
        elif base_id is None:
            activation = self._activation(ids, kwargs)
            layer_baseline = {"baseline": activation * fixed.unsqueeze(-1).to(activation.dtype)}
        else:
            layer_baseline = {"input_baseline": torch.where(fixed, ids, torch.full_like(ids, base_id))}
        with warnings.catch_warnings():
            # Named once per call, by text, in __call__ (the indices here are within a length group).
            warnings.simplefilter("ignore", ConvergenceWarning)
            if method == "lrp":
                attribution = lrp(
                    self.model,
                    ids,
                    LabelScore(index, score, self.multi_label),
                    layer=self.embedding,
                    forward_kwargs=kwargs,
                    progress=False,
                )
            else:
                attribution = integrated_gradients(
                    self.model,
                    ids,
                    LabelScore(index, score, self.multi_label),
                    layer=self.embedding,
                    forward_kwargs=kwargs,
                    integration=integration,
                    **layer_baseline,
                )
        values = attribution.values
        assert isinstance(values, torch.Tensor)
        token_scores = values.reshape(values.shape[0], values.shape[1], -1).sum(dim=-1).detach().cpu()
        assert attribution.delta is not None and attribution.score_baseline is not None
        probs = self._probabilities(logits).detach().cpu()
        baseline_name = (
            "zero-embedding" if base_id is None else baseline if isinstance(baseline, str) else f"id {base_id}"
        )
        params = {k: v for k, v in integration.as_params().items() if v is not None}
        params["integration"] = integration.as_params()
        params.update({"keep_special": keep_special, "embedding": self.embedding_name})
        shares: list[float] = attribution.params.get("lrp_conservation", [])
        if method == "lrp":  # no baseline and no integral: the rules and the share of the score kept
            baseline_name = "none"
            params = {k: attribution.params[k] for k in ("rules", "converged_tol")}
            params["embedding"] = self.embedding_name
        return token_rows(
            texts, encodings, ids, padding, special, token_scores, attribution, labels, probs, index,
            RowMeta(self.multi_label, score, method, baseline_name, params, shares),
        )  # fmt: skip

    def _activation(self, ids: torch.Tensor, kwargs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The embedding layer's output at ``ids`` (for the zero-embedding baseline)."""
        from ..inputs import TENSOR_KEY, InputSet, call_model
        from ..layers import LayerSpec, run_to_layer

        inputs = InputSet({TENSOR_KEY: ids}, named=False)
        spec = LayerSpec(self.embedding_name, self.embedding)
        with torch.no_grad():
            return run_to_layer(spec, lambda: call_model(self.model, inputs, inputs.tensors, kwargs)).detach()
