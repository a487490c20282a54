"""Do GAN samples help an X-ray classifier trained with scarce labels? Real only vs real + synthetic.

For each seed, the same seeded fraction of the training labels (default 10%):
1. trains the class-conditional GAN (`xray_synthesis_train.json`) on those labelled images only;
2. samples `--synthetic_per_class` images per class from it (`xray_synthesis_inference.json`);
3. trains the classifier twice from scratch on the same labelled images, without and with the
   samples (`xray_classification_train.json --synthetic_dir`), and tests both on the test split.
Writes a JSON and a Markdown table of test ROC AUC, sensitivity and specificity. Example:

    python scripts/gan_augmentation_experiment.py --dataset_dir /tmp/xray_synth --output_dir runs/gan_augmentation
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monai_bundle.apps.experiments import (
    evaluate_classifier,
    markdown_table,
    run,
    summarise,
    train,
    write_results,
)

METHODS = ["real only", "real + GAN samples"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True, help="class-folder dataset (train/<CLASS>, test/<CLASS>)")
    parser.add_argument("--output_dir", default="runs/gan_augmentation")
    parser.add_argument("--network_name", default="densenet121", choices=["densenet121", "seed_cnn"])
    parser.add_argument("--image_size", type=int, default=64, help="classifier input (the GAN makes 64x64 images)")
    parser.add_argument("--label_fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gan_epochs", type=int, default=16, help="GAN epochs of 50 steps")
    parser.add_argument("--synthetic_per_class", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=15, help="classifier epochs")
    parser.add_argument("--results", default="", help="also write the JSON results here (e.g. the bundle docs)")
    args = parser.parse_args(argv)

    out = Path(args.output_dir)
    common = {"dataset_dir": args.dataset_dir, "network_name": args.network_name, "image_size": args.image_size}
    rows = []
    for seed in args.seeds:
        labels = {"label_fraction": args.label_fraction, "label_subset": "labelled", "label_seed": seed, "seed": seed}
        generator = train(
            "xray_synthesis",
            out / f"gan-seed{seed}",
            dataset_dir=args.dataset_dir,
            max_epochs=args.gan_epochs,
            **labels,
        )
        samples = out / f"synthetic-seed{seed}"
        if not (samples / "samples.csv").is_file():
            run(
                "xray_synthesis",
                "sample",
                checkpoint=generator,
                output_dir=samples,
                num_samples=args.synthetic_per_class,
                seed=seed,
            )
        for method, extra in zip(METHODS, ({}, {"synthetic_dir": samples}), strict=True):
            name = f"{method.replace(' ', '').replace('+', '-')}-seed{seed}"
            checkpoint = train(
                "xray_classification",
                out / name,
                **common,
                max_epochs=args.epochs,
                early_stop_patience=args.epochs,
                **labels,
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
            print(f"{method}, seed {seed}: test AUC {metrics['roc_auc']:.3f}", flush=True)

    result = {"settings": vars(args), "runs": rows, "summary": summarise(rows, METHODS)}
    write_results(result, out / "gan_augmentation.json", args.results)
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
