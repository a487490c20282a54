"""The brain MRI demo weights' training/test set: the ICBM 2009a grey/white-matter probability maps
turned into a tissue label map; the MNI152 NLin6Asym template with its brain mask is held out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from monai_bundle.data import sample_data
from monai_bundle.io import Volume, read_image, write_image
from monai_bundle.tasks.segmentation.data import (
    label_on_image_grid,
    write_case,
    write_dataset_json,
)

MRI_CLASSES = ["background", "grey_matter", "white_matter", "csf_and_other_brain"]


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


def prepare_mri_dataset(out_dir: str | Path) -> Path:
    """ICBM 2009a T1 (skull-stripped) with tissue labels for training; MNI152 NLin6Asym held out.

    Held out twice: skull-stripped by its own brain mask and scored against the ICBM tissue labels
    carried over through MNI space (both templates share voxel centres), and as the whole head,
    scored against its brain mask only (the model saw no scalp: this shows what unstripped input does).
    """
    out_dir = Path(out_dir)
    t1 = read_image(sample_data.fetch("icbm_t1"), ndim=3)
    grey = read_image(sample_data.fetch("icbm_gm"), ndim=3)
    white = read_image(sample_data.fetch("icbm_wm"), ndim=3)
    labels = brain_tissue_labels(
        label_on_image_grid(t1, grey, "icbm grey matter").astype(np.float32),
        label_on_image_grid(t1, white, "icbm white matter").astype(np.float32),
    )
    train = write_case(out_dir, "icbm152_2009a", t1, labels)

    head = read_image(sample_data.fetch("mni6_t1"), ndim=3)
    brain = label_on_image_grid(head, read_image(sample_data.fetch("mni6_brain_mask"), ndim=3), "mni6 brain mask") > 0
    transferred = label_on_image_grid(head, Volume(labels, t1.affine, t1.path, t1.format), "icbm labels on mni6")
    stripped = Volume(np.where(brain, np.asarray(head.array, np.float32), 0.0), head.affine, head.path, head.format)
    test = write_case(out_dir, "mni152_nlin6asym_brain", stripped, transferred)
    whole_head = write_case(out_dir, "mni152_nlin6asym_head", head, None)
    write_image(brain.astype(np.uint8), head.affine, out_dir / "brain_masks" / "mni152_nlin6asym_head.nii.gz")
    whole_head["brain_mask"] = "./brain_masks/mni152_nlin6asym_head.nii.gz"
    return write_dataset_json(
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
        mask = read_image(sample_data.fetch("mni6_brain_mask_2mm"), ndim=3)
        brain = label_on_image_grid(head, mask, "mni6 2 mm mask") > 0
        write_image(np.where(brain, np.asarray(head.array, np.float32), 0.0).astype(np.float32), head.affine, target)
    return target


TILT_DEGREES = 20.0
"""How far `tilted_copy` tilts the head about the left-right axis."""


def tilted_copy(
    image: str | Path, mask: str | Path | None, out_dir: str | Path, suffix: str = ".nii.gz"
) -> tuple[Path, Path | None]:
    """The same head stored another way round: axes in another order (as a sagittal acquisition stores
    them), the first one reversed, and the grid tilted TILT_DEGREES about left-right (oblique).

    Voxel values are untouched, only the order and the affine change, so a result on the copy, put
    back by `untilt`, must equal the result on the original: a geometry check on real data. `suffix`
    picks the format (".nii.gz", ".nrrd" ...).
    """
    out_dir = Path(out_dir)
    written = []
    for path in (image, mask):
        if path is None:
            written.append(None)
            continue
        volume = read_image(path, ndim=3)
        target = out_dir / f"tilted_{Path(path).name.split('.')[0]}{suffix}"
        if not target.is_file():
            array, affine = np.asarray(volume.array), np.asarray(volume.affine, float)
            order = (2, 0, 1)
            array, affine = np.transpose(array, order)[::-1], affine[:, (*order, 3)]
            affine[:, 3] += affine[:, 0] * (array.shape[0] - 1)
            affine[:, 0] *= -1
            angle = np.deg2rad(TILT_DEGREES)
            tilt = np.eye(4)
            tilt[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
            write_image(np.ascontiguousarray(array), tilt @ affine, target)
        written.append(target)
    return written[0], written[1]


def untilt(array: np.ndarray) -> np.ndarray:
    """An array on a `tilted_copy` grid back in the original's voxel order."""
    return np.transpose(np.asarray(array)[::-1], (1, 2, 0))
