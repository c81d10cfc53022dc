"""``integrand train``: fine-tune a text classifier on a labelled file, ready for ``integrand run --model``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a classifier (MiniLM encoder + new head) on a labelled CSV, JSONL or Parquet file",
        description="Fine-tune every weight of the embedded MiniLM-L6 encoder plus a new classification head "
        "on DATA, report accuracy and macro-F1 on a seeded held-out split, and save a Hugging Face model "
        "folder that `integrand run --model OUT` loads.",
    )
    p.add_argument("data", type=Path, help="a .csv, .jsonl or .parquet file with a text and a label column")
    p.add_argument("--text-col", default="text", help="column holding the text (default: text)")
    p.add_argument(
        "--label-col",
        default="label",
        help="column holding the label; several labels in one cell separated by --separator make the "
        "data multi-label (default: label)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write the model into (created)")
    p.add_argument("--separator", default="|", help="separator of several labels in one cell (default: |)")
    p.add_argument(
        "--multi-label",
        choices=("auto", "yes", "no"),
        default="auto",
        help="auto (default): multi-label when a cell holds the separator; yes: sigmoid per label; no: softmax",
    )
    p.add_argument("--epochs", type=int, default=3, help="passes over the training rows (default: 3)")
    p.add_argument("--batch-size", type=int, default=16, help="rows per optimiser step (default: 16)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate, decayed linearly (default: 0.0001)")
    p.add_argument("--max-length", type=int, default=64, help="tokens per text; longer texts are cut (default: 64)")
    p.add_argument("--test-size", type=float, default=0.2, help="share of rows held out for evaluation (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the head and the batch order (default: 0)")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="multi-label: probability from which a label is predicted"
    )
    p.add_argument("--base", type=Path, default=None, help="a BERT-like model folder to start from (default: MiniLM)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..corpus.train import TrainConfig, train_classifier
    from ..errors import InputError

    multi = {"auto": None, "yes": True, "no": False}[args.multi_label]
    if isinstance(args.test_size, float) and not 0 < args.test_size < 1:
        raise InputError("--test-size", f"expected a fraction strictly between 0 and 1, got {args.test_size}")
    try:
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            max_length=args.max_length,
            test_size=args.test_size,
            seed=args.seed,
            separator=args.separator,
            multi_label=multi,
            threshold=args.threshold,
        )
        report = train_classifier(
            args.data,
            args.out,
            text_col=args.text_col,
            label_col=args.label_col,
            config=config,
            base=args.base,
            progress=not args.quiet,
        )
    except InputError as exc:
        flag = "--lr" if exc.argument == "learning_rate" else "--" + exc.argument.replace("_", "-")
        name = flag if flag[2:] in _FLAGS else "DATA" if exc.argument in ("data", "dataset") else exc.argument
        raise InputError(name, str(exc).split(": ", 1)[-1]) from None
    print(
        f"{report.problem_type}: {len(report.labels)} labels {list(report.labels)}; "
        f"{report.train_rows} rows trained, {report.eval_rows} held out"
        + (f", {report.dropped_rows} empty rows dropped" if report.dropped_rows else "")
    )
    per_class = ", ".join(f"{k} {v:.3f}" for k, v in report.per_class_f1.items())
    print(f"held-out accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f} (F1: {per_class})")
    print(f"{report.seconds:.1f} s -> {report.out}  (integrand run DATA --model {report.out} --target gold ...)")
    return 0


_FLAGS = (
    "text-col",
    "label-col",
    "out",
    "separator",
    "epochs",
    "batch-size",
    "max-length",
    "test-size",
    "seed",
    "threshold",
    "base",
    "lr",
)
