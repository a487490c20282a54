"""Projection geometry: where the radiograph looks from (`View`) and the line integrals along its rays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from monai_bundle.data.drr.grid import _corners_mm

if TYPE_CHECKING:
    from monai_bundle.data.drr.sources import SourceCT


DEPTH_STEP_VOXELS = 1.5
"""Sample spacing along the rays, in voxels: 1.5 is a third faster than 1 and differs from it by
about 0.2 % RMS (1 % at most) in the line integrals of the chest CT."""


@dataclass(frozen=True)
class View:
    """Where the radiograph looks: the field of view at the isocentre plane and the beam.

    angles_deg = (roll about the beam axis, tilt about the left-right axis, turn about the
    head-feet axis). source_distance_mm is from the point source to the isocentre plane; None
    means parallel rays. PA: the source is behind the patient; AP: in front.
    """

    centre_mm: tuple[float, float, float]
    field_mm: float
    angles_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    projection: str = "PA"
    source_distance_mm: float | None = None

    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RAS unit vectors (image column direction, image row direction, beam direction).

        Unrotated: columns run to the patient's left (-x), rows to the feet (-z), so the patient's
        right is on the image's left and the head at the top, for PA and AP alike.
        """
        beam = np.array([0.0, 1.0, 0.0]) if self.projection == "PA" else np.array([0.0, -1.0, 0.0])
        roll, tilt, turn = self.angles_deg
        rotation = Rotation.from_euler("yxz", [roll, tilt, turn], degrees=True).as_matrix()
        return rotation @ [-1.0, 0.0, 0.0], rotation @ [0.0, 0.0, -1.0], rotation @ beam

    def magnification(self, depth: np.ndarray) -> np.ndarray:
        """How much wider the ray bundle is at `depth` mm along the beam past the isocentre plane."""
        if self.source_distance_mm is None:
            return np.ones_like(depth)
        return (self.source_distance_mm + depth) / self.source_distance_mm

    def pixel_of(self, points_mm, pixels: int) -> np.ndarray:
        """(row, column) in pixels of a `pixels`-wide image where RAS points (..., 3) are projected."""
        col, row, beam = self.frame()
        offset = np.asarray(points_mm, float) - self.centre_mm
        scale = self.magnification(offset @ beam) * self.field_mm / pixels
        return np.stack([offset @ row / scale, offset @ col / scale], -1) + pixels / 2 - 0.5


def _depths(shape: Sequence[int], affine: np.ndarray, view: View, step: float) -> np.ndarray:
    """Sample depths along the beam (mm from the isocentre plane) that cover the volume."""
    _, _, beam = view.frame()
    along = (_corners_mm(affine, shape) - view.centre_mm) @ beam
    low, high = along.min() - step, along.max() + step
    return (low + step * (np.arange(math.ceil((high - low) / step)) + 0.5)).astype(np.float32)


def project(volume: np.ndarray, affine: np.ndarray, view: View, pixels: int, extend: bool = False) -> np.ndarray:
    """Line integrals of `volume` (per mm) through a `pixels` x `pixels` detector; float32.

    Row 0 is the top of the image (superior), column 0 its left (the patient's right). Rays
    run from the point source through each pixel of the isocentre plane; trilinear samples are
    taken every DEPTH_STEP_VOXELS voxels along the beam. Outside the volume counts as 0,
    except with `extend`: across the beam, the edge slices continue beyond the volume's ends
    (a body cut off by the scan range goes on rather than ending in a black band).
    """
    col, row, beam = view.frame()
    step = DEPTH_STEP_VOXELS * float(np.abs(affine[:3, :3]).sum(0).min())
    depth = _depths(volume.shape, affine, view, step)
    size = view.field_mm / pixels
    offsets = ((np.arange(pixels) + 0.5 - pixels / 2) * size).astype(np.float32)
    to_index = np.linalg.inv(affine)
    base = to_index[:3, :3] @ view.centre_mm + to_index[:3, 3]
    scale = view.magnification(depth)[:, None, None]
    beam_axis = int(np.argmax(np.abs(to_index[:3, :3] @ beam)))
    coords = np.empty((3, len(depth), pixels, pixels), np.float32)
    for axis in range(3):
        along_col, along_row, along_beam = (to_index[axis, :3] @ v for v in (col, row, beam))
        lateral = offsets[:, None] * np.float32(along_row) + offsets[None, :] * np.float32(along_col)
        coords[axis] = np.float32(base[axis]) + depth[:, None, None] * np.float32(along_beam) + scale * lateral
        if extend and axis != beam_axis:
            np.clip(coords[axis], 0, volume.shape[axis] - 1, out=coords[axis])
    samples = ndimage.map_coordinates(volume, coords, order=1, mode="constant", cval=0.0, prefilter=False)
    integral = samples.sum(axis=0) * step
    if view.source_distance_mm is not None:  # oblique rays are longer per unit of depth
        distance = view.source_distance_mm
        integral *= np.sqrt(1.0 + (offsets[:, None] ** 2 + offsets[None, :] ** 2) / distance**2)
    return integral.astype(np.float32)


def _clamped_view(source: SourceCT, centre, field_mm: float, angles, projection: str, distance) -> View:
    """A view whose field stays inside the CT's coverage left-right and head-feet (where it fits)."""
    low, high = (np.asarray(c) for c in source.coverage_mm)
    field_mm = min(field_mm, float(min(high[0] - low[0], high[2] - low[2])))
    centre = np.array(centre, float)
    for axis in (0, 2):
        centre[axis] = np.clip(centre[axis], low[axis] + field_mm / 2, high[axis] - field_mm / 2)
    return View(tuple(np.round(centre, 1).tolist()), round(field_mm, 1), tuple(angles), projection, distance)


def random_view(rng: np.random.Generator, source: SourceCT) -> View:
    """A chest-film view: field 1.05-1.45 x the lungs' extent, shifted +-6 %, rotated a few degrees, PA or AP."""
    low, high = source.lung_box_mm()
    extent = float(max(high[0] - low[0], high[2] - low[2]))
    field_mm = extent * rng.uniform(1.05, 1.45)
    centre = (low + high) / 2 + np.array([1.0, 0.0, 1.0]) * rng.uniform(-0.06, 0.06, 3) * field_mm
    angles = tuple(np.round(rng.uniform(-1.0, 1.0, 3) * [5.0, 4.0, 4.0], 2).tolist())
    if rng.random() < 0.6:
        projection, distance = "PA", float(rng.uniform(1500.0, 1800.0))
    else:
        projection, distance = "AP", float(rng.uniform(850.0, 1100.0))
    return _clamped_view(source, centre, field_mm, angles, projection, round(distance, 1))
