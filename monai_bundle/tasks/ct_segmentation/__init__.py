"""Task ct_segmentation: coarse CT anatomy at 3 mm (configs inference.json, train.json, evaluate.json)."""

from .augment import RandEnhancementd
from .data import (
    CT_CLASSES,
    CT_GROUPS,
    OTHER_INPUTS,
    SHOULD_HAVE_NO_TRUNK_ORGANS,
    merge_classes,
    prepare_ct_dataset,
    slice_as_volume,
    write_sample_as_volume,
)

__all__ = [
    "CT_CLASSES",
    "CT_GROUPS",
    "OTHER_INPUTS",
    "SHOULD_HAVE_NO_TRUNK_ORGANS",
    "merge_classes",
    "prepare_ct_dataset",
    "RandEnhancementd",
    "slice_as_volume",
    "write_sample_as_volume",
]
