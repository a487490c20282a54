"""One radiograph: its parameters (`DrrParams`, drawn by `random_params`) and rendering them (`render_drr`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monai_bundle.data.drr.display import Display, random_display, to_display
from monai_bundle.data.drr.opacities import (
    DEFAULT_OPACITY,
    OPACITY_RANGES,
    Opacity,
    paint_opacities,
    random_opacities,
)
from monai_bundle.data.drr.projection import View, project, random_view
from monai_bundle.data.drr.sources import SourceCT

CLASSES = ("NORMAL", "PNEUMONIA")


_OPACITY_COUNTS, _OPACITY_COUNT_P = (1, 2, 3), (0.55, 0.3, 0.15)


def render_drr(source: SourceCT, view: View, display: Display, opacities: Sequence[Opacity] = ()) -> np.ndarray:
    """A uint8 radiograph of `source` seen through `view`, with `opacities` painted into its lungs first."""
    mu = paint_opacities(source.mu, source.lungs, source.affine, opacities) if opacities else source.mu
    pixels = min(display.size, math.ceil(view.field_mm / source.voxel_mm))
    return to_display(project(mu, source.affine, view, pixels, extend=True), display)


@dataclass(frozen=True)
class DrrParams:
    """Everything that makes one radiograph: source, view, display and opacities (none: NORMAL)."""

    source: str
    view: View
    display: Display
    opacities: tuple[Opacity, ...] = ()

    @property
    def label(self) -> str:
        return CLASSES[1] if self.opacities else CLASSES[0]


def random_params(
    rng: np.random.Generator, source: SourceCT, size: int, positive: bool, opacity: str = DEFAULT_OPACITY
) -> DrrParams:
    """One image's parameters; negatives draw the same view and display distribution as positives."""
    view = random_view(rng, source)
    display = random_display(rng, source, size)
    if not positive:
        return DrrParams(source.name, view, display)
    count = int(rng.choice(_OPACITY_COUNTS, p=_OPACITY_COUNT_P))
    opacities = random_opacities(rng, source, view, count, OPACITY_RANGES[opacity])
    return DrrParams(source.name, view, display, tuple(opacities))
