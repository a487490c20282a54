#!/usr/bin/env python
"""T1 -> T2-like registration on known synthetic warps: GAN translation vs mutual information vs SimpleITK vs none.

Two arms are trained by `mri_registration_train.json` (`python -m monai.bundle run`, same data and
seed): the GAN helper (pix2pix translator of the fixed contrast to T1, then LocalNet on LNCC) and
the same LocalNet on mutual information without a translator. Each is scored as trained (one pass)
and with the inference config's per-pair refinement, next to no registration and SimpleITK's
B-spline registration with Mattes mutual information, on held-out slices with held-out warps:
dense displacement error (mm) in the brain, Dice of warped grey/white-matter labels, folding.

    python scripts/gan_registration_experiment.py --output-dir runs/gan_registration --install
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from monai_bundle.apps import runner
from monai_bundle.apps.demo_weights import finish
from monai_bundle.apps.experiments import run
from monai_bundle.data import sample_data
from monai_bundle.engines import load_weights
from monai_bundle.io import write_text_atomic
from monai_bundle.tasks import mri_registration as reg

TASK = "mri_registration"
ARMS = {"GAN translator + LNCC": True, "mutual information, no GAN": False}
"""Arm name -> use_translator."""


def train(out: Path, use_translator: bool, seed: int) -> Path:
    """Train one arm through MONAI's CLI (unless already done); return its checkpoint."""
    checkpoint = out / "models" / "model.pt"
    if not (out / "trained").is_file():
        run(TASK, "train", output_dir=out, use_translator=use_translator, seed=seed)
        (out / "trained").touch()
    return checkpoint


def network(checkpoint: Path, use_translator: bool, refine_steps: int) -> reg.TranslateAndRegister:
    """The inference config's network with these weights, in eval mode on the CPU."""
    parser = ConfigParser()
    parser.read_config(runner.config_files(TASK, "inference"))
    parser.update({"use_translator": use_translator, "refine_steps": refine_steps, "device": "cpu"})
    return load_weights(parser.get_parsed_content("network"), checkpoint).eval()


def compare(methods: dict, items: list[dict]) -> dict[str, dict[str, float]]:
    """Mean of each score over the pairs, and seconds per pair, for each method (pair -> displacement)."""
    table = {}
    for name, method in methods.items():
        started, scores = time.monotonic(), []
        for item in items:
            with torch.no_grad():
                scores.append(reg.score(method(item), item))
        table[name] = {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}
        table[name]["seconds_per_pair"] = (time.monotonic() - started) / len(items)
        print(f"{name}: {table[name]}", flush=True)
    return table


def markdown_table(table: dict) -> str:
    lines = [
        "| method | displacement error (mm) | 95th pct. (mm) | Dice GM | Dice WM | folding (% px) | s / pair |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        lines.append(
            f"| {name} | {row['error_mm']:.2f} | {row['error_p95_mm']:.2f} | {row['dice_grey_matter']:.3f} | "
            f"{row['dice_white_matter']:.3f} | {100 * row['folding_fraction']:.3f} | {row['seconds_per_pair']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("runs") / "gan_registration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warps-per-slice", type=int, default=2, help="held-out warps per held-out slice")
    parser.add_argument("--refine-steps", type=int, default=100)
    parser.add_argument(
        "--install", action="store_true", help="ship the GAN arm's weights (float16) as the demo weights"
    )
    args = parser.parse_args(argv)

    dataset = sample_data.cache_dir() / "datasets" / TASK
    run(TASK, "prepare", dataset_dir=dataset)
    test = reg.load_slices(dataset, "test")
    held_out = reg.SyntheticWarpDataset(test, args.warps_per_slice * len(test["t1"]), seed=10**6 + args.seed)
    items = [held_out[i] for i in range(len(held_out))]
    methods = {
        "no registration": lambda item: np.zeros_like(item["ddf"].numpy()),
        "true displacement (ceiling)": lambda item: item["ddf"].numpy(),
        "SimpleITK B-spline, Mattes MI": lambda item: reg.sitk_bspline(*item["pair"].numpy()),
    }
    checkpoints = {}
    for arm, use_translator in ARMS.items():
        started = time.monotonic()
        checkpoints[arm] = train(
            args.output_dir / ("gan" if use_translator else "mutual_information"), use_translator, args.seed
        )
        print(f"{arm}: trained in {(time.monotonic() - started) / 60:.1f} min", flush=True)
        for steps, label in ((0, "LocalNet"), (args.refine_steps, f"LocalNet + {args.refine_steps} refinement steps")):
            model = network(checkpoints[arm], use_translator, steps)
            methods[f"{arm}: {label}"] = lambda item, model=model: model(item["pair"][None])[0].numpy()
    table = compare(methods, items)
    results = {
        "task": TASK,
        "data": reg.__doc__.split("\n\n")[1],
        "held_out_pairs": len(items),
        "settings": {
            **vars(args),
            "output_dir": str(args.output_dir),
            "train_config": "mri_registration_train.json defaults",
        },
        "results": table,
    }
    write_text_atomic(args.output_dir / "gan_registration.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(args.output_dir / "gan_registration.md", markdown_table(table) + "\n")
    print(markdown_table(table))
    return finish(TASK, checkpoints["GAN translator + LNCC"], results, args.install, half=True)


if __name__ == "__main__":
    sys.exit(main())
