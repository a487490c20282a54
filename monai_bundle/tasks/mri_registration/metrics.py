"""How a registration is scored against the known warp: displacement error in mm, Dice of warped tissue, folding."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.blocks import Warp
from monai.networks.utils import one_hot

from monai_bundle.tasks.mri_registration.data import SPACING_MM


def folding_fraction(ddf: np.ndarray) -> float:
    """Fraction of pixels where the Jacobian determinant of x -> x + ddf(x) is <= 0 (ddf (2, H, W), voxels)."""
    (d00, d01), (d10, d11) = (np.gradient(component) for component in ddf)
    return float(np.mean((1 + d00) * (1 + d11) - d01 * d10 <= 0))


def score(predicted: np.ndarray, item: dict[str, torch.Tensor], spacing: float = SPACING_MM) -> dict[str, float]:
    """Dense displacement error (mm, inside the fixed brain), Dice of warped GM/WM labels, folding fraction."""
    truth = item["ddf"].numpy()
    brain = item["fixed_label"][0].numpy() > 0
    error = np.linalg.norm(predicted - truth, axis=0)[brain] * spacing
    warped = Warp(mode="nearest", padding_mode="zeros")(
        item["moving_label"][None].float(), torch.from_numpy(predicted)[None].float()
    )
    dice = compute_dice(
        one_hot(warped.long(), 4), one_hot(item["fixed_label"][None].long(), 4), include_background=False
    )[0]
    return {
        "error_mm": float(error.mean()),
        "error_p95_mm": float(np.percentile(error, 95)),
        "dice_grey_matter": float(dice[0]),
        "dice_white_matter": float(dice[1]),
        "folding_fraction": folding_fraction(predicted),
    }
