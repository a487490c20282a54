"""Training-loop handlers that any task's trainer can attach, and the base of per-case evaluation reports."""

from __future__ import annotations

import logging
import os
from pathlib import Path

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


class CaseReport:
    """Evaluation handler base: each inferred case is scored as it comes (`score`), the report written after the epoch.

    Subclasses implement `score` (one decollated batch item and its engine output -> one case's dict, appended
    to `cases`) and `write` (the report into `output_dir`).

    Args:
        output_dir: folder of the report.
    """

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = Path(output_dir)
        self.cases: list[dict] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: self.write())

    def _collect(self, engine) -> None:
        as_list = lambda x: x if isinstance(x, list) else [x]  # noqa: E731 - decollated or not
        for batch, output in zip(as_list(engine.state.batch), as_list(engine.state.output), strict=True):
            self.cases.append(self.score(batch, output))

    def score(self, batch: dict, output: dict) -> dict:
        raise NotImplementedError

    def write(self) -> None:
        raise NotImplementedError
