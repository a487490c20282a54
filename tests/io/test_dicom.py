"""Tests for monai_bundle.io.dicom: slice order, geometry against SimpleITK, jittered and tilted series, multi-frame
objects, series that make no grid."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_edits import edited_copy, enhanced_copy, jitter, tilt

from monai_bundle.io import lps_to_ras, read_header, read_image
from monai_bundle.io.dicom import SLICE_JITTER_MM, read_series

from helpers import (
    COLS,
    NORMAL,
    ORIGIN,
    PIXEL_SPACING,
    ROWS,
    SLICE_STEP,
    expected_dicom_affine,
    expected_dicom_array,
    read_error,
)
from helpers import write_dicom_series as _write_series
from helpers import write_dicom_slice as _write_slice


def test_dicom_series(tmp_path):
    folder = _write_series(tmp_path / "ct")
    volume = read_image(folder)
    assert volume.format == "dicom" and volume.array.dtype == np.float32
    assert volume.array.shape == (COLS, ROWS, 6)
    np.testing.assert_array_equal(volume.array, expected_dicom_array())
    np.testing.assert_allclose(volume.affine, expected_dicom_affine(), atol=1e-6)
    assert read_header(folder) == ((COLS, ROWS, 6), pytest.approx(volume.affine), "dicom")
    # a file inside the series reads the whole series
    np.testing.assert_array_equal(read_image(sorted(folder.iterdir())[0]).array, volume.array)


def test_dicom_series_agrees_with_simpleitk(tmp_path):
    folder = _write_series(tmp_path / "ct")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * image.GetSpacing()
    lps[:3, 3] = image.GetOrigin()
    volume = read_image(folder)
    np.testing.assert_allclose(volume.affine, lps_to_ras(lps), atol=1e-4)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(image).T.astype(np.float32))


def test_compressed_dicom_series(tmp_path):
    folder = _write_series(tmp_path / "ct", n=3, compressed=True)
    np.testing.assert_array_equal(read_image(folder).array, expected_dicom_array(3))


def test_dicom_missing_slice(tmp_path):
    folder = _write_series(tmp_path / "ct", skip=(3,))
    read_error(folder, r"missing slice\(s\) between z=")


def test_dicom_uneven_spacing(tmp_path):
    folder = _write_series(tmp_path / "ct", n=4)
    _write_slice(folder / "extra", 4, series_uid="1.2.3.4.5", position=ORIGIN + 11.3 * NORMAL)
    read_error(folder, "uneven slice spacing")


def test_dicom_duplicate_position(tmp_path):
    folder = _write_series(tmp_path / "ct", n=4)
    _write_slice(folder / "duplicate", 2, series_uid="1.2.3.4.5")
    read_error(folder, "same position")


def test_dicom_folder_with_two_series_reads_the_larger(tmp_path, caplog):
    folder = _write_series(tmp_path / "ct", n=6, series_uid="1.2.3.4.5")
    for k in range(3):
        _write_slice(folder / f"small{k}", k, series_uid="1.2.3.4.6")
    assert read_image(folder).array.shape == (COLS, ROWS, 6)
    assert "1 other series ignored" in caplog.text
    assert read_image(folder / "small0").array.shape == (COLS, ROWS, 3)


def test_single_slice_dicom_is_2d(tmp_path):
    folder = _write_series(tmp_path / "ct", n=1)
    volume = read_image(folder)
    assert volume.array.shape == (COLS, ROWS)
    np.testing.assert_allclose(volume.affine, expected_dicom_affine(1), atol=1e-6)
    read_error(folder, "2D.*a 3D image is needed", ndim=3)


def test_projection_xray_without_patient_geometry(tmp_path):
    folder = _write_series(tmp_path / "dx", n=1)
    file = next(folder.iterdir())
    ds = pydicom.dcmread(file)
    del ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing
    ds.ImagerPixelSpacing = list(PIXEL_SPACING)
    ds.save_as(file)
    volume = read_image(file)
    assert volume.array.shape == (COLS, ROWS)
    np.testing.assert_array_equal(volume.affine, np.diag([-PIXEL_SPACING[1], -PIXEL_SPACING[0], 1.0, 1.0]))


def test_multiframe_dicom_without_frame_positions_is_refused(tmp_path):
    (tmp_path / "mf").mkdir()
    _write_slice(tmp_path / "mf" / "frames.dcm", 0, series_uid="1.2.3", frames=2)
    read_error(tmp_path / "mf", "frames.dcm: multi-frame DICOM without per-frame functional groups")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("nothing here")
    read_error(tmp_path / "notes", "no DICOM image files in folder")


def test_jittered_slice_positions_are_read_on_a_regular_grid_with_a_note(tmp_path, caplog):
    folder = edited_copy(_write_series(tmp_path / "ct"), tmp_path / "jittered", jitter(0.08))
    gaps = np.diff([float(p.position @ NORMAL) for p in read_series(folder).planes])
    assert np.ptp(gaps) > 0.05  # far beyond the 1% of the spacing that used to be refused as uneven
    volume = read_image(folder)
    np.testing.assert_array_equal(volume.array, expected_dicom_array())
    np.testing.assert_allclose(volume.affine, expected_dicom_affine(), atol=0.08)
    (note,) = [r for r in caplog.records if "slice positions regularised: gaps" in r.getMessage()]
    assert note.name.startswith("monai_bundle.io") and note.levelname == "WARNING"  # what batch collects as a note
    assert "moved up to" in note.getMessage()
    assert 0.001 < read_series(folder).max_shift_mm <= 0.08 * np.sqrt(3)


def test_exact_positions_get_no_note(tmp_path, caplog):
    series = read_series(_write_series(tmp_path / "ct"))
    assert series.notes == [] and series.max_shift_mm == 0 and series.tilt_degrees == 0
    read_image(tmp_path / "ct")
    assert caplog.text == ""


def test_a_slice_farther_than_the_jitter_tolerance_is_refused(tmp_path):
    folder = edited_copy(
        _write_series(tmp_path / "ct"),
        tmp_path / "uneven",
        lambda k, p: p + (2.5 * SLICE_JITTER_MM * NORMAL if k == 3 else 0),
    )
    read_error(folder, r"uneven slice spacing .*: a slice lies 0\.\d+ mm off the best regular grid, more than the 0\.2")


def test_a_missing_slice_in_a_jittered_series_is_refused(tmp_path):
    folder = edited_copy(_write_series(tmp_path / "ct", n=8), tmp_path / "gap", jitter(0.05), drop=(4,))
    read_error(folder, r"missing slice\(s\) between z=.*\(gap [45]\.\d+ mm, spacing 2\.\d+ mm\)")


def test_tilted_series_is_read_as_a_sheared_grid_at_the_acquired_positions(tmp_path, caplog):
    folder = edited_copy(_write_series(tmp_path / "ct"), tmp_path / "tilted", tilt(20.0, SLICE_STEP))
    volume = read_image(folder)
    np.testing.assert_array_equal(volume.array, expected_dicom_array())
    planes = read_series(folder).planes
    for k, plane in enumerate(planes):  # voxel (0, 0, k) lies at slice k's ImagePositionPatient
        np.testing.assert_allclose(lps_to_ras(volume.affine)[:3] @ [0, 0, k, 1], plane.position, atol=1e-5)
    assert read_series(folder).tilt_degrees > 1
    assert "off their normal (gantry tilt): read as a sheared grid" in caplog.text


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_enhanced_multiframe_object_reads_as_its_series(tmp_path, modality):
    folder = _write_series(tmp_path / "ct")
    if modality == "MR":
        folder = edited_copy(folder, tmp_path / "mr", Modality="MR", SOPClassUID=pydicom.uid.MRImageStorage)
    path = enhanced_copy(folder, tmp_path / "enhanced" / "ct.dcm")
    series, enhanced = read_image(folder), read_image(path)
    np.testing.assert_array_equal(enhanced.array, series.array)
    np.testing.assert_allclose(enhanced.affine, series.affine, atol=1e-6)
    assert [p.frame for p in read_series(path).planes] == [5, 4, 3, 2, 1, 0]  # frames were written in reverse
    assert read_header(path.parent)[0] == (COLS, ROWS, 6)


def test_folder_reads_the_series_with_most_planes_counting_frames(tmp_path, caplog):
    enhanced_copy(_write_series(tmp_path / "ct", n=4), tmp_path / "mixed" / "enhanced.dcm")
    for k in range(3):
        _write_slice(tmp_path / "mixed" / f"small{k}", k, series_uid="1.2.3.4.6")
    assert read_image(tmp_path / "mixed").array.shape == (COLS, ROWS, 4)
    assert "(1 files); 1 other series ignored" in caplog.text


def test_segmentation_objects_beside_a_series_are_not_images(tmp_path, caplog):
    from monai_bundle.io.dicom_seg import write_dicom_seg

    folder = _write_series(tmp_path / "ct")
    volume = read_image(folder)
    write_dicom_seg(
        (volume.array > 400).astype(np.uint8),
        volume.affine,
        folder,
        {1: "bone"},
        {"task": "t", "version": "1"},
        tmp_path / "seg.dcm",
    )
    (tmp_path / "seg.dcm").rename(folder / "seg.dcm")
    assert read_image(folder).array.shape == (COLS, ROWS, 6)
    assert "other series" not in caplog.text
