"""Task ct_segmentation: coarse CT anatomy at 3 mm (configs inference.json, train.json, evaluate.json)."""

from .data import CT_CLASSES, CT_GROUPS, merge_classes, prepare_ct_dataset

__all__ = ["CT_CLASSES", "CT_GROUPS", "merge_classes", "prepare_ct_dataset"]
