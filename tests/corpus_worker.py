"""Subprocess entry for the kill/resume test: load a saved classifier and run a corpus into a folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def main(model_dir: str, data: str, out: str) -> None:
    from safetensors.torch import load_file

    from integrand.corpus import ExplainSettings, run
    from integrand.corpus.synthetic import BagOfEmbeddings, WordVocabulary, explainer_for

    torch.set_num_threads(1)
    meta = json.loads((Path(model_dir) / "meta.json").read_text())
    model = BagOfEmbeddings(len(meta["vocab"]) + 2, len(meta["classes"]))
    model.load_state_dict(load_file(str(Path(model_dir) / "model.safetensors")))
    explainer = explainer_for(model.eval(), WordVocabulary(meta["vocab"]), meta["classes"])
    run(
        explainer,
        data,
        out,
        id_col="id",
        label_col="label",
        settings=ExplainSettings(steps=8),
        chunk_docs=50,
        progress=False,
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
