"""The ways in: the runner every tool uses, medimg-batch, medimg-demo, one image with progress (analysis) and the
warm worker that serves such runs one after another (worker, what the Slicer module runs),
and the helpers of experiment and demo-weight scripts (experiments, demo_weights)."""
