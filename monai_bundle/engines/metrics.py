"""Metric handlers in physical units."""

from __future__ import annotations

import logging

import torch
from monai.handlers import HausdorffDistance

logger = logging.getLogger(__name__)


class HausdorffDistanceMM(HausdorffDistance):
    """MONAI's HausdorffDistance handler, in millimetres: passes each label's voxel spacing to the metric.

    Voxel distances mean little when cases differ in spacing; the arguments are MONAI's
    `HausdorffDistance` handler's (e.g. `include_background`, `percentile`, `output_transform`).
    """

    def update(self, output) -> None:
        y_pred, y = output
        spacing = [_voxel_spacing(label) for label in y]
        self.metric_fn(y_pred, y, spacing=spacing)


def _voxel_spacing(image: torch.Tensor) -> list[float]:
    """Voxel size of a channel-first MetaTensor (1.0 per axis without metadata)."""
    pixdim = getattr(image, "pixdim", None)
    if pixdim is None:
        return [1.0] * (image.ndim - 1)
    return [float(value) for value in pixdim]
