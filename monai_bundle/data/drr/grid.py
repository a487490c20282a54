"""The isotropic RAS-aligned grid every source CT is resampled to once, and moving between voxels and mm."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

VOXEL_MM = 2.0
"""Isotropic voxel size (mm) every source CT is resampled to once; also the rendered pixel size."""


def _to_world(affine: np.ndarray, index) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(index, float) + affine[:3, 3]


def _corners_mm(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """(8, 3) RAS positions of the corner voxels' centres of a grid."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1).T
    return corners @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def _ras_grid(affine: np.ndarray, shape: Sequence[int], voxel_mm: float):
    """Affine and shape of an isotropic RAS-aligned grid covering the volume; and its RAS box."""
    world = _corners_mm(affine, shape)
    low, high = world.min(0), world.max(0)
    new_shape = tuple(math.floor((h - lo) / voxel_mm) + 1 for lo, h in zip(low, high))
    new_affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    new_affine[:3, 3] = low
    return new_affine, new_shape, (tuple(low), tuple(high))


def _resample(array: np.ndarray, affine: np.ndarray, new_affine: np.ndarray, shape, order: int, cval: float):
    """`array` (grid `affine`) on the grid `new_affine`/`shape`; linear with anti-aliasing, or nearest."""
    matrix = np.linalg.inv(affine) @ new_affine
    if order:
        step = np.abs(matrix[:3, :3]).max(axis=1)  # old voxels per new voxel, per old axis
        sigma = np.where(step > 1.0, 0.4 * step, 0.0)
        array = ndimage.gaussian_filter(array.astype(np.float32), sigma) if sigma.any() else array
    return ndimage.affine_transform(
        array,
        matrix[:3, :3],
        matrix[:3, 3],
        output_shape=shape,
        order=order,
        cval=cval,
        prefilter=False,
        mode="constant",
    )


def _crop_to(box_mask: np.ndarray, affine: np.ndarray, margin: int = 2):
    """Slices of the bounding box of `box_mask` (+margin) and the cropped grid's affine."""
    index = np.argwhere(box_mask)
    low = np.maximum(index.min(0) - margin, 0)
    high = np.minimum(index.max(0) + margin + 1, box_mask.shape)
    cropped = affine.copy()
    cropped[:3, 3] = _to_world(affine, low)
    return tuple(slice(a, b) for a, b in zip(low, high)), cropped
