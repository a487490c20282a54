"""Synthetic CTs in HU on a 3 mm RAS grid (axis 2 to the head) whose anatomy is known by construction."""

from __future__ import annotations

import numpy as np

SPACING_MM = 3.0
AFFINE = np.diag([SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
VOXEL_ML = SPACING_MM**3 / 1000.0


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], radii_mm: tuple[float, float]) -> np.ndarray:
    x, y = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return ((x - centre[0]) * SPACING_MM / radii_mm[0]) ** 2 + ((y - centre[1]) * SPACING_MM / radii_mm[1]) ** 2 <= 1


def trunk(shape: tuple[int, int, int] = (140, 110, 40), seed: int = 0, noise_hu: float = 10.0) -> dict[str, np.ndarray]:
    """A chest over an abdomen: a 30 x 22 cm body (518 cm²) of soft tissue in air, a table below it, two aerated
    lungs in the upper half, a bowel-gas pocket in the lower half, a spine. Returns the HU image and the masks."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    centre = (nx / 2, ny / 2)
    body2d = _ellipse((nx, ny), centre, (150, 110))
    body = np.repeat(body2d[:, :, None], nz, axis=2)
    hu = np.full(shape, -1000.0)
    hu[body] = 40.0
    lungs = np.zeros(shape, bool)
    for side in (-1, 1):
        lung2d = _ellipse((nx, ny), (centre[0] + side * 20, centre[1]), (45, 60))
        lungs[:, :, nz // 2 :] |= lung2d[:, :, None]
    hu[lungs] = -850.0 + rng.normal(0, 40, lungs.sum())  # aerated lung: parenchyma and small vessels
    gas = np.zeros(shape, bool)
    gas[_ellipse((nx, ny), (centre[0] + 10, centre[1] - 10), (30, 25)), 4 : nz // 2 - 4] = True
    hu[gas] = -1000.0
    spine = np.repeat(_ellipse((nx, ny), (centre[0], centre[1] + 26), (15, 15))[:, :, None], nz, axis=2)
    hu[spine] = 600.0
    table = np.zeros(shape, bool)
    table[10:-10, int(centre[1] + 110 / SPACING_MM) + 3 : int(centre[1] + 110 / SPACING_MM) + 5] = True
    hu[table] = 300.0
    hu += rng.normal(0, noise_hu, shape)
    return {"hu": hu, "body": body, "lungs": lungs, "gas": gas, "table": table}


def head(shape: tuple[int, int, int] = (90, 90, 30), seed: int = 0) -> dict[str, np.ndarray]:
    """A head: a 16 x 19 cm ellipse (239 cm²) of brain in a 6 mm skull, in air."""
    rng = np.random.default_rng(seed)
    outer = _ellipse(shape[:2], (shape[0] / 2, shape[1] / 2), (80, 95))
    inner = _ellipse(shape[:2], (shape[0] / 2, shape[1] / 2), (74, 89))
    hu = np.full(shape, -1000.0)
    hu[outer] = 1000.0
    hu[inner] = 35.0
    return {"hu": hu + rng.normal(0, 10.0, shape), "body": np.repeat(outer[:, :, None], shape[2], axis=2)}
