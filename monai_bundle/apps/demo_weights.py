"""What the demo-weight scripts share: the segmentation datasets and installing trained weights into the bundle.

Training and scoring run as `python -m monai.bundle run` child processes (`experiments.run`); a script
then `finish`es: it prints its results and, with --install, ships the weights with their sha256 in
metadata.json and the results in docs/results/<task>.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from monai_bundle.apps import runner
from monai_bundle.io import sha256_of
from monai_bundle.tasks.ct_segmentation import prepare_ct_dataset
from monai_bundle.tasks.mri_brain_segmentation import prepare_mri_dataset

PREPARE = {"ct_segmentation": prepare_ct_dataset, "mri_brain_segmentation": prepare_mri_dataset}
"""Segmentation task -> function(folder) that writes its training set of real sample data there."""


def shipped_weights(task: str) -> Path:
    """The task's weight file in the bundle (metadata's "weights")."""
    return runner.BUNDLE_DIR / runner.tasks()[task]["weights"]


def results_file(task: str) -> Path:
    """docs/results/<task>.json: how the shipped weights were trained and how they score."""
    return runner.BUNDLE_DIR / "docs" / "results" / f"{task}.json"


def install(task: str, checkpoint: Path, results: dict, half: bool = False) -> Path:
    """Copy the weights into the bundle, record their sha256 and the results in metadata.json and docs.

    `half` stores floating tensors as float16 (half the size; loading casts them back to the
    network's float32). A sidecar `<checkpoint>.json` (e.g. a decision threshold) is copied along.
    """
    target = shipped_weights(task)
    if half:
        import torch

        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, target)
    else:
        shutil.copyfile(checkpoint, target)
    if checkpoint.with_suffix(".json").is_file():
        shutil.copyfile(checkpoint.with_suffix(".json"), target.with_suffix(".json"))
    meta = json.loads(runner.METADATA.read_text())
    meta["medimg"]["tasks"][task]["sha256"] = sha256_of(target)
    runner.METADATA.write_text(json.dumps(meta, indent=4) + "\n")
    write_results(task, results)
    return target


def write_results(task: str, results: dict) -> Path:
    """Write the results of the task's shipped weights to `results_file(task)`."""
    path = results_file(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def finish(task: str, checkpoint: Path, results: dict, install_weights: bool, half: bool = False) -> int:
    """Print a training run's results and, when asked, install its weights with them; the script's exit code."""
    print(json.dumps(results, indent=2))
    if install_weights:
        print("installed", install(task, checkpoint, results, half=half))
    return 0
