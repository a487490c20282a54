"""DICOM Segmentation (SEG) objects of a label map on a DICOM input's grid, written with highdicom.

The SEG references its source series (study, frame of reference, each frame's source image or frame) and has one
segment per label with its name, standard codes (dicom_codes.LABEL_CODES), the algorithm that made it, and the
label's display colour. Its frames lie exactly at the source slices' positions (no regularisation, no resampling).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np

from monai_bundle.io.dicom import read_series
from monai_bundle.io.dicom_codes import SEGMENTATION_ALGORITHM_FAMILY, code, label_codes
from monai_bundle.io.dicom_derived import MANUFACTURER, Algorithm, check_output, save_atomic, source_objects
from monai_bundle.io.geometry import GRID_TOLERANCE_MM
from monai_bundle.palette import label_colour

SEG_SERIES_NUMBER = 9001
"""Series number of the SEG objects written (an SR of them gets 9002)."""


def write_dicom_seg(
    label_map: np.ndarray,
    affine: np.ndarray,
    source: str | Path,
    labels: Mapping[int, str | Mapping[str, Any]],
    algorithm: Algorithm | Mapping[str, Any],
    path: str | Path,
    *,
    series_description: str | None = None,
) -> hd.seg.Segmentation:
    """Write `label_map`, computed from the DICOM image(s) `source`, as a binary DICOM SEG at `path`, atomically.

    Args:
        label_map: integer labels [i, j(, k)] on the source's grid, as `read_image(source)` gives its voxels; 0 is
            background.
        affine: the label map's voxel-to-RAS affine; it must be the source's (to GRID_TOLERANCE_MM).
        source: the DICOM series (its folder or one of its files) or multi-frame file the labels were computed from.
        labels: label value -> its name, whose codes LABEL_CODES gives, or a mapping with 'name' and the codes
            ('category', 'type', optional 'modifier': [value, scheme, meaning]). Every value in the label map
            must be listed; a listed label that is absent gets an empty segment. Segments are numbered 1, 2, ...
            in label-value order.
        algorithm: what made the labels (Algorithm, or a mapping with task, version, weights_sha256).
        path: the file to write; not in the source's folder.
        series_description: the SEG series' description (default: '<name> <task> segmentation').

    Returns:
        The written Segmentation dataset (write_dicom_sr takes it).

    Raises:
        ImageReadError: the source cannot be read or referenced.
        ValueError: the label map is not on the source's grid, has unlisted labels, or `path` is in the input folder.
        KeyError: a label has no code.
    """
    path = check_output(path, source)
    algorithm = Algorithm.of(algorithm)
    series = read_series(source)
    label_map = _on_grid(np.asarray(label_map), np.asarray(affine, dtype=float), series, path)
    labels = {int(value): label for value, label in labels.items()}  # JSON keys are text
    numbers = sorted(labels)
    if not numbers or numbers[0] <= 0:
        raise ValueError(f"{path}: `labels` must describe label values above 0 (background), not {numbers}")
    unlisted = sorted(set(np.unique(label_map).tolist()) - {0, *numbers})
    if unlisted:
        raise ValueError(f"{path}: label value(s) {unlisted} not described by `labels`")
    segments = np.zeros(numbers[-1] + 1, dtype=np.uint16)
    segments[numbers] = np.arange(1, len(numbers) + 1)  # label value -> segment number
    files = [plane.file for plane in series.planes]
    sources = source_objects(Path(source), files)
    frames = _frames_in_source_order(segments[label_map], series, len(sources))
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            _segment(number, value, labels[value], algorithm) for number, value in enumerate(numbers, start=1)
        ],
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm.task,
        software_versions=algorithm.version,
        device_serial_number=algorithm.weights_sha256[:64] or "unknown",
        content_label="SEGMENTATION",
        content_description=f"{algorithm.label} labels"[:64],
        series_description=(series_description or f"{algorithm.label} segmentation")[:64],
        omit_empty_frames=bool(frames.any()),  # highdicom needs one frame at least
    )
    save_atomic(seg, path)
    return seg


def _on_grid(label_map: np.ndarray, affine: np.ndarray, series, path: Path) -> np.ndarray:
    """`label_map` as [i, j, k] (a single slice too), checked to hold labels on the source series' grid."""
    if label_map.dtype.kind not in "iub":
        raise ValueError(f"{path}: a label map holds integers, not {label_map.dtype}")
    if label_map.shape != series.shape or affine.shape != (4, 4):
        raise ValueError(f"{path}: label map shape {label_map.shape} is not the source's {series.shape}")
    error = float(np.abs(affine - series.affine).max())
    if error > GRID_TOLERANCE_MM:
        raise ValueError(f"{path}: label map affine differs from the source's grid by {error:.3g} mm")
    if label_map.dtype == bool:
        label_map = label_map.view(np.uint8)  # 0/1 values, not a mask to index with
    if label_map.dtype.kind == "i" and label_map.min(initial=0) < 0:
        raise ValueError(f"{path}: negative label values")
    return label_map.reshape(*series.shape[:2], -1)


def _frames_in_source_order(segments: np.ndarray, series, n_sources: int) -> np.ndarray:
    """The label map [i, j, k] as SEG frames [frame, row, column] in the order highdicom pairs them with sources.

    One frame per source file for single-frame files (in slice order); for one multi-frame file, its frame order.
    """
    planes = series.planes
    if all(plane.frame is None for plane in planes):
        return np.ascontiguousarray(segments.transpose(2, 1, 0))
    if n_sources != 1:
        raise ValueError(f"{planes[0].file}: a SEG of several multi-frame objects is not supported")
    frames = np.zeros((len(planes), segments.shape[1], segments.shape[0]), dtype=segments.dtype)
    for k, plane in enumerate(planes):
        frames[plane.frame] = segments[:, :, k].T
    return frames


def _segment(number: int, value: int, label: str | Mapping[str, Any], algorithm: Algorithm):
    """The description of one segment: its label, codes, algorithm and colour."""
    given = {"name": label} if isinstance(label, str) else dict(label)
    name = str(given.get("name") or f"label {value}")
    codes = label_codes(name, given)
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=codes["category"],
        segmented_property_type=codes["type"],
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm.label[:64],
            family=code(SEGMENTATION_ALGORITHM_FAMILY),
            version=algorithm.version[:64],
            parameters=algorithm.all_parameters(),
        ),
        tracking_uid=hd.UID(),
        tracking_id=name[:64],
        display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in label_colour(value, name))),
    )
    if "modifier" in codes:
        modifier = hd.sr.CodedConcept.from_code(codes["modifier"])
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [modifier]
    return description
