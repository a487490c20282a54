#!/usr/bin/env python
"""Leave one CT out for the low-dose CT denoiser: train without it, score on it at two doses against the baselines.

    python scripts/denoiser_leave_one_out.py                        # every fold, then the table (about 3 h here)
    python scripts/denoiser_leave_one_out.py --folds ts_thorax_ct --max-epochs 60
    python scripts/denoiser_leave_one_out.py --install              # also train on every CT and ship those weights
    python scripts/denoiser_leave_one_out.py --install-only         # no folds: train on every CT and ship

Training pairs: the task's `prepare` workflow (`write_varied_pairs`: every real sample CT at varied pixel sizes
and doses). Each fold (`real_cts.leave_one_out_folds`: one patient's CTs, or the two head CTs) trains the
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
    parser.add_argument("--max-epochs", type=int, default=600, help="epochs of 20 steps per fold")
    parser.add_argument("--install", action="store_true", help="then train on every CT and ship those weights")
    parser.add_argument(
        "--install-only",
        action="store_true",
        help="skip the folds: train on every CT and ship, keeping the recorded leave-one-out rows",
    )
    args = parser.parse_args(argv)
    dataset = sample_data.cache_dir() / "datasets" / TASK
    run(TASK, "prepare", stream=True, dataset_dir=dataset)
    if args.install_only:
        return install_all_cts(dataset, args.work_dir, args.max_epochs)
    folds = [fold for fold in real_cts.leave_one_out_folds() if not args.folds or set(fold) & set(args.folds)]
    rows, minutes = [], {}
    for photons in args.photons:
        pairs = real_cts.write_real_ct_pairs(args.baselines_dir / f"pairs_{photons:g}", photons)
        baselines = scored_cases(pairs, args.baselines_dir / f"eval_{photons:g}")
        for fold in folds:
            fold_dir = args.work_dir / "_".join(fold)
            started = time.monotonic()
            checkpoint = train(TASK, fold_dir, dataset_dir=dataset, exclude_cts=list(fold), max_epochs=args.max_epochs)
            network = scored_cases(pairs, fold_dir / f"eval_{photons:g}", checkpoint=checkpoint, eval_baselines=False)
            minutes["_".join(fold)] = minutes.get("_".join(fold), 0) + round((time.monotonic() - started) / 60, 1)
            cases = [baselines[name] | {"denoiser": network[name]["denoiser"]} for name in fold]
            rows += real_cts.real_ct_rows({"cases": cases}, photons, trained=real_cts.trained_on(fold))
    rows.sort(key=lambda row: (row["ct"], row["photons"]))
    table = real_cts.markdown_tables(rows)
    settings = {"max_epochs": args.max_epochs, "config": "ct_denoising_train.json defaults"}
    result = {"task": TASK, "training": settings, "minutes": minutes, "rows": rows}
    write_results(result, args.work_dir / "leave_one_out.json")
    write_text_atomic(args.work_dir / "leave_one_out.md", table + "\n")
    print(table)
    if not args.install:
        return 0
    return install_all_cts(dataset, args.work_dir, args.max_epochs, result)


def install_all_cts(dataset: Path, work_dir: Path, max_epochs: int, result: dict | None = None) -> int:
    """Train on every CT of the folds and ship the weights with `result` (default: the recorded leave-one-out rows,
    which then describe the recipe they were measured with, named in their "training")."""
    started = time.monotonic()
    checkpoint = train(TASK, work_dir / "all_cts", dataset_dir=dataset, max_epochs=max_epochs)
    shipped = {"data": "every CT of the folds", "max_epochs": max_epochs, "config": "ct_denoising_train.json defaults"}
    shipped["minutes"] = round((time.monotonic() - started) / 60, 1)
    result = result or json.loads(results_file(TASK).read_text())
    return finish(TASK, checkpoint, result | {"shipped": shipped}, True, half=True)


if __name__ == "__main__":
    sys.exit(main())
