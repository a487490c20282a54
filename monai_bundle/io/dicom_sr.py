"""DICOM Structured Reports (TID 1500 Measurement Report, highdicom) of MedImg results.

Two kinds: the volume of each segment of a SEG (one volumetric measurement group per segment, referencing the
segment and the source series), and a classification of one image (the probability of a finding and the
predicted class, as a measurement and a qualitative evaluation referencing the image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import iter_pixels
from pydicom.sr.codedict import codes

from monai_bundle.io.dicom import read_series
from monai_bundle.io.dicom_codes import (
    CLASS_CODES,
    CLASSIFICATION,
    IMAGING_PROCEDURE,
    MILLILITRE,
    NO_UNITS,
    PROBABILITY,
    VOLUME,
    code,
)
from monai_bundle.io.dicom_derived import MANUFACTURER, Algorithm, check_output, save_atomic, source_objects

SR_SERIES_NUMBER = 9002
"""Series number of the SR objects written."""


def write_dicom_sr(
    segmentation: Dataset | str | Path,
    source: str | Path,
    algorithm: Algorithm | Mapping[str, Any],
    path: str | Path,
    *,
    volumes_ml: Mapping[str, float] | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Write a TID 1500 report of the volume (mL) of each segment of `segmentation`, atomically.

    Each segment gets a volumetric measurement group (TID 1411) that references the segment in the SEG and the
    source series, names the segment's property type as its finding, and holds its volume.

    Args:
        segmentation: the SEG, as `write_dicom_seg` returned it or a path to it.
        source: the DICOM series the SEG was made from (its folder or one of its files).
        algorithm: what computed the volumes (Algorithm, or a mapping with task, version, weights_sha256).
        path: the file to write; not in the source's folder.
        volumes_ml: volume per segment label, to report instead of counting the SEG's voxels (e.g. the values of a
            CSV report); segments not in it are counted. By default each volume is the segment's voxel count times
            the source grid's voxel volume.

    Returns:
        The written SR dataset.
    """
    path = check_output(path, source)
    algorithm = Algorithm.of(algorithm)
    seg = segmentation if isinstance(segmentation, Dataset) else pydicom.dcmread(segmentation)
    series = read_series(source)
    sources = source_objects(Path(source), [plane.file for plane in series.planes])
    referenced = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    if referenced != sources[0].SeriesInstanceUID:
        raise ValueError(f"{path}: the SEG was made from series {referenced}, not from {source}")
    volumes = _segment_volumes_ml(seg, series.affine)
    unknown = sorted(set(volumes_ml or {}) - set(volumes))
    if unknown:
        raise ValueError(f"{path}: volumes_ml names {unknown}, which are not segments of the SEG {sorted(volumes)}")
    volumes.update({str(k): float(v) for k, v in (volumes_ml or {}).items()})
    source_series = hd.sr.SourceSeriesForSegmentation(referenced)
    groups = []
    for segment in seg.SegmentSequence:
        label = str(segment.SegmentLabel)
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=label),
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=seg.SOPClassUID,
                    sop_instance_uid=seg.SOPInstanceUID,
                    segment_number=int(segment.SegmentNumber),
                    source_series=source_series,
                ),
                finding_type=_plain(segment.SegmentedPropertyTypeCodeSequence[0]),
                finding_category=_plain(segment.SegmentedPropertyCategoryCodeSequence[0]),
                finding_sites=_laterality(segment.SegmentedPropertyTypeCodeSequence[0]),
                algorithm_id=_sr_algorithm(algorithm),
                measurements=[
                    hd.sr.Measurement(name=code(VOLUME), value=round(volumes[label], 3), unit=code(MILLILITRE))
                ],
            )
        )
    return _write_report(groups, [seg, *sources], algorithm, path, "volumes")


def write_dicom_sr_classification(
    source: str | Path,
    algorithm: Algorithm | Mapping[str, Any],
    path: str | Path,
    *,
    probability: float,
    finding: str,
    predicted_class: str,
    class_codes: Mapping[str, Sequence[str]] | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Write a TID 1500 report of the classification of one DICOM image, atomically.

    One measurement group (TID 1501) references the image, names `finding` as its finding type, and holds the
    probability of that finding (a measurement, no units) and the predicted class (a qualitative evaluation
    'Classification' whose value is the class's code).

    Args:
        source: the classified DICOM image file (e.g. a CR/DX radiograph).
        algorithm: what classified it (Algorithm, or a mapping with task, version, weights_sha256, parameters such
            as {'threshold': '0.5'}).
        path: the file to write; not in the source's folder.
        probability: the model's probability of `finding`, in [0, 1].
        finding: the class whose probability it is (e.g. 'pneumonia').
        predicted_class: the class predicted (e.g. 'normal').
        class_codes: class name -> [code value, scheme, meaning], before CLASS_CODES.

    Returns:
        The written SR dataset.
    """
    path = check_output(path, source)
    algorithm = Algorithm.of(algorithm)
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"{path}: probability {probability} is not in [0, 1]")
    known = {**CLASS_CODES, **(class_codes or {})}
    missing = sorted({finding, predicted_class} - set(known))
    if missing:
        raise KeyError(f"class(es) {missing} have no code: give class_codes, or add them to CLASS_CODES")
    image = source_objects(Path(source), [Path(source)])[0]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=algorithm.task),
        finding_type=code(known[finding]),
        algorithm_id=_sr_algorithm(algorithm),
        measurements=[hd.sr.Measurement(name=code(PROBABILITY), value=float(probability), unit=code(NO_UNITS))],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=code(CLASSIFICATION), value=code(known[predicted_class]))
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(image)],
    )
    return _write_report([group], [image], algorithm, path, "classification")


def read_volumes_ml(path: str | Path) -> dict[str, float]:
    """Segment label -> volume (mL) of a volume report that `write_dicom_sr` wrote, as highdicom reads it back."""
    report = hd.sr.srread(path)
    volumes = {}
    for group in report.content.get_volumetric_roi_measurement_groups():
        for measurement in group.get_measurements(name=code(VOLUME)):
            volumes[str(group.tracking_identifier)] = float(measurement.value)
    return volumes


def _segment_volumes_ml(seg: Dataset, affine: np.ndarray) -> dict[str, float]:
    """Each segment's voxel count in the SEG's frames times the source grid's voxel volume, by segment label."""
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    counts = np.zeros(len(seg.SegmentSequence) + 1)
    for groups, frame in zip(seg.PerFrameFunctionalGroupsSequence, iter_pixels(seg), strict=True):  # frame by frame
        counts[int(groups.SegmentIdentificationSequence[0].ReferencedSegmentNumber)] += np.count_nonzero(frame)
    return {str(s.SegmentLabel): float(counts[int(s.SegmentNumber)]) * voxel_ml for s in seg.SegmentSequence}


def _plain(item: Dataset) -> hd.sr.CodedConcept:
    """A code item of a SEG without its modifiers."""
    return hd.sr.CodedConcept(item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning)


def _laterality(item: Dataset) -> list[hd.sr.FindingSite] | None:
    """A SEG property type's modifier (e.g. 'Bilateral') as an SR finding site's laterality, where it has one."""
    modifiers = item.get("SegmentedPropertyTypeModifierCodeSequence")
    if not modifiers:
        return None
    return [hd.sr.FindingSite(anatomic_location=_plain(item), laterality=_plain(modifiers[0]))]


def _sr_algorithm(algorithm: Algorithm) -> hd.sr.AlgorithmIdentification:
    parameters = [f"{name}={value}" for name, value in algorithm.all_parameters().items()]
    return hd.sr.AlgorithmIdentification(name=algorithm.label, version=algorithm.version, parameters=parameters)


def _write_report(groups: list, evidence: list[Dataset], algorithm: Algorithm, path: Path, what: str):
    """Wrap measurement groups in a TID 1500 report observed by the algorithm (a device), and save it."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=algorithm.device_uid(), name=algorithm.label, manufacturer_name=MANUFACTURER, model_name=algorithm.task
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(codes.DCM.Device, device)
        ),
        procedure_reported=code(IMAGING_PROCEDURE),
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"{algorithm.label} {what}"[:64],
    )
    save_atomic(sr, path)
    return sr
