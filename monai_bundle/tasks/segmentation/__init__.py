"""Shared by the segmentation tasks (ct_segmentation, mri_brain_segmentation): label maps back on the input grid, reports, training sets."""

from .data import write_case, label_on_image_grid, write_dataset_json
from .reports import SegmentationReport, label_volumes_ml, segmentation_results
from .transforms import KeepLargestComponentPerLabeld, label_boxes, probabilities_to_labels, ProbabilitiesToInputLabelsd


__all__ = ['write_case', 'label_on_image_grid', 'write_dataset_json', 'SegmentationReport', 'label_volumes_ml', 'segmentation_results', 'KeepLargestComponentPerLabeld', 'label_boxes', 'probabilities_to_labels', 'ProbabilitiesToInputLabelsd']
