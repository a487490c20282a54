"""One sub-package per task id in configs/metadata.json (networks, transforms, reports and data of that task); `segmentation` holds what both segmentation tasks share."""
