"""Tests for monai_bundle.io.dicom: slice order, geometry against SimpleITK, series that make no grid."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from helpers import COLS, NORMAL, ORIGIN, PIXEL_SPACING, ROWS, expected_dicom_affine, expected_dicom_array, read_error
from helpers import write_dicom_series as _write_series
from helpers import write_dicom_slice as _write_slice

from monai_bundle.io import lps_to_ras, read_header, read_image


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


def test_multiframe_dicom_is_refused(tmp_path):
    (tmp_path / "mf").mkdir()
    _write_slice(tmp_path / "mf" / "frames.dcm", 0, series_uid="1.2.3", frames=2)
    read_error(tmp_path / "mf", "multi-frame DICOM is not supported")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("nothing here")
    read_error(tmp_path / "notes", "no DICOM image files in folder")
