#!/usr/bin/env python
"""Train, score and (with --install) ship a low-dose CT denoiser on the task's pairs; fine-tune from weights.

    python scripts/train_denoise_demo_weights.py                  # the train workflow's defaults
    python scripts/train_denoise_demo_weights.py --pretrained-weights W.pt --max-epochs 300 --g-learning-rate 1e-4
                                                                  # fine-tune from W (cosine schedule again)

The shipped weights and their leave-one-CT-out table come from `denoiser_leave_one_out.py --install`.
Pairs: the task's `prepare` workflow (`write_denoise_dataset`: simulated low dose of every real sample CT
at varied pixel sizes and doses). Every step is a `python -m monai.bundle run` of the bundle's configs;
the report on the test split (denoiser, low-dose input and classical baselines, PSNR/SSIM) is printed,
and with --install goes to docs/results/ct_denoising.json with the training settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from monai_bundle.apps.demo_weights import finish
from monai_bundle.apps.experiments import run
from monai_bundle.data import sample_data

TASK = "ct_denoising"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / "demo_ct_denoising")
    parser.add_argument("--max-epochs", type=int, help="epochs of 20 steps (default: the train config's)")
    parser.add_argument("--pretrained-weights", type=Path, help="start from these generator weights (fine-tuning)")
    parser.add_argument("--g-learning-rate", type=float, help="generator's starting learning rate (default: config's)")
    parser.add_argument("--checkpoint", type=Path, help="score (and install) this checkpoint instead of training")
    parser.add_argument("--install", action="store_true", help="copy the weights (float16) into monai_bundle/models")
    args = parser.parse_args(argv)
    dataset = sample_data.cache_dir() / "datasets" / TASK
    run(TASK, "prepare", stream=True, dataset_dir=dataset)
    started = time.monotonic()
    checkpoint = args.checkpoint
    if checkpoint is None:
        given = {"max_epochs": args.max_epochs, "g_learning_rate": args.g_learning_rate}
        if args.pretrained_weights:
            given["pretrained_weights"] = args.pretrained_weights.resolve()
        run(
            TASK,
            "train",
            stream=True,
            dataset_dir=dataset,
            output_dir=args.work_dir,
            **{key: value for key, value in given.items() if value is not None},
        )
        checkpoint = args.work_dir / "models" / "model.pt"
    run(TASK, "evaluate", stream=True, dataset_dir=dataset, output_dir=args.work_dir / "eval", checkpoint=checkpoint)
    report = json.loads((args.work_dir / "eval" / "report.json").read_text())
    results = {
        "task": TASK,
        "data": json.loads((dataset / "dataset.json").read_text())["description"],
        "training": {
            "max_epochs": args.max_epochs,
            "g_learning_rate": args.g_learning_rate,
            "pretrained_weights": str(args.pretrained_weights) if args.pretrained_weights else None,
            "config": "ct_denoising_train.json defaults",
        },
        "training_minutes": round((time.monotonic() - started) / 60, 1) if args.checkpoint is None else None,
        "held_out": report,
    }
    return finish(TASK, checkpoint, results, args.install, half=True)


if __name__ == "__main__":
    sys.exit(main())
