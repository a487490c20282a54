"""The ways in: the runner every tool uses, medimg-batch, medimg-demo, the Slicer module's child (analysis),
and the helpers of experiment and demo-weight scripts (experiments, demo_weights)."""
