"""Tests for monai_bundle.io.registry: reading, writing and finding images of every format, any grid."""

from __future__ import annotations

import gzip
import time

import nibabel as nib
import numpy as np
import pytest

from monai_bundle.io import ImageReadError, find_images, image_suffix, read_header, read_image, write_image

from helpers import FORMAT_OF_SUFFIX, GEOMETRIES, assert_affine, image_data, read_error, write_file
from helpers import write_dicom_series as _write_series

FORMATS = list(FORMAT_OF_SUFFIX)


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip(tmp_path, suffix, geometry):
    data, affine = image_data(geometry), GEOMETRIES[geometry]
    path = tmp_path / f"image{suffix}"
    write_image(data, affine, path)
    volume = read_image(path)
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, data)
    assert_affine(volume.affine, affine, suffix)
    assert volume.format == FORMAT_OF_SUFFIX[suffix]
    assert volume.spacing == pytest.approx(np.linalg.norm(affine[:3, : data.ndim], axis=0))
    assert read_header(path) == (data.shape, pytest.approx(volume.affine), volume.format)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp files left


def test_float_data_stays_float32_and_float64_is_narrowed(tmp_path):
    affine = GEOMETRIES["anisotropic"]
    for dtype in (np.float32, np.float64):
        path = tmp_path / f"{np.dtype(dtype).name}.nii.gz"
        data = np.linspace(-1, 1, 210, dtype=dtype).reshape(5, 6, 7)
        write_image(data, affine, path)
        volume = read_image(path)
        assert volume.array.dtype == np.float32
        np.testing.assert_array_equal(volume.array, data.astype(np.float32))
    assert read_image(tmp_path / "float32.nii.gz", dtype=np.float64).array.dtype == np.float64


@pytest.mark.parametrize(
    ("source", "target"), [(".nii.gz", ".nrrd"), (".nrrd", ".nii.gz"), (".mha", ".nii"), (".nii", ".mha")]
)
def test_cross_format(tmp_path, source, target):
    data, affine = image_data("oblique"), GEOMETRIES["oblique"]
    write_image(data, affine, tmp_path / f"in{source}")
    first = read_image(tmp_path / f"in{source}")
    write_image(first.array, first.affine, tmp_path / f"out{target}")
    second = read_image(tmp_path / f"out{target}")
    np.testing.assert_array_equal(second.array, data)
    np.testing.assert_allclose(second.affine, affine, rtol=0, atol=1e-9)


def test_bool_and_int64_arrays_are_writable(tmp_path):
    affine = GEOMETRIES["anisotropic"]
    mask = image_data("anisotropic") > 0
    for suffix in FORMATS:
        write_image(mask, affine, tmp_path / f"mask{suffix}")
        assert read_image(tmp_path / f"mask{suffix}").array.dtype == np.uint8
        write_image(mask.astype(np.int64), affine, tmp_path / f"long{suffix}")
        np.testing.assert_array_equal(read_image(tmp_path / f"long{suffix}").array, mask)


def test_reference_must_match_the_array_grid(tmp_path):
    data, affine = image_data("anisotropic"), GEOMETRIES["anisotropic"]
    write_image(data, affine, tmp_path / "input.nii.gz")
    with pytest.raises(ValueError, match="shape"):
        write_image(data[:4], affine, tmp_path / "out.nii.gz", reference=tmp_path / "input.nii.gz")
    shifted = affine.copy()
    shifted[0, 3] += 1
    with pytest.raises(ValueError, match="affine differs"):
        write_image(data, shifted, tmp_path / "out.nii.gz", reference=tmp_path / "input.nii.gz")
    assert not (tmp_path / "out.nii.gz").exists()
    # a reference of another format family is ignored: the header comes from the affine
    write_image(data, affine, tmp_path / "out.nrrd", reference=tmp_path / "input.nii.gz")
    np.testing.assert_allclose(read_image(tmp_path / "out.nrrd").affine, affine, atol=1e-9)


def test_write_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="2D or 3D"):
        write_image(np.zeros((2, 3, 4, 5)), np.eye(4), tmp_path / "x.nii.gz")
    with pytest.raises(ValueError, match="4x4"):
        write_image(np.zeros((2, 3, 4)), np.eye(3), tmp_path / "x.nii.gz")
    with pytest.raises(ValueError, match="zero voxel spacing"):
        write_image(np.zeros((2, 3, 4)), np.diag([1.0, 1.0, 0.0, 1.0]), tmp_path / "x.nii.gz")
    with pytest.raises(ValueError, match="singular"):
        parallel = np.array([[1.0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        write_image(np.zeros((2, 3, 4)), parallel, tmp_path / "x.nii")
    with pytest.raises(ValueError, match="cannot write this format"):
        write_image(np.zeros((2, 3, 4)), np.eye(4), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_output(tmp_path):
    out = tmp_path / "out.nrrd"
    out.write_bytes(b"previous")
    tilted = GEOMETRIES["oblique"]  # a 2D grid that is not in the z=0 plane cannot be NRRD
    with pytest.raises(ValueError, match=r"out\.nrrd: cannot write .*z=0 plane"):
        write_image(np.zeros((3, 4), np.uint8), tilted, out)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]
    write_image(np.zeros((3, 4), np.uint8), tilted, tmp_path / "out.nii.gz")  # NIfTI holds any plane
    np.testing.assert_array_equal(read_image(tmp_path / "out.nii.gz").affine, tilted)


def test_write_creates_folders_and_replaces_atomically(tmp_path):
    out = tmp_path / "a" / "b" / "out.nii.gz"
    write_image(np.zeros((2, 3, 4), np.uint8), np.eye(4), out)
    write_image(np.ones((2, 3, 4), np.uint8), np.eye(4), out)
    np.testing.assert_array_equal(read_image(out).array, 1)
    assert [p.name for p in out.parent.iterdir()] == ["out.nii.gz"]


def test_inputs_are_not_modified(tmp_path):
    data, affine = image_data("oblique"), GEOMETRIES["oblique"]
    write_image(data, affine, tmp_path / "in.nii.gz")
    before, mtime = (tmp_path / "in.nii.gz").read_bytes(), (tmp_path / "in.nii.gz").stat().st_mtime_ns
    data_copy, affine_copy = data.copy(), affine.copy()
    volume = read_image(tmp_path / "in.nii.gz")
    write_image(volume.array, volume.affine, tmp_path / "out.nii.gz", reference=tmp_path / "in.nii.gz")
    assert (tmp_path / "in.nii.gz").read_bytes() == before and (tmp_path / "in.nii.gz").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(data, data_copy)
    np.testing.assert_array_equal(affine, affine_copy)


def test_missing_empty_and_unknown_files(tmp_path):
    read_error(tmp_path / "missing.nii.gz", "file not found")
    read_error(write_file(tmp_path / "empty.nii", b""), r"empty file \(0 bytes\)")
    read_error(write_file(tmp_path / "image.png", b"\x89PNG...."), "unknown image format")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("text.nii", r"not a NIfTI file \(bad header\)"),
        ("text.nii.gz", "not a gzip-compressed file"),
        ("text.nrrd", "not a NRRD file"),
        ("text.mha", "not a MetaImage file"),
    ],
)
def test_text_file_with_an_image_suffix(tmp_path, name, match):
    read_error(write_file(tmp_path / name, b"hello, this is not an image\n" * 40), match)


def test_nan_voxels(tmp_path):
    data = np.zeros((4, 5, 6), np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    write_image(data, np.eye(4), tmp_path / "nan.nii.gz")
    read_error(tmp_path / "nan.nii.gz", "contains 2 NaN/Inf voxels")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_huge_header_is_refused_before_allocating(tmp_path, suffix):
    header = nib.Nifti2Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((100000, 100000, 100000))
    content = header.binaryblock + b"\0" * 4 + b"\0" * 64  # header, extension flag, a few voxels
    path = write_file(tmp_path / f"huge{suffix}", gzip.compress(content) if suffix == ".nii.gz" else content)
    start = time.perf_counter()
    read_error(path, r"header declares 100000x100000x100000 voxels \(1862645\.1 GiB\), more than the limit")
    with pytest.raises(ImageReadError, match="more than the limit"):
        read_header(path)
    assert time.perf_counter() - start < 1.0


def test_max_bytes_is_honoured(tmp_path):
    write_image(np.zeros((10, 10, 10), np.int16), np.eye(4), tmp_path / "small.nrrd")
    limit = r"10x10x10 voxels \(2\.0 KiB\), more than the limit of 1000 bytes"
    read_error(tmp_path / "small.nrrd", limit, max_bytes=1000)
    assert read_image(tmp_path / "small.nrrd", max_bytes=2000).array.shape == (10, 10, 10)


def test_dimension_checks(tmp_path):
    affine = np.eye(4)
    (tmp_path / "4d.nii").write_bytes(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.int16), affine).to_bytes())
    (tmp_path / "4d1.nii").write_bytes(nib.Nifti1Image(np.zeros((4, 5, 6, 1), np.int16), affine).to_bytes())
    (tmp_path / "2d.nii").write_bytes(nib.Nifti1Image(np.zeros((4, 5), np.int16), affine).to_bytes())
    (tmp_path / "slice.nii").write_bytes(nib.Nifti1Image(np.zeros((4, 5, 1), np.int16), affine).to_bytes())
    read_error(tmp_path / "4d.nii", "is 4D .*a 2D or 3D image is needed")
    read_error(tmp_path / "4d.nii", "is 4D .*a 3D image is needed", ndim=3)
    assert read_image(tmp_path / "4d1.nii", ndim=3).array.shape == (4, 5, 6)
    assert read_image(tmp_path / "4d1.nii").array.shape == (4, 5, 6)
    assert read_header(tmp_path / "4d1.nii")[0] == (4, 5, 6)
    read_error(tmp_path / "2d.nii", "is 2D .*a 3D image is needed", ndim=3)
    read_error(tmp_path / "4d1.nii", "is 4D .*a 2D image is needed", ndim=2)
    assert read_image(tmp_path / "2d.nii").array.shape == (4, 5)
    assert read_image(tmp_path / "slice.nii").array.shape == (4, 5, 1)
    assert read_image(tmp_path / "slice.nii", ndim=2).array.shape == (4, 5)
    with pytest.raises(ValueError, match="ndim"):
        read_image(tmp_path / "2d.nii", ndim=4)


def test_image_suffix(tmp_path):
    assert [image_suffix(n) for n in ("a.nii.gz", "A.NII", "b.nrrd", "b.nhdr", "c.mha", "c.mhd", "d.png", "e")] == [
        ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", None, None,
    ]  # fmt: skip
    folder = _write_series(tmp_path / "ct", n=2)
    assert image_suffix(folder) == "dicom" and image_suffix(next(folder.iterdir())) == "dicom"
    (tmp_path / "empty").mkdir()
    assert image_suffix(tmp_path / "empty") is None


def test_find_images(tmp_path):
    affine = np.eye(4)
    for name in ("b.nii.gz", "a.nii", "sub/c.nrrd", "sub/d.mha", "sub/deeper/e.nii.gz", ".hidden/f.nii"):
        write_image(np.zeros((2, 3, 4), np.uint8), affine, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "g.raw").write_bytes(b"\0" * 10)
    _write_series(tmp_path / "sub" / "ct", n=3)
    expected = ["a.nii", "b.nii.gz", "sub/c.nrrd", "sub/ct", "sub/d.mha", "sub/deeper/e.nii.gz"]
    assert find_images(tmp_path) == [str(tmp_path / name) for name in expected]
    assert find_images(tmp_path) == find_images(str(tmp_path))
