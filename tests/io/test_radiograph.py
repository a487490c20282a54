"""Tests for monai_bundle.io.radiograph: DICOM CR/DX/SC, PNG, JPEG, BMP, TIFF and 2D NIfTI/NRRD read as radiographs."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from monai_bundle.io import (
    ImageReadError,
    RadiographReader,
    find_images,
    find_radiographs,
    lps_to_ras,
    read_image,
    read_radiograph,
    write_image,
)

from helpers import IOP_COL, IOP_ROW, ORIGIN

ROWS, COLS, BITS = 6, 9, 12
PIXELS = np.random.default_rng(0).integers(0, 2**BITS, size=(ROWS, COLS)).astype(np.uint16)
PIXELS[0, :2] = 0, 2**BITS - 1  # both ends of the stored range
MODALITIES = {ComputedRadiographyImageStorage: "CR", DigitalXRayImageStorageForPresentation: "DX"}


def _dicom(
    path, pixels=PIXELS, *, photometric="MONOCHROME2", bits=BITS, sop=ComputedRadiographyImageStorage, **attributes
):
    """Write a one-frame DICOM image (pixels [rows, cols] or [rows, cols, 3]); `attributes` by keyword."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = MODALITIES.get(sop, "OT"), "TEST"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 1 if pixels.ndim == 2 else 3
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = pixels.dtype.itemsize * 8, bits, bits - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def _voi_lut(first: int, data: np.ndarray) -> list[Dataset]:
    """A VOI LUT Sequence of one 16-bit LUT."""
    item = Dataset()
    item.add_new(0x00283002, "US", [len(data), first, 16])  # LUTDescriptor
    item.add_new(0x00283006, "US", [int(v) for v in data])  # LUTData
    return [item]


def _refused(path, match: str, read=read_radiograph, **kwargs) -> str:
    """Read `path`, expecting one ImageReadError line '<path>: <problem>'."""
    with pytest.raises(ImageReadError, match=match) as info:
        read(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert info.value.path == os.fspath(path)
    return message


def _luma(rgb) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64)[..., :3] @ [0.299, 0.587, 0.114]


def _ras(row_dir, col_dir, spacing, origin) -> np.ndarray:
    """The RAS affine a one-frame DICOM image should get: i along a row, j down a column, the normal third."""
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = np.asarray(row_dir) * spacing[1], np.asarray(col_dir) * spacing[0]
    lps[:3, 2], lps[:3, 3] = np.cross(row_dir, col_dir), origin
    return lps_to_ras(lps)


# ---------------------------------------------------------------- DICOM intensities


def test_monochrome2_without_voi_spans_the_stored_range(tmp_path):
    volume = read_radiograph(_dicom(tmp_path / "cr.dcm"))
    assert volume.format == "dicom" and volume.array.dtype == np.float32
    assert volume.array.shape == (COLS, ROWS)  # [i, j]: i runs along a row
    np.testing.assert_allclose(volume.array, PIXELS.T / (2**BITS - 1), rtol=0, atol=1e-7)
    assert volume.array[0, 0] == 0 and volume.array[1, 0] == 1


def _mirrored(centre: float, k: float, function: str) -> float:
    """The centre that shows values k - v as the original window shows v (DICOM's LINEAR is centred on c - 0.5)."""
    return k + 1 - centre if function == "LINEAR" else k - centre


LUT = np.round(65535 * np.linspace(0, 1, 2000) ** 0.5).astype(np.uint16)  # a non-linear VOI LUT over 1000..2999

# name: (the MONOCHROME1 file's attributes, the range that pydicom's VOI output spans)
TWINS = {
    "no VOI": (dict, (0, 4095)),
    "rescale": (lambda: {"RescaleSlope": 2, "RescaleIntercept": -1000}, (-1000, 7190)),
    "LINEAR window": (lambda: {"WindowCenter": 1500, "WindowWidth": 1001}, (0, 4095)),
    "LINEAR_EXACT window, rescale": (
        lambda: {"RescaleSlope": 2, "RescaleIntercept": -1000, "WindowCenter": 2500, "WindowWidth": 3000,
                 "VOILUTFunction": "LINEAR_EXACT"},
        (-1000, 7190),
    ),
    "SIGMOID window": (lambda: {"WindowCenter": 2100, "WindowWidth": 800, "VOILUTFunction": "SIGMOID"}, (0, 4095)),
    "VOI LUT (preferred to a window)": (
        lambda: {"VOILUTSequence": _voi_lut(1000, LUT), "WindowCenter": 100, "WindowWidth": 10}, (0, 65535)
    ),
}  # fmt: skip


def _twin_attributes(attributes: dict, k: float) -> dict:
    """The MONOCHROME2 twin's attributes: every VOI mirrored about the middle of the modality range."""
    twin = dict(attributes)
    if "VOILUTSequence" in attributes:
        entries, first, _ = attributes["VOILUTSequence"][0].LUTDescriptor
        data = np.asarray(attributes["VOILUTSequence"][0].LUTData)
        twin["VOILUTSequence"] = _voi_lut(int(k) - first - (entries - 1), 65535 - data[::-1])
    elif "WindowCenter" in attributes:
        twin["WindowCenter"] = _mirrored(attributes["WindowCenter"], k, attributes.get("VOILUTFunction", "LINEAR"))
    return twin


def _pydicom_display(path, display_range) -> np.ndarray:
    """pydicom's own Modality + VOI output, scaled from `display_range` to [0, 1], as [i, j]."""
    ds = pydicom.dcmread(path)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    low, high = display_range
    return ((values - low) / (high - low)).T


@pytest.mark.parametrize("case", sorted(TWINS))
def test_monochrome1_reads_exactly_as_its_monochrome2_twin(tmp_path, case):
    make_attributes, display_range = TWINS[case]
    attributes = make_attributes()
    slope, intercept = attributes.get("RescaleSlope", 1), attributes.get("RescaleIntercept", 0)
    k = slope * (2**BITS - 1) + 2 * intercept  # lowest + highest modality value
    mono1 = _dicom(tmp_path / "m1.dcm", PIXELS, photometric="MONOCHROME1", **attributes)
    mono2 = _dicom(tmp_path / "m2.dcm", (2**BITS - 1) - PIXELS, **_twin_attributes(attributes, k))
    first, second = read_radiograph(mono1).array, read_radiograph(mono2).array
    np.testing.assert_array_equal(first, second)
    # and both are what pydicom displays for the MONOCHROME2 twin (an independent implementation of the VOI)
    np.testing.assert_allclose(second, _pydicom_display(mono2, display_range), rtol=0, atol=1e-6)
    assert first[0, 0] > first[1, 0]  # stored 0 is white in MONOCHROME1, stored 4095 black


def test_signed_monochrome1_twin(tmp_path):
    signed = PIXELS.astype(np.int16) - 2048  # 12-bit signed: -2048..2047, mirrored as -1 - p
    window = {"WindowCenter": -300, "WindowWidth": 2500}
    mono1 = _dicom(tmp_path / "m1.dcm", signed, photometric="MONOCHROME1", **window)
    mono2 = _dicom(tmp_path / "m2.dcm", -1 - signed, WindowCenter=_mirrored(-300, -1, "LINEAR"), WindowWidth=2500)
    np.testing.assert_array_equal(read_radiograph(mono1).array, read_radiograph(mono2).array)
    np.testing.assert_allclose(read_radiograph(mono2).array, _pydicom_display(mono2, (-2048, 2047)), atol=1e-6)


def test_first_of_several_windows_is_used(tmp_path):
    several = read_radiograph(_dicom(tmp_path / "a.dcm", WindowCenter=[1000, 3000], WindowWidth=[500, 200])).array
    first = read_radiograph(_dicom(tmp_path / "b.dcm", WindowCenter=1000, WindowWidth=500)).array
    second = read_radiograph(_dicom(tmp_path / "c.dcm", WindowCenter=3000, WindowWidth=200)).array
    np.testing.assert_array_equal(several, first)
    assert not np.array_equal(several, second)


def test_invalid_window_is_ignored_with_a_warning(tmp_path, caplog):
    volume = read_radiograph(_dicom(tmp_path / "cr.dcm", WindowCenter=1000, WindowWidth=0))
    np.testing.assert_allclose(volume.array, PIXELS.T / (2**BITS - 1), atol=1e-7)  # the full stored range instead
    assert "ignoring invalid window" in caplog.text


def test_colour_dicom_is_bt601_luma(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(ROWS, COLS, 3)).astype(np.uint8)
    sc = {"sop": SecondaryCaptureImageStorage, "bits": 8}
    volume = read_radiograph(_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB", **sc))
    np.testing.assert_allclose(volume.array, _luma(rgb).T / 255, atol=1e-6)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")  # pydicom turns it back to RGB, within rounding
    volume = read_radiograph(_dicom(tmp_path / "ybr.dcm", ybr, photometric="YBR_FULL", **sc))
    np.testing.assert_allclose(volume.array, _luma(rgb).T / 255, atol=2 / 255)


def test_palette_colour_dicom(tmp_path):
    palette = np.random.default_rng(2).integers(0, 65536, size=(3, 256)).astype(np.uint16)
    indices = np.random.default_rng(3).integers(0, 256, size=(ROWS, COLS)).astype(np.uint8)
    luts = {
        f"{colour}PaletteColorLookupTable{part}": value
        for colour, channel in zip(("Red", "Green", "Blue"), palette)
        for part, value in (("Descriptor", [256, 0, 16]), ("Data", channel.tobytes()))
    }
    path = _dicom(
        tmp_path / "p.dcm", indices, photometric="PALETTE COLOR", bits=8, sop=SecondaryCaptureImageStorage, **luts
    )
    np.testing.assert_allclose(read_radiograph(path).array, _luma(palette.T[indices]).T / 65535, atol=1e-6)


# ---------------------------------------------------------------- DICOM geometry


def test_dicom_geometry_matches_read_image(tmp_path):
    path = _dicom(tmp_path / "dx.dcm", sop=DigitalXRayImageStorageForPresentation, PixelSpacing=[0.2, 0.3],
                  ImageOrientationPatient=[*IOP_ROW, *IOP_COL], ImagePositionPatient=list(ORIGIN))  # fmt: skip
    volume = read_radiograph(path)
    np.testing.assert_allclose(volume.affine, _ras(IOP_ROW, IOP_COL, (0.2, 0.3), ORIGIN), atol=1e-12)
    np.testing.assert_allclose(volume.affine, read_image(path).affine, atol=1e-12)
    assert volume.spacing == pytest.approx((0.3, 0.2))


@pytest.mark.parametrize(
    ("attributes", "spacing", "logged"),
    [
        ({"PixelSpacing": [0.2, 0.3], "ImagerPixelSpacing": [0.25, 0.35]}, (0.2, 0.3), "from PixelSpacing"),
        ({"ImagerPixelSpacing": [0.25, 0.35]}, (0.25, 0.35), "from ImagerPixelSpacing"),
        ({"PixelSpacing": [0, 0], "ImagerPixelSpacing": [0.25, 0.35]}, (0.25, 0.35), "from ImagerPixelSpacing"),
        ({"PixelSpacing": [0, 0]}, (1.0, 1.0), "neither PixelSpacing nor ImagerPixelSpacing: 1 mm"),
        ({}, (1.0, 1.0), "neither PixelSpacing nor ImagerPixelSpacing: 1 mm"),
    ],
)
def test_dicom_pixel_spacing_sources(tmp_path, caplog, attributes, spacing, logged):
    caplog.set_level(logging.DEBUG, logger="monai_bundle.io")
    volume = read_radiograph(_dicom(tmp_path / "cr.dcm", **attributes))
    np.testing.assert_array_equal(volume.affine, np.diag([-spacing[1], -spacing[0], 1.0, 1.0]))
    assert logged in caplog.text


def test_orientation_without_position_starts_at_the_origin(tmp_path):
    flipped = ([-1.0, 0, 0], [0, 1.0, 0])
    volume = read_radiograph(_dicom(tmp_path / "cr.dcm", ImageOrientationPatient=[*flipped[0], *flipped[1]]))
    np.testing.assert_array_equal(volume.affine, _ras(*flipped, (1.0, 1.0), np.zeros(3)))


def test_one_frame_enhanced_dicom_takes_its_functional_groups(tmp_path):
    measures, transform = Dataset(), Dataset()
    measures.PixelSpacing = [0.4, 0.5]
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2, 10, "US"
    shared = Dataset()
    shared.PixelMeasuresSequence, shared.PixelValueTransformationSequence = [measures], [transform]
    path = _dicom(tmp_path / "mf.dcm", NumberOfFrames=1, SharedFunctionalGroupsSequence=[shared])
    flat = _dicom(tmp_path / "flat.dcm", PixelSpacing=[0.4, 0.5], RescaleSlope=2, RescaleIntercept=10)
    volume = read_radiograph(path)
    np.testing.assert_array_equal(volume.affine, np.diag([-0.5, -0.4, 1.0, 1.0]))
    np.testing.assert_array_equal(volume.array, read_radiograph(flat).array)
    assert pydicom.dcmread(path).get("PixelSpacing") is None  # the file itself is left as it was


# ---------------------------------------------------------------- pictures

GREY8 = np.random.default_rng(4).integers(0, 256, size=(ROWS, COLS)).astype(np.uint8)
GREY16 = np.random.default_rng(5).integers(0, 65536, size=(ROWS, COLS)).astype(np.uint16)
GREY16[0, :3] = 0, 1, 65535  # 1 would vanish if 16-bit data were cut to 8 bits
RGBA8 = np.random.default_rng(6).integers(0, 256, size=(ROWS, COLS, 4)).astype(np.uint8)
RGBA16 = np.random.default_rng(7).integers(0, 65536, size=(ROWS, COLS, 4)).astype(np.uint16)
SMOOTH = np.add.outer(np.arange(ROWS * 8) * 2, np.arange(COLS * 8) * 3 // 2).astype(np.uint8)  # JPEG-friendly


def _palette_png(path):
    palette = np.random.default_rng(8).integers(0, 256, size=(16, 3)).astype(np.uint8)
    indices = GREY8 % 16
    picture = Image.fromarray(indices, "P")
    picture.putpalette(palette.ravel().tolist())
    picture.save(path)
    return _luma(palette[indices]) / 255


def _sitk_vector(path, array):
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=True), str(path))


PICTURES = {  # name: (writer, expected grey [rows, cols], tolerance)
    "grey8.png": (lambda p: Image.fromarray(GREY8).save(p), GREY8 / 255, 1e-7),
    "grey16.png": (lambda p: Image.fromarray(GREY16).save(p), GREY16 / 65535, 1e-7),
    "grey_alpha.png": (lambda p: Image.fromarray(RGBA8[..., 2:]).save(p), RGBA8[..., 2] / 255, 1e-7),
    "rgb.png": (lambda p: Image.fromarray(RGBA8[..., :3]).save(p), _luma(RGBA8) / 255, 1e-6),
    "rgba.png": (lambda p: Image.fromarray(RGBA8).save(p), _luma(RGBA8) / 255, 1e-6),
    "palette.png": (_palette_png, None, 1e-6),
    "rgb16.png": (lambda p: _sitk_vector(p, RGBA16[..., :3]), _luma(RGBA16) / 65535, 1e-6),
    "rgba16.png": (lambda p: _sitk_vector(p, RGBA16), _luma(RGBA16) / 65535, 1e-6),
    "grey16.tif": (lambda p: Image.fromarray(GREY16).save(p), GREY16 / 65535, 1e-7),
    "rgb16.tiff": (lambda p: _sitk_vector(p, RGBA16[..., :3]), _luma(RGBA16) / 65535, 1e-6),
    "rgb.bmp": (lambda p: Image.fromarray(RGBA8[..., :3]).save(p), _luma(RGBA8) / 255, 1e-6),
    "grey.jpg": (lambda p: Image.fromarray(SMOOTH).save(p, quality=95), SMOOTH / 255, 4 / 255),
    "rgb.JPEG": (lambda p: Image.fromarray(np.dstack([SMOOTH] * 3)).save(p, "JPEG", quality=95), SMOOTH / 255, 4 / 255),
}


@pytest.mark.parametrize("name", sorted(PICTURES))
def test_picture_is_read_as_grey_in_0_1(tmp_path, name):
    write, expected, tolerance = PICTURES[name]
    path = tmp_path / name
    palette_expected = write(path)  # only the palette writer works out what to expect
    expected = palette_expected if expected is None else expected
    volume = read_radiograph(path)
    assert volume.array.dtype == np.float32 and volume.array.shape == expected.T.shape
    np.testing.assert_allclose(volume.array, expected.T, rtol=0, atol=tolerance)
    np.testing.assert_array_equal(volume.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))
    assert volume.format == {"jpg": "jpeg", "tif": "tiff"}.get(path.suffix[1:].lower(), path.suffix[1:].lower())


@pytest.mark.parametrize("name", ["grey8.png", "grey16.png", "grey16.tif"])
def test_picture_agrees_with_itk(tmp_path, name):
    PICTURES[name][0](tmp_path / name)
    image = sitk.ReadImage(str(tmp_path / name))
    lps = np.eye(4)
    lps[:2, :2] = np.reshape(image.GetDirection(), (2, 2)) * image.GetSpacing()
    lps[:2, 3] = image.GetOrigin()
    volume = read_radiograph(tmp_path / name)
    np.testing.assert_array_equal(volume.affine, lps_to_ras(lps))
    itk = sitk.GetArrayFromImage(image).T  # ITK arrays are [y, x]
    np.testing.assert_allclose(volume.array, itk / np.iinfo(itk.dtype).max, atol=1e-7)


def test_picture_resolution_is_not_pixel_spacing(tmp_path):
    Image.fromarray(SMOOTH).save(tmp_path / "dpi.jpg", dpi=(254, 254))  # ITK would say 0.1 mm
    np.testing.assert_array_equal(read_radiograph(tmp_path / "dpi.jpg").affine, np.diag([-1.0, -1.0, 1.0, 1.0]))


# ---------------------------------------------------------------- NIfTI, NRRD, MetaImage


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_2d_volume_files_are_read_as_float32(tmp_path, suffix):
    affine = np.diag([-0.5, 0.75, 1.0, 1.0])
    write_image(GREY16.T.astype(np.int16), affine, tmp_path / f"x{suffix}")
    volume = read_radiograph(tmp_path / f"x{suffix}")
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, GREY16.T.astype(np.int16))
    np.testing.assert_array_equal(volume.affine, affine)


# ---------------------------------------------------------------- bad input


def _truncated(path: Path, writer) -> Path:
    writer(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_png(path: Path) -> None:
    Image.fromarray(np.add.outer(np.arange(200), np.arange(300)).astype(np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[200:210] = b"\xff" * 10  # inside the compressed pixel data
    path.write_bytes(bytes(data))


def _edited_dicom(path: Path, **changes) -> None:
    """A radiograph DICOM with attributes changed by keyword (None deletes one)."""
    ds = pydicom.dcmread(_dicom(path))
    for keyword, value in changes.items():
        delattr(ds, keyword) if value is None else setattr(ds, keyword, value)
    ds.save_as(path)


BIG = np.random.default_rng(9).integers(0, 65536, size=(120, 160, 3)).astype(np.uint16)
BAD = {  # name: (writer, expected problem)
    "truncated.png": (lambda p: _truncated(p, lambda q: Image.fromarray(BIG[..., 0]).save(q)), "truncated"),
    "truncated.jpg": (lambda p: _truncated(p, lambda q: Image.fromarray(SMOOTH).save(q)), "truncated"),
    "truncated16.png": (lambda p: _truncated(p, lambda q: _sitk_vector(q, BIG)), "corrupt or truncated picture"),
    "corrupt.png": (_corrupt_png, "corrupt or truncated picture data"),
    "text.png": (lambda p: p.write_text("not a picture"), "not a readable PNG, JPEG, BMP or TIFF"),
    "text.jpeg": (lambda p: p.write_text("not a picture"), "not a readable PNG, JPEG, BMP or TIFF"),
    "empty.png": (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
    "notes.txt": (lambda p: p.write_text("hello"), "unknown radiograph format"),
    "missing.png": (lambda p: None, "file not found"),
    "folder": (lambda p: p.mkdir(), "is a folder"),
    "two_pages.tif": (
        lambda p: Image.fromarray(GREY8).save(p, save_all=True, append_images=[Image.fromarray(GREY8)]),
        "has 2 frames; a radiograph has one",
    ),
    "grey_alpha16.png": (lambda p: _sitk_vector(p, RGBA16[..., :2]), "16-bit grey\\+alpha"),
    "float.tif": (lambda p: Image.fromarray(GREY8.astype(np.float32)).save(p), "unsupported pixel mode 'F'"),
    "text.dcm": (lambda p: p.write_text("not DICOM"), "not a DICOM file"),
    "no_pixels.dcm": (lambda p: _edited_dicom(p, PixelData=None), "DICOM file has no pixel data"),
    "frames.dcm": (
        lambda p: _edited_dicom(p, NumberOfFrames=3, PixelData=np.stack([PIXELS] * 3).tobytes()),
        r"multi-frame DICOM \(3 frames\)",
    ),
    "zero_orientation.dcm": (
        lambda p: _edited_dicom(p, ImageOrientationPatient=[0, 0, 0, 0, 1, 0]),
        "ImageOrientationPatient must be two",
    ),
    "skew_orientation.dcm": (
        lambda p: _edited_dicom(p, ImageOrientationPatient=[1, 0, 0, 0.6, 0.8, 0]),
        "rows are not perpendicular",
    ),
    "short_position.dcm": (
        lambda p: _edited_dicom(p, ImagePositionPatient=[1, 2]),
        "ImagePositionPatient must be 3 numbers",
    ),
    "volume.nii.gz": (
        lambda p: write_image(np.zeros((4, 5, 6), np.uint8), np.eye(4), p),
        "is 3D .*a 2D image is needed",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_clear_line(tmp_path, name):
    write, problem = BAD[name]
    path = tmp_path / name
    write(path)
    _refused(path, problem)


def test_max_bytes_is_honoured(tmp_path):
    Image.fromarray(GREY8).save(tmp_path / "a.png")
    _dicom(tmp_path / "a.dcm")
    for name in ("a.png", "a.dcm"):
        _refused(tmp_path / name, "more than the limit of 100 bytes", max_bytes=100)


def test_inputs_are_not_modified(tmp_path):
    paths = [_dicom(tmp_path / "m1.dcm", photometric="MONOCHROME1", WindowCenter=1000, WindowWidth=500)]
    paths.append(tmp_path / "rgba.png")
    Image.fromarray(RGBA8).save(paths[-1])
    before = {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in paths}
    for path in paths:
        read_radiograph(path)
        LoadImaged(keys="image", reader=RadiographReader)({"image": str(path)})
    find_radiographs(tmp_path)
    assert {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in paths} == before


# ---------------------------------------------------------------- MONAI


def _oblique_dicom(path: Path) -> Path:
    return _dicom(path, photometric="MONOCHROME1", PixelSpacing=[0.2, 0.3], WindowCenter=2000, WindowWidth=3000,
                  ImageOrientationPatient=[*IOP_ROW, *IOP_COL], ImagePositionPatient=list(ORIGIN))  # fmt: skip


@pytest.mark.parametrize("name", ["oblique.dcm", "rgba.png"])
def test_load_imaged_gives_a_channel_first_radiograph(tmp_path, name):
    path = tmp_path / name
    _oblique_dicom(path) if name.endswith(".dcm") else Image.fromarray(RGBA8).save(path)
    expected = read_radiograph(path)
    load = Compose([LoadImaged(keys="image", reader=RadiographReader), EnsureChannelFirstd(keys="image")])
    image = load({"image": str(path)})["image"]
    assert isinstance(image, torch.Tensor) and tuple(image.shape) == (1, COLS, ROWS)
    assert image.dtype == torch.float32
    np.testing.assert_array_equal(image[0].numpy(), expected.array)
    np.testing.assert_allclose(image.affine.numpy(), expected.affine, atol=1e-6)
    assert image.meta["filename_or_obj"] == str(path) and image.meta["source_format"] == expected.format
    assert tuple(np.asarray(image.meta["spatial_shape"])) == (COLS, ROWS)


def test_load_imaged_does_not_fall_back_to_other_readers(tmp_path):
    path = _truncated(tmp_path / "t.png", lambda q: Image.fromarray(BIG[..., 0]).save(q))
    with pytest.raises(ImageReadError, match="truncated"):
        LoadImaged(keys="image", reader=RadiographReader)({"image": str(path)})


def test_reader_verify_suffix(tmp_path):
    reader = RadiographReader()
    assert reader.verify_suffix(["a.png", "b.JPG", "c.jpeg", "d.tif", "e.bmp", "f.nii.gz", "g.nrrd", "h.dcm"])
    _dicom(tmp_path / "IM0001")  # DICOM without a suffix: known by its preamble
    assert reader.verify_suffix(str(tmp_path / "IM0001"))
    assert not reader.verify_suffix("a.gif") and not reader.verify_suffix(["a.png", "b.txt"])


# ---------------------------------------------------------------- finding radiographs


def test_find_radiographs(tmp_path):
    for name in ("b.png", "a.JPG", "sub/c.jpeg", "sub/deeper/d.bmp", "sub/e.tif", ".hidden.png", ".cache/f.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(GREY8).save(tmp_path / name, format="PNG")
    _dicom(tmp_path / "sub" / "g.dcm")
    _dicom(tmp_path / "sub" / "IM0001")  # no suffix: found by its preamble
    write_image(np.zeros((4, 5), np.float32), np.eye(4), tmp_path / "h2d.nii.gz")
    write_image(np.zeros((4, 5, 6), np.uint8), np.eye(4), tmp_path / "volume.nii.gz")  # 3D: not a radiograph
    (tmp_path / "broken.nrrd").write_text("NRRD0004\nbroken")  # listed, so that reading it says why
    (tmp_path / "notes.txt").write_text("not an image")
    expected = ["a.JPG", "b.png", "broken.nrrd", "h2d.nii.gz", "sub/IM0001", "sub/c.jpeg", "sub/deeper/d.bmp",
                "sub/e.tif", "sub/g.dcm"]  # fmt: skip
    assert find_radiographs(tmp_path) == [str(tmp_path / name) for name in expected]
    assert find_radiographs(str(tmp_path)) == find_radiographs(tmp_path)
    assert find_images(tmp_path) == [str(tmp_path / n) for n in ("broken.nrrd", "h2d.nii.gz", "sub", "volume.nii.gz")]


# ---------------------------------------------------------------- heat maps on a radiograph's grid


def _flat_dicom(path: Path) -> Path:
    """A DX image in the z=0 plane (LPS) facing +z, with a position: a grid a 2D NRRD can hold."""
    return _dicom(path, sop=DigitalXRayImageStorageForPresentation, PixelSpacing=[0.139, 0.143],
                  ImageOrientationPatient=[0, 1, 0, -1, 0, 0], ImagePositionPatient=[12.5, -30.25, 0])  # fmt: skip


def _grey16_png(path: Path) -> Path:
    Image.fromarray(GREY16).save(path)
    return path


RADIOGRAPHS = {
    "png": lambda p: _grey16_png(p.with_suffix(".png")),
    "dicom, ImagerPixelSpacing": lambda p: _dicom(p.with_suffix(".dcm"), ImagerPixelSpacing=[0.15, 0.15]),
    "dicom, in-plane position": lambda p: _flat_dicom(p.with_suffix(".dcm")),
    "dicom, oblique": lambda p: _oblique_dicom(p.with_suffix(".dcm")),
}


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
@pytest.mark.parametrize("source", sorted(RADIOGRAPHS))
def test_heat_map_round_trip(tmp_path, source, suffix):
    radiograph = read_radiograph(RADIOGRAPHS[source](tmp_path / "radiograph"))
    heat = np.linspace(0, 1, radiograph.array.size, dtype=np.float32).reshape(radiograph.array.shape)
    out = tmp_path / f"heat{suffix}"
    if suffix == ".nrrd" and source == "dicom, oblique":  # not in the z=0 plane: a 2D NRRD cannot hold it
        with pytest.raises(ValueError, match=r"z=0 plane.*array\[\.\.\., None\]"):
            write_image(heat, radiograph.affine, out)
        write_image(heat[..., None], radiograph.affine, out)  # one slice holds it exactly
    else:
        write_image(heat, radiograph.affine, out)
    back = read_image(out, ndim=2)
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, heat)
    np.testing.assert_allclose(back.affine, radiograph.affine, rtol=0, atol=1e-6)


def test_2d_nrrd_keeps_every_pixel_position_of_a_flipped_grid(tmp_path):
    flipped = read_radiograph(_dicom(tmp_path / "cr.dcm", ImageOrientationPatient=[-1, 0, 0, 0, 1, 0]))
    write_image(np.zeros(flipped.array.shape, np.float32), flipped.affine, tmp_path / "heat.nrrd")
    back = read_image(tmp_path / "heat.nrrd")
    np.testing.assert_array_equal(back.affine[:, [0, 1, 3]], flipped.affine[:, [0, 1, 3]])
    assert back.affine[2, 2] == 1 and flipped.affine[2, 2] == -1  # a 2D NRRD's normal is always +z


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_chest_radiograph():
    from monai_bundle.data.sample_data import fetch

    volume = read_radiograph(fetch("rg1"))  # CR chest PA, MONOCHROME1, 1955 rows x 1841 columns
    image = volume.array
    assert image.shape == (1841, 1955) and image.dtype == np.float32
    assert np.all(np.isfinite(image)) and 0 <= image.min() < image.max() <= 1
    np.testing.assert_array_equal(volume.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))  # PixelSpacing is 0\0: 1 mm
    columns, rows = image.shape
    middle_rows = slice(rows // 3, 2 * rows // 3)
    spine = image[int(0.45 * columns) : int(0.55 * columns), middle_rows].mean()
    lateral = np.concatenate([image[: columns // 3, middle_rows].ravel(), image[-columns // 3 :, middle_rows].ravel()])
    assert spine > lateral.mean() + 0.1  # bone and mediastinum bright, lung fields dark
