"""Helpers to write MSD-style training sets (imagesTr/labelsTr + dataset.json) for the segmentation tasks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from monai_bundle.io import write_image


def write_case(out_dir: Path, name: str, image, labels: np.ndarray | None) -> dict[str, str]:
    """Write one image (and label map on the same grid) into imagesTr/labelsTr; return its data-list entry."""
    image_path = out_dir / "imagesTr" / f"{name}.nii.gz"
    write_image(image.array.astype(np.float32), image.affine, image_path)
    entry = {"image": f"./imagesTr/{name}.nii.gz"}
    if labels is not None:
        write_image(labels.astype(np.uint8), image.affine, out_dir / "labelsTr" / f"{name}.nii.gz")
        entry["label"] = f"./labelsTr/{name}.nii.gz"
    return entry


def label_on_image_grid(image, label, what: str) -> np.ndarray:
    """The label map's voxels on the image's grid, when both grids share voxel centres (flips, axis order).

    Exact: each image voxel takes the label voxel at the same point; grids that do not share voxel
    centres are refused rather than resampled.
    """
    if image.array.shape == label.array.shape and np.allclose(image.affine, label.affine, atol=1e-3):
        return np.asarray(label.array)
    voxels = np.stack(np.meshgrid(*[np.arange(n) for n in image.array.shape], indexing="ij"), axis=-1)
    to_label = np.linalg.inv(label.affine) @ image.affine
    coords = voxels @ to_label[:3, :3].T + to_label[:3, 3]
    indices = np.rint(coords).astype(np.int64)
    inside = np.all((indices >= 0) & (indices < label.array.shape), axis=-1)
    if np.abs(coords - indices).max() > 1e-3 or not inside.all():
        raise ValueError(f"{what}: label grid {label.array.shape} does not share voxel centres with the image grid")
    return np.asarray(label.array)[tuple(np.moveaxis(indices, -1, 0))]


def write_dataset_json(out_dir: Path, name: str, description: str, classes, modality, lists) -> Path:
    spec = {
        "name": name,
        "description": description,
        "labels": {str(i): c for i, c in enumerate(classes)},
        "modality": {"0": modality},
        **lists,
    }
    (out_dir / "dataset.json").write_text(json.dumps(spec, indent=2))
    return out_dir
