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


def write_leave_one_out_folds(dataset_dir: str | Path) -> dict[str, Path]:
    """One fold per labelled case of an MSD-style set: the case is the test set, the others train and validate.

    Each fold is `dataset_dir/folds/<case>/` with a dataset.json of the same classes and links to the set's
    imagesTr/labelsTr, so the train and evaluate configs read it like the set itself. Returns case -> fold folder.
    """
    dataset_dir = Path(dataset_dir)
    spec = json.loads((dataset_dir / "dataset.json").read_text())
    cases = {}
    for entry in [*spec.get("training", []), *spec.get("test", [])]:
        if "label" in entry:
            cases.setdefault(Path(entry["image"]).name.split(".")[0], entry)
    if len(cases) < 2:
        raise ValueError(f"{dataset_dir / 'dataset.json'}: leave-one-out needs 2 or more labelled cases")
    folds = {}
    for name, held_out in cases.items():
        fold = dataset_dir / "folds" / name
        fold.mkdir(parents=True, exist_ok=True)
        for folder in ("imagesTr", "labelsTr"):
            link = fold / folder
            if not link.is_symlink():
                link.symlink_to(Path("..") / ".." / folder, target_is_directory=True)
        others = [entry for other, entry in cases.items() if other != name]
        lists = {"training": others, "validation": others, "test": [held_out]}
        fold_spec = {key: value for key, value in spec.items() if key not in ("training", "validation", "test")}
        (fold / "dataset.json").write_text(json.dumps({**fold_spec, **lists}, indent=2))
        folds[name] = fold
    return folds
