#!/usr/bin/env python
"""Train, score and (with --install) ship the MRI super-resolution network's demo weights.

    nice -n 10 python scripts/train_sr_demo_weights.py --install   # about 5 min on 2 CPU cores
    python scripts/train_sr_demo_weights.py --checkpoint W.pt      # only score W on the held-out pairs

Pairs: the task's `prepare` workflow (`write_sr_dataset`: thick slices simulated from the real ICBM
2009a T1 for training, from the MNI152 NLin6Asym T1 held out). Every step is a `python -m monai.bundle
run` of the bundle's configs; the held-out report (network, trilinear and cubic B-spline, PSNR/SSIM)
goes to docs/results/mri_super_resolution.json with the training settings.
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

TASK = "mri_super_resolution"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / "demo_mri_super_resolution")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--epoch-length", type=int, default=20)
    parser.add_argument("--adversarial-weight", type=float, default=0.05)
    parser.add_argument("--g-learning-rate", type=float, default=1e-3, help="generator's starting learning rate")
    parser.add_argument("--checkpoint", type=Path, help="score (and install) this checkpoint instead of training")
    parser.add_argument("--install", action="store_true", help="copy the weights (float16) into monai_bundle/models")
    args = parser.parse_args(argv)
    dataset = sample_data.cache_dir() / "datasets" / TASK
    run(TASK, "prepare", stream=True, dataset_dir=dataset)
    started = time.monotonic()
    checkpoint = args.checkpoint
    settings = {
        "max_epochs": args.max_epochs,
        "epoch_length": args.epoch_length,
        "adversarial_weight": args.adversarial_weight,
        "g_learning_rate": args.g_learning_rate,
    }
    if checkpoint is None:
        run(TASK, "train", stream=True, dataset_dir=dataset, output_dir=args.work_dir, **settings)
        checkpoint = args.work_dir / "models" / "model.pt"
    minutes = round((time.monotonic() - started) / 60, 1) if args.checkpoint is None else None
    run(TASK, "evaluate", stream=True, dataset_dir=dataset, output_dir=args.work_dir / "eval", checkpoint=checkpoint)
    results = {
        "task": TASK,
        "data": json.loads((dataset / "dataset.json").read_text())["description"],
        "training": {**settings, "config": "mri_super_resolution_train.json defaults otherwise"},
        "training_minutes_wall": minutes,
        "held_out": json.loads((args.work_dir / "eval" / "report.json").read_text()),
    }
    return finish(TASK, checkpoint, results, args.install, half=True)


if __name__ == "__main__":
    sys.exit(main())
