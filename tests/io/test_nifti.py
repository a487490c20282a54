"""Tests for monai_bundle.io.nifti: byte order, scaling, reference and written headers, corrupt files."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_bundle.io import read_header, read_image, write_image

from helpers import GEOMETRIES, image_data, nifti_bytes, read_error, write_file


def test_big_endian_nifti_is_read_in_native_byte_order(tmp_path):
    header = nib.Nifti1Header(endianness=">")
    header.set_data_dtype(np.int16)
    data = np.arange(24, dtype=">i2").reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(data, np.eye(4), header=header), tmp_path / "big.nii")
    assert nib.load(tmp_path / "big.nii").header.endianness == ">"
    volume = read_image(tmp_path / "big.nii")
    assert volume.array.dtype == np.dtype("=i2")
    np.testing.assert_array_equal(volume.array, np.arange(24).reshape(2, 3, 4))


def test_scaled_nifti_is_read_as_float32(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.set_slope_inter(0.5, -10)
    nib.save(img, tmp_path / "scaled.nii")
    volume = read_image(tmp_path / "scaled.nii")
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, np.arange(24).reshape(2, 3, 4) * 0.5 - 10)


def test_known_nifti_geometry(tmp_path):
    affine = np.array([[0, 0, 2.0, -30], [-0.5, 0, 0, 40], [0, 1.5, 0, -50], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), affine), tmp_path / "known.nii.gz")
    np.testing.assert_array_equal(read_image(tmp_path / "known.nii.gz").affine, affine)
    assert read_header(tmp_path / "known.nii.gz")[0] == (3, 4, 5)


def test_nifti_reference_header_is_reused(tmp_path):
    affine = GEOMETRIES["oblique"]
    img = nib.Nifti1Image(image_data("oblique"), affine)
    img.set_qform(GEOMETRIES["anisotropic"], code=1)  # deliberately different from the sform
    img.set_sform(affine, code=2)
    img.header.set_slope_inter(2.0, 1.0)
    img.header["cal_max"] = 3000
    img.header["descrip"] = b"reference"
    nib.save(img, tmp_path / "input.nii.gz")
    labels = (image_data("oblique") > 500).astype(np.uint8)

    write_image(labels, affine, tmp_path / "labels.nii.gz", reference=tmp_path / "input.nii.gz")
    ref, out = nib.load(tmp_path / "input.nii.gz").header, nib.load(tmp_path / "labels.nii.gz").header
    np.testing.assert_array_equal(out.get_qform(), ref.get_qform())
    np.testing.assert_array_equal(out.get_sform(), ref.get_sform())
    fields = ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")
    for field in (*fields, "pixdim", "descrip"):
        np.testing.assert_array_equal(out[field], ref[field])
    assert out.get_data_dtype() == np.uint8
    assert out.get_slope_inter() == (None, None)
    volume = read_image(tmp_path / "labels.nii.gz")
    assert volume.array.dtype == np.uint8
    np.testing.assert_array_equal(volume.array, labels)
    np.testing.assert_array_equal(volume.affine, read_header(tmp_path / "input.nii.gz")[1])


def test_nifti_output_header(tmp_path):
    affine = GEOMETRIES["oblique"]
    write_image(image_data("oblique"), affine, tmp_path / "out.nii.gz")
    header = nib.load(tmp_path / "out.nii.gz").header
    assert (header["sform_code"], header["qform_code"]) == (1, 1)
    assert header.get_xyzt_units()[0] == "mm"
    np.testing.assert_array_equal(header.get_sform(), affine)
    np.testing.assert_allclose(header.get_qform(), affine, atol=1e-4)  # quaternion in float32: close, not exact
    assert gzip.open(tmp_path / "out.nii.gz").read()  # a valid gzip stream


def test_gzipped_text_is_not_nifti(tmp_path):
    read_error(write_file(tmp_path / "text.nii.gz", gzip.compress(b"not an image\n" * 100)), "not a NIfTI file")


def test_truncated_nifti(tmp_path):
    content = nifti_bytes()
    read_error(write_file(tmp_path / "cut.nii", content[:-100]), "truncated")
    read_error(write_file(tmp_path / "cut.nii.gz", gzip.compress(content)[:-30]), "truncated")
    read_error(write_file(tmp_path / "short.nii.gz", gzip.compress(content[:-100])), "truncated")


def test_nifti_gzip_crc(tmp_path):
    corrupt = bytearray(gzip.compress(nifti_bytes()))
    corrupt[-6] ^= 0xFF  # inside the CRC32 trailer: nibabel alone would not notice
    read_error(write_file(tmp_path / "crc.nii.gz", bytes(corrupt)), "gzip CRC check failed")
    # header-only reads do not decompress the data, so they still work
    assert read_header(tmp_path / "crc.nii.gz")[0] == (4, 5, 6)


def _sform_only_nifti(path: Path, sform: np.ndarray) -> Path:
    """A NIfTI whose only geometry is `sform` (nibabel refuses to build a qform from a bad one)."""
    header = nib.Nifti1Header()
    header.set_data_shape((4, 5, 6))
    header.set_data_dtype(np.int16)
    header.set_sform(sform, code=1)
    return write_file(path, nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), None, header=header).to_bytes())


def test_bad_nifti_affines(tmp_path):
    zero = np.diag([1.0, 0.0, 1.0, 1.0])
    read_error(_sform_only_nifti(tmp_path / "zero.nii", zero), "zero voxel spacing along axis 1")
    singular = np.eye(4)
    singular[:3, 1] = [1.0, 0.0, 0.0]
    read_error(_sform_only_nifti(tmp_path / "singular.nii", singular), "singular")
    nan = np.eye(4)
    nan[0, 3] = np.nan
    read_error(_sform_only_nifti(tmp_path / "nan.nii", nan), "NaN/Inf")
    header = nib.Nifti1Header()  # qform geometry with a zero voxel size: nibabel would quietly make it 1
    header.set_data_shape((4, 5, 6))
    header.set_zooms((1.0, 0.0, 1.0))
    header["qform_code"] = 1
    read_error(write_file(tmp_path / "zoom.nii", header.binaryblock + b"\0" * (4 + 240)), "zero voxel spacing")
