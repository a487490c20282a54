"""Thick-slice / fine pairs from the real 1 mm MRI templates of the sample data, and their dataset.json.

The `prepare` workflow (`mri_super_resolution_prepare.json`) runs `write_sr_dataset`; training and
evaluation read the pairs through `prepared_pairs`, which ends the run with one line if there are none.

Training: the ICBM 2009a T1 (nilearn); held out: the MNI152 NLin6Asym T1 (nimare), another template
made from other subjects by another registration. Each volume is degraded along each of its three
axes in turn (axial, coronal and sagittal thick slices), so the network sees every anatomy
orientation across the slice profile.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from monai_bundle.data.datalists import require_prepared
from monai_bundle.tasks.ct_denoising.data import pair_datalist
from monai_bundle.tasks.mri_super_resolution.degradation import (
    DEFAULT_FACTOR,
    degrade,
    fine_target,
    thick_affine,
)

TASK = "mri_super_resolution"

PAIR_SOURCES = {"train": ("icbm_t1",), "test": ("mni6_t1",)}
"""Sample-data names of the fine volumes of each split (monai_bundle.data.sample_data)."""

SLICE_AXES = (2, 1, 0)
"""Array axes each volume is made thick along (RAS templates: axial, coronal, sagittal slices)."""


def write_sr_dataset(
    out_dir: str | os.PathLike,
    factor: int = DEFAULT_FACTOR,
    profile: str = "gaussian",
    noise: float = 0.0,
    seed: int = 0,
) -> Path:
    """Thick / fine pairs: <split>/<name>_axis<a>_thick.nii.gz and _fine.nii.gz, plus dataset.json.

    The thick volume lies on the thick grid (`thick_affine`), the fine one is the original volume
    cropped to the thick volume's fine grid (`fine_target`): same origin, so a pair overlays
    exactly. Skips work already done (a dataset.json with the same settings).

    Args:
        out_dir: folder of the pairs and dataset.json; returned.
        factor: thick / fine spacing.
        profile: slice profile of the degradation (`degradation.PROFILES`).
        noise: Gaussian noise std of the thick slices, as a fraction of the 99.5th percentile.
        seed: seed of the first pair's noise (the n-th pair uses seed + n).
    """
    from monai_bundle.data import sample_data
    from monai_bundle.io import read_image, write_image, write_text_atomic

    out_dir = Path(out_dir)
    spec_path = out_dir / "dataset.json"
    settings = {
        "factor": factor,
        "profile": profile,
        "noise": noise,
        "seed": seed,
        "sources": PAIR_SOURCES,
        "slice_axes": SLICE_AXES,
    }
    if spec_path.is_file() and json.loads(spec_path.read_text()).get("settings") == json.loads(json.dumps(settings)):
        return out_dir
    spec: dict = {
        "description": (
            f"SIMULATED thick-slice MRI ({factor}x, {profile} slice profile of FWHM = slice spacing, noise {noise:g}) "
            "from real 1 mm T1 templates"
        ),
        "settings": settings,
    }
    index = 0
    for split, names in PAIR_SOURCES.items():
        spec[split] = []
        for name in names:
            volume = read_image(sample_data.fetch(name), ndim=3)
            fine = np.asarray(volume.array, np.float32)
            for axis in SLICE_AXES:
                thick = degrade(fine, axis, factor, profile, noise, seed + index)
                index += 1
                thick_path = out_dir / split / f"{name}_axis{axis}_thick.nii.gz"
                fine_path = out_dir / split / f"{name}_axis{axis}_fine.nii.gz"
                write_image(thick, thick_affine(volume.affine, axis, factor), thick_path)
                write_image(fine_target(fine, axis, factor), volume.affine, fine_path)
                spec[split].append(
                    {"image": str(thick_path.relative_to(out_dir)), "label": str(fine_path.relative_to(out_dir))}
                )
    write_text_atomic(spec_path, json.dumps(spec, indent=2) + "\n")
    return out_dir


def prepared_pairs(dataset_dir: str | os.PathLike, split: str) -> list[dict[str, str]]:
    """[{"image": thick, "label": fine}] of a split ("train", "test") of a prepared folder; one line if none."""
    return pair_datalist(require_prepared(dataset_dir, "dataset.json", "thick-slice MRI pairs", TASK), split)
