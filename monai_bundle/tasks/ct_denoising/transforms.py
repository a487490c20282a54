"""Post-processing of the denoiser's output."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection

from monai_bundle.tasks.ct_denoising.metrics import DEFAULT_WINDOW


class WindowToHUd:
    """A denoiser's [0, 1] output back to HU; voxels whose input lay outside the window keep the input's HU.

    (The network sees the window only: bone above +1000 HU or padding below -1000 HU pass through.)

    Args:
        keys: keys of the denoiser's outputs, in [0, 1] of the window.
        original_key: key of the input in HU, before windowing.
        hu_window: (low, high) HU window the network was trained on.
    """

    def __init__(
        self, keys: KeysCollection, original_key: str = "original", hu_window: Sequence[float] = DEFAULT_WINDOW
    ) -> None:
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.original_key, self.hu_window = original_key, tuple(float(v) for v in hu_window)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import torch

        d = dict(data)
        low, high = self.hu_window
        original = d[self.original_key]
        for key in self.keys:
            hu = d[key].float() * (high - low) + low
            outside = (original < low) | (original > high)
            d[key] = torch.where(outside, original.to(hu.dtype), hu)
        return d
