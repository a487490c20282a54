"""monai_bundle.io.dicom_sr: TID 1500 reports of segment volumes and of a classification, valid to dciodvfy and
read back with highdicom."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_edits import dciodvfy_errors, edited_copy
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes

from monai_bundle.io import read_image
from monai_bundle.io.dicom_derived import REQUIRED_PATIENT_STUDY
from monai_bundle.io.dicom_seg import write_dicom_seg
from monai_bundle.io.dicom_sr import write_dicom_sr, write_dicom_sr_classification

from helpers import write_dicom_series as _write_series

SEGMENTATION = {"task": "ct_segmentation", "version": "0.3.1", "weights_sha256": "5a" * 32}
CLASSIFICATION = {"task": "xray_classification", "version": "0.3.1", "weights_sha256": "c3" * 32,
                  "parameters": {"threshold": "0.42"}}  # fmt: skip


@pytest.fixture
def segmented(tmp_path):
    """(source series, its SEG dataset, the label map) of a synthetic series with optional patient attributes."""
    source = edited_copy(_write_series(tmp_path / "ct"), tmp_path / "source", PatientAge="042Y", StudyDescription="x")
    volume = read_image(source)
    labels = np.zeros(volume.array.shape, np.uint8)
    labels[2:20, 3:30, 1:5] = 4
    labels[25:, :, :] = 8
    seg = write_dicom_seg(
        labels, volume.affine, source, {4: "liver", 6: "kidneys", 8: "bone"}, SEGMENTATION, tmp_path / "out" / "seg.dcm"
    )
    return source, seg, labels, abs(np.linalg.det(volume.affine[:3, :3])) / 1000


def volumes_read_back(path) -> dict[str, tuple[float, str, int, str, str]]:
    """label -> (volume, unit, segment number, SEG SOP instance UID, source series UID) as highdicom reads them."""
    report = hd.sr.srread(path)
    found = {}
    for group in report.content.get_volumetric_roi_measurement_groups():
        (measurement,) = group.get_measurements(name=codes.SCT.Volume)
        segment = group.referenced_segment
        found[group.tracking_identifier] = (
            measurement.value,
            measurement.unit.value,
            *segment.referenced_segment_numbers,
            segment.referenced_sop_instance_uid,
            segment.source_series_for_segmentation.value,
        )
    return found


def test_volume_report_references_each_segment_and_the_source_series(segmented, tmp_path):
    source, seg, labels, voxel_ml = segmented
    path = tmp_path / "out" / "sr.dcm"
    sr = write_dicom_sr(seg, source, SEGMENTATION, path)
    assert dciodvfy_errors(path) == []
    source_series = pydicom.dcmread(next(source.iterdir())).SeriesInstanceUID
    references = (seg.SOPInstanceUID, source_series)
    assert volumes_read_back(path) == {
        "liver": (pytest.approx(np.count_nonzero(labels == 4) * voxel_ml, abs=1e-3), "ml", 1, *references),
        "kidneys": (0.0, "ml", 2, *references),
        "bone": (pytest.approx(np.count_nonzero(labels == 8) * voxel_ml, abs=1e-3), "ml", 3, *references),
    }
    assert sr.StudyInstanceUID == seg.StudyInstanceUID and sr.SeriesInstanceUID not in (
        seg.SeriesInstanceUID,
        source_series,
    )
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert seg.SOPInstanceUID in evidence and len(evidence) == 7
    assert "PatientAge" not in sr and "StudyDescription" not in sr
    assert all(keyword in sr for keyword in REQUIRED_PATIENT_STUDY)


def test_volume_report_from_a_seg_file_with_given_volumes(segmented, tmp_path):
    source, seg, _, _ = segmented
    path = tmp_path / "out" / "sr.dcm"
    write_dicom_sr(tmp_path / "out" / "seg.dcm", source, SEGMENTATION, path, volumes_ml={"liver": 12.5})
    assert volumes_read_back(path)["liver"][0] == 12.5


@pytest.mark.parametrize(
    "change, match",
    [
        ({"inside": True}, "inside the input folder"),
        ({"volumes_ml": {"lever": 1.0}}, r"volumes_ml names \['lever'\], which are not segments of the SEG"),
        ({"other_series": True}, "the SEG was made from series .*, not from"),
    ],
)
def test_volume_report_refusals(segmented, tmp_path, change, match):
    source, seg, _, _ = segmented
    other = _write_series(tmp_path / "other", series_uid="1.2.3.4.9") if change.get("other_series") else source
    path = (source if change.get("inside") else tmp_path / "out") / "sr.dcm"
    with pytest.raises(ValueError, match=match):
        write_dicom_sr(seg, other, SEGMENTATION, path, volumes_ml=change.get("volumes_ml"))
    assert not path.exists()


def classification_read_back(path) -> tuple[str, float, str, list[str]]:
    """(finding type, probability, predicted class, algorithm parameters) of a classification SR, with highdicom."""
    report = hd.sr.srread(path)
    (group,) = report.content.get_image_measurement_groups()
    (probability,) = group.get_measurements()
    (evaluation,) = group.get_qualitative_evaluations()
    parameters = [
        item.TextValue
        for item in group[0].ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == codes.DCM.AlgorithmParameters.value
    ]
    return group.finding_type.meaning, probability.value, evaluation.value.meaning, parameters


@pytest.mark.parametrize("name", ["CT_small.dcm", "RG1_UNCR.dcm"])
def test_classification_report_of_one_image(tmp_path, name):
    source = get_testdata_file(name, download=False)  # pydicom's own CT slice; a real chest CR from pydicom-data
    if source is None:
        pytest.skip(f"{name} needs the pydicom-data package")
    path = tmp_path / "sr.dcm"
    sr = write_dicom_sr_classification(
        source, CLASSIFICATION, path, probability=0.25, finding="pneumonia", predicted_class="normal"
    )
    assert dciodvfy_errors(path) == []
    finding, probability, predicted, parameters = classification_read_back(path)
    assert (finding, probability, predicted) == ("Pneumonia", 0.25, "Normal")
    assert "threshold=0.42" in parameters and f"weights_sha256={'c3' * 32}" in parameters
    image = pydicom.dcmread(source, stop_before_pixels=True)
    assert sr.StudyInstanceUID == image.StudyInstanceUID and image.SOPInstanceUID.encode() in path.read_bytes()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"probability": 1.5}, ValueError, r"probability 1.5 is not in \[0, 1\]"),
        ({"predicted_class": "effusion"}, KeyError, r"class\(es\) \['effusion'\] have no code"),
    ],
)
def test_classification_report_refusals(tmp_path, kwargs, error, match):
    arguments = {"probability": 0.5, "finding": "pneumonia", "predicted_class": "pneumonia", **kwargs}
    with pytest.raises(error, match=match):
        write_dicom_sr_classification(
            get_testdata_file("CT_small.dcm"), CLASSIFICATION, tmp_path / "sr.dcm", **arguments
        )
    assert not (tmp_path / "sr.dcm").exists()
