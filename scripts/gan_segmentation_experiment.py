#!/usr/bin/env python
"""Does an adversarial term help segmentation? The same network with and without it, same data and seeds.

For each seed, the task's `adversarial_train` workflow (inference.json + train.json + adversarial_train.json, plus
the task overlay) is run twice: `--adversarial_weight 0` (exactly MONAI's SupervisedTrainer) and the
chosen weight. Each best checkpoint is scored on the held-out test split by the task's evaluate
workflow (Dice and HD95 in mm per label); a JSON and a Markdown table are written.

    python scripts/gan_segmentation_experiment.py --task mri_brain_segmentation --seeds 0 1 \
        --max-epochs 12 --output-dir runs/gan_segmentation
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from monai_bundle.apps.demo_weights import PREPARE
from monai_bundle.apps.experiments import run as bundle
from monai_bundle.data import sample_data
from monai_bundle.io import write_text_atomic


def held_out_scores(report: dict) -> dict:
    """Per-label mean Dice and HD95 (mm) of an evaluate.json report, and their means over labels."""
    scores = {}
    for metric, name in (("mean_dice", "dice"), ("hd95_mm", "hd95_mm")):
        per_label = {label: value["mean"] for label, value in report["metrics"][metric]["per_label"].items()}
        scores[name] = per_label
        scores[f"mean_{name}"] = statistics.mean(v for v in per_label.values() if v is not None)
    return scores


def markdown_table(rows: list[dict], labels: list[str]) -> str:
    """One row per arm and seed, then the mean of each arm over seeds."""
    head = [
        "training",
        "seed",
        *[f"Dice {label}" for label in labels],
        "mean Dice",
        "mean HD95 (mm)",
        "training minutes",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row["arm"],
            str(row["seed"]),
            *[f"{row['dice'][label]:.3f}" for label in labels],
            f"{row['mean_dice']:.3f}",
            f"{row['mean_hd95_mm']:.2f}",
            f"{row['minutes']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for arm in dict.fromkeys(row["arm"] for row in rows):
        mine = [row for row in rows if row["arm"] == arm]
        cells = [
            f"**{arm}, mean**",
            f"{len(mine)} seeds",
            *[f"{statistics.mean(r['dice'][label] for r in mine):.3f}" for label in labels],
            f"**{statistics.mean(r['mean_dice'] for r in mine):.3f}**",
            f"**{statistics.mean(r['mean_hd95_mm'] for r in mine):.2f}**",
            f"{statistics.mean(r['minutes'] for r in mine):.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(PREPARE), default="mri_brain_segmentation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--adversarial-weight", type=float, default=0.1)
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--epoch-length", type=int, default=20)
    parser.add_argument("--val-interval", type=int, default=4)
    parser.add_argument("--output-dir", type=Path, default=Path("runs") / "gan_segmentation")
    parser.add_argument("--results", type=Path, help="also write the JSON results here (e.g. the bundle docs)")
    args = parser.parse_args(argv)

    dataset = PREPARE[args.task](sample_data.cache_dir() / "datasets" / args.task)
    settings = {
        "max_epochs": args.max_epochs,
        "train#trainer#epoch_length": args.epoch_length,
        "val_interval": args.val_interval,
        "batch_size": 1,
    }
    rows = []
    for seed in args.seeds:
        for arm, weight in (
            ("plain DiceCE", 0.0),
            (f"DiceCE + {args.adversarial_weight:g} x adversarial", args.adversarial_weight),
        ):
            out = args.output_dir / f"seed{seed}_weight{weight:g}"
            marker = out / "training_minutes.txt"  # runs that finished are not trained again
            if not marker.is_file():
                started = time.monotonic()
                bundle(
                    args.task,
                    "adversarial_train",
                    dataset_dir=dataset,
                    output_dir=out,
                    seed=seed,
                    adversarial_weight=weight,
                    **settings,
                )
                marker.write_text(f"{(time.monotonic() - started) / 60:.2f}\n")
            minutes = float(marker.read_text())
            bundle(
                args.task,
                "evaluate",
                dataset_dir=dataset,
                eval_split="test",
                output_dir=out / "test",
                checkpoint=out / "models" / "model.pt",
            )
            scores = held_out_scores(json.loads((out / "test" / "report.json").read_text()))
            rows.append({"arm": arm, "seed": seed, "adversarial_weight": weight, "minutes": minutes, **scores})
            print(
                f"{arm} seed {seed}: held-out mean Dice {scores['mean_dice']:.3f}, "
                f"HD95 {scores['mean_hd95_mm']:.2f} mm",
                flush=True,
            )
    labels = list(rows[0]["dice"])
    result = {
        "task": args.task,
        "data": json.loads((dataset / "dataset.json").read_text())["description"],
        "settings": {
            **vars(args),
            "output_dir": str(args.output_dir),
            "results": str(args.results),
            "training_overrides": settings,
        },
        "runs": rows,
    }
    text = json.dumps(result, indent=2) + "\n"
    table = markdown_table(rows, labels)
    write_text_atomic(args.output_dir / "gan_segmentation.json", text)
    write_text_atomic(args.output_dir / "gan_segmentation.md", table + "\n")
    if args.results:
        write_text_atomic(args.results, text)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
