#!/usr/bin/env python
"""Leave one CT out for the low-dose CT denoiser: train without it, score on it at two doses against the baselines.

    python scripts/denoiser_leave_one_out.py                        # every fold, then the table (4-6 h here)
    python scripts/denoiser_leave_one_out.py --folds ts_thorax_ct --epoch-scale 0.1 --stages 1
    python scripts/denoiser_leave_one_out.py --install              # also train on every CT and ship those weights
    python scripts/denoiser_leave_one_out.py --install-only         # no folds: train on every CT and ship

Training pairs: the task's `prepare` workflow (`write_varied_pairs`: every real sample CT at varied pixel sizes
and doses). Training is the task's `train` workflow run in `STAGES`, each from the weights of the one before.
Each fold (`real_cts.leave_one_out_folds`: one patient's CTs, or the two head CTs) trains the
task's `train` workflow with `exclude_cts`, then the `evaluate` workflow scores that network, without the
baselines, on the real-CT pairs of `evaluate_denoiser_real_cts.py` (the same files, the same slices); the
baselines' scores on those pairs are taken from that script's report (run here if missing). One row per
held-out CT and dose into WORK_DIR/leave_one_out.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from monai_bundle.apps.demo_weights import finish, results_file
from monai_bundle.apps.experiments import run, train, write_results
from monai_bundle.data import sample_data
from monai_bundle.io import write_text_atomic
from monai_bundle.tasks.ct_denoising import real_cts

TASK = "ct_denoising"

STAGES = ({"max_epochs": 600}, {"max_epochs": 600, "g_learning_rate": 1e-4})
"""The shipped recipe: `ct_denoising_train.json`'s defaults (600 epochs of 20 steps, cosine from 3e-4 to 0), then
600 more from those weights, cosine from 1e-4 to 0 (a warm restart)."""


def scaled(stages, epoch_scale: float) -> list[dict]:
    """`stages` with every stage's epochs multiplied by `epoch_scale` (at least 1)."""
    return [stage | {"max_epochs": max(1, round(stage["max_epochs"] * epoch_scale))} for stage in stages]


def train_stages(out: Path, stages, epoch_scale: float = 1.0, **overrides) -> Path:
    """Train `stages` in turn into `out`/stage_<k>, each from the previous stage's weights; the last model's path."""
    checkpoint = None
    for k, stage in enumerate(scaled(stages, epoch_scale), 1):
        start = {"pretrained_weights": checkpoint.resolve()} if checkpoint else {}
        checkpoint = train(TASK, out / f"stage_{k}", **overrides, **stage, **start)
    return checkpoint


def recipe(stages, epoch_scale: float) -> dict:
    """The training settings a result was measured with."""
    config = "ct_denoising_train.json defaults, then each stage's overrides"
    return {"stages": scaled(stages, epoch_scale), "config": config}


def case_name(case: dict) -> str:
    """The sample CT of a report case (its low-dose file is <name>_lowdose.nii.gz)."""
    return Path(case["case"]).name.split("_lowdose")[0]


def scored_cases(pairs: Path, out: Path, **overrides) -> dict[str, dict]:
    """The evaluate workflow's cases on `pairs` by CT name (a finished report under `out` is reused)."""
    if not (out / "report.json").is_file():
        run(TASK, "evaluate", dataset_dir=pairs, output_dir=out, eval_split="test", **overrides)
    return {case_name(case): case for case in json.loads((out / "report.json").read_text())["cases"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / "ct_denoising_loo")
    parser.add_argument("--baselines-dir", type=Path, default=Path("runs") / "ct_denoising_real_cts")
    parser.add_argument("--photons", type=float, nargs="+", default=list(real_cts.EVAL_PHOTONS))
    parser.add_argument("--folds", nargs="+", help="run only the folds holding out these CTs (default: all)")
    parser.add_argument("--stages", type=int, default=len(STAGES), help="train only the first N of STAGES")
    parser.add_argument("--epoch-scale", type=float, default=1.0, help="multiply every stage's epochs (a quick look)")
    parser.add_argument("--install", action="store_true", help="then train on every CT and ship those weights")
    parser.add_argument(
        "--install-only",
        action="store_true",
        help="skip the folds: train on every CT and ship, keeping the recorded leave-one-out rows",
    )
    args = parser.parse_args(argv)
    dataset = sample_data.cache_dir() / "datasets" / TASK
    run(TASK, "prepare", stream=True, dataset_dir=dataset)
    stages = STAGES[: args.stages]
    if args.install_only:
        return install_all_cts(dataset, args.work_dir, stages, args.epoch_scale)
    folds = [fold for fold in real_cts.leave_one_out_folds() if not args.folds or set(fold) & set(args.folds)]
    rows, minutes = [], {}
    for photons in args.photons:
        pairs = real_cts.write_real_ct_pairs(args.baselines_dir / f"pairs_{photons:g}", photons)
        baselines = scored_cases(pairs, args.baselines_dir / f"eval_{photons:g}")
        for fold in folds:
            fold_dir = args.work_dir / "_".join(fold)
            started = time.monotonic()
            checkpoint = train_stages(fold_dir, stages, args.epoch_scale, dataset_dir=dataset, exclude_cts=list(fold))
            network = scored_cases(pairs, fold_dir / f"eval_{photons:g}", checkpoint=checkpoint, eval_baselines=False)
            minutes["_".join(fold)] = minutes.get("_".join(fold), 0) + round((time.monotonic() - started) / 60, 1)
            cases = [baselines[name] | {"denoiser": network[name]["denoiser"]} for name in fold]
            rows += real_cts.real_ct_rows({"cases": cases}, photons, trained=real_cts.trained_on(fold))
    rows.sort(key=lambda row: (row["ct"], row["photons"]))
    table = real_cts.markdown_tables(rows)
    result = {"task": TASK, "training": recipe(stages, args.epoch_scale), "minutes": minutes, "rows": rows}
    write_results(result, args.work_dir / "leave_one_out.json")
    write_text_atomic(args.work_dir / "leave_one_out.md", table + "\n")
    print(table)
    if not args.install:
        return 0
    return install_all_cts(dataset, args.work_dir, stages, args.epoch_scale, result)


def install_all_cts(dataset: Path, work_dir: Path, stages, epoch_scale: float, result: dict | None = None) -> int:
    """Train on every CT of the folds and ship the weights with `result` (default: the recorded leave-one-out rows,
    which then describe the recipe they were measured with, named in their "training")."""
    started = time.monotonic()
    checkpoint = train_stages(work_dir / "all_cts", stages, epoch_scale, dataset_dir=dataset)
    shipped = {"data": "every CT of the folds"} | recipe(stages, epoch_scale)
    shipped["minutes"] = round((time.monotonic() - started) / 60, 1)
    result = result or json.loads(results_file(TASK).read_text())
    return finish(TASK, checkpoint, result | {"shipped": shipped}, True, half=True)


if __name__ == "__main__":
    sys.exit(main())
