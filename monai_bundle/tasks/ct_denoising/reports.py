"""The denoiser's evaluation report: it against the low-dose input and every classical baseline."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monai_bundle.engines.handlers import CaseReport
from monai_bundle.tasks.ct_denoising.baselines import (
    best_baselines,
    classical_denoisers,
    denoise_slices,
)
from monai_bundle.tasks.ct_denoising.metrics import DEFAULT_WINDOW, band_rms_hu, scores

logger = logging.getLogger(__name__)


class DenoiseReport(CaseReport):
    """Evaluation handler: PSNR/SSIM and RMS error per HU band (`band_rms_hu`) of the denoised volumes, of the
    low-dose inputs and of the classical denoisers (every setting of `classical_denoisers`) against the
    normal-dose volumes, in `report.json`; the log shows each classical method at its best setting.

    A learned denoiser is only worth its cost if it beats the classical ones on the same volumes, so
    the report scores them side by side, on the same slices.

    Args:
        output_dir: folder of `report.json`.
        hu_window: (low, high) HU window both images are clipped to before scoring.
        slice_step: score every n-th axial slice only (from the first), the same slices for every method:
            BM3D takes seconds per slice.
        baselines: score the classical denoisers too; False scores the network and the input alone (e.g. a
            leave-one-out fold, whose baselines are those of the same pairs scored once).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        hu_window: Sequence[float] = DEFAULT_WINDOW,
        slice_step: int = 1,
        baselines: bool = True,
    ) -> None:
        super().__init__(output_dir)
        self.baselines = bool(baselines)
        self.hu_window = tuple(float(v) for v in hu_window)
        if int(slice_step) < 1:
            raise ValueError(f"slice_step must be 1 or more, got {slice_step}")
        self.slice_step = int(slice_step)

    def score(self, batch: dict, output: dict) -> dict:
        step = self.slice_step
        denoised = np.asarray(output["pred"].detach().cpu())[0][:, :, ::step]
        low = np.asarray(batch["original"].detach().cpu())[0][:, :, ::step]  # the input in HU, before windowing
        normal = np.asarray(output["label"].detach().cpu())[0][:, :, ::step]
        scored = lambda image: {  # noqa: E731
            **scores(image, normal, self.hu_window),
            "rms_hu": band_rms_hu(image, normal, self.hu_window),
        }
        case = {
            "case": str(batch["original"].meta.get("filename_or_obj", "")),
            "slices_scored": int(normal.shape[2]),
            "denoiser": scored(denoised),
            "low_dose_input": scored(low),
        }
        for name, denoise in (classical_denoisers(hu_window=self.hu_window) if self.baselines else {}).items():
            case[name] = scored(denoise_slices(denoise, low))
        return case

    def write(self) -> None:
        from monai_bundle.io import write_text_atomic

        report = {"hu_window": list(self.hu_window), "slice_step": self.slice_step, "cases": self.cases}
        write_text_atomic(self.output_dir / "report.json", json.dumps(report, indent=2) + "\n")
        for case in self.cases:
            shown = ["denoiser", "low_dose_input", *best_baselines(case).values()]  # each method at its best setting
            logger.info(
                "%s: %s",
                Path(case["case"]).name,
                "; ".join(f"{name} PSNR {case[name]['psnr_db']:.2f} SSIM {case[name]['ssim']:.3f}" for name in shown),
            )
