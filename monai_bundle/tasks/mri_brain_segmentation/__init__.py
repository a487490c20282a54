"""Task mri_brain_segmentation: brain extraction of a whole-head T1 (HD-BET's network, an optional extra),
then grey/white matter and other brain tissue inside the brain mask at 2 mm."""

from .brain_extraction import (
    INSTALL_HINT,
    BrainExtractiond,
    BrainExtractionUnavailable,
    BrainOnlyLabelsd,
    HDBETEnsemble,
    hdbet_network,
    hdbet_weights_dir,
)
from .data import (
    MRI_CLASSES,
    brain_tissue_labels,
    prepare_mri_dataset,
    skull_stripped_mni6_2mm,
)

__all__ = [
    "INSTALL_HINT",
    "BrainExtractiond",
    "BrainExtractionUnavailable",
    "BrainOnlyLabelsd",
    "HDBETEnsemble",
    "hdbet_network",
    "hdbet_weights_dir",
    "MRI_CLASSES",
    "brain_tissue_labels",
    "prepare_mri_dataset",
    "skull_stripped_mni6_2mm",
]
