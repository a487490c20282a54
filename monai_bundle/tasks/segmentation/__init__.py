"""Shared by the segmentation tasks (ct_segmentation, mri_brain_segmentation).

Modules: `data` (label maps back on the input grid, training sets), `transforms` (post-processing of
the probabilities onto the input grid), `anatomy` (CT body and lung constraints), `quality` (the
quality flag), `reports` (label volumes and the segmentation report).
"""

from .anatomy import ChestOnlyOrgansd, LungsOnlyInAird, MaskOutsideBodyd, NoTrunkOrgansInHeadd
from .data import label_on_image_grid, write_case, write_dataset_json
from .quality import AssessQualityd, quality_line, read_quality, with_quality
from .reports import SegmentationReport, label_volumes_ml, segmentation_results
from .transforms import (
    KeepLargestComponentPerClassd,
    KeepLargestComponentPerLabeld,
    ProbabilitiesToInputLabelsd,
    label_boxes,
    probabilities_to_labels,
)

__all__ = [
    "AssessQualityd",
    "ChestOnlyOrgansd",
    "LungsOnlyInAird",
    "MaskOutsideBodyd",
    "NoTrunkOrgansInHeadd",
    "quality_line",
    "read_quality",
    "with_quality",
    "write_case",
    "label_on_image_grid",
    "write_dataset_json",
    "SegmentationReport",
    "label_volumes_ml",
    "segmentation_results",
    "KeepLargestComponentPerClassd",
    "KeepLargestComponentPerLabeld",
    "label_boxes",
    "probabilities_to_labels",
    "ProbabilitiesToInputLabelsd",
]
