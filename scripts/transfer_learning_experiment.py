"""Does transfer learning help with few labels? Fine-tuning vs training from scratch on the same scarce labels.

1. Pre-train the X-ray classifier on the training images *outside* a labelled fraction (default 90%).
2. For each seed, train on the labelled fraction only (default 10%): once from scratch, once
   fine-tuned from the pre-trained weights (`xray_classification_finetune.json`).
3. Evaluate every model on the test split and write a JSON + a Markdown table of test ROC AUC,
   sensitivity and specificity.

Every step is a real `python -m monai.bundle run` of the bundle's own configs. Example:

    python scripts/transfer_learning_experiment.py --dataset_dir data/xray_synthetic --output_dir runs/transfer
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monai_bundle.apps.experiments import (
    evaluate_classifier,
    markdown_table,
    summarise,
    train,
    write_results,
)

TASK = "xray_classification"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True, help="class-folder dataset (train/<CLASS>, test/<CLASS>)")
    parser.add_argument("--output_dir", default="runs/transfer_learning")
    parser.add_argument("--network_name", default="densenet121", choices=["densenet121", "seed_cnn"])
    parser.add_argument("--image_size", type=int, default=150)
    parser.add_argument("--label_fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain_epochs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--results", default="", help="also write the JSON results here (e.g. the bundle docs)")
    args = parser.parse_args(argv)

    out = Path(args.output_dir)
    common = {"dataset_dir": args.dataset_dir, "network_name": args.network_name, "image_size": args.image_size}
    few = {"label_fraction": args.label_fraction, "label_seed": 0}
    pretrained = train(
        TASK, out / "pretrain", "train", **common, max_epochs=args.pretrain_epochs, label_subset="rest", **few
    )
    rows = []
    for seed in args.seeds:
        for method, workflow, extra in (
            ("scratch", "train", {}),
            ("fine-tuned", "finetune", {"pretrained_weights": pretrained}),
        ):
            name = f"{method}-seed{seed}"
            checkpoint = train(
                TASK,
                out / name,
                workflow,
                **common,
                seed=seed,
                max_epochs=args.epochs,
                label_subset="labelled",
                early_stop_patience=args.epochs,
                **few,
                **extra,
            )
            metrics = evaluate_classifier(checkpoint, out / f"{name}-test", **common)
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    **{k: metrics[k] for k in ("roc_auc", "sensitivity", "specificity", "n")},
                }
            )
            print(f"{name}: test AUC {metrics['roc_auc']:.3f}", flush=True)

    result = {"settings": vars(args), "runs": rows, "summary": summarise(rows, ["scratch", "fine-tuned"])}
    write_results(result, out / "transfer_learning.json", args.results)
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
