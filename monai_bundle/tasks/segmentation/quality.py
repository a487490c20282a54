"""The quality flag of a segmentation: `ok`, or `review` with one line per reason.

A model trained on chest and abdomen CTs still answers when it is given a head, an MRI or a
noisy scrap of a scan, and its answer then looks as confident as any other. The flag checks what
the image itself shows (modality, body region, field of view, noise) and what the network did
with it (organ volumes for that region, organ voxels it put outside the body, its uncertainty),
with the rules and thresholds documented in the bundle docs (*Quality flag*).

`measure` computes the numbers, `assess` applies the rules, `AssessQualityd` does both inside
the inference pipeline and writes `<name>_quality.json` next to the label map.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy import ndimage

from monai_bundle.io import write_text_atomic

from .anatomy import (
    ANATOMY_KEY,
    HU_P01_MAX,
    SKULL_MIN_CM2,
    TRUNK_CLASSES,
    CtAnatomy,
    body_mask,
    bone_cavity_cm2,
    chest_slices,
    lung_air,
    sees_air,
    voxel_ml,
)
from .transforms import first_argmax

QUALITY_SUFFIX = "_quality.json"

TRUNK_MIN_CM2 = 350.0
"""An axial slice whose largest body cross-section reaches this shows the trunk (adult abdomen 500-900 cm²,
chest 450-700; a head is at most about 250, a neck 150, a thigh 250)."""

LUNG_MIN_CM2 = 10.0
"""An axial slice with this much aerated lung shows the chest."""


def noise_hu(hu: np.ndarray, body: np.ndarray) -> float | None:
    """Noise in HU of soft tissue (-150..150 HU) inside the body: robust spread of neighbour differences.

    1.4826 x the median absolute deviation of differences between neighbours along x, / sqrt 2
    (each difference holds two voxels' noise); anatomy edges are rare among soft-tissue pairs,
    so they barely move the median. Soft tissue is chosen on the 3x3x3 mean, so that heavy noise
    does not push its own voxels out of the window. On the grid the network sees; None with too
    little soft tissue to tell.
    """
    smooth = ndimage.uniform_filter(hu, 3)
    soft = body & (smooth > -150) & (smooth < 150)
    pairs = soft[1:] & soft[:-1]
    if pairs.sum() < 100:
        return None
    diff = (hu[1:] - hu[:-1])[pairs]
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2))


def measure(
    hu: np.ndarray,
    affine: np.ndarray,
    probabilities: np.ndarray | None = None,
    body: np.ndarray | None = None,
    lungs: np.ndarray | None = None,
    cavity_cm2: float | None = None,
) -> dict[str, Any]:
    """What a CT (in HU, RAS, axis 2 to the head) and the network's probabilities (same grid) show.

    Returns plain numbers (JSON-ready): HU percentiles, body cross-sections, lungs, field of view,
    noise, and with the probabilities `network_measures` (organ voxels outside the body counted).
    `body`, `lungs` and `cavity_cm2` (anatomy.body_mask, lung_air, bone_cavity_cm2 of `hu`) are computed
    when not given; the skull's cavity only matters, and is only measured, when the image shows no lung.
    """
    spacing = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(0))
    pixel_cm2 = spacing[0] * spacing[1] / 100.0
    body = body_mask(hu) if body is None else body
    lungs = lung_air(hu, body, voxel_ml(affine)) if lungs is None else lungs
    areas = [_largest_area(body[:, :, z]) * pixel_cm2 for z in range(body.shape[2])]
    body_slices = [z for z in range(body.shape[2]) if body[:, :, z].any()]
    noise = noise_hu(hu, body)
    if lungs.any():
        cavity_cm2 = None  # a skull only matters in an image without lungs
    elif cavity_cm2 is None:
        cavity_cm2 = bone_cavity_cm2(hu, pixel_cm2)
    edge = [np.concatenate([s[0], s[-1], s[:, 0], s[:, -1]]).mean() for s in np.moveaxis(body, 2, 0) if s.any()]
    out = {
        "hu_p01": round(float(np.percentile(hu, 1)), 1),
        "body_ml": round(float(body.sum()) * voxel_ml(affine), 1),
        "largest_cross_section_cm2": round(float(max(areas, default=0.0)), 1),
        "trunk_slices": int(sum(area >= TRUNK_MIN_CM2 for area in areas)),
        "lung_air_ml": round(float(lungs.sum()) * voxel_ml(affine), 1),
        "chest_slices": int(chest_slices(lungs, pixel_cm2, LUNG_MIN_CM2).sum()),
        "bone_cavity_cm2": None if cavity_cm2 is None else round(cavity_cm2, 1),
        "body_length_mm": round(float(len(body_slices) * spacing[2]), 1),
        "body_at_image_edge": round(float(np.median(edge)) if edge else 0.0, 3),
        "noise_hu": None if noise is None else round(noise, 1),
    }
    if probabilities is not None:
        out.update(network_measures(probabilities, body))
    return out


def network_measures(probabilities: np.ndarray, body: np.ndarray | None = None) -> dict[str, float]:
    """The network's mean normalised softmax entropy (0..1) where it predicts an organ, and (with a body
    mask) the fraction of those voxels outside the body."""
    organs = first_argmax(probabilities) > 0
    count = int(organs.sum())
    if not count:
        return {"organ_entropy": 0.0} | ({"organ_voxels_outside_body": 0.0} if body is not None else {})
    p = np.clip(probabilities[:, organs], 1e-8, 1.0)
    entropy = -(p * np.log(p)).sum(0) / math.log(p.shape[0])
    out = {"organ_entropy": round(float(entropy.mean()), 3)}
    if body is not None:
        out["organ_voxels_outside_body"] = round(float((organs & ~body).sum()) / count, 3)
    return out


def _largest_area(mask: np.ndarray) -> int:
    pieces, count = ndimage.label(mask)
    return int(np.bincount(pieces.ravel())[1:].max()) if count else 0


DEFAULT_RULES: dict[str, Any] = {
    "modality": "CT",
    "trunk_organs": list(TRUNK_CLASSES),
    "lungs": "lungs",
    "organ_max_ml": {},
    "min_hu": HU_P01_MAX,
    "min_body_length_mm": 60.0,
    "max_body_at_image_edge": 0.3,
    "max_noise_hu": 60.0,
    "max_organ_voxels_outside_body": 0.4,
    "max_organ_entropy": 0.3,
    "organs_outside_region_ml": 5.0,
}
"""The rules of `assess` and their thresholds (the bundle docs, *Quality flag*, say where each comes from)."""


def assess(measures: Mapping[str, Any], volumes_ml: Mapping[str, float], rules: Mapping[str, Any]) -> list[str]:
    """The reasons to review a result (empty: ok), one line each, from `measure`'s numbers and the label volumes.

    `rules`: `DEFAULT_RULES` keys; with `modality` other than "CT" only the network's own signals
    (entropy) are checked, since the HU and anatomy rules mean nothing for other images.
    """
    r = {**DEFAULT_RULES, **rules}
    reasons = []
    if r["modality"] == "CT":
        reasons += _ct_reasons(measures, volumes_ml, r)
    if measures.get("organ_entropy", 0.0) > r["max_organ_entropy"]:
        reasons.append(
            f"uncertain: mean softmax entropy {measures['organ_entropy']:.2f} where organs are predicted "
            f"(> {r['max_organ_entropy']})"
        )
    return reasons


def _ct_reasons(m: Mapping[str, Any], volumes: Mapping[str, float], r: Mapping[str, Any]) -> list[str]:
    if m["hu_p01"] > r["min_hu"]:  # a CT has air (-1000 HU) or at least fat (-100) somewhere
        return [
            f"not a CT in Hounsfield units: 99% of the image is above {m['hu_p01']:.0f} HU (no air, no fat); "
            "an MRI or a rescaled image?"
        ]
    reasons = []
    organs = {name: volumes.get(name, 0.0) for name in r["trunk_organs"]}
    cut = m["body_at_image_edge"] > r["max_body_at_image_edge"]
    if cut:
        reasons.append(
            f"cropped: the field of view cuts through the body ({m['body_at_image_edge']:.0%} of the image edge "
            "is body)"
        )
    region = None
    if m["chest_slices"] == 0 and (m.get("bone_cavity_cm2") or 0.0) >= SKULL_MIN_CM2:
        region = (
            f"body region: a head (bone encloses {m['bone_cavity_cm2']:.0f} cm² of soft tissue in an axial slice, "
            "a skull; no aerated lung): the model knows chest and abdomen CT only"
        )
    elif not cut and m["trunk_slices"] == 0 and m["chest_slices"] == 0:
        region = (
            f"body region: no chest or abdomen (largest body cross-section {m['largest_cross_section_cm2']:.0f} cm², "
            f"a trunk has >= {TRUNK_MIN_CM2:.0f}; no aerated lung): head, neck or limbs? the model knows chest and "
            "abdomen CT only"
        )
    if region:
        reasons.append(region)
        found = sum(organs.values())
        if found > r["organs_outside_region_ml"]:
            reasons.append(f"{found:.0f} mL of chest/abdomen organs labelled in an image without chest or abdomen")
    elif m["chest_slices"] == 0 and volumes.get(r["lungs"], 0.0) > r["organs_outside_region_ml"]:
        reasons.append(f"{volumes[r['lungs']]:.0f} mL labelled lungs, but the image shows no aerated lung")
    for name, limit in r["organ_max_ml"].items():
        if volumes.get(name, 0.0) > limit:
            reasons.append(f"implausible volume: {name} {volumes[name]:.0f} mL (an adult's is at most {limit:.0f})")
    if m["body_length_mm"] < r["min_body_length_mm"]:
        reasons.append(f"cropped: the body spans only {m['body_length_mm']:.0f} mm along its axis")
    if m["noise_hu"] is not None and m["noise_hu"] > r["max_noise_hu"]:
        reasons.append(f"noisy: {m['noise_hu']:.0f} HU noise in soft tissue (> {r['max_noise_hu']:.0f})")
    if m.get("organ_voxels_outside_body", 0.0) > r["max_organ_voxels_outside_body"]:
        reasons.append(
            f"the network put {m['organ_voxels_outside_body']:.0%} of its organ voxels outside the body "
            "(removed by postprocessing)"
        )
    return reasons


def quality_path(label_path: str | Path, output_postfix: str = "seg") -> Path:
    """`<name>_quality.json` beside a result `<name>_<output_postfix>.<ext>`."""
    path = Path(label_path)
    marker = f"_{output_postfix}."
    stem = path.name[: path.name.rindex(marker)] if output_postfix and marker in path.name else path.name.split(".")[0]
    return path.with_name(stem + QUALITY_SUFFIX)


def read_quality(label_path: str | Path, output_postfix: str = "seg") -> dict[str, Any] | None:
    """The quality written beside a result, or None when there is none (older results, other tasks)."""
    path = quality_path(label_path, output_postfix)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def with_quality(outputs: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """A run's outputs plus the quality file written beside its label map, and {'quality', 'quality_reasons'}
    of that file (empty when the run wrote none, e.g. a classification or an outside bundle's result)."""
    outputs = list(outputs)
    for output in list(outputs):
        path = quality_path(output)
        quality = read_quality(output)
        if quality is not None:
            if str(path) not in outputs:
                outputs.append(str(path))
            return outputs, {"quality": quality["quality"], "quality_reasons": quality["reasons"]}
    return outputs, {}


def quality_line(quality: Mapping[str, Any] | None) -> str:
    """One line for people: 'ok', or 'review: reason; reason' ('not assessed' without a quality file)."""
    if not quality:
        return "not assessed"
    reasons = quality.get("reasons") or []
    return quality["quality"] + (": " + "; ".join(reasons) if reasons else "")


class AssessQualityd(MapTransform):
    """The quality flag of each result: `ok` or `review` with reasons, written beside the label map.

    Placed after `SaveOnInputGridd`: it reads the written label map's volumes (on the input's grid),
    the preprocessed image (network grid) and the network's raw probabilities kept under
    `probabilities_key` (copied before the anatomy postprocessing, so that what it had to remove
    still counts), writes `<name>_quality.json` atomically, and adds `quality` (the same dict) and
    `quality_path` to the item; the probabilities are dropped.

    Args:
        keys: keys of the label maps on the input grid (`<key>_path` names the written file).
        class_names: class names, background first.
        image_key: key of the preprocessed image.
        probabilities_key: key of the network's softmax output; None or absent: no network rules.
        hu_range: the (a_min, a_max) HU window the CT intensity transform mapped to [0, 1] (CT only).
        rules: `DEFAULT_RULES` overrides (e.g. {"modality": "MR"}; `organ_max_ml` per label).
        output_postfix: the results' postfix (`<name>_<postfix>.<ext>`), stripped for the quality file's name.
        allow_missing_keys: do not fail when a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        class_names: Sequence[str],
        image_key: str = "image",
        probabilities_key: str | None = "probabilities",
        hu_range: Sequence[float] | None = None,
        rules: Mapping[str, Any] | None = None,
        output_postfix: str = "seg",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.class_names = list(class_names)
        self.image_key, self.probabilities_key = image_key, probabilities_key
        self.rules = {**DEFAULT_RULES, **(rules or {})}
        if self.rules["modality"] == "CT" and hu_range is None:
            raise ValueError("AssessQualityd: the CT rules need hu_range, the HU window of the intensity transform")
        self.hu_range = tuple(hu_range) if hu_range is not None else None
        self.output_postfix = output_postfix

    def __call__(self, data):
        d = dict(data)
        probabilities = d.pop(self.probabilities_key, None) if self.probabilities_key else None
        anatomy = d.pop(ANATOMY_KEY, None)  # left by the anatomy steps, when they ran on this image
        for key in self.key_iterator(d):
            quality = self.assess_item(d[key], d[self.image_key], probabilities, anatomy)
            path = quality_path(d[f"{key}_path"], self.output_postfix)
            write_text_atomic(path, json.dumps(quality, indent=2) + "\n")
            d["quality"], d["quality_path"] = quality, str(path)
        return d

    def assess_item(self, labels, image, probabilities, anatomy: CtAnatomy | None = None) -> dict[str, Any]:
        """The flag, reasons, measurements and label volumes of one result.

        The CT rules need a window that shows air; with a soft-tissue window only the network's
        own signals are checked, and the measurements say so (`ct_checks`).
        """
        probs = None if probabilities is None else np.asarray(_numpy(probabilities), dtype=np.float32)
        ct = self.rules["modality"] == "CT" and sees_air(self.hu_range)
        if ct:
            if not (isinstance(anatomy, CtAnatomy) and anatomy.image is image and anatomy.hu_range == self.hu_range):
                anatomy = CtAnatomy(image, self.hu_range)
            cavity = None if anatomy.lungs.any() else anatomy.bone_cavity_cm2
            measures = measure(anatomy.hu, np.asarray(image.affine), probs, anatomy.body, anatomy.lungs, cavity)
        else:  # another modality, or a CT window that clips air: the HU and anatomy rules cannot run
            measures = {} if probs is None else network_measures(probs)
            if self.rules["modality"] == "CT":
                measures["ct_checks"] = f"skipped: the intensity window {list(self.hu_range)} HU hides air"
        volumes = _volumes_ml(labels, self.class_names)
        reasons = assess(measures, volumes, self.rules if ct else {**self.rules, "modality": "not checked"})
        return {
            "quality": "review" if reasons else "ok",
            "reasons": reasons,
            "measures": measures,
            "volumes_ml": volumes,
        }


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _volumes_ml(labels, class_names: Sequence[str]) -> dict[str, float]:
    """mL of each foreground class of a channel-first label map on the input grid."""
    counts = torch.bincount(_flat_in_memory_order(_numpy(labels)), minlength=len(class_names))
    ml = voxel_ml(np.asarray(labels.meta["affine"]))
    return {name: round(float(counts[k]) * ml, 1) for k, name in enumerate(class_names) if k > 0}


def _flat_in_memory_order(values: np.ndarray) -> torch.Tensor:
    """The voxels of an array as one tensor in memory order, without a copy where it is dense (the label map on the
    input grid is stored in NIfTI's order, a transposed view of its axes: a C-order copy costs more than counting)."""
    if min(values.strides, default=0) < 0:  # a flipped view: torch takes no negative strides
        values = values.copy(order="K")
    axes = sorted(range(values.ndim), key=lambda axis: -values.strides[axis])
    return torch.from_numpy(values).permute(axes).reshape(-1)
