"""Tests for monai_bundle.io: geometry-exact reading and writing of every supported format."""

from __future__ import annotations

import gzip
import os
import pickle
import time
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    Invertd,
    LoadImaged,
    Orientationd,
    Spacingd,
)

from monai_bundle.io import (
    ImageReadError,
    MedImgReader,
    Volume,
    find_images,
    image_io,
    image_suffix,
    lps_to_ras,
    ras_to_lps,
    read_header,
    read_image,
    write_image,
)

FORMATS = [".nii", ".nii.gz", ".nrrd", ".mha"]


def _float32_exact(affine) -> np.ndarray:
    """NIfTI-1 stores its sform as float32: keep test affines exactly representable there."""
    return np.asarray(affine, dtype=np.float32).astype(np.float64)


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _affine(matrix, origin) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = matrix, origin
    return _float32_exact(affine)


GEOMETRIES = {
    "oblique": _affine(_rotation(2, 20) @ _rotation(0, 20) @ np.diag([0.8, 0.9, 1.5]), [-90.5, 12.25, 40.0]),
    "flipped": _affine(np.diag([-1.25, -0.75, -2.0]), [100.0, 80.0, -30.0]),
    "anisotropic": _affine(np.diag([0.7, 0.7, 2.5]), [-50.0, -60.0, 10.0]),
    "2d": _affine(np.diag([-0.5, 0.75, 1.0]), [10.0, -20.0, 0.0]),
}


def _data(geometry: str, dtype=np.int16) -> np.ndarray:
    shape = (5, 6) if geometry == "2d" else (5, 6, 7)
    return np.random.default_rng(0).integers(-1000, 3000, size=shape).astype(dtype)


def _assert_affine(actual, expected, fmt: str) -> None:
    """Exact for NIfTI (float32-exact affines); ITK splits NRRD/MetaImage into spacing x direction (1 ulp)."""
    if fmt.startswith(".nii"):
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-9)


def _read_error(path, match: str, **kwargs) -> ImageReadError:
    """Read `path`, expecting one clear error that names it."""
    with pytest.raises(ImageReadError, match=match) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert Path(path).name in message
    assert info.value.path == os.fspath(path)
    return info.value


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip(tmp_path, suffix, geometry):
    data, affine = _data(geometry), GEOMETRIES[geometry]
    path = tmp_path / f"image{suffix}"
    write_image(data, affine, path)
    volume = read_image(path)
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, data)
    _assert_affine(volume.affine, affine, suffix)
    assert volume.format == image_io._FORMATS[suffix]
    assert volume.spacing == pytest.approx(np.linalg.norm(affine[:3, : data.ndim], axis=0))
    assert read_header(path) == (data.shape, pytest.approx(volume.affine), volume.format)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp files left


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_round_trip_detached_header(tmp_path, suffix):
    data, affine = _data("oblique", np.float32), GEOMETRIES["oblique"]
    path = tmp_path / f"image{suffix}"
    write_image(data, affine, path)
    volume = read_image(path)
    np.testing.assert_array_equal(volume.array, data)
    _assert_affine(volume.affine, affine, suffix)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and path.name in names and not any(n.startswith(".") for n in names)


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


def test_big_endian_nifti_is_read_in_native_byte_order(tmp_path):
    header = nib.Nifti1Header(endianness=">")
    header.set_data_dtype(np.int16)
    data = np.arange(24, dtype=">i2").reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(data, np.eye(4), header=header), tmp_path / "big.nii")
    assert nib.load(tmp_path / "big.nii").header.endianness == ">"
    volume = read_image(tmp_path / "big.nii")
    assert volume.array.dtype == np.dtype("=i2")
    np.testing.assert_array_equal(volume.array, np.arange(24).reshape(2, 3, 4))


def test_2d_affine_gets_a_unit_normal(tmp_path):
    affine = np.array([[0.5, 0, 0, 1], [0, -0.5, 0, 2], [0, 0, 0, 0], [0, 0, 0, 1]])  # third column unset
    write_image(np.zeros((3, 4), np.uint8), affine, tmp_path / "flat.nii.gz")
    expected = affine.copy()
    expected[2, 2] = -1.0  # cross(+x, -y)
    np.testing.assert_array_equal(read_image(tmp_path / "flat.nii.gz").affine, expected)


def test_scaled_nifti_is_read_as_float32(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.set_slope_inter(0.5, -10)
    nib.save(img, tmp_path / "scaled.nii")
    volume = read_image(tmp_path / "scaled.nii")
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, np.arange(24).reshape(2, 3, 4) * 0.5 - 10)


@pytest.mark.parametrize(
    ("source", "target"), [(".nii.gz", ".nrrd"), (".nrrd", ".nii.gz"), (".mha", ".nii"), (".nii", ".mha")]
)
def test_cross_format(tmp_path, source, target):
    data, affine = _data("oblique"), GEOMETRIES["oblique"]
    write_image(data, affine, tmp_path / f"in{source}")
    first = read_image(tmp_path / f"in{source}")
    write_image(first.array, first.affine, tmp_path / f"out{target}")
    second = read_image(tmp_path / f"out{target}")
    np.testing.assert_array_equal(second.array, data)
    np.testing.assert_allclose(second.affine, affine, rtol=0, atol=1e-9)


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
    np.testing.assert_array_equal(img.get_sform(), _float32_exact(volume.affine))
    np.testing.assert_array_equal(read_image(tmp_path / "sheared.nii.gz").affine, _float32_exact(volume.affine))


def test_bool_and_int64_arrays_are_writable(tmp_path):
    affine = GEOMETRIES["anisotropic"]
    mask = _data("anisotropic") > 0
    for suffix in FORMATS:
        write_image(mask, affine, tmp_path / f"mask{suffix}")
        assert read_image(tmp_path / f"mask{suffix}").array.dtype == np.uint8
        write_image(mask.astype(np.int64), affine, tmp_path / f"long{suffix}")
        np.testing.assert_array_equal(read_image(tmp_path / f"long{suffix}").array, mask)


# ---------------------------------------------------------------- reference headers


def test_nifti_reference_header_is_reused(tmp_path):
    affine = GEOMETRIES["oblique"]
    img = nib.Nifti1Image(_data("oblique"), affine)
    img.set_qform(GEOMETRIES["anisotropic"], code=1)  # deliberately different from the sform
    img.set_sform(affine, code=2)
    img.header.set_slope_inter(2.0, 1.0)
    img.header["cal_max"] = 3000
    img.header["descrip"] = b"reference"
    nib.save(img, tmp_path / "input.nii.gz")
    labels = (_data("oblique") > 500).astype(np.uint8)

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


def test_nrrd_reference_header_is_reused(tmp_path):
    header = {
        "space": "right-anterior-superior",
        "space directions": np.array([[0.7, 0.1, 0.0], [-0.1, 0.7, 0.0], [0.0, 0.0, 2.5]]),
        "space origin": np.array([-10.123456789012, 20.5, 1 / 3]),
        "kinds": ["domain"] * 3,
        "measurement frame": np.eye(3),
        "custom": "kept",
    }
    nrrd.write(str(tmp_path / "input.nrrd"), _data("oblique"), header, index_order="F")
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
    image = sitk.GetImageFromArray(_data("oblique").T)
    image.SetOrigin((-10.123456789012, 20.5, 1 / 3))
    image.SetSpacing((0.7, 0.71, 2.5))
    image.SetDirection(tuple(_rotation(1, 30).ravel()))
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


def test_reference_must_match_the_array_grid(tmp_path):
    data, affine = _data("anisotropic"), GEOMETRIES["anisotropic"]
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


# ---------------------------------------------------------------- known geometry (LPS/RAS convention)


def test_lps_ras_conversion_is_an_involution():
    affine = GEOMETRIES["oblique"]
    np.testing.assert_array_equal(lps_to_ras(affine)[2:], affine[2:])
    np.testing.assert_array_equal(lps_to_ras(affine)[:2], -affine[:2])
    np.testing.assert_array_equal(ras_to_lps(lps_to_ras(affine)), affine)


def test_known_nifti_geometry(tmp_path):
    affine = np.array([[0, 0, 2.0, -30], [-0.5, 0, 0, 40], [0, 1.5, 0, -50], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), affine), tmp_path / "known.nii.gz")
    np.testing.assert_array_equal(read_image(tmp_path / "known.nii.gz").affine, affine)
    assert read_header(tmp_path / "known.nii.gz")[0] == (3, 4, 5)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_known_itk_geometry(tmp_path, suffix):
    """An image written by SimpleITK with a known LPS grid reads to the RAS affine computed by hand."""
    data = _data("anisotropic")
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
    data, affine = _data("oblique"), GEOMETRIES["oblique"]
    write_image(data, affine, tmp_path / "ours.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "ours.nii.gz")), str(tmp_path / "itk.nrrd"))
    volume = read_image(tmp_path / "itk.nrrd")
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(volume.array, data)


# ---------------------------------------------------------------- DICOM

from helpers import (
    COLS,
    IOP_COL,
    IOP_ROW,
    NORMAL,
    ORIGIN,
    PIXEL_SPACING,
    ROWS,
    SLICE_STEP,
)
from helpers import dicom_pixels as _pixels
from helpers import write_dicom_series as _write_series
from helpers import write_dicom_slice as _write_slice


def _expected_dicom_affine(n=6) -> np.ndarray:
    lps = np.eye(4)
    lps[:3, 0] = IOP_ROW * PIXEL_SPACING[1]  # i runs along a row: across columns
    lps[:3, 1] = IOP_COL * PIXEL_SPACING[0]
    lps[:3, 2] = NORMAL * SLICE_STEP if n > 1 else NORMAL
    lps[:3, 3] = ORIGIN
    return lps_to_ras(lps)


def _expected_dicom_array(n=6) -> np.ndarray:
    return np.stack([_pixels(k).T.astype(np.float32) - 1024 for k in range(n)], axis=-1)


def test_dicom_series(tmp_path):
    folder = _write_series(tmp_path / "ct")
    volume = read_image(folder)
    assert volume.format == "dicom" and volume.array.dtype == np.float32
    assert volume.array.shape == (COLS, ROWS, 6)
    np.testing.assert_array_equal(volume.array, _expected_dicom_array())
    np.testing.assert_allclose(volume.affine, _expected_dicom_affine(), atol=1e-6)
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
    np.testing.assert_array_equal(read_image(folder).array, _expected_dicom_array(3))


def test_dicom_missing_slice(tmp_path):
    folder = _write_series(tmp_path / "ct", skip=(3,))
    _read_error(folder, r"missing slice\(s\) between z=")


def test_dicom_uneven_spacing(tmp_path):
    folder = _write_series(tmp_path / "ct", n=4)
    _write_slice(folder / "extra", 4, series_uid="1.2.3.4.5", position=ORIGIN + 11.3 * NORMAL)
    _read_error(folder, "uneven slice spacing")


def test_dicom_duplicate_position(tmp_path):
    folder = _write_series(tmp_path / "ct", n=4)
    _write_slice(folder / "duplicate", 2, series_uid="1.2.3.4.5")
    _read_error(folder, "same position")


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
    np.testing.assert_allclose(volume.affine, _expected_dicom_affine(1), atol=1e-6)
    _read_error(folder, "2D.*a 3D image is needed", ndim=3)


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
    _read_error(tmp_path / "mf", "multi-frame DICOM is not supported")


# ---------------------------------------------------------------- bad input


def _nifti_bytes(data=None, affine=None) -> bytes:
    data = np.zeros((4, 5, 6), np.int16) if data is None else data
    return nib.Nifti1Image(data, np.eye(4) if affine is None else affine).to_bytes()


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_missing_empty_and_unknown_files(tmp_path):
    _read_error(tmp_path / "missing.nii.gz", "file not found")
    _read_error(_write(tmp_path / "empty.nii", b""), r"empty file \(0 bytes\)")
    _read_error(_write(tmp_path / "image.png", b"\x89PNG...."), "unknown image format")


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
    _read_error(_write(tmp_path / name, b"hello, this is not an image\n" * 40), match)


def test_gzipped_text_is_not_nifti(tmp_path):
    _read_error(_write(tmp_path / "text.nii.gz", gzip.compress(b"not an image\n" * 100)), "not a NIfTI file")


def test_truncated_nifti(tmp_path):
    content = _nifti_bytes()
    _read_error(_write(tmp_path / "cut.nii", content[:-100]), "truncated")
    _read_error(_write(tmp_path / "cut.nii.gz", gzip.compress(content)[:-30]), "truncated")
    _read_error(_write(tmp_path / "short.nii.gz", gzip.compress(content[:-100])), "truncated")


def test_nifti_gzip_crc(tmp_path):
    corrupt = bytearray(gzip.compress(_nifti_bytes()))
    corrupt[-6] ^= 0xFF  # inside the CRC32 trailer: nibabel alone would not notice
    _read_error(_write(tmp_path / "crc.nii.gz", bytes(corrupt)), "gzip CRC check failed")
    # header-only reads do not decompress the data, so they still work
    assert read_header(tmp_path / "crc.nii.gz")[0] == (4, 5, 6)


def test_truncated_and_corrupt_nrrd(tmp_path):
    data = _data("anisotropic")
    nrrd.write(str(tmp_path / "raw.nrrd"), data, {"encoding": "raw"}, index_order="F")
    _write(tmp_path / "cut.nrrd", (tmp_path / "raw.nrrd").read_bytes()[:-20])
    _read_error(tmp_path / "cut.nrrd", "truncated")
    nrrd.write(str(tmp_path / "gz.nrrd"), data, {"encoding": "gzip"}, index_order="F")
    corrupt = bytearray((tmp_path / "gz.nrrd").read_bytes())
    corrupt[-6] ^= 0xFF
    _read_error(_write(tmp_path / "crc.nrrd", bytes(corrupt)), "corrupt compressed voxel data")


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_and_corrupt_metaimage(tmp_path, compress):
    sitk.WriteImage(sitk.GetImageFromArray(_data("anisotropic").T), str(tmp_path / "ok.mha"), compress)
    content = (tmp_path / "ok.mha").read_bytes()
    _read_error(_write(tmp_path / "cut.mha", content[:-20]), "truncated")
    if compress:  # ITK itself only prints "Uncompress failed" and returns the image
        corrupt = bytearray(content)
        corrupt[-3] ^= 0xFF
        _read_error(_write(tmp_path / "corrupt.mha", bytes(corrupt)), "corrupt compressed voxel data")


def test_nan_voxels(tmp_path):
    data = np.zeros((4, 5, 6), np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    write_image(data, np.eye(4), tmp_path / "nan.nii.gz")
    _read_error(tmp_path / "nan.nii.gz", "contains 2 NaN/Inf voxels")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_huge_header_is_refused_before_allocating(tmp_path, suffix):
    header = nib.Nifti2Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((100000, 100000, 100000))
    content = header.binaryblock + b"\0" * 4 + b"\0" * 64  # header, extension flag, a few voxels
    path = _write(tmp_path / f"huge{suffix}", gzip.compress(content) if suffix == ".nii.gz" else content)
    start = time.perf_counter()
    _read_error(path, r"header declares 100000x100000x100000 voxels \(1862645\.1 GiB\), more than the limit")
    with pytest.raises(ImageReadError, match="more than the limit"):
        read_header(path)
    assert time.perf_counter() - start < 1.0


def test_max_bytes_is_honoured(tmp_path):
    write_image(np.zeros((10, 10, 10), np.int16), np.eye(4), tmp_path / "small.nrrd")
    limit = r"10x10x10 voxels \(2\.0 KiB\), more than the limit of 1000 bytes"
    _read_error(tmp_path / "small.nrrd", limit, max_bytes=1000)
    assert read_image(tmp_path / "small.nrrd", max_bytes=2000).array.shape == (10, 10, 10)


def _sform_only_nifti(path: Path, sform: np.ndarray) -> Path:
    """A NIfTI whose only geometry is `sform` (nibabel refuses to build a qform from a bad one)."""
    header = nib.Nifti1Header()
    header.set_data_shape((4, 5, 6))
    header.set_data_dtype(np.int16)
    header.set_sform(sform, code=1)
    return _write(path, nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), None, header=header).to_bytes())


def test_bad_nifti_affines(tmp_path):
    zero = np.diag([1.0, 0.0, 1.0, 1.0])
    _read_error(_sform_only_nifti(tmp_path / "zero.nii", zero), "zero voxel spacing along axis 1")
    singular = np.eye(4)
    singular[:3, 1] = [1.0, 0.0, 0.0]
    _read_error(_sform_only_nifti(tmp_path / "singular.nii", singular), "singular")
    nan = np.eye(4)
    nan[0, 3] = np.nan
    _read_error(_sform_only_nifti(tmp_path / "nan.nii", nan), "NaN/Inf")
    header = nib.Nifti1Header()  # qform geometry with a zero voxel size: nibabel would quietly make it 1
    header.set_data_shape((4, 5, 6))
    header.set_zooms((1.0, 0.0, 1.0))
    header["qform_code"] = 1
    _read_error(_write(tmp_path / "zoom.nii", header.binaryblock + b"\0" * (4 + 240)), "zero voxel spacing")


def test_bad_metaimage_geometry(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16)), str(tmp_path / "ok.mha"))
    content = (tmp_path / "ok.mha").read_bytes()
    zero = content.replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = 0 1 1")
    _read_error(_write(tmp_path / "zero.mha", zero), "non-positive voxel spacing")
    singular = content.replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0 0 1 0 0 0 0 1")
    _read_error(_write(tmp_path / "singular.mha", singular), "singular")


def test_dimension_checks(tmp_path):
    affine = np.eye(4)
    (tmp_path / "4d.nii").write_bytes(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.int16), affine).to_bytes())
    (tmp_path / "4d1.nii").write_bytes(nib.Nifti1Image(np.zeros((4, 5, 6, 1), np.int16), affine).to_bytes())
    (tmp_path / "2d.nii").write_bytes(nib.Nifti1Image(np.zeros((4, 5), np.int16), affine).to_bytes())
    (tmp_path / "slice.nii").write_bytes(nib.Nifti1Image(np.zeros((4, 5, 1), np.int16), affine).to_bytes())
    _read_error(tmp_path / "4d.nii", "is 4D .*a 2D or 3D image is needed")
    _read_error(tmp_path / "4d.nii", "is 4D .*a 3D image is needed", ndim=3)
    assert read_image(tmp_path / "4d1.nii", ndim=3).array.shape == (4, 5, 6)
    assert read_image(tmp_path / "4d1.nii").array.shape == (4, 5, 6)
    assert read_header(tmp_path / "4d1.nii")[0] == (4, 5, 6)
    _read_error(tmp_path / "2d.nii", "is 2D .*a 3D image is needed", ndim=3)
    _read_error(tmp_path / "4d1.nii", "is 4D .*a 2D image is needed", ndim=2)
    assert read_image(tmp_path / "2d.nii").array.shape == (4, 5)
    assert read_image(tmp_path / "slice.nii").array.shape == (4, 5, 1)
    assert read_image(tmp_path / "slice.nii", ndim=2).array.shape == (4, 5)
    with pytest.raises(ValueError, match="ndim"):
        read_image(tmp_path / "2d.nii", ndim=4)


def test_vector_image_is_refused(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 3), np.uint8), isVector=True), str(tmp_path / "rgb.mha"))
    _read_error(tmp_path / "rgb.mha", "3 components per voxel")


def test_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "secret.nii"
    path.write_bytes(_nifti_bytes())
    path.chmod(0)
    try:
        open(path, "rb").close()
    except PermissionError:
        pass
    else:  # running as root: simulate the refusal the OS would give anyone else
        def denied(name, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(name))

        monkeypatch.setattr(image_io, "open", denied, raising=False)
    _read_error(path, "permission denied")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("nothing here")
    _read_error(tmp_path / "notes", "no DICOM image files in folder")


def test_error_is_one_line_and_picklable(tmp_path):
    error = ImageReadError(tmp_path / "x.nii", "first line\nsecond line")
    assert str(error) == f"{tmp_path / 'x.nii'}: first line" and error.problem == "first line"
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.problem, str(copy)) == (error.path, error.problem, str(error))


def test_inputs_are_not_modified(tmp_path):
    data, affine = _data("oblique"), GEOMETRIES["oblique"]
    write_image(data, affine, tmp_path / "in.nii.gz")
    before, mtime = (tmp_path / "in.nii.gz").read_bytes(), (tmp_path / "in.nii.gz").stat().st_mtime_ns
    data_copy, affine_copy = data.copy(), affine.copy()
    volume = read_image(tmp_path / "in.nii.gz")
    write_image(volume.array, volume.affine, tmp_path / "out.nii.gz", reference=tmp_path / "in.nii.gz")
    assert (tmp_path / "in.nii.gz").read_bytes() == before and (tmp_path / "in.nii.gz").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(data, data_copy)
    np.testing.assert_array_equal(affine, affine_copy)


# ---------------------------------------------------------------- writing


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


def test_nifti_output_header(tmp_path):
    affine = GEOMETRIES["oblique"]
    write_image(_data("oblique"), affine, tmp_path / "out.nii.gz")
    header = nib.load(tmp_path / "out.nii.gz").header
    assert (header["sform_code"], header["qform_code"]) == (1, 1)
    assert header.get_xyzt_units()[0] == "mm"
    np.testing.assert_array_equal(header.get_sform(), affine)
    np.testing.assert_allclose(header.get_qform(), affine, atol=1e-4)  # quaternion in float32: close, not exact
    assert gzip.open(tmp_path / "out.nii.gz").read()  # a valid gzip stream


# ---------------------------------------------------------------- MONAI


def _pipeline():
    keys = ["image"]
    return Compose(
        [
            LoadImaged(keys=keys, reader=MedImgReader),
            EnsureChannelFirstd(keys=keys),
            Orientationd(keys=keys, axcodes="RAS"),
            Spacingd(keys=keys, pixdim=2.0, mode="nearest"),
        ]
    )


@pytest.mark.parametrize(
    ("suffix", "geometry"), [(".nii.gz", "oblique"), (".nrrd", "flipped"), (".mha", "anisotropic"), (".nii.gz", "2d")]
)
def test_monai_load_invert_and_write_back(tmp_path, suffix, geometry):
    data, affine = _data(geometry), GEOMETRIES[geometry]
    source = tmp_path / f"input{suffix}"
    write_image(data, affine, source)
    pre = _pipeline()
    item = pre({"image": str(source)})
    meta = item["image"].meta
    assert meta["source_format"] == image_io._FORMATS[suffix] and meta["space"] == "RAS"
    assert meta["filename_or_obj"] == str(source)
    np.testing.assert_allclose(np.asarray(meta["original_affine"]), affine, atol=1e-9)
    assert tuple(np.asarray(meta["spatial_shape"])) == data.shape

    item["pred"] = item["image"].clone()
    inverted = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True)(item)["pred"]
    assert tuple(inverted.shape) == (1, *data.shape)
    np.testing.assert_allclose(inverted.affine.numpy(), affine, atol=1e-4)

    out = tmp_path / f"pred{suffix}"
    write_image(inverted[0].numpy().astype(np.int16), inverted.affine.numpy(), out, reference=source)
    _assert_affine(read_image(out).affine, read_image(source).affine, suffix)


def test_monai_dicom_folder_and_channel_stack(tmp_path):
    folder = _write_series(tmp_path / "ct")
    image = LoadImaged(keys="image", reader=MedImgReader)({"image": str(folder)})["image"]
    assert isinstance(image, torch.Tensor) and tuple(image.shape) == (COLS, ROWS, 6)
    np.testing.assert_allclose(image.affine.numpy(), _expected_dicom_affine(), atol=1e-6)
    write_image(_data("anisotropic"), GEOMETRIES["anisotropic"], tmp_path / "a.nii.gz")
    write_image(_data("anisotropic") + 1, GEOMETRIES["anisotropic"], tmp_path / "b.nrrd")
    stacked = LoadImaged(keys="image", reader=MedImgReader, ensure_channel_first=True)(
        {"image": [str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nrrd")]}
    )["image"]
    assert tuple(stacked.shape) == (2, 5, 6, 7)


def test_monai_does_not_fall_back_to_other_readers(tmp_path):
    corrupt = bytearray(gzip.compress(_nifti_bytes()))
    corrupt[-6] ^= 0xFF
    path = _write(tmp_path / "crc.nii.gz", bytes(corrupt))
    with pytest.raises(ImageReadError, match="gzip CRC check failed"):
        LoadImaged(keys="image", reader=MedImgReader)({"image": str(path)})


def test_reader_verify_suffix(tmp_path):
    reader = MedImgReader()
    assert reader.verify_suffix("a.nii.gz") and reader.verify_suffix(["a.nrrd", "b.mha"])
    assert not reader.verify_suffix("a.png")


# ---------------------------------------------------------------- finding images


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


def test_volume_spacing():
    volume = Volume(np.zeros((2, 3)), GEOMETRIES["2d"], "x.nii", "nifti")
    assert volume.spacing == (0.5, 0.75)
