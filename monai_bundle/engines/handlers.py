"""Training-loop handlers that any task's trainer can attach."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


class SkipNonFiniteSteps:
    """Trainer handler: a step whose gradients are not all finite updates nothing (its gradients are dropped).

    What torch.amp's GradScaler does for fp16 on GPUs, for any precision: one non-finite step would
    otherwise turn every weight into NaN for the rest of the run. Each skipped step is logged;
    `skipped` counts them.
    """

    def __init__(self) -> None:
        self.skipped = 0

    def attach(self, engine) -> None:
        from monai.engines.utils import IterationEvents

        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine) -> None:
        grads = [p.grad for group in engine.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads or bool(torch.stack([g.isfinite().all() for g in grads]).all()):
            return
        for group in engine.optimizer.param_groups:
            for p in group["params"]:
                p.grad = None  # optimizers skip parameters without a gradient
        self.skipped += 1
        logger.warning(
            "iteration %d: non-finite gradients, step skipped (%d so far)", engine.state.iteration, self.skipped
        )
