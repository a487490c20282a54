"""Inferers that wrap another MONAI inferer: mixed precision (autocast), flip self-ensembles, progress."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from itertools import combinations
from typing import Any

import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import Inferer, SimpleInferer, SliceInferer, SlidingWindowInferer
from monai.utils import ensure_tuple_rep, fall_back_tuple

from monai_bundle.engines.precision import autocast_dtype, default_device

logger = logging.getLogger(__name__)


class AutocastInferer(Inferer):
    """Run another MONAI inferer with the network under `torch.autocast`, everything else in float32.

    MONAI engines' own `amp` flag autocasts on CUDA only; this works on CPU (bf16) and GPU alike,
    so one config runs fast on both. Only the network's forward pass is autocast: a sliding
    window's blending, losses and metrics see float32 (blending bf16 windows in a bf16 buffer is
    both slower on CPU and coarser). `channels_last` stores inputs and weights channels-last
    (`"auto"`: for fp32 on CPU, where oneDNN's fp32 convolutions were slightly faster that way here).

    Args:
        inferer: the MONAI inferer to wrap (simple, sliding window, slice...).
        precision: 'auto' (bf16 where this device runs it fast), 'bf16', 'fp16' or 'fp32'.
        device: the device the network runs on (None: `default_device()`).
        channels_last: True, False or "auto" (see above).
    """

    def __init__(
        self,
        inferer: Inferer,
        precision: str = "auto",
        device: torch.device | str | None = None,
        channels_last: bool | str = "auto",
    ) -> None:
        self.inferer = inferer
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = autocast_dtype(precision, self.device)
        if channels_last == "auto":
            channels_last = self.dtype is None and self.device.type == "cpu"
        self.channels_last = bool(channels_last)
        logger.info(
            "inference precision: %s on %s%s",
            self.dtype or torch.float32,
            self.device,
            ", channels-last" if self.channels_last else "",
        )

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def forward(batch: torch.Tensor, *a: Any, **k: Any) -> Any:
            memory_format = _channels_last(batch.ndim) if self.channels_last else None
            # by the rank the network sees (a slice inferer feeds it 2D slices of 3D input)
            if memory_format is not None:
                if isinstance(network, torch.nn.Module):
                    network.to(memory_format=memory_format)
                batch = batch.contiguous(memory_format=memory_format)
            context = nullcontext() if self.dtype is None else torch.autocast(self.device.type, dtype=self.dtype)
            with context:
                outputs = network(batch, *a, **k)
            return _to_float32(outputs)

        return _to_float32(self.inferer(inputs, forward, *args, **kwargs))


class FlipEnsembleInferer(Inferer):
    """Run another MONAI inferer with the network's output averaged over flipped copies of its input.

    Every subset of `spatial_axes` is flipped (2^n passes; `[0, 1]` on 2D slices: 4), the output
    flipped back, and the outputs averaged: the geometric self-ensemble of image restoration
    (Lim et al. 2017, EDSR+). For a network trained with flip augmentation it averages out part of
    its error at n-fold cost. No axes: the plain network. Outputs must be one tensor on the input grid.

    Args:
        inferer: the MONAI inferer to wrap.
        spatial_axes: spatial axes (0 = first after the channel) whose flips are averaged.
    """

    def __init__(self, inferer: Inferer, spatial_axes: Sequence[int] = (0, 1)) -> None:
        self.inferer = inferer
        self.flips = [
            tuple(axis + 2 for axis in subset)  # + batch and channel dims
            for size in range(len(spatial_axes) + 1)
            for subset in combinations(spatial_axes, size)
        ]

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def averaged(batch: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
            total = None
            for dims in self.flips:
                output = network(batch.flip(dims) if dims else batch, *a, **k)
                output = output.flip(dims) if dims else output
                total = output.float() if total is None else total + output.float()
            return total / len(self.flips)

        return self.inferer(inputs, averaged, *args, **kwargs)


class ProgressInferer(Inferer):
    """Run another MONAI inferer and tell `callback` what fraction of the network's work is done, after each call.

    MONAI's sliding window shows its progress only as a tqdm bar on the console (`progress=True`); a
    progress bar in another process needs the number. This counts the windows the network is given
    (each call's batch size) against the number the wrapped inferers will give it (`network_windows`),
    so the fraction is exact for sliding-window and slice inferers, flip ensembles and a plain pass.
    When the total is unknown (another inferer) nothing is reported. Outputs are unchanged.

    Args:
        inferer: the MONAI inferer to wrap.
        callback: called with the fraction done, in (0, 1]; None (default) reports nothing. It may be
            set or replaced between calls (a warm worker points it at the request being served).
    """

    def __init__(self, inferer: Inferer, callback: Callable[[float], None] | None = None) -> None:
        self.inferer = inferer
        self.callback = callback

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        callback = self.callback
        total = network_windows(self.inferer, inputs) if callback is not None else None
        if not total:
            return self.inferer(inputs, network, *args, **kwargs)
        done = 0

        def counted(batch: torch.Tensor, *a: Any, **k: Any) -> Any:
            nonlocal done
            outputs = network(batch, *a, **k)
            done += batch.shape[0]
            callback(min(done / total, 1.0))
            return outputs

        return self.inferer(inputs, counted, *args, **kwargs)


def network_windows(inferer: Inferer, inputs: torch.Tensor) -> int | None:
    """How many windows (network inputs, summed over its calls' batches) `inferer` gives the network for
    `inputs`, or None when this is not known. Wrappers with an `inferer` attribute pass it through."""
    if isinstance(inferer, FlipEnsembleInferer):
        inner = network_windows(inferer.inferer, inputs)
        return None if inner is None else inner * len(inferer.flips)
    if isinstance(inferer, SlidingWindowInferer):
        return inputs.shape[0] * _sliding_windows(inferer, tuple(inputs.shape[2:]))
    if isinstance(inferer, SimpleInferer):
        return inputs.shape[0]
    inner = getattr(inferer, "inferer", None)
    return network_windows(inner, inputs) if isinstance(inner, Inferer) else None


def _sliding_windows(inferer: SlidingWindowInferer, image_size: tuple[int, ...]) -> int:
    """Windows per image of a sliding-window (or slice) inferer, as `monai.inferers.sliding_window_inference`
    lays them out: the image padded up to the ROI, steps of int(roi * (1 - overlap)) (at least 1)."""
    roi = inferer.orig_roi_size if isinstance(inferer, SliceInferer) else inferer.roi_size
    if isinstance(inferer, SliceInferer) and len(roi) == 2 and len(image_size) == 3:
        roi = (*roi[: inferer.spatial_dim], 1, *roi[inferer.spatial_dim :])  # one slice along spatial_dim
    roi = fall_back_tuple(roi, image_size)
    size = [max(i, r) for i, r in zip(image_size, roi)]
    overlap = ensure_tuple_rep(inferer.overlap, len(size))
    steps = [r if r == s else max(int(r * (1 - o)), 1) for s, r, o in zip(size, roi, overlap)]
    return len(dense_patch_slices(size, roi, steps))


def _channels_last(ndim: int) -> torch.memory_format | None:
    """The channels-last format for a batch of this rank (2D or 3D images), else None."""
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim)


def _to_float32(outputs: Any) -> Any:
    """Cast floating tensors (also inside tuples, lists and dicts) back to float32."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, Mapping):
        return {key: _to_float32(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_to_float32(value) for value in outputs)
    return outputs
