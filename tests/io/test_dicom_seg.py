"""monai_bundle.io.dicom_seg: SEG objects written on the source's slices, decoded voxel for voxel, valid to dciodvfy,
referencing their source, with only the patient and study attributes DICOM requires."""

from __future__ import annotations

import os

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_edits import dciodvfy_errors, edited_copy, enhanced_copy, jitter, seg_segments, tilt

from monai_bundle.io import ImageReadError, read_image
from monai_bundle.io.dicom import read_series
from monai_bundle.io.dicom_derived import REQUIRED_PATIENT_STUDY
from monai_bundle.io.dicom_seg import write_dicom_seg

from helpers import SLICE_STEP
from helpers import write_dicom_series as _write_series

ALGORITHM = {"task": "ct_segmentation", "version": "0.3.1", "weights_sha256": "5a" * 32}
LABELS = {1: "lungs", 2: "heart", 4: "liver", 8: "bone"}
OPTIONAL = {"PatientAge": "042Y", "IssuerOfPatientID": "HOSPITAL", "OtherPatientIDs": "X-1",
            "StudyDescription": "secret", "InstitutionName": "St Elsewhere", "PatientWeight": "80"}  # fmt: skip


def label_map(shape) -> np.ndarray:
    """Blocks of each label of LABELS over several slices (heart: one voxel)."""
    labels = np.zeros(shape, np.uint8)
    labels[2:10, 3:9, 0:3] = 1
    labels[15:30, 10:25, 2:5] = 4
    labels[30:, 25:, 4:] = 8
    labels[5, 5, 1] = 2
    return labels


def decoded(path, source) -> np.ndarray:
    """The SEG at `path` read back with highdicom as label values [i, j, k] on the source series' slices."""
    segments = seg_segments(path, source)
    lut = np.zeros(len(pydicom.dcmread(path, stop_before_pixels=True).SegmentSequence) + 1, np.uint8)
    lut[1:] = sorted(LABELS)[: len(lut) - 1]
    return lut[segments]


def frame_positions_are_the_sources(path, source) -> None:
    """Each SEG frame lies at its source image's (or source frame's) ImagePositionPatient."""
    seg = pydicom.dcmread(path)
    by_source = {}
    for plane in read_series(source).planes:
        uid = pydicom.dcmread(plane.file, stop_before_pixels=True).SOPInstanceUID
        by_source[(uid, plane.frame)] = plane.position
    for frame in seg.PerFrameFunctionalGroupsSequence:
        item = frame.DerivationImageSequence[0].SourceImageSequence[0]
        number = int(item.ReferencedFrameNumber) - 1 if "ReferencedFrameNumber" in item else None
        position = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(position, by_source[(item.ReferencedSOPInstanceUID, number)], atol=1e-5)


def write_and_check(source, tmp_path, name="seg.dcm") -> tuple[pydicom.Dataset, np.ndarray]:
    """Write LABELS of `label_map` on `source` as a SEG; check decoding, positions and dciodvfy."""
    volume = read_image(source)
    labels = label_map(volume.array.shape)
    path = tmp_path / "out" / name
    write_dicom_seg(labels, volume.affine, source, LABELS, ALGORITHM, path)
    np.testing.assert_array_equal(decoded(path, source), labels)
    frame_positions_are_the_sources(path, source)
    assert dciodvfy_errors(path) == []
    return pydicom.dcmread(path), labels


def test_seg_decodes_voxel_for_voxel_and_references_its_source(tmp_path):
    source = edited_copy(_write_series(tmp_path / "ct"), tmp_path / "source", **OPTIONAL)
    seg, _ = write_and_check(source, tmp_path)
    first = pydicom.dcmread(next(source.iterdir()), stop_before_pixels=True)
    assert seg.SOPClassUID == pydicom.uid.SegmentationStorage and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == first.StudyInstanceUID and seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert seg.SeriesInstanceUID != first.SeriesInstanceUID and seg.SOPInstanceUID != first.SOPInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert len(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 6
    assert not [keyword for keyword in OPTIONAL if keyword in seg]
    assert all(keyword in seg for keyword in REQUIRED_PATIENT_STUDY) and seg.PatientID == "TEST"


def test_segments_carry_names_codes_algorithm_and_colours(tmp_path):
    seg, _ = write_and_check(_write_series(tmp_path / "ct"), tmp_path)
    segments = {s.SegmentLabel: s for s in seg.SegmentSequence}
    assert list(segments) == ["lungs", "heart", "liver", "bone"] and [s.SegmentNumber for s in seg.SegmentSequence] == [
        1,
        2,
        3,
        4,
    ]
    lungs = segments["lungs"].SegmentedPropertyTypeCodeSequence[0]
    assert (lungs.CodeValue, lungs.CodingSchemeDesignator, lungs.CodeMeaning) == ("39607008", "SCT", "Lung")
    assert lungs.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "51440002"
    assert segments["bone"].SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Tissue"
    algorithm = segments["liver"].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "MedImg ct_segmentation" and algorithm.AlgorithmVersion == "0.3.1"
    assert algorithm.AlgorithmParameters == f"task=ct_segmentation,weights_sha256={'5a' * 32}"
    assert segments["liver"].SegmentAlgorithmType == "AUTOMATIC"
    assert "RecommendedDisplayCIELabValue" in segments["liver"]
    assert seg.Manufacturer == "MedImg" and seg.ManufacturerModelName == "ct_segmentation"


@pytest.mark.parametrize("edit", ["jitter", "tilt"])
def test_seg_frames_lie_on_the_acquired_slices_of_regularised_and_tilted_series(tmp_path, edit):
    move = jitter(0.1) if edit == "jitter" else tilt(25.0, SLICE_STEP)
    source = edited_copy(_write_series(tmp_path / "ct"), tmp_path / edit, move)
    assert read_series(source).notes  # regularised or sheared
    write_and_check(source, tmp_path)


def test_seg_of_an_enhanced_multiframe_source_references_its_frames(tmp_path):
    source = enhanced_copy(_write_series(tmp_path / "ct"), tmp_path / "enhanced" / "ct.dcm")
    seg, _ = write_and_check(source, tmp_path)
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert len(referenced) == 1


def test_empty_label_map_still_makes_a_valid_seg(tmp_path):
    source = _write_series(tmp_path / "ct")
    volume = read_image(source)
    path = tmp_path / "out" / "empty.dcm"
    write_dicom_seg(np.zeros(volume.array.shape, np.uint8), volume.affine, source, {1: "liver"}, ALGORITHM, path)
    assert dciodvfy_errors(path) == []
    assert (
        not hd.seg.segread(path)
        .get_pixels_by_source_instance(
            [pydicom.dcmread(p.file).SOPInstanceUID for p in read_series(source).planes], combine_segments=True
        )
        .any()
    )


def test_labels_may_name_their_own_codes_and_come_from_json(tmp_path):
    source = _write_series(tmp_path / "ct")
    volume = read_image(source)
    tumour = {
        "name": "tumour",
        "category": ["49755003", "SCT", "Morphologically Abnormal Structure"],
        "type": ["108369006", "SCT", "Neoplasm"],
    }
    path = tmp_path / "out" / "seg.dcm"
    write_dicom_seg((volume.array > 1500).astype(np.uint8), volume.affine, source, {"1": tumour}, ALGORITHM, path)
    assert pydicom.dcmread(path).SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"affine_shift": 0.01}, ValueError, "affine differs from the source's grid by 0.01 mm"),
        ({"shape": (40, 32, 5)}, ValueError, r"label map shape \(40, 32, 5\) is not the source's \(40, 32, 6\)"),
        ({"labels": {1: "lungs"}}, ValueError, r"label value\(s\) \[4, 8\] not described"),
        ({"labels": {0: "background", 1: "lungs", 4: "liver", 8: "bone"}}, ValueError, "above 0 .background., not"),
        ({"labels": {1: "lungs", 4: "tumour", 8: "bone"}}, KeyError, "label 'tumour' has no category or type code"),
        ({"inside": True}, ValueError, "inside the input folder"),
        ({"dtype": np.float32}, ValueError, "a label map holds integers"),
    ],
)
def test_seg_refusals(tmp_path, change, error, match):
    source = _write_series(tmp_path / "ct")
    volume = read_image(source)
    labels = label_map(change.get("shape", volume.array.shape)).astype(change.get("dtype", np.uint8))
    labels[labels == 2] = 1
    affine = volume.affine + change.get("affine_shift", 0.0)
    path = (source if change.get("inside") else tmp_path / "out") / "seg.dcm"
    before = sorted(os.listdir(source))
    with pytest.raises(error, match=match):
        write_dicom_seg(
            labels, affine, source, change.get("labels", {1: "lungs", 4: "liver", 8: "bone"}), ALGORITHM, path
        )
    assert not path.exists() and sorted(os.listdir(source)) == before


def test_source_without_a_study_is_refused_with_one_line(tmp_path):
    source = _write_series(tmp_path / "ct", n=2)
    for file in source.iterdir():
        ds = pydicom.dcmread(file)
        ds.StudyInstanceUID = ""
        ds.save_as(file)
    volume = read_image(source)
    with pytest.raises(ImageReadError, match=r"ct: IM\d+_\d: no StudyInstanceUID: a derived object cannot reference"):
        write_dicom_seg(
            volume.array.astype(np.uint8) * 0, volume.affine, source, {1: "liver"}, ALGORITHM, tmp_path / "seg.dcm"
        )


def test_seg_is_written_atomically(tmp_path, monkeypatch):
    source = _write_series(tmp_path / "ct")
    volume = read_image(source)
    out = tmp_path / "out"
    out.mkdir()
    (out / "seg.dcm").write_bytes(b"old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("monai_bundle.io.files.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_seg(label_map(volume.array.shape), volume.affine, source, LABELS, ALGORITHM, out / "seg.dcm")
    assert os.listdir(out) == ["seg.dcm"] and (out / "seg.dcm").read_bytes() == b"old"  # no half file, no temp


@pytest.mark.realdata
def test_seg_of_the_real_ct_series(tmp_path):
    from monai_bundle.data.sample_data import fetch

    source = edited_copy(fetch("ts_ct_dicom"), tmp_path / "ct", jitter(0.05))  # real UIDs; positions regularised
    volume = read_image(source)
    labels = np.where(volume.array > 250, 8, np.where(volume.array < -950, 1, 0)).astype(np.uint8)
    path = tmp_path / "out" / "seg.dcm"
    write_dicom_seg(labels, volume.affine, source, {1: "lungs", 8: "bone"}, ALGORITHM, path)
    values = np.array([0, 1, 8], np.uint8)  # segment number -> label value
    seg = hd.seg.segread(path)
    uids = [pydicom.dcmread(p.file, stop_before_pixels=True).SOPInstanceUID for p in read_series(source).planes]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True).transpose(2, 1, 0)
    np.testing.assert_array_equal(values[pixels], labels)
    frame_positions_are_the_sources(path, source)
    assert dciodvfy_errors(path) == []
