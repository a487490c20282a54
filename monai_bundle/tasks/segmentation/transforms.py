"""Segmentation postprocessing: label maps back on the input's grid, cheaply, and largest components per label."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.transforms.utils import get_largest_connected_component_mask
from scipy import ndimage

logger = logging.getLogger(__name__)


class KeepLargestComponentPerLabeld(MapTransform):
    """Keep each listed label's largest connected component in a label map; an empty list does nothing.

    Meant for organs that are one piece (liver, spleen, heart); leave out paired or scattered
    structures (lungs, kidneys, bones), whose second piece is real. Same result as MONAI's
    `KeepLargestConnectedComponent(applied_labels=labels, independent=True)` on the whole map, which
    it runs on each label's bounding box only (a full-resolution CT is mostly other labels).

    Args:
        keys: keys of channel-first label maps.
        labels: the labels to reduce to their largest component (None or empty: none).
        allow_missing_keys: do not fail when a key is missing.
    """

    def __init__(
        self, keys: KeysCollection, labels: Sequence[int] | None = None, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.labels = [int(label) for label in labels or []]

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            if self.labels:
                d[key] = self.keep_largest(d[key])
        return d

    def keep_largest(self, label_map):
        """A copy of a channel-first label map with every listed label reduced to its largest component.

        Each label is done on its bounding box; clearing one label's stray pieces leaves the
        others' voxels alone, so the order does not matter.
        """
        values = np.array(label_map.detach().cpu() if isinstance(label_map, torch.Tensor) else label_map, order="K")
        boxes = label_boxes(values[0] if values.dtype.kind in "iu" else values[0].astype(np.int32))
        for label in self.labels:
            if 0 < label <= len(boxes) and boxes[label - 1] is not None:
                box = (0, *boxes[label - 1])
                mask = values[box] == label
                values[box][mask & ~get_largest_connected_component_mask(mask)] = 0
        if isinstance(label_map, torch.Tensor):
            out = label_map.clone()
            out.copy_(torch.from_numpy(values))
            return out
        return values


def rule_out(probabilities, where: np.ndarray, labels: Sequence[int] | None = None):
    """Class probabilities given that `labels` (default: every foreground class) are impossible where `where`.

    The ruled-out classes get 0 there and the others are renormalised (the probabilities
    conditioned on "not these"), so the next most likely class wins, as the network ranks them.
    """
    labels = range(1, probabilities.shape[0]) if labels is None else labels
    if isinstance(probabilities, torch.Tensor):
        out, mask = probabilities.clone(), torch.from_numpy(np.ascontiguousarray(where, dtype=bool))
        for label in labels:
            out[label].masked_fill_(mask, 0)
        return out.div_(out.sum(0, keepdim=True).clamp_min_(1e-12))
    out = np.array(probabilities)
    for label in labels:
        out[label][where] = 0
    return out / out.sum(0, keepdims=True).clip(1e-12)


class KeepLargestComponentPerClassd(KeepLargestComponentPerLabeld):
    """Each listed class only in its largest connected piece, decided on the network's grid from class probabilities.

    Where the argmax gives a listed class outside its largest piece, every foreground class is ruled
    out (`rule_out`): that piece becomes background, as with MONAI's
    `KeepLargestConnectedComponent(applied_labels=labels, independent=True)` (full connectivity) on the
    argmax. Done before `ProbabilitiesToInputLabelsd`, it costs a fraction of the same step on the
    full-resolution label map. Meant for organs that are one piece (liver, spleen, heart); leave out
    paired or scattered structures (lungs, kidneys, bones), whose second piece is real.

    Args:
        keys: keys of channel-first class probabilities.
        labels: the classes to reduce to their largest component (None or empty: none).
        allow_missing_keys: do not fail when a key is missing.
    """

    def keep_largest(self, probabilities):
        """The probabilities with the listed classes' stray pieces made background (as given if none)."""
        stray = self.stray_pieces(probabilities)
        return rule_out(probabilities, stray) if stray.any() else probabilities

    def stray_pieces(self, probabilities) -> np.ndarray:
        """Where the argmax is a listed class outside that class's largest connected piece."""
        values = probabilities.detach().cpu().numpy() if isinstance(probabilities, torch.Tensor) else probabilities
        labels = first_argmax(np.asarray(values, dtype=np.float32))
        boxes = label_boxes(labels)
        stray = np.zeros(labels.shape, bool)
        for label in self.labels:
            if 0 < label <= len(boxes) and boxes[label - 1] is not None:
                box = boxes[label - 1]
                mask = labels[box] == label
                stray[box] |= mask & ~get_largest_connected_component_mask(mask)
        return stray


def label_boxes(labels: np.ndarray) -> list[tuple[slice, ...] | None]:
    """`scipy.ndimage.find_objects` in either memory order (it is slow on Fortran-ordered arrays)."""
    if labels.flags.f_contiguous and not labels.flags.c_contiguous:
        return [box[::-1] if box else None for box in ndimage.find_objects(labels.T)]
    return ndimage.find_objects(labels)


def probabilities_to_labels(
    probabilities: np.ndarray,
    grid_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, ...],
    slab_voxels: int = 1 << 23,
) -> np.ndarray:
    """argmax of class probabilities linearly interpolated at every voxel of a target grid (uint8).

    The answer of resampling every channel to the target grid (Invertd, bilinear) and taking the
    argmax, computed where it can differ: where the 2**n grid voxels around a target voxel share one
    argmax, every convex combination of them has it too, so only voxels near a label boundary
    interpolate probabilities. Outside the grid the probabilities are zero (background), as
    inverting a crop pads them. `*_affine` map voxel indices to the same world space.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.shape[0] > 255:
        raise ValueError(f"{probabilities.shape[0]} classes do not fit a uint8 label map")
    ndim = probabilities.ndim - 1
    # computed in C order on the target grid with its axes reversed = Fortran order on the target
    # grid, the order NIfTI stores, so the result is written without a transposed copy
    reverse = np.eye(ndim + 1)
    reverse[:ndim, :ndim] = np.eye(ndim)[::-1]
    to_grid = np.linalg.inv(np.asarray(grid_affine, float)) @ np.asarray(target_affine, float) @ reverse
    shape = tuple(target_shape)[::-1]
    cell_labels = np.pad(_cell_labels(first_argmax(probabilities)), 1)  # + a border of background
    classes, grid_shape = probabilities.shape[0], tuple(size + 2 for size in probabilities.shape[1:])
    padded = torch.zeros((*grid_shape, classes))  # channels last, zero probabilities all round
    padded[(slice(1, -1),) * ndim] = torch.from_numpy(probabilities).movedim(0, -1)
    table = padded.view(-1, classes)
    out = np.empty(shape, np.uint8)
    step = max(1, slab_voxels // max(1, int(np.prod(shape[1:]))))

    def fill(start: int) -> None:
        """Labels of the target rows start:start+step (axis 0): corners' shared label, else interpolated."""
        coords = _grid_coordinates(to_grid, (start, min(start + step, shape[0])), shape)  # in padded grid voxels
        cells = [np.floor(c) for c in coords]
        fractions = [(c - cell).astype(np.float32) for c, cell in zip(coords, cells, strict=False)]
        cells = [cell.astype(np.int64) for cell in cells]
        # cells outside the grid land on the background border
        slab = out[start : start + step]  # contiguous: the gathered view is copied in once
        upper = [np.clip(c + 1, 0, size - 1) for c, size in zip(cells, cell_labels.shape, strict=False)]
        slab[...] = _gather(cell_labels, upper)
        mixed = tuple(axis.numpy() for axis in torch.from_numpy(slab).eq(_MIXED).nonzero(as_tuple=True))
        if mixed[0].size:
            corners = [_at(cell, mixed, slab.shape) for cell in cells]
            weights = [_at(fraction, mixed, slab.shape) for fraction in fractions]
            slab[mixed] = _interpolated_argmax(table, grid_shape, corners, weights)

    starts = range(0, shape[0], step)
    # slabs are independent and numpy's part of the work is single-threaded: one slab per core at a time
    with ThreadPoolExecutor(min(len(starts), torch.get_num_threads())) as pool:
        list(pool.map(fill, starts))
    return out.T


def _at(values: np.ndarray, index: tuple[np.ndarray, ...], shape: tuple[int, ...]) -> np.ndarray:
    """np.broadcast_to(values, shape)[index], read from the one axis `values` varies along when it does."""
    varying = [axis for axis, size in enumerate(values.shape) if size > 1]
    if len(varying) == 1:
        return values.reshape(-1)[index[varying[0]]]
    return np.broadcast_to(values, shape)[index]


def _gather(values: np.ndarray, index: list[np.ndarray]) -> np.ndarray:
    """values[index] for broadcastable index arrays; one `np.take` per axis when each varies along one axis."""
    varying = [[axis for axis, size in enumerate(i.shape) if size > 1] for i in index]
    axes = [v[0] if len(v) == 1 else None for v in varying]
    if None in axes or sorted(axes) != list(range(len(index))):
        return values[tuple(index)]
    for axis, i in enumerate(index):
        values = np.take(values, i.ravel(), axis=axis)
    return np.transpose(values, np.argsort(axes))


_MIXED = 255  # a cell whose corners disagree


def first_argmax(probabilities: np.ndarray) -> np.ndarray:
    """probabilities.argmax(0) as uint8 (first maximum wins), one pass per class: faster than a strided reduction."""
    best, labels = probabilities[0].copy(), np.zeros(probabilities.shape[1:], np.uint8)
    for label in range(1, probabilities.shape[0]):
        higher = probabilities[label] > best
        labels[higher] = label
        np.maximum(best, probabilities[label], out=best)
    return labels


def _cell_labels(labels: np.ndarray) -> np.ndarray:
    """Per cell of the one-voxel-padded grid: the label all its in-grid corners share, or _MIXED."""
    ndim = labels.ndim
    low = np.pad(labels, 1, constant_values=_MIXED)  # pads never lower a minimum ...
    high = np.pad(labels, 1, constant_values=0)  # ... nor raise a maximum
    shape = tuple(size + 1 for size in labels.shape)
    smallest = np.full(shape, _MIXED, np.uint8)
    largest = np.zeros(shape, np.uint8)
    for corner in np.ndindex(*(2,) * ndim):
        window = tuple(slice(offset, offset + size) for offset, size in zip(corner, shape, strict=False))
        np.minimum(smallest, low[window], out=smallest)
        np.maximum(largest, high[window], out=largest)
    return np.where(smallest == largest, smallest, _MIXED).astype(np.uint8)


def _grid_coordinates(to_grid: np.ndarray, rows: tuple[int, int], shape: tuple[int, ...]) -> list[np.ndarray]:
    """Padded-grid coordinates of target voxels rows[0]:rows[1] (axis 0), one broadcastable array per axis.

    A term whose coefficient is zero is left out, so an axis-aligned mapping stays one-dimensional per axis.
    """
    ndim = len(shape)
    axes = [np.arange(*rows, dtype=np.float64)] + [np.arange(size, dtype=np.float64) for size in shape[1:]]
    coords = []
    for axis in range(ndim):
        value = np.full((1,) * ndim, to_grid[axis, ndim] + 1.0)  # +1: the grid is padded by one voxel
        for source_axis in range(ndim):
            factor = to_grid[axis, source_axis]
            if abs(factor) > 1e-9:
                view = [1] * ndim
                view[source_axis] = -1
                value = value + factor * axes[source_axis].reshape(view)
        coords.append(value)
    return coords


def _interpolated_argmax(
    table: torch.Tensor, grid_shape: tuple[int, ...], cells: list[np.ndarray], fractions: list[np.ndarray]
) -> np.ndarray:
    """argmax over classes of the (multi)linear interpolation of a padded grid at points.

    A point is its cell (lower corner, per axis) and its fractional position in it. `table`
    holds the grid channels-last as rows (one row of class values per voxel), so each corner is
    one row gather; torch runs the gathers and sums on all cores.
    """
    strides = np.cumprod((1,) + tuple(grid_shape[:0:-1]))[::-1]  # row stride of each axis
    rows = torch.from_numpy(sum(cell * int(stride) for cell, stride in zip(cells, strides, strict=False)))
    corners = [(0, None)]  # (row offset, weight) of each corner, built axis by axis
    for fraction, stride in zip(fractions, strides, strict=False):
        upper = torch.from_numpy(np.ascontiguousarray(fraction))
        lower = 1.0 - upper
        corners = [
            (row + o * int(stride), w if weight is None else weight * w)
            for row, weight in corners
            for o, w in ((0, lower), (1, upper))
        ]
    total = torch.zeros(rows.numel(), table.shape[1])
    for offset, weight in corners:
        total.addcmul_(table.index_select(0, rows + offset), weight[:, None])
    return total.argmax(1).numpy().astype(np.uint8)


class ProbabilitiesToInputLabelsd(MapTransform):
    """Class probabilities on the network's grid -> label map (uint8) on the grid the image was read on.

    Equivalent to `Invertd` (bilinear) + `AsDiscreted(argmax=True)` for the geometric transforms
    (orientation, spacing, crop) but interpolates only near label boundaries (see
    `probabilities_to_labels`). The input grid is read from the image's metadata
    (`original_affine`, `spatial_shape`), so it needs no record of the applied transforms.

    Args:
        keys: keys of the class probabilities (channel-first, on the network's grid).
        image_key: key of the preprocessed image whose metadata holds the input grid.
        allow_missing_keys: do not fail when a key is missing.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key

    def __call__(self, data):
        d = dict(data)
        image = d[self.image_key]
        meta = dict(image.meta)
        target_affine = np.asarray(meta["original_affine"], float)
        target_shape = tuple(int(size) for size in np.asarray(meta["spatial_shape"]))
        grid_affine = np.asarray(image.affine, float)
        for key in self.key_iterator(d):
            probabilities = d[key].detach().cpu().float().numpy() if isinstance(d[key], torch.Tensor) else d[key]
            labels = probabilities_to_labels(probabilities, grid_affine, target_affine, target_shape)
            meta["affine"] = torch.as_tensor(target_affine)
            d[key] = MetaTensor(torch.from_numpy(labels[None]), meta=meta)
        return d
