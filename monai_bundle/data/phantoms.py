"""Synthetic 3D CT and MRI phantoms with exact labels, for fast tests and learning checks.

Everything here is synthetic: ellipsoids painted in a fixed order, with intensities
loosely modelled on CT (HU) or T1-weighted MRI (arbitrary units). Labels are the
painted masks themselves, so they are exact. Arrays are indexed [i, j, k] as nibabel
stores them; the affine maps voxels to RAS millimetres (i -> patient right, j ->
anterior, k -> superior) with the volume centred on the origin.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.spatial.transform import Rotation

Phantom = tuple[np.ndarray, np.ndarray, np.ndarray]


CT_PHANTOM_LABELS = {0: "background", 1: "lungs", 2: "liver", 3: "spleen", 4: "kidneys", 5: "bone"}


CT_PHANTOM_HU = {1: -850.0, 2: 60.0, 3: 50.0, 4: 30.0, 5: 700.0}
"""Mean HU of each labelled synthetic organ (before per-seed offsets, bias and noise)."""


CT_AIR_HU, CT_FAT_HU, CT_SOFT_TISSUE_HU = -1000.0, -100.0, 40.0


MRI_PHANTOM_LABELS = {0: "background", 1: "grey_matter", 2: "white_matter", 3: "csf"}


MRI_PHANTOM_T1 = {1: 550.0, 2: 800.0, 3: 250.0}
"""Mean T1-weighted intensity (arbitrary units) of each labelled synthetic tissue."""


MRI_SCALP_T1, MRI_SKULL_T1 = 600.0, 150.0


@dataclass(frozen=True)
class _Blob:
    """An ellipsoid in normalised coordinates (units of the body or head semi-axes)."""

    label: int
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    shift: float = 0.10  # random shift of the centre, +- this much per axis
    tilt_deg: float = 20.0  # random rotation about each axis, +- degrees
    fat_margin: float = 0.0  # relative thickness of a fat shell painted first (label 0)


# Paint order: later blobs overwrite earlier ones (lungs press on liver and spleen,
# the vertebral column wins over everything). x > 0 is the patient's right.
# Thin fat shells around the abdominal organs (perirenal fat is the thickest)
# outline them, so they are told apart by shape and position more than by HU.
_CT_BLOBS = (
    _Blob(2, (0.30, 0.10, -0.20), (0.50, 0.55, 0.35), fat_margin=0.08),  # liver, right
    _Blob(3, (-0.55, -0.20, -0.10), (0.20, 0.30, 0.20), fat_margin=0.15),  # spleen, left
    _Blob(4, (0.38, -0.50, -0.60), (0.14, 0.20, 0.22), fat_margin=0.30),  # right kidney
    _Blob(4, (-0.38, -0.50, -0.55), (0.14, 0.20, 0.22), fat_margin=0.30),  # left kidney
    _Blob(1, (0.42, 0.00, 0.45), (0.30, 0.50, 0.50)),  # right lung
    _Blob(1, (-0.42, 0.00, 0.45), (0.30, 0.50, 0.50)),  # left lung
    _Blob(5, (0.00, -0.58, 0.00), (0.16, 0.20, 1e3), shift=0.03, tilt_deg=0.0),  # spine
)


_BODY_SEMI_AXES = (0.45, 0.32)  # fraction of the field of view, x and y


_FAT_RIM = 0.10  # subcutaneous fat: outer 10 % of the body radius


_VENTRICLES = (
    _Blob(3, (0.12, 0.05, 0.10), (0.07, 0.28, 0.12), tilt_deg=8.0),
    _Blob(3, (-0.12, 0.05, 0.10), (0.07, 0.28, 0.12), tilt_deg=8.0),
)


_HEAD_SEMI_AXES = (0.36, 0.44, 0.40)  # fraction of the field of view


# Radial layers of the head, in units of the head semi-axes (outer edges).
_SKULL_OUTER, _CSF_OUTER, _BRAIN_OUTER, _WM_OUTER = 0.93, 0.86, 0.82, 0.60


def phantom_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """4x4 RAS affine: diag(spacing), volume centred on the origin."""
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(shape, spacing)]
    return affine


def _world_grid(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """(3, *shape) RAS millimetre coordinates of the voxel centres."""
    axes = [((np.arange(n) - (n - 1) / 2) * s).astype(np.float32) for n, s in zip(shape, spacing)]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def _normalise(coords: np.ndarray, centre, radii, rotation: np.ndarray) -> np.ndarray:
    """Coordinates in the frame of an ellipsoid: inside where the squared sum is <= 1."""
    shifted = coords - np.asarray(centre, np.float32).reshape(3, 1, 1, 1)
    local = np.tensordot(rotation.T.astype(np.float32), shifted, axes=1)
    return local / np.asarray(radii, np.float32).reshape(3, 1, 1, 1)


def _radius(coords: np.ndarray) -> np.ndarray:
    """Euclidean norm over the first axis."""
    return np.sqrt((coords**2).sum(axis=0))


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    angles = rng.uniform(-max_deg, max_deg, 3) if max_deg else np.zeros(3)
    return Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


def _blob_radius(coords: np.ndarray, blob: _Blob, rng: np.random.Generator) -> np.ndarray:
    """Normalised radius of a randomly shifted (+-shift), scaled (+-15 %) and rotated blob."""
    centre = np.add(blob.centre, rng.uniform(-blob.shift, blob.shift, 3))
    radii = np.multiply(blob.radii, rng.uniform(0.85, 1.15, 3))
    return _radius(_normalise(coords, centre, radii, _rotation(rng, blob.tilt_deg)))


def smooth_field(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """A random quadratic field over the volume, scaled to a maximum magnitude of 1."""
    axes = np.meshgrid(*[np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape], indexing="ij")
    terms = [*axes, *(a * a for a in axes)]
    field = sum(rng.uniform(-1.0, 1.0) * t for t in terms)
    return field / max(float(np.abs(field).max()), 1e-6)


def _paint(image, labels, blobs, coords, allowed, values, rng, fat=CT_FAT_HU) -> None:
    """Paint blobs in order; each stays within ``allowed``, intensity +- 10 around its value."""
    offsets = {label: rng.uniform(-10.0, 10.0) for label in sorted(values)}
    for blob in blobs:
        radius = _blob_radius(coords, blob, rng)
        if blob.fat_margin:
            shell = (radius <= 1.0 + blob.fat_margin) & allowed
            labels[shell], image[shell] = 0, fat
        mask = (radius <= 1.0) & allowed
        labels[mask] = blob.label
        image[mask] = values[blob.label] + offsets[blob.label]


def make_ct_phantom(
    shape: Sequence[int] = (64, 64, 64),
    spacing: Sequence[float] = (2.0, 2.0, 2.0),
    seed: int = 0,
    noise_hu: float = 20.0,
) -> Phantom:
    """Synthetic trunk CT: (float32 HU image, uint8 labels, 4x4 affine); see CT_PHANTOM_LABELS.

    An elliptic body cylinder (soft tissue in a fat rim) in air holds lungs, liver,
    spleen, kidneys and a vertebral column, each jittered per seed in position,
    size, orientation and intensity, plus a +-10 HU smooth bias and Gaussian noise.
    """
    rng = np.random.default_rng(seed)
    world = _world_grid(shape, spacing)
    fov = np.multiply(shape, spacing)
    semi = [*(np.multiply(_BODY_SEMI_AXES, fov[:2]) * rng.uniform(0.95, 1.05, 2)), fov[2] / 2]
    body_coords = world / np.asarray(semi, np.float32).reshape(3, 1, 1, 1)
    body_radius = _radius(body_coords[:2])
    inner = body_radius <= 1.0 - _FAT_RIM

    image = np.full(shape, CT_AIR_HU, np.float32)
    image[body_radius <= 1.0] = CT_FAT_HU
    image[inner] = CT_SOFT_TISSUE_HU
    labels = np.zeros(shape, np.uint8)
    _paint(image, labels, _CT_BLOBS, body_coords, inner, CT_PHANTOM_HU, rng)

    image += 10.0 * smooth_field(shape, rng)
    image += rng.normal(0.0, noise_hu, shape).astype(np.float32)
    np.clip(image, -1024.0, 3071.0, out=image)
    return image, labels, phantom_affine(shape, spacing)


def _head_layers(radius: np.ndarray, wm_outer: np.ndarray) -> list[tuple[np.ndarray, float, int]]:
    """(mask, T1 value, label) of the head's shells from outside in."""
    return [
        (radius <= 1.0, MRI_SCALP_T1, 0),
        (radius <= _SKULL_OUTER, MRI_SKULL_T1, 0),
        (radius <= _CSF_OUTER, MRI_PHANTOM_T1[3], 3),
        (radius <= _BRAIN_OUTER, MRI_PHANTOM_T1[1], 1),
        (radius <= wm_outer, MRI_PHANTOM_T1[2], 2),
    ]


def make_mri_phantom(
    shape: Sequence[int] = (64, 64, 64),
    spacing: Sequence[float] = (3.0, 3.0, 3.0),
    seed: int = 0,
    noise: float = 20.0,
) -> Phantom:
    """Synthetic T1-weighted head MRI: (float32 image, uint8 labels, 4x4 affine).

    A rotated head ellipsoid with scalp, skull, CSF, a grey-matter shell, an
    irregular white-matter core and two ventricles (see MRI_PHANTOM_LABELS);
    +-10 % multiplicative bias and Rician noise of scale ``noise``.
    """
    rng = np.random.default_rng(seed)
    fov = np.multiply(shape, spacing)
    semi = np.multiply(_HEAD_SEMI_AXES, fov) * rng.uniform(0.95, 1.05, 3)
    centre = fov * rng.uniform(-0.03, 0.03, 3)
    head = _normalise(_world_grid(shape, spacing), centre, semi, _rotation(rng, 10.0))
    radius = _radius(head)
    wm_outer = _WM_OUTER * rng.uniform(0.95, 1.05) * (1.0 + 0.1 * smooth_field(shape, rng))

    image = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    for mask, value, label in _head_layers(radius, wm_outer):
        image[mask] = value * rng.uniform(0.95, 1.05)
        labels[mask] = label
    white = labels == 2
    values = {3: float(np.median(image[labels == 3]))}
    _paint(image, labels, _VENTRICLES, head, white, values, rng)

    image *= 1.0 + 0.1 * smooth_field(shape, rng)
    real = image + rng.normal(0.0, noise, shape).astype(np.float32)
    imaginary = rng.normal(0.0, noise, shape).astype(np.float32)
    return np.hypot(real, imaginary), labels, phantom_affine(shape, spacing)


@dataclass(frozen=True)
class _Modality:
    make: Callable[..., Phantom]
    labels: dict[int, str]
    msd_name: str
    dtype: type


_MODALITIES = {
    "ct": _Modality(make_ct_phantom, CT_PHANTOM_LABELS, "CT", np.int16),
    "mri": _Modality(make_mri_phantom, MRI_PHANTOM_LABELS, "MRI", np.float32),
}


def _case_seed(seed: int, index: int) -> int:
    """Independent, reproducible seed of case ``index`` in a dataset built from ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def _stored(image: np.ndarray, dtype: type) -> np.ndarray:
    """The image as written: rounded int16 HU for CT, float32 otherwise."""
    return np.rint(image).astype(dtype) if np.dtype(dtype).kind == "i" else image.astype(dtype)


def _dataset_json(spec: _Modality, cases: list[dict[str, str]]) -> dict:
    return {
        "name": f"MedImgSynthetic{spec.msd_name}",
        "description": f"synthetic {spec.msd_name} phantoms (ellipsoids with exact labels), "
        "generated by monai_bundle.data.phantoms; no patient data",
        "reference": "monai_bundle.data.phantoms",
        "licence": "synthetic, no restrictions",
        "tensorImageSize": "3D",
        "modality": {"0": spec.msd_name},
        "labels": {str(k): v for k, v in spec.labels.items()},
        "numTraining": len(cases),
        "numTest": 0,
        "training": cases,
        "test": [],
    }


def write_phantom_dataset(
    out_dir: str | Path,
    n: int = 8,
    modality: str = "ct",
    shape: Sequence[int] = (64, 64, 64),
    spacing: Sequence[float] | None = None,
    seed: int = 0,
    layout: str = "msd",
) -> Path:
    """Write ``n`` synthetic cases as NIfTI; return ``out_dir``.

    layout='msd': imagesTr/, labelsTr/ and an MSD-style dataset.json;
    layout='folders': images/ and labels/ only. ``spacing=None`` uses the
    generator's default. The same arguments always give the same files.
    """
    spec = _MODALITIES.get(modality.lower())
    if spec is None:
        raise ValueError(f"modality must be one of {sorted(_MODALITIES)}, not {modality!r}")
    if layout not in ("msd", "folders"):
        raise ValueError(f"layout must be 'msd' or 'folders', not {layout!r}")
    out = Path(out_dir)
    image_dir, label_dir = ("imagesTr", "labelsTr") if layout == "msd" else ("images", "labels")
    extra = {} if spacing is None else {"spacing": spacing}
    cases = []
    for index in range(n):
        image, labels, affine = spec.make(shape=shape, seed=_case_seed(seed, index), **extra)
        name = f"phantom_{index:03d}.nii.gz"
        _save_nifti(_stored(image, spec.dtype), affine, out / image_dir / name)
        _save_nifti(labels, affine, out / label_dir / name)
        cases.append({"image": f"./{image_dir}/{name}", "label": f"./{label_dir}/{name}"})
    if layout == "msd":
        text = json.dumps(_dataset_json(spec, cases), indent=2)
        (out / "dataset.json").write_text(text + "\n", encoding="utf-8")
    return out
