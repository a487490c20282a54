"""One sub-package per task id in configs/metadata.json: that task's networks, transforms, reports and data.

`segmentation` holds what both segmentation tasks (ct_segmentation, mri_brain_segmentation) share.
"""
