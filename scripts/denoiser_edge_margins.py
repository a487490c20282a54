#!/usr/bin/env python
"""How `WindowToHUd`'s edge margins score on the CTs no training saw: the sweep behind `EDGE_MARGIN_HU`.

    python scripts/denoiser_edge_margins.py                 # the shipped weights, 2e4 and 1e5 photons/ray (about 3 min)

Per CT and dose: the inference workflow once, with margins that keep no input beyond the window (the network's own
HU everywhere), on `evaluate_denoiser_real_cts.py --unseen`'s pairs (written here if missing); then `WindowToHUd`
with each margin pair applied to that output. Prints PSNR / SSIM in the window (`metrics.scores`), the lung band's
RMS error, and the RMS error, unclipped, where the normal-dose CT lies above the window (bone). Scored on the written
int16 output, so within about 0.01 dB and 0.002 SSIM of the evaluate workflow's unrounded figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from monai_bundle.apps.experiments import run
from monai_bundle.io import read_image
from monai_bundle.tasks.ct_denoising import WindowToHUd, real_cts
from monai_bundle.tasks.ct_denoising.metrics import DEFAULT_WINDOW, band_rms_hu, scores

MARGINS = ((10, 100), (20, 100), (50, 100), (100, 100), (20, 20), (20, 2000), (2000, 2000))
"""(low, high) edge margins in HU; 2000 on both edges is the rule before 0.12.0 (every input beyond the window)."""

KEEP_NOTHING = (-1e9, -1e9)
"""Margins no output can be within: the workflow then writes the network's own HU everywhere."""


def network_hu(low_dose: Path, out: Path) -> np.ndarray:
    """The shipped denoiser's HU on `low_dose`, with no input kept beyond the window (a finished output is reused)."""
    result = out / f"{low_dose.name.split('.')[0]}_denoised.nii.gz"
    if not result.is_file():
        overrides = {"postprocessing#transforms#0#edge_margin_hu": list(KEEP_NOTHING)}
        run("ct_denoising", "inference", dataset_dir=low_dose, output_dir=out, **overrides)
    return np.asarray(read_image(result).array, np.float32)


def with_margins(hu: np.ndarray, original: np.ndarray, margins: tuple[float, float]) -> np.ndarray:
    """`WindowToHUd` with `margins` on the network's HU (given back as its [0, 1] window)."""
    low, high = DEFAULT_WINDOW
    data = {"pred": torch.from_numpy((hu - low) / (high - low)), "original": torch.from_numpy(original)}
    return WindowToHUd("pred", edge_margin_hu=margins)(data)["pred"].numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / "ct_denoising_real_cts")
    parser.add_argument("--photons", type=float, nargs="+", default=list(real_cts.EVAL_PHOTONS))
    args = parser.parse_args(argv)
    print("| CT | photons | margins (HU) | PSNR / SSIM | lung RMS (HU) | above +1000 RMS (HU) |")
    print("|---|---|---|---|---|---|")
    for photons in args.photons:
        pairs = real_cts.write_real_ct_pairs(
            args.work_dir / f"unseen_pairs_{photons:g}", photons, cts=real_cts.UNSEEN_CTS
        )
        for name, _ in real_cts.UNSEEN_CTS:
            low_dose = pairs / "test" / f"{name}_lowdose.nii.gz"
            original = np.asarray(read_image(low_dose).array, np.float32)
            normal = np.asarray(read_image(pairs / "test" / f"{name}.nii.gz").array, np.float32)
            hu = network_hu(low_dose, args.work_dir / f"edge_margins_{photons:g}")
            bone = normal > DEFAULT_WINDOW[1]
            for margins in MARGINS:
                out = with_margins(hu, original, margins)
                s = scores(out, normal)
                lung_rms = band_rms_hu(out, normal)["lung"]
                bone_rms = float(np.sqrt(np.mean((out[bone] - normal[bone]) ** 2))) if bone.any() else float("nan")
                print(
                    f"| {name} | {photons:g} | {margins[0]:g} / {margins[1]:g} | {s['psnr_db']:.2f} / {s['ssim']:.3f} "
                    f"| {lung_rms:.0f} | {bone_rms:.0f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
