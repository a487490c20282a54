"""Pneumonia-like opacities: drawn at random inside the lungs, painted into the CT before projection."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from monai_bundle.data.drr.grid import _to_world
from monai_bundle.data.drr.lungs import _SIDES, LUNG_REGIONS
from monai_bundle.data.drr.projection import View
from monai_bundle.data.drr.sources import MU_WATER_PER_MM, DrrError, SourceCT


@dataclass(frozen=True)
class OpacityRange:
    """How large and dense painted opacities are: diameters uniform in `diameter_mm`, density (HU the
    lung is raised toward) in `density_hu`, denser ones likelier (high - (high - low) u**2)."""

    diameter_mm: tuple[float, float]
    density_hu: tuple[float, float]

    def describe(self) -> str:
        return (
            f"diameters {self.diameter_mm[0]:g}-{self.diameter_mm[1]:g} mm, lung HU raised toward "
            f"{self.density_hu[0]:+g}..{self.density_hu[1]:+g} HU"
        )


OPACITY_RANGES = {
    "conspicuous": OpacityRange((35.0, 90.0), (-250.0, 40.0)),  # lobar/segmental consolidation
    "subtle": OpacityRange((15.0, 80.0), (-500.0, 40.0)),  # includes small, faint ground-glass patches
    "pronounced": OpacityRange((60.0, 110.0), (-60.0, 40.0)),  # large dense consolidations: easy to learn (tests)
}


DEFAULT_OPACITY = "conspicuous"


_OPACITY_EDGE = 0.25  # soft edge, as a fraction of the ellipsoid's radius


_MIN_INSIDE_LUNG = 0.4  # an opacity keeps at least this fraction of its envelope in the lung


_OPACITY_TRIES = 30


@dataclass(frozen=True)
class Opacity:
    """A pneumonia-like opacity: a soft ellipsoid (optionally patchy) that raises lung HU to `density_hu`."""

    centre_mm: tuple[float, float, float]  # RAS, in the source CT's world coordinates
    diameters_mm: tuple[float, float, float]
    angles_deg: tuple[float, float, float]  # orientation of the ellipsoid's axes
    density_hu: float
    kind: str = "ellipsoid"  # or "patchy": thresholded smooth noise inside the ellipsoid
    seed: int = 0  # of the patchy noise


def _opacity_weight(opacity: Opacity, shape: Sequence[int], affine: np.ndarray):
    """(box slices, soft weight in the box before clipping to the lungs) on a grid of `shape`,
    or (None, None) if the opacity lies outside it."""
    radii = np.asarray(opacity.diameters_mm) / 2
    to_index = np.linalg.inv(affine)
    centre = to_index[:3, :3] @ opacity.centre_mm + to_index[:3, 3]
    reach = np.abs(to_index[:3, :3]) @ np.full(3, radii.max())
    low = np.maximum(np.floor(centre - reach).astype(int), 0)
    high = np.minimum(np.ceil(centre + reach).astype(int) + 1, shape)
    if np.any(high <= low):
        return None, None
    box = tuple(slice(a, b) for a, b in zip(low, high))
    index = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(low, high)], indexing="ij"), -1)
    rotation = Rotation.from_euler("xyz", opacity.angles_deg, degrees=True).as_matrix()
    local = (index @ affine[:3, :3].T + affine[:3, 3] - opacity.centre_mm) @ rotation / radii
    weight = np.clip((1.0 - np.linalg.norm(local, axis=-1)) / _OPACITY_EDGE, 0.0, 1.0)
    weight = weight * weight * (3.0 - 2.0 * weight)  # smoothstep
    if opacity.kind == "patchy":
        weight *= _patchy(weight.shape, float(radii.mean()) / 3.0 / float(affine[0, 0]), opacity.seed)
    return box, weight.astype(np.float32)


def _patchy(shape, sigma_voxels: float, seed: int) -> np.ndarray:
    """A smooth random field in [0, 1] that is 0 on about a third of the box: irregular consolidation."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), max(sigma_voxels, 0.5))
    noise /= max(float(noise.std()), 1e-6)
    return np.clip((noise + 0.45) / 0.9, 0.0, 1.0)


def _painted(mu_box: np.ndarray, lungs_box: np.ndarray, weight: np.ndarray, density_hu: float) -> np.ndarray:
    """How much each voxel's mu rises: toward the opacity's density, only in lung, never lowering it."""
    target = MU_WATER_PER_MM * (1.0 + density_hu / 1000.0)
    return weight * (lungs_box > 0) * np.maximum(target - mu_box, 0.0)


def paint_opacities(mu: np.ndarray, lungs: np.ndarray, affine: np.ndarray, opacities: Iterable[Opacity]) -> np.ndarray:
    """A copy of `mu` with each opacity painted in, clipped to the lungs (lungs > 0)."""
    out = np.array(mu, dtype=np.float32, copy=True)
    for opacity in opacities:
        box, weight = _opacity_weight(opacity, lungs.shape, affine)
        if box is not None:
            out[box] += _painted(out[box], lungs[box], weight, opacity.density_hu)
    return out


def opacity_volume_ml(source: SourceCT, opacity: Opacity) -> tuple[float, float]:
    """(painted volume in ml, fraction of the opacity's envelope that lies in the lungs)."""
    box, weight = _opacity_weight(opacity, source.lungs.shape, source.affine)
    if box is None or not weight.any():
        return 0.0, 0.0
    raised = _painted(source.mu[box], source.lungs[box], weight, opacity.density_hu) > 0
    inside = float((weight * raised).sum())
    return inside * source.voxel_mm**3 / 1000.0, inside / float(weight.sum())


def opacity_region(source: SourceCT, opacity: Opacity) -> tuple[str, str]:
    """(side, region) of an opacity's centre: the lobe where labels name it, else the third of the lung."""
    to_index = np.linalg.inv(source.affine)
    index = np.rint(to_index[:3, :3] @ opacity.centre_mm + to_index[:3, 3]).astype(int)
    index = np.clip(index, 0, np.array(source.lungs.shape) - 1)
    code = int(source.lungs[tuple(index)])
    side = "right" if code in _SIDES["right"] else "left"
    if code in (6, 7):
        z = np.flatnonzero(np.any(source.lungs == code, axis=(0, 1)))
        third = (index[2] - z.min()) / max(z.max() - z.min(), 1)
        zone = "lower" if third < 1 / 3 else "middle" if third < 2 / 3 else "upper"
        return side, f"{side}_{zone}_zone"
    return side, LUNG_REGIONS.get(code, f"{side}_lung")


def random_opacities(
    rng: np.random.Generator,
    source: SourceCT,
    view: View,
    count: int,
    ranges: OpacityRange = OPACITY_RANGES[DEFAULT_OPACITY],
) -> list[Opacity]:
    """`count` random opacities with centres in the lungs and inside the view (central 96 %).

    Either side; centres likelier where the ray through them crosses mostly lung (weight: the
    lung share of that ray squared, + 0.01), so most overlie the lung fields and some hide behind
    the heart or diaphragm. Sizes and densities from `ranges` (axes +-30 % around the diameter); a
    draw that keeps under 40 % of its envelope in the lungs is drawn again (the best of 30 kept).
    """
    in_view = {side: _in_view(source, voxels, view) for side, voxels in source.side_voxels.items()}
    sides = sorted(side for side, voxels in in_view.items() if len(voxels))
    if not sides:
        raise DrrError(f"{source.name}: no lung inside this field of view to place an opacity")
    opacities = []
    for _ in range(count):
        candidates = in_view[sides[rng.integers(len(sides))]]
        weights = source.lung_share[candidates[:, 0], candidates[:, 2]] ** 2 + 0.01
        best, best_fraction = None, -1.0
        for _ in range(_OPACITY_TRIES):
            opacity = _random_opacity(rng, source, candidates, weights / weights.sum(), ranges)
            fraction = opacity_volume_ml(source, opacity)[1]
            if fraction > best_fraction:
                best, best_fraction = opacity, fraction
            if fraction >= _MIN_INSIDE_LUNG:
                break
        if best_fraction <= 0:
            raise DrrError(f"{source.name}: could not paint an opacity into the lungs in this view")
        opacities.append(best)
    return opacities


def _in_view(source: SourceCT, voxels: np.ndarray, view: View) -> np.ndarray:
    """The voxels (indices) whose centres project inside the central 96 % of the view."""
    rc = view.pixel_of(voxels @ source.affine[:3, :3].T + source.affine[:3, 3], 100)
    return voxels[np.all((rc >= 1.5) & (rc <= 97.5), axis=1)]


def _random_opacity(
    rng: np.random.Generator, source: SourceCT, candidates: np.ndarray, p: np.ndarray, ranges: OpacityRange
) -> Opacity:
    voxel = candidates[rng.choice(len(candidates), p=p)] + rng.uniform(-0.49, 0.49, 3)
    diameter = rng.uniform(*ranges.diameter_mm)
    low, high = ranges.density_hu
    return Opacity(
        centre_mm=tuple(np.round(_to_world(source.affine, voxel), 1).tolist()),
        diameters_mm=tuple(np.round(diameter * rng.uniform(0.7, 1.3, 3), 1).tolist()),
        angles_deg=tuple(np.round(rng.uniform(-90.0, 90.0, 3), 1).tolist()),
        density_hu=round(float(high - (high - low) * rng.random() ** 2), 1),
        kind="patchy" if rng.random() < 0.5 else "ellipsoid",
        seed=int(rng.integers(2**31)),
    )
