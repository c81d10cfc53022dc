"""A results folder with every kind of saved result, shared by the viewer tests (and a check of it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import integrand

XSS = "<img src=x onerror=alert(1)>"
LABELS = ["cat", "dog", "cat"]
PREDICTIONS = ["cat", "cat", "dog"]


def _image_result() -> integrand.Attribution:
    from tests.models import cnn

    model = cnn().double().eval()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    res = integrand.integrated_gradients(model, x, target=1, steps=16)
    params = {**res.params, "example_labels": LABELS, "predictions": PREDICTIONS}
    return integrand.Attribution(**{**res.__dict__, "params": params})


class _BagOfEmbeddings(torch.nn.Module):
    """A text classifier on token embeddings: mean-pooled tanh features, 2 classes."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(dim, 2, dtype=torch.float64)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.tanh(embeds).mean(dim=1))


TOKENS = ("[CLS]", "you", "are", XSS, "&amp;", "idiot", "[SEP]")


def _token_ig() -> integrand.Attribution:
    model = _BagOfEmbeddings().eval()
    embeds = torch.randn(1, len(TOKENS), 6, dtype=torch.float64)
    res = integrand.integrated_gradients(model, embeds, target=1, steps=32)
    params = {**res.params, "layout": {"input": "tokens"}}
    return integrand.Attribution(**{**res.__dict__, "labels": {"input": list(TOKENS)}, "params": params})


def _text_result() -> Any:
    from integrand.text.result import TokenAttribution

    res = _token_ig()
    scores = res.values[0].sum(dim=-1)  # type: ignore[index]
    return TokenAttribution(
        text="you are " + XSS + " &amp; idiot",
        tokens=TOKENS,
        token_ids=torch.arange(len(TOKENS)),
        scores=scores,
        special=torch.tensor([True, False, False, False, False, False, True]),
        word_ids=(None, 0, 1, 2, 3, 4, None),
        words=("you", "are", XSS, "&amp;", "idiot"),
        word_scores=scores[1:-1].clone(),
        labels=("clean", "toxic"),
        probabilities=torch.tensor([0.2, 0.8], dtype=torch.float64),
        multi_label=False,
        target="toxic",
        score="logit",
        score_input=float(res.score_input[0]),
        score_baseline=float(res.score_baseline[0]),  # type: ignore[index]
        delta=float(res.delta[0]),  # type: ignore[index]
        steps=32,
        converged=True,
        truncated=False,
        method="integrated_gradients",
        baseline="zero",
    )


def _generation_result() -> Any:
    from integrand.generation.result import GenerationAttribution

    tokens = ("<s>", "The", "capital", "is", " Paris", " " + XSS)
    n_prompt, t = 4, 2
    matrix = torch.randn(t, len(tokens) - 1, dtype=torch.float64)
    for k in range(t):
        matrix[k, n_prompt + k :] = 0
    score_input = torch.tensor([1.0, 2.0], dtype=torch.float64)
    score_baseline = torch.zeros(2, dtype=torch.float64)
    return GenerationAttribution(
        tokens=tokens,
        token_ids=torch.arange(len(tokens)),
        n_prompt=n_prompt,
        matrix=matrix,
        step_scores={"probability": torch.tensor([0.5, 0.1], dtype=torch.float64)},
        score_input=score_input,
        score_baseline=score_baseline,
        delta=score_input - score_baseline - matrix.sum(dim=1),
        steps=torch.tensor([16, 16]),
        converged=torch.tensor([True, False]),
        method="integrated_gradients",
        score="log-probability",
        fixed_positions=(0,),
    )


CUES = {"toxic": ["idiot", "stupid"], "clean": ["thanks", "lovely"]}


def _corpus(run: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    gen = torch.Generator().manual_seed(1)
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"model": "toy", "method": "integrated_gradients", "note": XSS}))
    fillers = ["the", "a", "you", "are", "is", XSS]
    for shard in range(2):
        rows: dict[str, list[Any]] = {k: [] for k in ("doc_id", "position", "token", "score", "predicted_label",
                                                       "gold_label", "relative_error")}
        for d in range(6):
            doc = f"d{shard}{d}"
            cls = "toxic" if d % 2 else "clean"
            words = [fillers[int(i)] for i in torch.randint(len(fillers), (5,), generator=gen)] + CUES[cls]
            for pos, w in enumerate(words):
                rows["doc_id"].append(doc)
                rows["position"].append(pos)
                rows["token"].append(w)
                rows["score"].append(1.0 + 0.1 * pos if w in CUES[cls] else 0.05 * float(torch.randn(1, generator=gen)))
                rows["predicted_label"].append(cls)
                rows["gold_label"].append(cls if d != 4 else "toxic")
                rows["relative_error"].append(10.0 ** -(2 + d % 3))
        pq.write_table(pa.table(rows), run / f"shard-{shard:05d}.parquet")


STORE_CUES = {"positive": ["wonderful"], "negative": ["awful"]}


def _store(run: Path) -> None:
    """A run in the layout ``integrand.corpus.run`` writes (manifest, tokens/ and documents/ shards).

    Written with its own writer."""
    from integrand.corpus.run import FORMAT, FORMAT_VERSION, MANIFEST
    from integrand.corpus.shards import write_chunk

    for sub in ("tokens", "documents"):
        (run / sub).mkdir(parents=True)
    (run / MANIFEST).write_text(json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "model": "toy"}))
    fillers = ["the", "film", "was", "plot", "acting"]
    for chunk in range(2):
        tokens, documents = [], []
        for d in range(4):
            doc, cls = f"s{chunk}{d}", ("positive" if d % 2 else "negative")
            words = ["[CLS]", *fillers[d:], STORE_CUES[cls][0], "[SEP]"]
            for pos, w in enumerate(words):
                special = w.startswith("[")
                tokens.append({
                    "doc_id": doc, "position": pos, "token": w, "word": None if special else w, "special": special,
                    "score": 2.0 if w in STORE_CUES[cls] else 0.01 * pos, "predicted_label": cls,
                    "target_label": cls, "gold_label": cls, "probabilities": [0.5, 0.5], "relative_error": 1e-4,
                })
            documents.append({
                "doc_id": doc, "text": " ".join(words), "gold_label": cls, "empty": False, "error": None,
                "predicted_label": cls, "target_label": cls, "probabilities": [0.5, 0.5], "score_input": 1.0,
                "delta": 1e-4, "relative_error": 1e-4, "steps": 32, "converged": True, "truncated": False,
                "n_tokens": len(words),
            })
        write_chunk(run, chunk, tokens, documents)


def build_results_dir(root: Path, outside: Path) -> Path:
    """Fill ``root`` with results of every type; ``outside`` gets a secret file that a symlink in root points to."""
    (root / "images").mkdir(parents=True)
    (root / "text").mkdir()
    (root / "generation").mkdir()
    (root / "bad").mkdir()
    _image_result().save(root / "images" / "cnn_ig.safetensors")
    _token_ig().save(root / "text" / "bag_of_embeddings.safetensors")
    _text_result().save(root / "text" / "toxic.safetensors")
    _generation_result().save(root / "generation" / "capital.safetensors")
    (root / "bad" / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json" + b"\x00" * 20)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(root / "bad" / "foreign.safetensors"))
    _corpus(root / "corpus" / "run1")
    _store(root / "corpus" / "store")
    (root / "reports").mkdir()
    from integrand.viz.html import page

    (root / "reports" / "demo.html").write_text(page(_image_result().to_html(), "demo"))
    outside.mkdir(parents=True, exist_ok=True)
    _image_result().save(outside / "secret.safetensors")
    (outside / "secret.html").write_text("<p>secret</p>")
    (root / "escape.safetensors").symlink_to(outside / "secret.safetensors")
    (root / "escape_dir").symlink_to(outside, target_is_directory=True)
    (root / "escape.html").symlink_to(outside / "secret.html")
    return root


def test_results_dir_round_trips(tmp_path: Path) -> None:
    root = build_results_dir(tmp_path / "results", tmp_path / "outside")
    loaded = integrand.Attribution.load(root / "images" / "cnn_ig.safetensors")
    assert loaded.params["example_labels"] == LABELS
    assert loaded.relative_error is not None and loaded.relative_error.shape == (3,)
    from integrand.text.result import TokenAttribution

    text = TokenAttribution.load(root / "text" / "toxic.safetensors")
    assert text.tokens == TOKENS and abs(text.relative_error) < 1e-2


class LiveServer:
    """The viewer app served by uvicorn on a free loopback port in a background thread."""

    def __init__(self, root: Path) -> None:
        import socket
        import threading

        import uvicorn

        from integrand.viewer import create_app
        from integrand.viewer.app import default_allowed_hosts

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        app = create_app(root, allowed_hosts=default_allowed_hosts("127.0.0.1"))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the viewer did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def raw_get(self, target: str) -> tuple[int, bytes]:
        """GET with the request target sent byte for byte (no client-side normalisation of ``..``)."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            conn.endheaders()
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
