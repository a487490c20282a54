"""Tests for monai_bundle.io.itk (NRRD, MetaImage): ITK's geometry, reference headers, corrupt files."""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from monai_bundle.io import lps_to_ras, read_image, write_image

from helpers import GEOMETRIES, assert_affine, float32_exact, image_data, read_error, rotation, write_file


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_round_trip_detached_header(tmp_path, suffix):
    data, affine = image_data("oblique", np.float32), GEOMETRIES["oblique"]
    path = tmp_path / f"image{suffix}"
    write_image(data, affine, path)
    volume = read_image(path)
    np.testing.assert_array_equal(volume.array, data)
    assert_affine(volume.affine, affine, suffix)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and path.name in names and not any(n.startswith(".") for n in names)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_known_itk_geometry(tmp_path, suffix):
    """An image written by SimpleITK with a known LPS grid reads to the RAS affine computed by hand."""
    data = image_data("anisotropic")
    image = sitk.GetImageFromArray(data.T)  # SimpleITK arrays are [z, y, x]
    image.SetOrigin((10.0, 20.0, 30.0))
    image.SetSpacing((0.5, 0.6, 0.7))
    image.SetDirection((0, -1, 0, 1, 0, 0, 0, 0, 1))  # i runs along +P (LPS y), j along -L (LPS -x)
    sitk.WriteImage(image, str(tmp_path / f"known{suffix}"))
    volume = read_image(tmp_path / f"known{suffix}")
    expected = np.array(
        [  # RAS: x = -L, y = -P
            [0.0, 0.6, 0.0, -10.0],
            [-0.5, 0.0, 0.0, -20.0],
            [0.0, 0.0, 0.7, 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(volume.affine, expected, rtol=0, atol=1e-12)
    assert volume.array[1, 2, 3] == image.GetPixel(1, 2, 3)
    np.testing.assert_array_equal(volume.array, data)


def test_itk_agrees_on_nifti_geometry(tmp_path):
    """SimpleITK converts our NIfTI to NRRD independently; both conventions must meet."""
    data, affine = image_data("oblique"), GEOMETRIES["oblique"]
    write_image(data, affine, tmp_path / "ours.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "ours.nii.gz")), str(tmp_path / "itk.nrrd"))
    volume = read_image(tmp_path / "itk.nrrd")
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(volume.array, data)


def test_non_orthonormal_nrrd_is_read_and_written_to_nifti_sform_exactly(tmp_path):
    directions = np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.25, 2.0]])  # rows: LPS axis vectors
    origin = np.array([1.0, 2.0, 3.0])
    header = {"space": "left-posterior-superior", "space directions": directions, "space origin": origin}
    nrrd.write(str(tmp_path / "sheared.nrrd"), np.zeros((3, 4, 5), np.uint8), header, index_order="F")
    volume = read_image(tmp_path / "sheared.nrrd")
    expected = np.eye(4)
    expected[:3, :3], expected[:3, 3] = directions.T, [1.0, 2.0, 3.0]
    np.testing.assert_allclose(volume.affine, lps_to_ras(expected), atol=1e-12)
    write_image(volume.array, volume.affine, tmp_path / "sheared.nii.gz")
    img = nib.load(tmp_path / "sheared.nii.gz")
    assert img.header["sform_code"] == 1 and img.header["qform_code"] == 1
    np.testing.assert_array_equal(img.get_sform(), float32_exact(volume.affine))
    np.testing.assert_array_equal(read_image(tmp_path / "sheared.nii.gz").affine, float32_exact(volume.affine))


def test_nrrd_reference_header_is_reused(tmp_path):
    header = {
        "space": "right-anterior-superior",
        "space directions": np.array([[0.7, 0.1, 0.0], [-0.1, 0.7, 0.0], [0.0, 0.0, 2.5]]),
        "space origin": np.array([-10.123456789012, 20.5, 1 / 3]),
        "kinds": ["domain"] * 3,
        "measurement frame": np.eye(3),
        "custom": "kept",
    }
    nrrd.write(str(tmp_path / "input.nrrd"), image_data("oblique"), header, index_order="F")
    volume = read_image(tmp_path / "input.nrrd")
    labels = (volume.array > 500).astype(np.uint8)
    write_image(labels, volume.affine, tmp_path / "labels.nrrd", reference=tmp_path / "input.nrrd")
    out = nrrd.read_header(str(tmp_path / "labels.nrrd"))
    assert out["space"] == "right-anterior-superior"
    np.testing.assert_array_equal(out["space directions"], header["space directions"])
    np.testing.assert_array_equal(out["space origin"], header["space origin"])
    assert out["custom"] == "kept" and out["type"] in ("uint8", "unsigned char") and out["kinds"] == ["domain"] * 3
    np.testing.assert_array_equal(read_image(tmp_path / "labels.nrrd").array, labels)


def test_metaimage_reference_header_is_reused(tmp_path):
    image = sitk.GetImageFromArray(image_data("oblique").T)
    image.SetOrigin((-10.123456789012, 20.5, 1 / 3))
    image.SetSpacing((0.7, 0.71, 2.5))
    image.SetDirection(tuple(rotation(1, 30).ravel()))
    image.SetMetaData("PatientID", "ABC")
    image.SetMetaData("0008|0060", "CT")  # DICOM-style keys, as ITK writes them
    sitk.WriteImage(image, str(tmp_path / "input.mha"))
    volume = read_image(tmp_path / "input.mha")
    write_image(volume.array > 0, volume.affine, tmp_path / "labels.mha", reference=tmp_path / "input.mha")
    out = sitk.ReadImage(str(tmp_path / "labels.mha"))
    assert out.GetOrigin() == image.GetOrigin() and out.GetSpacing() == image.GetSpacing()
    assert out.GetDirection() == image.GetDirection()
    assert out.GetMetaData("PatientID") == "ABC" and out.GetMetaData("0008|0060") == "CT"
    assert out.GetPixelID() == sitk.sitkUInt8


def test_truncated_and_corrupt_nrrd(tmp_path):
    data = image_data("anisotropic")
    nrrd.write(str(tmp_path / "raw.nrrd"), data, {"encoding": "raw"}, index_order="F")
    write_file(tmp_path / "cut.nrrd", (tmp_path / "raw.nrrd").read_bytes()[:-20])
    read_error(tmp_path / "cut.nrrd", "truncated")
    nrrd.write(str(tmp_path / "gz.nrrd"), data, {"encoding": "gzip"}, index_order="F")
    corrupt = bytearray((tmp_path / "gz.nrrd").read_bytes())
    corrupt[-6] ^= 0xFF
    read_error(write_file(tmp_path / "crc.nrrd", bytes(corrupt)), "corrupt compressed voxel data")


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_and_corrupt_metaimage(tmp_path, compress):
    sitk.WriteImage(sitk.GetImageFromArray(image_data("anisotropic").T), str(tmp_path / "ok.mha"), compress)
    content = (tmp_path / "ok.mha").read_bytes()
    read_error(write_file(tmp_path / "cut.mha", content[:-20]), "truncated")
    if compress:  # ITK itself only prints "Uncompress failed" and returns the image
        corrupt = bytearray(content)
        corrupt[-3] ^= 0xFF
        read_error(write_file(tmp_path / "corrupt.mha", bytes(corrupt)), "corrupt compressed voxel data")


def test_bad_metaimage_geometry(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16)), str(tmp_path / "ok.mha"))
    content = (tmp_path / "ok.mha").read_bytes()
    zero = content.replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = 0 1 1")
    read_error(write_file(tmp_path / "zero.mha", zero), "non-positive voxel spacing")
    singular = content.replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0 0 1 0 0 0 0 1")
    read_error(write_file(tmp_path / "singular.mha", singular), "singular")


def test_vector_image_is_refused(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 3), np.uint8), isVector=True), str(tmp_path / "rgb.mha"))
    read_error(tmp_path / "rgb.mha", "3 components per voxel")
