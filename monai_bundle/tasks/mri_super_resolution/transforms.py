"""The task's two transforms: a thick-slice volume onto its fine grid for the network, and the result back.

`ToFineGridd` finds the slice axis (the largest spacing), checks the input is a thick-slice volume,
scales intensities by the input's 99.5th percentile (MRI has no absolute unit), B-spline upsamples
the slice axis onto the fine grid (`degradation.upsample`) and moves that axis last, so that the 2D
network always sees slices holding the slice axis as their second axis, whatever the input's
orientation. The MetaTensor's affine follows every step (new spacing, permuted columns), so the
grid stays exact. `FromFineGridd` undoes the move and the scaling on the prediction.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_bundle.io.errors import ImageReadError
from monai_bundle.tasks.mri_super_resolution.degradation import (
    DEFAULT_FACTOR,
    fine_affine,
    slice_axis,
    upsample,
)

SCALE_KEY = "intensity_scale"
"""Item key of the input's 99.5th percentile (what intensities were divided by)."""

AXIS_KEY = "slice_axis"
"""Item key of the input's slice axis (array axis, without the channel)."""

THICK_KEY = "thick"
"""Item key of the scaled thick input with its slice axis last (the evaluation's interpolation baselines)."""

MIN_RATIO = 0.75
"""The fine spacing (slice spacing / factor) may be at most this much finer than the in-plane spacing."""


def _moved_last(array, affine: np.ndarray, axis: int):
    """[C, ...] array with spatial `axis` moved last, and the affine with its columns moved alike."""
    order = [a for a in range(3) if a != axis] + [axis]
    columns = affine.copy()
    columns[:3, :3] = affine[:3, order]
    return np.moveaxis(np.asarray(array), axis + 1, -1), columns


def check_thick(path: str, spacing: Sequence[float], factor: int) -> int:
    """The slice axis of a volume with `spacing`, after checking it is worth upsampling `factor` x.

    Raises:
        ImageReadError: one line naming the file: not 3D, or its slice axis is no thicker than
            `factor` x its in-plane spacing would allow (the fine grid would be finer than in-plane).
    """
    if len(spacing) != 3:
        raise ImageReadError(path, f"super-resolution needs a 3D volume, this one has {len(spacing)} axes")
    axis = slice_axis(spacing)
    in_plane = min(s for a, s in enumerate(spacing) if a != axis)
    if spacing[axis] / factor < MIN_RATIO * in_plane:
        raise ImageReadError(
            path,
            f"slice spacing {spacing[axis]:.3g} mm / {factor} = {spacing[axis] / factor:.3g} mm would be finer than "
            f"the in-plane {in_plane:.3g} mm: not a thick-slice volume for a {factor}x upsampling",
        )
    return axis


class ToFineGridd(MapTransform):
    """A thick-slice volume onto its fine grid, scaled, slice axis last (see the module docstring).

    Args:
        keys: key of the channel-first thick volume (a MetaTensor with its affine).
        label_keys: keys of fine volumes already on that fine grid (training targets): scaled and moved alike.
        factor: thick / fine spacing.
        order: spline order of the upsampling (3: cubic B-spline, the network's input).
        keep_thick: also keep the scaled thick input (slice axis last) under `THICK_KEY`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_keys: KeysCollection = (),
        factor: int = DEFAULT_FACTOR,
        order: int = 3,
        keep_thick: bool = False,
    ) -> None:
        super().__init__(keys)
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        self.factor, self.order, self.keep_thick = int(factor), int(order), keep_thick

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import torch
        from monai.data import MetaTensor

        d = dict(data)
        for key in self.keys:
            image = d[key]
            affine = np.asarray(image.affine, np.float64)
            path = str(image.meta.get("filename_or_obj", key))
            spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, : image.ndim - 1], axis=0))
            axis = check_thick(path, spacing, self.factor)
            thick = np.asarray(image.detach().cpu(), np.float32)
            scale = float(np.percentile(thick, 99.5)) or 1.0
            thick = thick / scale
            fine = np.stack([upsample(channel, axis, self.factor, self.order) for channel in thick])
            moved, moved_affine = _moved_last(fine, fine_affine(affine, axis, self.factor), axis)
            meta = {k: v for k, v in image.meta.items() if k != "affine"}
            meta["spatial_shape"] = np.asarray(moved.shape[1:])
            d[key] = MetaTensor(torch.from_numpy(np.ascontiguousarray(moved)), affine=moved_affine, meta=meta)
            d[SCALE_KEY], d[AXIS_KEY] = scale, axis
            if self.keep_thick:
                d[THICK_KEY] = torch.from_numpy(np.ascontiguousarray(_moved_last(thick, affine, axis)[0]))
            for label_key in self.label_keys:
                label = np.asarray(d[label_key].detach().cpu(), np.float32) / scale
                if label.shape != fine.shape:
                    raise ImageReadError(
                        str(d[label_key].meta.get("filename_or_obj", label_key)),
                        f"shape {label.shape[1:]} is not the fine grid {fine.shape[1:]} of {path}",
                    )
                label_meta = {k: v for k, v in d[label_key].meta.items() if k != "affine"}
                label_meta["spatial_shape"] = meta["spatial_shape"]
                d[label_key] = MetaTensor(
                    torch.from_numpy(np.ascontiguousarray(_moved_last(label, affine, axis)[0])),
                    affine=moved_affine,
                    meta=label_meta,
                )
        return d


class FromFineGridd(MapTransform):
    """A prediction made by `ToFineGridd`'s layout back to the input's axis order and intensities.

    Args:
        keys: keys of channel-first predictions (MetaTensors on the moved fine grid).
        scale_key: item key of the intensity scale.
        axis_key: item key of the slice axis.
    """

    def __init__(self, keys: KeysCollection, scale_key: str = SCALE_KEY, axis_key: str = AXIS_KEY) -> None:
        super().__init__(keys)
        self.scale_key, self.axis_key = scale_key, axis_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import torch
        from monai.data import MetaTensor

        d = dict(data)
        axis, scale = int(d[self.axis_key]), float(d[self.scale_key])
        order = [a for a in range(3) if a != axis] + [axis]
        for key in self.keys:
            pred = d[key]
            moved_affine = np.asarray(pred.affine, np.float64)
            affine = moved_affine.copy()
            affine[:3, order] = moved_affine[:3, :3]
            array = np.moveaxis(np.asarray(pred.detach().cpu(), np.float32), -1, axis + 1) * scale
            meta = {k: v for k, v in pred.meta.items() if k != "affine"}
            meta["spatial_shape"] = np.asarray(array.shape[1:])
            d[key] = MetaTensor(torch.from_numpy(np.ascontiguousarray(array)), affine=affine, meta=meta)
        return d
