"""The ways in: the runner every tool uses, medimg-batch, medimg-demo, the Slicer module's child (analysis) and experiment helpers."""
