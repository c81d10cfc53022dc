"""Train the small GPT-2 on the synthetic IOI task and cache its weights (integrand.circuits.ioi).

    python bench/train_ioi.py [--cache DIR] [--layers 4] [--steps 1000] [--retrain]

Prints the training time and the accuracy on 1,024 held-out pairs. Without --retrain an existing
cached model is only evaluated.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from integrand.cache import cache_dir
from integrand.circuits.ioi import IOIConfig, accuracy, ioi_pairs, load_or_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--layers", type=int, default=IOIConfig.n_layer)
    parser.add_argument("--steps", type=int, default=IOIConfig.steps)
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = IOIConfig(n_layer=args.layers, steps=args.steps)
    cache = args.cache or cache_dir()
    path = cache / f"ioi-gpt2-{config.key()}.safetensors"
    if args.retrain and path.exists():
        path.unlink()
    cached = path.exists()
    start = time.perf_counter()
    model = load_or_train(cache, config)
    seconds = time.perf_counter() - start
    acc = accuracy(model, ioi_pairs(1024, seed=7))
    print(f"{config}: {'loaded' if cached else 'trained'} in {seconds:.1f} s; held-out accuracy {acc:.4f}; {path}")


if __name__ == "__main__":
    main()
