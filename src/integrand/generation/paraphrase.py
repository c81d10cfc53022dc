"""Paraphrases of a prompt (from the LLM itself or from rules) and the choice of one by comprehension.

``method="llm"`` asks the model, through its chat template, to reword the prompt and samples
with a seeded generator (the global random state is untouched); degenerate samples are dropped
(see ``clean``). ``method="rules"`` applies fixed grammatical rewrites of cloze prompts (see
``RULES``): the same prompt always gives the same paraphrases.
"""

from __future__ import annotations

import inspect
import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..errors import InputError, ModelError
from ..protocol import ResultMixin
from .comprehension import DEFAULT_RANK_BY, ComprehensionScore, comprehension, progress_bar
from .explainer import GenerationExplainer

METHODS: tuple[str, ...] = ("llm", "rules")
INSTRUCTION = (
    "Rewrite this unfinished sentence with different words. Keep it unfinished: it must still stop right "
    "before the missing word. Reply with the rewritten sentence only.\n\n{prompt}"
)
# Worked examples shown as earlier turns of the chat (facts outside integrand.generation.facts).
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("The capital of Peru is", "Peru's capital city is"),
    ("The telephone was invented by", "The inventor of the telephone was"),
    ("The tallest mountain on Earth is", "The highest mountain in the world is"),
)
_CONNECTIVES = {"is", "are", "was", "were", "the", "a", "an", "by", "of", "called", "named", "be", "as", "to", "its"}
_STOP = {"the", "of", "for", "and", "was", "were", "is", "are", "with", "that", "this", "its", "known", "famous"}
_FUNCTION_WORDS = {"the", "a", "an", "this", "that", "these", "those", "it", "its"}
_CLOZE = re.compile(
    r"^(?:the )?(?P<noun>[\w' -]+?) (?P<prep>of|for) (?P<owner>.+?) (?P<verb>is|are|was|were)(?P<tail> the| a| an)?$",
    re.IGNORECASE,
)
_WRITTEN = re.compile(r"^(?P<work>.+?) was written by$", re.IGNORECASE)


def _lower_first(text: str) -> str:
    """Lower-case the first word when it is a function word ("The capital" -> "the capital"), else keep it."""
    first, _, rest = text.partition(" ")
    return f"{first.lower()} {rest}".rstrip() if first.lower() in _FUNCTION_WORDS else text


def _possessive(prompt: str) -> str | None:
    """Possessive: "The capital of France is" -> "France's capital is" (only "the X of/for Y is/was ..." prompts)."""
    m = _CLOZE.match(prompt)
    if m is None or m["owner"].split()[0].lower() in _FUNCTION_WORDS:
        return None
    owner = m["owner"][0].upper() + m["owner"][1:]
    return f"{owner}'s {m['noun']} {m['verb']}{m['tail'] or ''}"


def _question(prompt: str) -> str | None:
    """Cloze to question: "The capital of France is" -> "What is the capital of France? It is".

    "X was written by" -> "Who wrote X? It was written by".
    """
    m = _WRITTEN.match(prompt)
    if m is not None:
        return f"Who wrote {_lower_first(m['work'])}? It was written by"
    m = _CLOZE.match(prompt)
    if m is None:
        return None
    subject = _lower_first(prompt[: m.start("verb")].rstrip())
    return f"What {m['verb'].lower()} {subject}? It {m['verb'].lower()}{m['tail'] or ''}"


def _named(prompt: str) -> str | None:
    """Naming: "The capital of France is" -> "The name of the capital of France is".

    "X was written by" -> "The author of X is".
    """
    m = _WRITTEN.match(prompt)
    if m is not None:
        return f"The author of {_lower_first(m['work'])} is"
    return f"The name of {_lower_first(prompt)}" if _CLOZE.match(prompt) else None


def _prefix(words: str) -> Callable[[str], str | None]:
    def rule(prompt: str) -> str:
        return f"{words} {_lower_first(prompt)}"

    rule.__doc__ = f'"{words} " before the prompt (first word lower-cased when it is a function word).'
    return rule


# In order of preference; the first ``k`` that apply (and differ) are returned.
RULES: tuple[tuple[str, Callable[[str], str | None]], ...] = (
    ("question", _question),
    ("possessive", _possessive),
    ("named", _named),
    ("well-known", _prefix("It is well known that")),
    ("everyone-knows", _prefix("Everyone knows that")),
    ("in-fact", _prefix("In fact,")),
    ("as-a-matter-of-fact", _prefix("As a matter of fact,")),
)


def rule_paraphrases(prompt: str) -> list[str]:
    """Every rule's rewrite of ``prompt`` that applies, in ``RULES`` order, without duplicates."""
    out: list[str] = []
    for _, rule in RULES:
        text = rule(prompt.strip())
        if text and text != prompt.strip() and text not in out:
            out.append(text)
    return out


def clean(sample: str, prompt: str, avoid: Sequence[str] = ()) -> str | None:
    """A sampled rewrite reduced to one line, or None when it is degenerate.

    Kept: the first non-empty line, without surrounding quotes and without a final period when the
    prompt has none. Dropped: empty; equal to the prompt (ignoring case, spaces and end
    punctuation); fewer than 2 or more than ``3 * len(prompt words) + 4`` words; a word repeated 3
    times in a row; anything containing the whole prompt or a string of ``avoid`` (as a whole word,
    any case: e.g. the answer);
    a finished-looking rewrite of an unfinished prompt (the prompt ends in a connective such as
    "is", "the", "by" and the rewrite does not); a rewrite that keeps fewer than half of the
    prompt's content words (4+ letters, not a stop word; matched on their first 5 letters).
    """
    lines = [line.strip() for line in sample.splitlines() if line.strip()]
    if not lines:
        return None
    text = lines[0].strip().strip("\"'\u201c\u201d").strip()
    if re.match(r"^(rewritten|paraphrase|sentence|answer)\b[^:]*:", text, re.IGNORECASE):
        text = text.split(":", 1)[1].strip().strip("\"'\u201c\u201d").strip()
    if not prompt.rstrip().endswith((".", "!", "?")):
        text = text.rstrip(".").rstrip()
    words = text.split()
    norm = re.sub(r"[\s.!?]+", " ", text).strip().lower()
    if not words or norm == re.sub(r"[\s.!?]+", " ", prompt).strip().lower():
        return None
    if len(words) < 2 or len(words) > 3 * len(prompt.split()) + 4:
        return None
    if any(words[i].lower() == words[i + 1].lower() == words[i + 2].lower() for i in range(len(words) - 2)):
        return None
    if any(a.strip() and re.search(rf"(?<!\w){re.escape(a.strip())}(?!\w)", text, re.IGNORECASE) for a in avoid):
        return None
    if prompt.strip().lower() in text.lower():
        return None  # the prompt itself plus more words is no rewording
    last = prompt.split()[-1].lower()
    if last in _CONNECTIVES and words[-1].lower().strip(",;:") not in _CONNECTIVES:
        return None  # the prompt is unfinished, the rewrite looks finished
    keys = {w.lower().strip(",.?!'\"") for w in prompt.split() if len(w) >= 4} - _STOP
    lowered = text.lower()
    if keys and sum(key[:5] in lowered for key in keys) * 2 < len(keys):
        return None  # lost most of the prompt's content words
    return text


def _sample(
    model: Any, ids: list[int], n: int, settings: tuple[int, float, float], seed: int, stop_ids: list[int]
) -> list[list[int]]:
    """``n`` nucleus samples after ``ids`` from a private generator (one batch, KV cache); stops at ``stop_ids``."""
    max_new_tokens, temperature, top_p = settings
    weight = model.get_input_embeddings().weight
    stops = torch.tensor(stop_ids, device=weight.device)
    # transformers >= 5 names the KV cache argument ``cache``; earlier versions ``past_key_values``.
    cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    gen = torch.Generator(device=weight.device).manual_seed(seed)
    out = torch.empty((n, 0), dtype=torch.long, device=weight.device)
    done = torch.zeros(n, dtype=torch.bool, device=weight.device)
    with torch.no_grad():
        # The prompt runs once; its KV cache is then repeated for the n samples.
        result = model(input_ids=torch.tensor([ids], device=weight.device), use_cache=True)
        past = result.get("cache", None) or result.get("past_key_values", None)
        repeat = getattr(past, "batch_repeat_interleave", None)
        if callable(repeat):
            repeat(n)
            logits = result.logits[:, -1].expand(n, -1)
        else:  # a cache that cannot be repeated: run the batch
            result = model(input_ids=torch.tensor([ids] * n, device=weight.device), use_cache=True)
            past = result.get("cache", None) or result.get("past_key_values", None)
            logits = result.logits[:, -1]
        for _ in range(max_new_tokens):
            probs = (logits.double() / temperature).softmax(-1)
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > top_p
            sorted_p[drop] = 0.0
            nxt = order.gather(-1, torch.multinomial(sorted_p, 1, generator=gen))
            out = torch.cat([out, nxt], dim=1)
            done |= torch.isin(nxt[:, 0], stops)
            if bool(done.all()):
                break
            result = model(input_ids=nxt, use_cache=True, **{cache_name: past})
            past = result.get("cache", None) or result.get("past_key_values", None)
            logits = result.logits[:, -1]
    return [row.tolist() for row in out]


def _stop_ids(tokenizer: Any) -> list[int]:
    """EOS, the special tokens and any token containing a line break: a rewrite is one line."""
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    if isinstance(tokenizer.eos_token_id, int):
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    ids |= {i for t, i in vocab.items() if "\n" in t or "\u010a" in t}
    return sorted(ids)


def _decode(tokenizer: Any, row: list[int], stops: set[int]) -> str:
    cut = next((i for i, t in enumerate(row) if t in stops), len(row))
    return str(tokenizer.decode(row[:cut], skip_special_tokens=True))


def paraphrases(
    model: Any,
    tokenizer: Any,
    prompt: str,
    *,
    k: int = 4,
    method: str = "llm",
    seed: int = 0,
    avoid: Sequence[str] = (),
    temperature: float = 1.0,
    top_p: float = 0.95,
    max_new_tokens: int = 32,
    rounds: int = 6,
    progress: bool = True,
) -> list[str]:
    """``k`` distinct paraphrases of ``prompt`` (never the prompt itself).

    "llm": up to ``rounds`` batches of ``4 k`` samples (seeds ``seed``, ``seed + 1``, ...) through the
    tokenizer's chat template, cleaned by ``clean`` (``avoid`` drops samples containing e.g. the
    answer); a ModelError if fewer than ``k`` survive. "rules": the first ``k`` of ``rule_paraphrases``
    (``model``/``tokenizer`` unused); an InputError if fewer than ``k`` rules apply.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt", "expected a non-empty string")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError("k", f"expected an integer >= 1, got {k!r}")
    if method not in METHODS:
        raise InputError("method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(avoid, str):
        raise InputError("avoid", "expected a list of strings, not one string")
    if method == "rules":
        ruled = rule_paraphrases(prompt)
        if len(ruled) < k:
            raise InputError("k", f"the rules give {len(ruled)} paraphrases of {prompt!r}, fewer than k={k}")
        return ruled[:k]
    found = llm_paraphrases(
        model,
        tokenizer,
        prompt,
        k=k,
        seed=seed,
        avoid=avoid,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        rounds=rounds,
        progress=progress,
    )
    if len(found) < k:
        raise ModelError("model", f"only {len(found)} of k={k} sampled paraphrases were usable after {rounds} rounds")
    return found


def llm_paraphrases(
    model: Any,
    tokenizer: Any,
    prompt: str,
    *,
    k: int = 4,
    seed: int = 0,
    avoid: Sequence[str] = (),
    temperature: float = 1.0,
    top_p: float = 0.95,
    max_new_tokens: int = 32,
    rounds: int = 6,
    progress: bool = True,
) -> list[str]:
    """Up to ``k`` distinct cleaned samples of the model's rewording of ``prompt`` (fewer when too few survive)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt", "expected a non-empty string")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError("k", f"expected an integer >= 1, got {k!r}")
    if not 0 < temperature <= 10:
        raise InputError("temperature", f"expected a number in (0, 10], got {temperature!r}")
    if not 0 < top_p <= 1:
        raise InputError("top_p", f"expected a number in (0, 1], got {top_p!r}")
    if getattr(tokenizer, "chat_template", None) is None:
        raise InputError("tokenizer", "method='llm' needs a tokenizer with a chat template; use method='rules'")
    GenerationExplainer(model, tokenizer)  # validates the model (embeddings) and tokenizer
    messages = []
    for before, after in EXAMPLES:
        messages += [
            {"role": "user", "content": INSTRUCTION.format(prompt=before)},
            {"role": "assistant", "content": after},
        ]
    messages.append({"role": "user", "content": INSTRUCTION.format(prompt=prompt.strip())})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    stop_ids = _stop_ids(tokenizer)
    found: list[str] = []
    with progress_bar(rounds, progress, "sampling paraphrases (rounds)") as advance:
        for r in range(rounds):
            for row in _sample(model, ids, 4 * k, (max_new_tokens, temperature, top_p), seed + r, stop_ids):
                cleaned = clean(_decode(tokenizer, row, set(stop_ids)), prompt, avoid)
                if cleaned is not None and cleaned not in found:
                    found.append(cleaned)
            advance()
            if len(found) >= k:
                return found[:k]
    return found


@dataclass(frozen=True, repr=False)
class Choice(ResultMixin):
    """The paraphrase picked by comprehension, and the whole ranking (best first; the original is included).

    ``values`` is the ``rank_by`` statistic of each candidate in ranking order; ``converged`` and
    ``relative_error`` are the candidates' own (``None`` for methods without an integral), so the
    choice never claims more than the scores it was made from (``n_unconverged`` counts them).
    """

    prompt: str
    choice: str
    ranking: list[ComprehensionScore]
    rank_by: str

    AXES = ("candidate",)

    @property
    def values(self) -> torch.Tensor:
        return torch.tensor([s.stats[self.rank_by] for s in self.ranking], dtype=torch.float64)

    @property
    def delta(self) -> None:
        return None

    @property
    def relative_error(self) -> torch.Tensor | None:
        errors = [s.relative_error for s in self.ranking]
        return None if any(e is None for e in errors) else torch.tensor(errors, dtype=torch.float64)

    @property
    def converged(self) -> torch.Tensor | None:
        flags = [s.converged for s in self.ranking]
        return None if any(f is None for f in flags) else torch.tensor(flags, dtype=torch.bool)

    @property
    def n_unconverged(self) -> int | None:
        """How many ranked candidates did not converge (``None`` for methods without an integral)."""
        flags = self.converged
        return None if flags is None else int((~flags).sum())

    @property
    def method(self) -> str:
        return self.ranking[0].method if self.ranking else "comprehension"

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"prompt": self.prompt, "choice": self.choice, "rank_by": self.rank_by}
        if self.n_unconverged is not None:
            params["n_unconverged"] = self.n_unconverged
        return params

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"candidate": [s.paraphrase for s in self.ranking]}

    def summary(self) -> str:
        rows = [f"{i + 1}. {s.summary()}" for i, s in enumerate(self.ranking)]
        return f"chosen by {self.rank_by}: {self.choice!r}\n" + "\n".join(rows)


def choose_paraphrase(
    model: Any,
    tokenizer: Any,
    prompt: str,
    *,
    candidates: Sequence[str] | None = None,
    k: int = 4,
    method: str = "llm",
    seed: int = 0,
    avoid: Sequence[str] = (),
    target: str | None = None,
    attribution: str = "occlusion",
    rank_by: str = DEFAULT_RANK_BY,
    include_original: bool = True,
    progress: bool = True,
) -> Choice:
    """Rank ``prompt`` and its paraphrases (``candidates``, or ``k`` from ``paraphrases``) by comprehension.

    Without ``target`` each candidate is scored on its own greedy next token, so no known answer is
    used. ``attribution`` is the comprehension method ("occlusion" by default; see docs/comprehension.md).
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt", "expected a non-empty string")
    if candidates is None:
        pool = paraphrases(model, tokenizer, prompt, k=k, method=method, seed=seed, avoid=avoid, progress=progress)
    else:
        if isinstance(candidates, str) or not candidates:
            raise InputError("candidates", "expected a non-empty list of strings")
        pool = list(dict.fromkeys(candidates))
    if include_original and prompt not in pool:
        pool = [prompt, *pool]
    ranking = comprehension(model, tokenizer, pool, target, method=attribution, rank_by=rank_by, progress=progress)
    return Choice(prompt=prompt, choice=ranking[0].paraphrase, ranking=ranking, rank_by=rank_by)


def random_choice(pool: Sequence[str], seed: int) -> str:
    """A uniformly random member of ``pool`` (the evaluation's baseline), reproducible by ``seed``."""
    return random.Random(seed).choice(list(pool))
