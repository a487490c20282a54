"""Task mri_brain_segmentation: grey/white matter and other brain tissue of a skull-stripped T1 at 2 mm."""

from .data import (
    MRI_CLASSES,
    brain_tissue_labels,
    prepare_mri_dataset,
    skull_stripped_mni6_2mm,
)

__all__ = ["MRI_CLASSES", "brain_tissue_labels", "prepare_mri_dataset", "skull_stripped_mni6_2mm"]
