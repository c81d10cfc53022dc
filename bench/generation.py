"""Generation attribution side by side with Inseq in one process: wall time, peak memory, cost-floor ratio.

    .venv/bin/python bench/generation.py [--smollm] [--repeats N]

GPT-2-like model (6 layers, hidden 256, GPT-2 vocab, random weights; word-level tokenizer):
32-token prompt, 16 forced target tokens (the model's own greedy continuation), 32 IG steps.
The cost floor is one forward+backward of the full sequence per integration point per target.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import warnings
from typing import Any, Callable

import torch

torch.set_num_threads(1)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Best wall time of ``repeats`` runs and the peak RSS growth (MiB) during the first."""
    best, peak, out = float("inf"), 0.0, None
    for i in range(repeats):
        start_rss, top, done = _rss(), [0], [False]

        def sample(start_rss: int = start_rss, top: list[int] = top, done: list[bool] = done) -> None:
            while not done[0]:
                top[0] = max(top[0], _rss() - start_rss)
                time.sleep(0.005)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
        done[0] = True
        thread.join()
        if i == 0:
            peak = top[0] / 2**20
    return best, peak, out


def word_tokenizer(vocab: int) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<unk>": 0, "<pad>": 1, "<s>": 2, "</s>": 3} | {f"w{i}": i for i in range(4, vocab)}
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def floor_time(model: Any, ids: torch.Tensor, steps: int, n_targets: int, repeats: int) -> float:
    """One forward+backward of the full sequence for ``steps`` points, logits at one position, times T."""
    emb = model.get_input_embeddings()

    def once() -> None:
        e = emb(ids).detach().repeat(steps, 1, 1).requires_grad_(True)
        out = model(inputs_embeds=e, logits_to_keep=1).logits[:, -1].log_softmax(-1)[:, 5].sum()
        torch.autograd.grad(out, e)

    return measure(once, repeats)[0] * n_targets


def compare(name: str, model: Any, tok: Any, prompt: str, n_new: int, steps: int, repeats: int) -> list[str]:
    import inseq

    from integrand.generation import GenerationExplainer

    gx = GenerationExplainer(model, tok, baseline="unk", fixed=0, add_bos=False)
    gen = gx(prompt, max_new_tokens=n_new, method="integrated_gradients", steps=2)
    print(f"{name}: generated {len(gen.target_tokens)} tokens", flush=True)
    target = tok.decode(gen.token_ids[gen.n_prompt :].tolist())
    full = tok.decode(gen.token_ids.tolist())
    n_targets = len(gen.target_tokens)
    wrapped = inseq.load_model(model, "integrated_gradients", tokenizer=tok)

    def run_inseq(n: int) -> torch.Tensor:
        out = wrapped.attribute(prompt, full, n_steps=n, show_progress=False, internal_batch_size=None)
        raw = out.sequence_attributions[0].target_attributions.double()
        return torch.nan_to_num(raw.sum(-1), nan=0.0).T[:, :-1]

    def ours(**kw: Any) -> Any:
        return gx(prompt, target=target, score="probability", method="integrated_gradients", **kw)

    t_inseq, m_inseq, inseq_matrix = measure(lambda: run_inseq(steps), repeats)
    print(f"inseq {steps} steps: {t_inseq:.2f} s", flush=True)
    t_ours, m_ours, res = measure(lambda: ours(steps=steps), repeats)
    print(f"integrand {steps} steps: {t_ours:.2f} s", flush=True)
    same = float((res.matrix - inseq_matrix).abs().max() / inseq_matrix.abs().max())
    total = (res.score_input - res.score_baseline).double()
    t_def, m_def, inseq_default = measure(lambda: run_inseq(50), repeats)
    inseq_err = (total - inseq_default.sum(1)).abs() / total.abs()
    tol = float(inseq_err.max())
    print(f"inseq default: {t_def:.2f} s, errors {inseq_err.tolist()}", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_tol, m_tol, res_tol = measure(lambda: ours(tol=tol, max_steps=1025), repeats)
    print(f"integrand tol={tol:.1e}: {t_tol:.2f} s, {int(res_tol.steps[0])} points", flush=True)
    # True error of the attributions: against float64 IG at the same 32 Gauss-Legendre nodes (quadrature
    # error ~1e-14 there), so rounding and quadrature error both count.
    import copy

    reference = GenerationExplainer(copy.deepcopy(model).double(), tok, baseline="unk", fixed=0, add_bos=False)
    exact = reference(prompt, target=target, score="probability", method="ig", steps=steps).matrix
    scale = float(exact.abs().max())
    err_inseq = float((inseq_default - exact).abs().max()) / scale
    err_tol = float((res_tol.matrix.double() - exact).abs().max()) / scale
    floor_note = f"at noise floor {sum(res_tol.params['at_noise_floor'])}/{n_targets}"
    floor = floor_time(model, gen.token_ids[None], steps, n_targets, repeats)
    ours_err = res_tol.relative_error
    return [
        f"### {name}: {gen.n_prompt}-token prompt, {n_targets} targets, {steps} IG steps (best of {repeats})",
        "",
        "| run | wall s | peak RSS growth MiB | ratio to cost floor | max rel. completeness error "
        "| max error vs float64 reference |",
        "|---|---|---|---|---|---|",
        f"| cost floor (T x fwd+bwd of full sequence, {steps} points) | {floor:.2f} | | 1.00 | | |",
        f"| Inseq 0.7 integrated_gradients, n_steps={steps} | {t_inseq:.2f} | {m_inseq:.0f} | "
        f"{t_inseq / floor:.2f} | | |",
        f"| integrand, steps={steps} (max rel. diff to Inseq {same:.1e}) | {t_ours:.2f} | {m_ours:.0f} | "
        f"{t_ours / floor:.2f} | {float(res.relative_error.max()):.1e} | |",
        f"| Inseq 0.7 default n_steps=50 | {t_def:.2f} | {m_def:.0f} | {t_def / floor:.2f} | "
        f"{float(inseq_err.max()):.1e} | {err_inseq:.1e} |",
        f"| integrand, tol={tol:.1e} (max of Inseq's errors), {int(res_tol.steps[0])} points, "
        f"converged {bool(res_tol.converged.all())}, {floor_note} | {t_tol:.2f} | {m_tol:.0f} | "
        f"{t_tol / floor:.2f} | {float(ours_err.max()):.1e} | {err_tol:.1e} |",
        "",
        f"Speed-up at equal steps: {t_inseq / t_ours:.2f}x; error-controlled vs Inseq default: {t_def / t_tol:.2f}x.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smollm", action="store_true", help="also run SmolLM2-135M-Instruct")
    parser.add_argument("--smollm-only", action="store_true", help="run only SmolLM2-135M-Instruct")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=6,
        n_embd=256,
        n_head=8,
        vocab_size=50257,
        n_positions=1024,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )
    model = GPT2LMHeadModel(config).eval()
    tok = word_tokenizer(50257)
    gen = torch.Generator().manual_seed(1)
    prompt = " ".join(f"w{int(i)}" for i in torch.randint(4, 50257, (32,), generator=gen))
    if not args.smollm_only:
        lines = compare("GPT-2-like (6 layers, hidden 256)", model, tok, prompt, 16, 32, args.repeats)
        print("\n".join(lines), flush=True)
    if args.smollm or args.smollm_only:
        from integrand.generation.smollm import load_smollm2

        model, tok = load_smollm2()
        text = "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the company of"
        lines = compare("SmolLM2-135M-Instruct", model, tok, text, 4, 16, 1)
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
