#!/usr/bin/env python
"""Throughput of `medimg-batch` against one `python -m monai.bundle run` per file, on the same CT volumes.

    python scripts/benchmark_batch.py                 # 20 variants of the real TotalSegmentator sample CT
    python scripts/benchmark_batch.py --input DIR     # the first --n images below DIR instead
    python scripts/benchmark_batch.py --reference-n 5 # time 5 per-file runs and extrapolate (said so)

Both sides are real child processes with the shipped weights and the same inference config; their
label maps are compared. Timings are wall clock, process start and model loading included. This is a
benchmark to read, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from monai_bundle import engines
from monai_bundle.apps import experiments, runner
from monai_bundle.data import sample_data
from monai_bundle.io import find_images, output_path, read_image, write_image

REPO = Path(__file__).resolve().parents[1]


def make_inputs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """`n` variants of the real sample CT (ts_ct): a few slices cropped off each end and +-5 HU of noise."""
    ct = read_image(sample_data.fetch("ts_ct"), ndim=3)
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        low, high = k % 4, (k // 4) % 3
        array = np.asarray(ct.array)[:, :, low : ct.array.shape[2] - high]
        array = (array + rng.integers(-5, 6, array.shape)).astype(ct.array.dtype)
        affine = ct.affine.copy()
        affine[:3, 3] += low * affine[:3, 2]  # the first kept slice is the new origin
        paths.append(folder / f"ct_{k:02d}.nii.gz")
        write_image(array, affine, paths[-1])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=runner.DEFAULT_TASK)
    parser.add_argument("--n", type=int, default=20, help="volumes to process (default 20)")
    parser.add_argument(
        "--reference-n", type=int, help="per-file bundle runs to time (default: all --n); the rest is extrapolated"
    )
    parser.add_argument(
        "--input", type=Path, help="take the first --n images below this folder instead of sample CT variants"
    )
    parser.add_argument("--workdir", type=Path, help="where inputs and outputs go (default: a temp folder, removed)")
    parser.add_argument("--device", help="passed to both sides (default: the config's)")
    parser.add_argument("--workers", type=int, default=2, help="medimg-batch --workers")
    args = parser.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="medimg-bench-"))
    try:
        return benchmark(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def benchmark(args: argparse.Namespace, work: Path) -> int:
    if args.input:
        inputs = [Path(p) for p in find_images(args.input)][: args.n]
        in_dir = work / "in"
        shutil.rmtree(in_dir, ignore_errors=True)
        in_dir.mkdir(parents=True)
        for k, path in enumerate(inputs):  # a folder holding exactly these inputs (copies: inputs are never touched)
            target = in_dir / f"{k:03d}_{path.name}"
            shutil.copytree(path, target) if path.is_dir() else shutil.copy(path, target)
        inputs = sorted(in_dir.iterdir())
        what = f"the first {len(inputs)} images below {args.input}"
    else:
        in_dir = work / "in"
        inputs = make_inputs(in_dir, args.n)
        what = f"{len(inputs)} variants of the real sample CT ts_ct (TotalSegmentator test CT, 3 mm)"
    reference_n = min(args.reference_n or len(inputs), len(inputs))
    device = ["--device", args.device] if args.device else []
    print(
        f"machine : {os.cpu_count()} CPU cores ({engines.cpu_name()}), "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print(f"inputs  : {what}, shape {read_image(inputs[0]).array.shape}")
    print(f"task    : {args.task}, shipped weights, device {args.device or 'from the config'}", flush=True)

    batch_out, reference_out = work / "batch_out", work / "reference_out"
    shutil.rmtree(batch_out, ignore_errors=True)
    shutil.rmtree(reference_out, ignore_errors=True)
    batch_s = experiments.timed(
        [
            sys.executable,
            "-m",
            "monai_bundle.apps.batch",
            "--task",
            args.task,
            "--input",
            str(in_dir),
            "--output",
            str(batch_out),
            "--workers",
            str(args.workers),
            "--quiet",
            *device,
        ],
        cwd=REPO,
    )
    per_batch = batch_s / len(inputs)
    print(
        f"medimg-batch     : {len(inputs)} files in {batch_s:.1f} s = {per_batch:.2f} s/file (one process)", flush=True
    )

    reference_s = []
    for path in inputs[:reference_n]:
        overrides = {"dataset_dir": str(path), "output_dir": str(reference_out)}
        if args.device:
            overrides["device"] = args.device
        reference_s.append(experiments.timed(runner.bundle_command(args.task, "inference", **overrides), cwd=REPO))
    per_reference = sum(reference_s) / len(reference_s)
    note = f" (timed {reference_n}, extrapolated to {len(inputs)})" if reference_n < len(inputs) else ""
    print(
        f"monai.bundle run : {len(inputs)} files in {per_reference * len(inputs):.1f} s = {per_reference:.2f} s/file "
        f"(one process per file){note}"
    )
    print(f"throughput ratio : {per_reference / per_batch:.1f}x (medimg-batch / once-per-file bundle runs)")

    same, agree = 0, []
    for path in inputs[:reference_n]:
        ours = read_image(output_path(str(path), str(batch_out), "seg", None)).array
        theirs = read_image(output_path(str(path), str(reference_out), "seg", None)).array
        same += bool(np.array_equal(ours, theirs))
        agree.append(float(np.mean(ours == theirs)))
    print(
        f"agreement        : identical label maps for {same}/{reference_n} files "
        f"(voxel agreement {min(agree):.4%} at worst)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
