"""What a CT's intensities say about its anatomy: the body, the air inside it, the air-filled lungs.

Computed on the network's grid (RAS, axis 2 points to the head) from the image in Hounsfield units,
so the rules are the same whatever the input's voxel size. Used by the anatomy-aware
postprocessing (`MaskOutsideBodyd`, `LungsOnlyInAird`, `ChestOnlyOrgansd`, `NoTrunkOrgansInHeadd`: each
rules classes out where the image shows they cannot be) and by the quality flag (`quality`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy import ndimage

from .transforms import rule_out

TISSUE_HU = -500.0
"""Above this a voxel is tissue (fat is about -100 HU, lung -850, air -1000)."""

IN_PLANE = ndimage.generate_binary_structure(3, 1) * np.array([0, 1, 0], bool)[None, None, :]
"""The 4-neighbourhood in an axial slice (axis 2 is the body axis on the RAS grid)."""

PURE_AIR_HU = -950.0
"""Below this a voxel is gas, not aerated lung (lung parenchyma with its vessels averages -900..-700 HU)."""

HU_P01_MAX = -50.0
"""A CT in HU has air (-1000) or at least fat (-100): its 1st percentile is below this; an MRI's is not."""

BONE_HU = 300.0
"""Above this a voxel is bone (cortical bone 500-2000 HU; contrast-filled vessels can reach it too)."""

FAT_HU = -30.0
"""Below this a voxel is fat or air, not the soft tissue of the brain (0..80 HU)."""

SKULL_MIN_CM2 = 50.0
"""A cavity this large enclosed by bone in one axial slice is a skull's. Measured on the 3 mm grid: 76-193 cm² on
three real head CTs; at most 11 cm² (a femoral head) on nine real chest and abdomen CTs (bundle docs)."""

TRUNK_CLASSES = ("lungs", "heart", "aorta", "liver", "spleen", "kidneys", "stomach")
"""The organs of the chest and abdomen among the CT task's classes (bone is everywhere)."""


def sees_air(hu_range: Sequence[float] | None) -> bool:
    """Whether an intensity window keeps air and gas apart from lung (reaches down to -950 HU).

    A soft-tissue window (e.g. -200..300 HU) clips air, lung and fat alike: then the body, the
    lungs and the gas cannot be told from the image and the anatomy rules do nothing.
    """
    return hu_range is not None and float(hu_range[0]) <= PURE_AIR_HU


def to_hu(image: np.ndarray, hu_range: Sequence[float]) -> np.ndarray:
    """Undo `ScaleIntensityRanged(a_min, a_max -> 0, 1)`: HU, clipped to `hu_range` as the network saw them."""
    low, high = (float(v) for v in hu_range)
    return low + np.asarray(image, dtype=np.float32) * (high - low)


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The patient's body: the largest piece of tissue, thin attachments (table, cables) cut, holes filled per slice.

    Opening by one voxel in each axial slice (3 mm on the CT grid) detaches the table and blankets
    (in-plane only, so that a scan of one or two thick slices keeps its body); filling each axial
    slice's holes puts the lungs, airways and bowel gas inside the body.
    """
    tissue = ndimage.binary_opening(hu > TISSUE_HU, structure=IN_PLANE)
    pieces, count = ndimage.label(tissue)
    if count == 0:
        return np.zeros(hu.shape, bool)
    body = pieces == (int(np.argmax(np.bincount(pieces.ravel())[1:])) + 1)
    body = ndimage.binary_dilation(body, structure=IN_PLANE) & (hu > TISSUE_HU)  # give back the opened-off skin
    return fill_holes_per_slice(body)


def lung_air(
    hu: np.ndarray, body: np.ndarray, ml_per_voxel: float, min_ml: float = 20.0, max_gas: float = 0.3
) -> np.ndarray:
    """Air-filled lung inside the body: pieces of internal air (< -500 HU) that look like aerated lung.

    A piece counts when it holds at least `min_ml` and at most a fraction `max_gas` of its voxels
    is pure gas (< -950 HU): bowel gas, the stomach bubble and air outside the body are nearly all
    gas, aerated lung is not (measured on the sample CTs: lungs 0.00-0.02, bowel gas 0.6-0.7 on the
    3 mm grid). Severe emphysema would fail this test. The pieces' holes (vessels) are filled per slice.
    """
    air = body & (hu <= TISSUE_HU)
    pieces, count = ndimage.label(air)
    if count == 0:
        return np.zeros(hu.shape, bool)
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)
    gas = np.bincount(pieces.ravel(), weights=(hu < PURE_AIR_HU).ravel(), minlength=count + 1)
    keep = (sizes * ml_per_voxel >= min_ml) & (gas <= max_gas * np.maximum(sizes, 1))
    keep[0] = False
    return fill_holes_per_slice(keep[pieces])


def bone_cavity_cm2(hu: np.ndarray, pixel_cm2: float, max_fat: float = 0.05) -> float:
    """The largest area that bone closes around in one axial slice, of soft tissue: the skull's cavity in a head.

    In the trunk bone never closes around the body in an axial slice (ribs, spine and pelvis leave gaps), so its
    cavities are those of single bones (a vertebral body, a femoral head). Cavities of which more than `max_fat`
    is fat or air do not count (a ribcage closed by calcified cartilage holds lung and fat; a skull holds brain).
    """
    bone = hu > BONE_HU
    cavities, count = ndimage.label(fill_holes_per_slice(bone) & ~bone, structure=IN_PLANE)
    if count == 0:
        return 0.0
    sizes = np.bincount(cavities.ravel(), minlength=count + 1)[1:]
    fat = np.bincount(cavities.ravel(), weights=(hu < FAT_HU).ravel(), minlength=count + 1)[1:]
    soft = fat <= max_fat * sizes
    return float(sizes[soft].max()) * pixel_cm2 if soft.any() else 0.0


def shows_a_head(anatomy: CtAnatomy) -> bool:
    """Whether a CT in HU is of the head (or head and neck) only: no aerated lung anywhere and a skull's cavity.

    An image without air or fat (an MRI read as HU) is no CT to judge: its bright rims can close around
    anything, so it is never taken for a head. Checked cheapest first: a CT with lungs costs nothing more.
    """
    return (
        not anatomy.lungs.any()
        and float(np.percentile(anatomy.hu, 1)) <= HU_P01_MAX
        and anatomy.bone_cavity_cm2 >= SKULL_MIN_CM2
    )


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Each axial slice's holes filled: one pass whose structure connects voxels within a slice only."""
    return ndimage.binary_fill_holes(mask, structure=IN_PLANE)


def voxel_ml(affine: np.ndarray) -> float:
    """Volume of one voxel of a grid in millilitres."""
    return abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3]))) / 1000.0


class CtAnatomy:
    """One preprocessed CT (channel-first, scaled from `hu_range` to [0, 1]) in HU, with its body and aerated
    lungs computed on first use: the three anatomy steps and the quality flag share one instance per image."""

    def __init__(self, image, hu_range: Sequence[float]) -> None:
        array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        self.image, self.hu_range = image, tuple(hu_range)
        self.hu = to_hu(array[0], hu_range)
        self.ml_per_voxel = voxel_ml(np.asarray(image.affine))
        spacing = np.sqrt((np.asarray(image.affine, float)[:3, :3] ** 2).sum(0))
        self.pixel_cm2 = float(spacing[0] * spacing[1]) / 100.0

    @cached_property
    def body(self) -> np.ndarray:
        return body_mask(self.hu)

    @cached_property
    def lungs(self) -> np.ndarray:
        return lung_air(self.hu, self.body, self.ml_per_voxel)

    @cached_property
    def bone_cavity_cm2(self) -> float:
        return bone_cavity_cm2(self.hu, self.pixel_cm2)


ANATOMY_KEY = "ct_anatomy"
"""Data key under which the steps pass their CtAnatomy on (AssessQualityd, the last user, removes it)."""


def ct_anatomy(d: dict, image_key: str, hu_range: Sequence[float]) -> CtAnatomy:
    """The CtAnatomy of `d[image_key]`: the one an earlier step left in `d` for this very image, else a new one."""
    found = d.get(ANATOMY_KEY)
    if not (isinstance(found, CtAnatomy) and found.image is d[image_key] and found.hu_range == tuple(hu_range)):
        found = d[ANATOMY_KEY] = CtAnatomy(d[image_key], hu_range)
    return found


class MaskOutsideBodyd(MapTransform):
    """No organ outside the body: foreground probabilities are set to 0 outside `body_mask` (CT, network grid).

    Runs on softmax probabilities before they go back to the input grid, so the label map there is
    the argmax with the body constraint and needs no second resampling. Like the other anatomy
    rules it does nothing when the intensity window hides air (`sees_air`).

    Args:
        keys: keys of channel-first class probabilities on the image's grid.
        image_key: key of the preprocessed CT (intensities scaled from `hu_range` to [0, 1]).
        hu_range: the (a_min, a_max) HU window the intensity transform mapped to [0, 1].
        allow_missing_keys: do not fail when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        hu_range: Sequence[float] = (-1000.0, 1000.0),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.hu_range = image_key, tuple(hu_range)

    def __call__(self, data):
        d = dict(data)
        if not sees_air(self.hu_range):
            return d
        outside = ~ct_anatomy(d, self.image_key, self.hu_range).body
        for key in self.key_iterator(d):
            d[key] = rule_out(d[key], outside)
        return d


class LungsOnlyInAird(MapTransform):
    """Lungs only where the CT shows aerated lung: the lung probability is set to 0 outside `lung_air`.

    Bowel gas, air around the body and soft tissue can then no longer be called lung; where the
    image shows no aerated lung (a pelvis, a head), no lung is labelled at all.

    Args:
        keys: keys of channel-first class probabilities on the image's grid.
        class_names: class names by label value, background first.
        lung_class: the lungs' class name (absent from `class_names`: the transform does nothing).
        image_key: key of the preprocessed CT (intensities scaled from `hu_range` to [0, 1]).
        hu_range: the (a_min, a_max) HU window the intensity transform mapped to [0, 1].
        margin_voxels: the lung region is grown by this many voxels (partial volume at its edge).
        allow_missing_keys: do not fail when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        class_names: Sequence[str],
        lung_class: str = "lungs",
        image_key: str = "image",
        hu_range: Sequence[float] = (-1000.0, 1000.0),
        margin_voxels: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.labels = [value for value, name in enumerate(class_names) if name == lung_class]
        self.image_key, self.hu_range = image_key, tuple(hu_range)
        self.margin_voxels = int(margin_voxels)

    def __call__(self, data):
        d = dict(data)
        if not self.labels or not sees_air(self.hu_range):
            return d
        lungs = ct_anatomy(d, self.image_key, self.hu_range).lungs
        if self.margin_voxels > 0 and lungs.any():
            lungs = ndimage.binary_dilation(lungs, iterations=self.margin_voxels)
        for key in self.key_iterator(d):
            d[key] = rule_out(d[key], ~lungs, self.labels)
        return d


def chest_slices(lungs: np.ndarray, pixel_cm2: float, min_cm2: float = 10.0) -> np.ndarray:
    """Per axial slice (axis 2): whether it shows at least `min_cm2` of aerated lung, i.e. lies in the chest."""
    return lungs.sum((0, 1)) * pixel_cm2 >= min_cm2


class ChestOnlyOrgansd(MapTransform):
    """Organs of the chest alone (the heart) only in axial slices that show aerated lung (within a margin).

    The heart lies between the lungs, above the diaphragm: in a slice with no aerated lung (the
    abdomen, the pelvis, a head) it cannot be. Measured on the sample CTs: the network's heart lay
    in such slices for 108 of its 109 mL on the held-out abdomen CT, and for 0-1 mL on the two
    chest CTs.

    Args:
        keys: keys of channel-first class probabilities on the image's grid (RAS: axis 2 to the head).
        class_names: class names by label value, background first.
        chest_classes: the classes found only in the chest (those absent from `class_names` are ignored).
        image_key: key of the preprocessed CT (intensities scaled from `hu_range` to [0, 1]).
        hu_range: the (a_min, a_max) HU window the intensity transform mapped to [0, 1].
        margin_mm: slices this far above or below a chest slice count as chest (the heart's apex on the diaphragm).
        allow_missing_keys: do not fail when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        class_names: Sequence[str],
        chest_classes: Sequence[str] = ("heart",),
        image_key: str = "image",
        hu_range: Sequence[float] = (-1000.0, 1000.0),
        margin_mm: float = 10.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.labels = [value for value, name in enumerate(class_names) if name in set(chest_classes)]
        self.image_key, self.hu_range = image_key, tuple(hu_range)
        self.margin_mm = float(margin_mm)

    def __call__(self, data):
        d = dict(data)
        if not self.labels or not sees_air(self.hu_range):
            return d
        anatomy = ct_anatomy(d, self.image_key, self.hu_range)
        spacing = np.sqrt((np.asarray(d[self.image_key].affine, float)[:3, :3] ** 2).sum(0))
        chest = chest_slices(anatomy.lungs, spacing[0] * spacing[1] / 100.0)
        margin = int(np.ceil(self.margin_mm / spacing[2]))
        if margin and chest.any():
            chest = ndimage.binary_dilation(chest, iterations=margin)
        outside = np.broadcast_to(~chest[None, None, :], anatomy.hu.shape)
        for key in self.key_iterator(d):
            d[key] = rule_out(d[key], np.ascontiguousarray(outside), self.labels)
        return d


class NoTrunkOrgansInHeadd(MapTransform):
    """No organ of the chest or abdomen in a CT of the head: their probabilities are set to 0 everywhere when the
    image shows a skull's cavity and no aerated lung (`shows_a_head`).

    A scan that reaches the lung apices (a neck CT down to the chest, a whole body) keeps them: the rule only
    speaks for images that end above the chest, and only for CTs in HU (an MRI is left to the quality flag).
    Without it the pipeline left 63-112 mL of spleen, kidneys, liver and aorta in the scalp, vertex and neck of
    three real head CTs.

    Args:
        keys: keys of channel-first class probabilities on the image's grid (RAS: axis 2 to the head).
        class_names: class names by label value, background first.
        trunk_classes: the classes found only in the chest and abdomen (those absent from `class_names` are ignored).
        image_key: key of the preprocessed CT (intensities scaled from `hu_range` to [0, 1]).
        hu_range: the (a_min, a_max) HU window the intensity transform mapped to [0, 1].
        allow_missing_keys: do not fail when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        class_names: Sequence[str],
        trunk_classes: Sequence[str] = TRUNK_CLASSES,
        image_key: str = "image",
        hu_range: Sequence[float] = (-1000.0, 1000.0),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.labels = [value for value, name in enumerate(class_names) if name in set(trunk_classes)]
        self.image_key, self.hu_range = image_key, tuple(hu_range)

    def __call__(self, data):
        d = dict(data)
        if not self.labels or not sees_air(self.hu_range):
            return d
        anatomy = ct_anatomy(d, self.image_key, self.hu_range)
        if not shows_a_head(anatomy):
            return d
        everywhere = np.ones(anatomy.hu.shape, bool)
        for key in self.key_iterator(d):
            d[key] = rule_out(d[key], everywhere, self.labels)
        return d
