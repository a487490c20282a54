"""monai_bundle.io.dicom on real DICOM from the registries: TotalSegmentator's 20-slice CT series (realdata) and
edited copies of it (jitter as a scanner's rounding gives, a missing slice, gantry tilt, an enhanced multi-frame
copy), and pydicom-data's enhanced CT and MR objects."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_edits import edited_copy, enhanced_copy, jitter, tilt
from pydicom.data import get_testdata_file

from monai_bundle.io import lps_to_ras, read_image
from monai_bundle.io.dicom import read_series

from helpers import read_error


@pytest.fixture(scope="module")
def ct_series():
    from monai_bundle.data.sample_data import fetch

    return fetch("ts_ct_dicom")


def _pydicom_data(name: str):
    path = get_testdata_file(name, download=False)  # from the pydicom-data package (test extra); never downloads
    if path is None:
        pytest.skip(f"{name} needs the pydicom-data package")
    return path


def _sitk_affine(files: list[str], orthogonal: bool) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.SetForceOrthogonalDirection(orthogonal)
    image = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * image.GetSpacing()
    lps[:3, 3] = image.GetOrigin()
    return lps_to_ras(lps)


@pytest.mark.realdata
def test_real_series_reads_as_itk_does(ct_series):
    volume = read_image(ct_series)
    assert volume.array.shape == (512, 512, 20) and read_series(ct_series).notes == []
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(ct_series))
    np.testing.assert_allclose(volume.affine, _sitk_affine(files, True), atol=1e-6)


@pytest.mark.realdata
def test_real_series_with_rounded_positions_loads_with_a_note(ct_series, tmp_path, caplog):
    """The issue's case: positions rounded/jittered by up to 0.06 mm, so that gaps differ by several % of them."""
    folder = edited_copy(ct_series, tmp_path / "jittered", jitter(0.06, seed=3))
    gaps = np.diff([p.position[2] for p in read_series(folder).planes])
    assert gaps.min() < 1.96 and gaps.max() > 2.04  # what the reader refused as 'uneven slice spacing'
    original, jittered = read_image(ct_series), read_image(folder)
    np.testing.assert_array_equal(jittered.array, original.array)
    np.testing.assert_allclose(jittered.affine, original.affine, atol=0.06)
    assert "slice positions regularised" in caplog.text


@pytest.mark.realdata
def test_issue_20_series_with_gaps_of_6958_to_7071_mm_loads(ct_series, tmp_path, caplog):
    """The issue's geometry: 20 slices 7 mm apart whose rounded positions make gaps of 6.958 to 7.071 mm."""
    offsets = [(0.0, 0.071, 0.029)[k % 3] for k in range(20)]
    folder = edited_copy(ct_series, tmp_path / "rounded", lambda k, p: [p[0], p[1], -800.0 + 7.0 * k + offsets[k]])
    volume = read_image(folder)
    assert volume.array.shape == (512, 512, 20)
    np.testing.assert_allclose(volume.spacing[2], 7.0, atol=0.01)
    assert "slice positions regularised: gaps 6.958 to 7.071 mm read as a regular 7" in caplog.text


@pytest.mark.realdata
def test_real_series_with_a_missing_slice_is_refused(ct_series, tmp_path):
    folder = edited_copy(ct_series, tmp_path / "gap", jitter(0.03), drop=(9,))
    read_error(folder, r"missing slice\(s\) between z=-788\.\d\d and z=-784\.\d\d \(gap 4\.\d+ mm, spacing 2 mm\)")


@pytest.mark.realdata
def test_real_tilted_series_matches_itk_without_forced_orthogonality(ct_series, tmp_path):
    folder = edited_copy(ct_series, tmp_path / "tilted", tilt(15.0, 2.0), GantryDetectorTilt=15)
    volume = read_image(folder)
    np.testing.assert_array_equal(volume.array, read_image(ct_series).array)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
    np.testing.assert_allclose(volume.affine, _sitk_affine(files, False), atol=1e-4)  # ITK's sheared direction
    assert read_series(folder).tilt_degrees == pytest.approx(15.0, abs=1e-3)


@pytest.mark.realdata
def test_real_series_as_an_enhanced_multiframe_ct(ct_series, tmp_path):
    series = edited_copy(ct_series, tmp_path / "series")  # real UIDs: the sample's are blanked
    enhanced = read_image(enhanced_copy(series, tmp_path / "enhanced" / "ct.dcm"))
    original = read_image(ct_series)
    np.testing.assert_array_equal(enhanced.array, original.array)
    np.testing.assert_allclose(enhanced.affine, original.affine, atol=1e-9)


def test_pydicom_data_enhanced_ct_frames_in_slice_order():
    import pydicom

    path = _pydicom_data("eCT_Supplemental.dcm")
    volume = read_image(path)
    assert volume.array.shape == (512, 512, 2)
    ds = pydicom.dcmread(path)
    frames = [p.frame for p in read_series(path).planes]
    assert frames == [1, 0]  # frame 2 lies at z=-159, frame 1 at z=-149: sorted along the normal
    np.testing.assert_array_equal(volume.array[..., 0], ds.pixel_array[1].T.astype(np.float32) - 1024)
    np.testing.assert_allclose(np.linalg.norm(volume.affine[:3, :3], axis=0), [0.388672, 0.388672, 10.0])


def test_pydicom_data_enhanced_mr_without_functional_groups_is_refused():
    path = _pydicom_data("emri_small.dcm")  # Enhanced MR Image Storage stripped of its functional groups
    read_error(path, "multi-frame DICOM without per-frame functional groups")
