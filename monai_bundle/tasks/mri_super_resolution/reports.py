"""The super-resolution evaluation report: the network against trilinear and cubic B-spline interpolation."""

from __future__ import annotations

import json
import logging
import os
import statistics
from pathlib import Path

import numpy as np

from monai_bundle.engines.handlers import CaseReport
from monai_bundle.tasks.ct_denoising.metrics import scores
from monai_bundle.tasks.mri_super_resolution.degradation import DEFAULT_FACTOR, upsample
from monai_bundle.tasks.mri_super_resolution.transforms import THICK_KEY

logger = logging.getLogger(__name__)

WINDOW = (0.0, 1.0)
"""Scoring window, in units of the thick input's 99.5th percentile (intensities are divided by it)."""

METHODS = ("network", "cubic B-spline", "trilinear")


class SuperResolutionReport(CaseReport):
    """Evaluation handler: PSNR/SSIM of the network's fine volume and of trilinear and cubic B-spline
    interpolation of the same thick input, against the real fine volume, per case, in `report.json`.

    Intensities are divided by the thick input's 99.5th percentile and clipped to [0, 1] (`WINDOW`)
    before scoring; PSNR is that of the whole volume (air included), SSIM the mean over the planes across the
    slice axis (every fine slice, the interpolated ones included).
    Needs `ToFineGridd(..., label_keys="label", keep_thick=True)`.

    Args:
        output_dir: folder of `report.json`.
        factor: thick / fine spacing of the evaluated pairs.
    """

    def __init__(self, output_dir: str | os.PathLike, factor: int = DEFAULT_FACTOR) -> None:
        super().__init__(output_dir)
        self.factor = int(factor)

    def score(self, batch: dict, output: dict) -> dict:
        fine = np.asarray(output["label"].detach().cpu())[0]
        thick = np.asarray(batch[THICK_KEY])[0]
        results = {
            "network": np.asarray(output["pred"].detach().cpu(), np.float32)[0],
            "cubic B-spline": np.asarray(output["image"].detach().cpu())[0],
            "trilinear": upsample(thick, 2, self.factor, order=1),
        }
        return {
            "case": str(batch["image"].meta.get("filename_or_obj", "")),
            **{name: scores(result, fine, WINDOW, volume_psnr=True) for name, result in results.items()},
        }

    def write(self) -> None:
        from monai_bundle.io import write_text_atomic

        mean = {
            name: {key: statistics.mean(case[name][key] for case in self.cases) for key in ("psnr_db", "ssim")}
            for name in METHODS
        }
        report = {"window": "[0, 1] x the thick input's 99.5th percentile", "cases": self.cases, "mean": mean}
        write_text_atomic(self.output_dir / "report.json", json.dumps(report, indent=2) + "\n")
        for case in [*self.cases, {"case": "mean", **mean}]:
            logger.info(
                "%s: %s",
                Path(case["case"]).name,
                "; ".join(f"{name} PSNR {case[name]['psnr_db']:.2f} SSIM {case[name]['ssim']:.4f}" for name in METHODS),
            )
