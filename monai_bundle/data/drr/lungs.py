"""Body and lungs of a CT from its HU alone, and lung region codes from a label map.

Painted opacities must stay inside the lungs, and labels.csv names the lobe (or the third of a
lung) each one lies in: these masks and codes say where that is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from monai_bundle.data.drr.grid import VOXEL_MM

AIR_HU, BODY_HU, LUNG_HU = -1000.0, -500.0, -400.0
"""Air; the body threshold; voxels darker than LUNG_HU inside the body are lung candidates."""


LUNG_REGIONS = {
    1: "right_upper_lobe",
    2: "right_middle_lobe",
    3: "right_lower_lobe",
    4: "left_upper_lobe",
    5: "left_lower_lobe",
    6: "right_lung",
    7: "left_lung",
}
"""Codes of the lung region maps: lobes where a label map names them, else one code per side."""


_SIDES = {"right": (1, 2, 3, 6), "left": (4, 5, 7)}


_LOBE_PATTERN = re.compile(r"lung_(upper|middle|lower)_lobe_(left|right)")


def body_mask_from_hu(hu: np.ndarray) -> np.ndarray:
    """The patient's body: the largest connected region above -500 HU, holes filled per axial slice.

    Axis 2 must be the superior-inferior axis (as on `prepare_source`'s grid). Tables, cables and
    clothing that touch the body only through thin bridges are cut off by a one-voxel opening.
    """
    labels, keep = _largest_parts(ndimage.binary_opening(hu > BODY_HU), 1)
    return _fill_axial_holes(np.isin(labels, keep))


def _fill_axial_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with the holes of each axial slice (axis 2) filled."""
    filled = np.empty_like(mask)
    for k in range(mask.shape[2]):
        filled[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return filled


def lung_mask_from_hu(
    hu: np.ndarray,
    body: np.ndarray | None = None,
    voxel_mm: float = VOXEL_MM,
    airway_mm: float = 10.0,
    max_erosion_mm: float = 24.0,
) -> np.ndarray:
    """Lungs from HU alone on an isotropic grid: air below -400 HU inside the body, airways and bowel gas dropped.

    Air outside the body (and so any air reaching the image border around it) is excluded by the
    body mask. The candidate air is eroded by `airway_mm` (which removes the trachea and main
    bronchi), more if needed until it falls apart into two comparable parts. Those two parts
    (else the largest part after the first erosion) are grown back inside the candidate air by
    a little more than was eroded. Vessels stay outside the mask (painting never lowers them).
    """
    body = body_mask_from_hu(hu) if body is None else body
    candidate = (hu < LUNG_HU) & body
    first = max(math.ceil(airway_mm / voxel_mm), 1)
    found = None  # (erosion steps, labels, parts kept)
    for steps in range(first, max(first, math.ceil(max_erosion_mm / voxel_mm)) + 1):
        labels, keep = _largest_parts(ndimage.binary_erosion(candidate, iterations=steps), 2)
        if len(keep) and (found is None or len(keep) == 2):
            found = (steps, labels, keep)
        if len(keep) != 1:
            break
    if found is None:
        return np.zeros(hu.shape, bool)
    steps, labels, keep = found
    return ndimage.binary_dilation(np.isin(labels, keep), iterations=steps + 2, mask=candidate)


def _largest_parts(mask: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """(ndimage.label(mask) labels, the labels of its `most` largest parts, dropping any part under
    a fifth of the largest's size; none for an empty mask)."""
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1][:most]
    return labels, order[sizes[order] >= 0.2 * sizes[order[0]]] + 1 if count else order


def sided_lung_regions(lungs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Region codes 6 (right lung) / 7 (left lung) for a lung mask without lobes.

    The two sides are split by the sagittal plane (RAS x = const; +x is the patient's right)
    with the fewest lung voxels in the middle half of the lungs' width: the mediastinum.
    """
    regions = np.zeros(lungs.shape, np.uint8)
    index = np.argwhere(lungs)
    if not len(index):
        return regions
    x = index @ affine[0, :3] + affine[0, 3]
    low, high = x.min(), x.max()
    counts, edges = np.histogram(x, np.arange(low, high + 2.0, 2.0))  # 2 mm bins
    centres = edges[:-1] + 1.0
    middle = np.abs(centres - (low + high) / 2) <= (high - low) / 4
    split = centres[middle][np.argmin(counts[middle])] if middle.any() else (low + high) / 2
    regions[tuple(index.T)] = np.where(x > split, 6, 7)
    return regions


def lung_regions_from_labels(labels: np.ndarray, names: Mapping[int, str]) -> np.ndarray:
    """Region codes (LUNG_REGIONS) from a TotalSegmentator-style label map and its value -> name table."""
    lookup = np.zeros(max(max(names), int(labels.max())) + 1, np.uint8)
    for value, name in names.items():
        match = _LOBE_PATTERN.fullmatch(name)
        if match:
            lobe, side = match.groups()
            lookup[value] = next(c for c, n in LUNG_REGIONS.items() if n == f"{side}_{lobe}_lobe")
    return lookup[labels.astype(np.int64)]
