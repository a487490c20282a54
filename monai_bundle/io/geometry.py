"""Grids: what a reader returns, LPS/RAS conversion, affine checks and the one grid tolerance.

Every reader gives voxel data indexed [i, j(, k)] in file order and a 4x4 affine from voxel indices
to RAS millimetres; every writer puts that grid back unchanged. ITK and DICOM work in LPS:
`lps_to_ras` / `ras_to_lps` (and `ras_to_lps_vectors` for displacements) are the only conversions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

GRID_TOLERANCE_MM = 1e-3
"""How far (mm, largest affine entry difference) two grids may differ and still be one: a result and its input's,
an array and its `write_image(reference=...)`, channels stacked by the MONAI readers."""


_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """Voxel data indexed [i, j(, k)] in file order and its 4x4 voxel-to-RAS affine."""

    array: np.ndarray
    affine: np.ndarray
    path: str
    format: str

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, : self.array.ndim], axis=0))


@dataclass
class Header:
    """What a format's header says: stored shape, RAS affine, in-memory dtype, and what its data reader needs."""

    shape: tuple[int, ...]
    affine: np.ndarray
    dtype: np.dtype
    state: Any = None


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """An LPS affine as RAS (or back: the conversion is its own inverse)."""
    return _LPS_RAS @ np.asarray(affine, dtype=np.float64)


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """A RAS affine as LPS."""
    return lps_to_ras(affine)


def ras_to_lps_vectors(vectors: np.ndarray) -> np.ndarray:
    """Vectors [..., 3] in RAS mm as LPS (x and y negated), keeping their dtype."""
    return vectors * np.diag(_LPS_RAS)[:3].astype(vectors.dtype)


def affine_problem(affine: np.ndarray, ndim: int) -> str | None:
    """Why `affine` is not a usable grid for `ndim` axes, or None."""
    if affine.shape != (4, 4):
        return f"affine must be 4x4, not {'x'.join(map(str, affine.shape))}"
    if not np.all(np.isfinite(affine)):
        return "affine contains NaN/Inf"
    if not np.array_equal(affine[3], [0, 0, 0, 1]):
        return "affine's last row is not 0 0 0 1"
    columns = affine[:3, :ndim]
    norms = np.linalg.norm(columns, axis=0)
    if np.any(norms <= 0):
        return f"zero voxel spacing along axis {int(np.argmin(norms))}"
    if np.linalg.svd(columns / norms, compute_uv=False).min() < 1e-6:
        return "singular affine/direction (voxel axes are parallel)"
    return None


def with_plane_normal(affine: np.ndarray) -> np.ndarray:
    """A 2D grid's affine, with the unit normal of its plane as third column if that one is degenerate."""
    if affine_problem(affine, 3) is None:
        return affine
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    completed = affine.copy()
    completed[:3, 2] = normal / np.linalg.norm(normal)
    return completed


def c_ordered(array: np.ndarray, dtype=None) -> np.ndarray:
    """`array` in C order (and `dtype`), transposed and cast by torch on all cores, slab by slab.

    NIfTI data is stored x-fastest (Fortran order); MONAI would make this copy with numpy on one
    core, and for a large CT that copy is most of the load time.
    """
    dtype = np.dtype(dtype or array.dtype)
    if array.flags.c_contiguous:
        return array.astype(dtype, copy=False)
    try:
        source = torch.from_numpy(array)
        out = torch.empty(array.shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype)
    except (TypeError, ValueError):  # a dtype or byte order torch does not take
        return np.ascontiguousarray(array, dtype=dtype)
    if array.ndim < 3:
        return out.copy_(source).numpy()
    for start in range(0, array.shape[1], _TRANSPOSE_ROWS):  # slabs that stay in cache: ~2.5x faster
        out[:, start : start + _TRANSPOSE_ROWS] = source[:, start : start + _TRANSPOSE_ROWS]
    return out.numpy()


_TRANSPOSE_ROWS = 32
