#!/usr/bin/env python
"""Train, score and (with --install) ship the low-dose CT denoiser's demo weights.

    python scripts/train_denoise_demo_weights.py --install        # about 25 min on 2 CPU cores
    python scripts/train_denoise_demo_weights.py --pretrained-weights W.pt --max-epochs 300 --g-learning-rate 1e-4
                                                                  # fine-tune from W (cosine schedule again)

Pairs: the task's `prepare` workflow (`write_denoise_dataset`: simulated low dose of the real sample CTs;
the held-out CT is another patient). Every step is a `python -m monai.bundle run` of the bundle's
configs; the held-out report (denoiser, low-dose input and classical baselines, PSNR/SSIM) goes
to docs/results/ct_denoising.json with the training settings.
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
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--pretrained-weights", type=Path, help="start from these generator weights (fine-tuning)")
    parser.add_argument("--g-learning-rate", type=float, default=2e-4, help="generator's starting learning rate")
    parser.add_argument("--checkpoint", type=Path, help="score (and install) this checkpoint instead of training")
    parser.add_argument("--install", action="store_true", help="copy the weights (float16) into monai_bundle/models")
    args = parser.parse_args(argv)
    dataset = sample_data.cache_dir() / "datasets" / TASK
    run(TASK, "prepare", stream=True, dataset_dir=dataset)
    started = time.monotonic()
    checkpoint = args.checkpoint
    if checkpoint is None:
        start = {"pretrained_weights": args.pretrained_weights.resolve()} if args.pretrained_weights else {}
        run(
            TASK,
            "train",
            stream=True,
            dataset_dir=dataset,
            output_dir=args.work_dir,
            max_epochs=args.max_epochs,
            g_learning_rate=args.g_learning_rate,
            **start,
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
