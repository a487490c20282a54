#!/usr/bin/env python
"""Train the class-conditional X-ray GAN, measure it (KID, MS-SSIM, privacy) and (with --install) ship it.

    python scripts/train_synthesis_demo_weights.py --install

Data: the synthetic X-ray set of `medimg-make-xray-set` (radiographs rendered from the real
sample CTs); the GAN trains on its training split, the report compares samples with those
images, with the unseen validation images of the same CTs ("held out") and with the test CT.
The untrained generator (same architecture, seed 0) is scored the same way, as the reference a
trained GAN must beat. Every step is a `python -m monai.bundle run` of the bundle's configs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from monai_bundle.apps.demo_weights import finish
from monai_bundle.apps.experiments import run
from monai_bundle.data import sample_data
from monai_bundle.data.drr import make_xray_dataset
from monai_bundle.tasks.xray_synthesis import ConditionalGenerator

TASK = "xray_synthesis"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / f"demo_{TASK}")
    parser.add_argument("--dataset-dir", type=Path, default=sample_data.cache_dir() / "datasets" / "xray_synthetic")
    parser.add_argument("--max-epochs", type=int, default=40, help="epochs of 50 steps")
    parser.add_argument("--checkpoint", type=Path, help="score (and install) this checkpoint instead of training")
    parser.add_argument("--install", action="store_true", help="copy the weights (float16) into monai_bundle/models")
    args = parser.parse_args(argv)

    if not args.dataset_dir.is_dir():
        make_xray_dataset(args.dataset_dir, workers=2)
    started = time.monotonic()
    checkpoint = args.checkpoint
    if checkpoint is None:
        run(
            TASK,
            "train",
            stream=True,
            dataset_dir=args.dataset_dir,
            output_dir=args.work_dir,
            max_epochs=args.max_epochs,
        )
        checkpoint = args.work_dir / "models" / "model.pt"
    minutes = round((time.monotonic() - started) / 60, 1)
    torch.manual_seed(0)
    untrained = args.work_dir / "untrained.pt"
    untrained.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ConditionalGenerator().state_dict(), untrained)
    reports = {}
    for name, weights in (("trained", checkpoint), ("untrained", untrained)):
        run(
            TASK,
            "evaluate",
            stream=True,
            dataset_dir=args.dataset_dir,
            output_dir=args.work_dir / f"eval_{name}",
            checkpoint=weights,
        )
        reports[name] = json.loads((args.work_dir / f"eval_{name}" / "report.json").read_text())
    results = {
        "task": TASK,
        "data": f"synthetic X-ray set {args.dataset_dir} (medimg-make-xray-set defaults)",
        "training": {"max_epochs": args.max_epochs, "config": "xray_synthesis_train.json defaults"},
        "training_minutes": minutes if args.checkpoint is None else None,
        "report": reports["trained"],
        "untrained_generator_report": reports["untrained"],
    }
    return finish(TASK, checkpoint, results, args.install, half=True)


if __name__ == "__main__":
    sys.exit(main())
