"""Radiographs as display grey in [0, 1], bone bright, and an LPS grid: one-frame DICOM (CR, DX, secondary capture),
pictures (PNG, JPEG, BMP, TIFF) and colour (RGB/RGBA) NRRD files, as 3D Slicer writes a colour picture. Other volume
files holding a 2D image are read by their own format's readers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi

from monai_bundle.io.dicom import pixel_spacing, plane_lps, unit_directions
from monai_bundle.io.errors import ImageReadError, check_size
from monai_bundle.io.geometry import affine_problem

logger = logging.getLogger(__name__)


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""Radiographs stored as pictures (read with Pillow): grey levels, no geometry (1 mm pixels)."""


LUMA_BT601 = np.array([0.299, 0.587, 0.114])
"""ITU-R BT.601 weights of R, G and B in the grey level of a colour radiograph."""


def read_dicom(path: Path, max_bytes: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(display grey [rows, cols] in [0, 1], LPS affine, 'dicom') of a one-frame DICOM image."""
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise ImageReadError(path, "not a DICOM file") from None
    if not any(key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageReadError(path, "DICOM file has no pixel data")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames); a radiograph has one frame")
    check_size(path, (int(ds.Columns), int(ds.Rows)), np.dtype(np.float64).itemsize, max_bytes)
    _lift_first_frame_groups(ds)
    return _dicom_grey(path, ds, ds.pixel_array), _radiograph_lps(path, ds), "dicom"


def _lift_first_frame_groups(ds) -> None:
    """Copy the attributes of an enhanced DICOM's shared and first per-frame functional groups to its top level."""
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(keyword)
        for macro in groups[0] if groups else ():
            if macro.VR == "SQ" and macro.value:
                ds.update(macro.value[0])


def _dicom_grey(path: Path, ds, pixels: np.ndarray) -> np.ndarray:
    """Stored pixels [rows, cols(, 3)] as display grey in [0, 1], bone bright."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        offset = _voi_offset(path, ds, apply_modality_lut(pixels, ds))
        return 0.5 - offset if photometric == "MONOCHROME1" else 0.5 + offset
    if photometric == "PALETTE COLOR":
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return _luma(apply_color_lut(pixels, ds)) / (2**bits - 1)
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # RGB, and YBR that pydicom has converted to RGB
        return _luma(pixels) / (2 ** int(ds.BitsStored) - 1)
    raise ImageReadError(path, f"unsupported PhotometricInterpretation {photometric!r}")


def _voi_offset(path: Path, ds, values: np.ndarray) -> np.ndarray:
    """Modality values as VOI output: offsets in [-0.5, 0.5] from mid-grey, higher brighter (MONOCHROME2 sense)."""
    luts = ds.get("VOILUTSequence")
    if luts and "LUTDescriptor" in luts[0] and "LUTData" in luts[0]:
        return _lut_offset(ds, values)
    window = _window(path, ds)
    if window is not None:
        return _window_offset(values, *window)
    return _range_offset(ds, values)


def _lut_offset(ds, values: np.ndarray) -> np.ndarray:
    """The first VOI LUT's output as offsets from the middle of its range (LUTDescriptor's bit depth)."""
    entries, first, bits = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
    inputs = np.clip(np.floor(values), first, first + (entries or 2**16) - 1).astype(np.int64)
    top = 2**bits - 1
    return np.clip((apply_voi(inputs, ds, 0).astype(np.float64) - top / 2) / top, -0.5, 0.5)


def _window(path: Path, ds) -> tuple[float, float, str] | None:
    """(centre, width, function) of the first window; None when there is none or it is invalid (logged)."""
    centres, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centres in (None, "") or widths in (None, ""):
        return None
    centre, width = (float(np.ravel(np.asarray(v, dtype=float))[0]) for v in (centres, widths))
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        logger.warning("%s: unknown VOILUTFunction %r; using LINEAR", path, function)
        function = "LINEAR"
    if not (np.isfinite(centre) and (width >= 1 if function == "LINEAR" else width > 0)):
        logger.warning("%s: ignoring invalid window (centre %g, width %g)", path, centre, width)
        return None
    return centre, width, function


def _window_offset(values: np.ndarray, centre: float, width: float, function: str) -> np.ndarray:
    """DICOM windowing (PS3.3 C.11.2.1.2-3) as offsets in [-0.5, 0.5]: odd about the centre, so exactly invertible."""
    if function == "SIGMOID":
        return 0.5 * np.tanh(2 * (values - centre) / width)  # = 1 / (1 + exp(-4 (v - c) / w)) - 0.5
    if function == "LINEAR":  # the standard's LINEAR window is centred on c - 0.5 and spans w - 1
        centre, width = centre - 0.5, width - 1
    if width == 0:  # LINEAR with width 1: a threshold
        return np.where(values > centre, 0.5, -0.5)
    return np.clip((values - centre) / width, -0.5, 0.5)


def _range_offset(ds, values: np.ndarray) -> np.ndarray:
    """Without a VOI: offsets within the range of modality values that the stored bits can hold."""
    bits, signed = int(ds.BitsStored), int(ds.get("PixelRepresentation", 0)) == 1
    stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1])
    low, high = np.sort(np.asarray(apply_modality_lut(stored, ds), dtype=np.float64))
    if high == low:
        return np.zeros(values.shape)
    return np.clip((values - (low + high) / 2) / (high - low), -0.5, 0.5)


def _radiograph_lps(path: Path, ds) -> np.ndarray:
    """LPS affine of a DICOM radiograph; orientation, position and spacing default to identity, 0 and 1 mm."""
    found = pixel_spacing(ds)
    spacing, source = found if found else ((1.0, 1.0), "neither PixelSpacing nor ImagerPixelSpacing: 1 mm")
    logger.debug("%s: pixel spacing %s from %s", path, spacing, source)
    orientation = ds.get("ImageOrientationPatient")
    row_dir, col_dir = unit_directions(path, orientation) if orientation else (np.eye(3)[0], np.eye(3)[1])
    origin = np.asarray(ds.get("ImagePositionPatient") or np.zeros(3), dtype=float)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise ImageReadError(path, f"ImagePositionPatient must be 3 numbers, not {origin.tolist()}")
    return plane_lps(row_dir, col_dir, spacing, origin)


_PICTURE_GREY_MAX = {"1": 1, "L": 255, "LA": 255, "La": 255, "I;16": 65535, "I;16L": 65535, "I;16B": 65535}


_PICTURE_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr")


def read_picture(path: Path, max_bytes: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(grey [rows, cols] in [0, 1], LPS identity: 1 mm pixels at 0, picture format) of a PNG/JPEG/BMP/TIFF."""
    with Image.open(path) as picture:
        check_size(path, picture.size, np.dtype(np.float64).itemsize, max_bytes)
        frames = getattr(picture, "n_frames", 1)
        if frames > 1:
            raise ImageReadError(path, f"has {frames} frames; a radiograph has one")
        grey = _itk_picture_grey(path) if _is_16_bit_colour(path, picture) else _pillow_grey(path, picture)
        return grey, np.eye(4), picture.format.lower()


def _pillow_rawmode(picture) -> str:
    """How the file stores its pixels, e.g. 'RGB;16B' (Pillow decodes that to 8-bit 'RGB'); '' if unknown."""
    args = picture.tile[0][3] if picture.tile else ""  # (codec, extents, offset, args)
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _is_16_bit_colour(path: Path, picture) -> bool:
    """16-bit RGB(A) data, which Pillow would cut to 8 bits (SimpleITK reads it); 16-bit grey+alpha is refused."""
    rawmode = _pillow_rawmode(picture)
    if ";16" not in rawmode or picture.mode not in ("RGB", "RGBA"):
        return False
    if rawmode.startswith("LA"):
        raise ImageReadError(path, "16-bit grey+alpha pictures are not supported; save it without the alpha channel")
    return True


def _pillow_grey(path: Path, picture) -> np.ndarray:
    """A Pillow picture's grey level in [0, 1]: grey / its maximum, colour as BT.601 luma; alpha dropped."""
    mode = "I;16" if picture.mode == "I" and _pillow_rawmode(picture).startswith("I;16") else picture.mode
    if mode in _PICTURE_GREY_MAX:
        grey = picture.getchannel(0) if mode in ("LA", "La") else picture
        return np.asarray(grey, dtype=np.float64) / _PICTURE_GREY_MAX[mode]
    if mode in _PICTURE_COLOUR_MODES:
        return _luma(np.asarray(picture.convert("RGB"))) / 255
    raise ImageReadError(
        path, f"unsupported pixel mode {mode!r} (expected 8/16-bit grey, grey+alpha, RGB(A) or palette)"
    )


def _itk_picture_grey(path: Path) -> np.ndarray:
    """A 16-bit RGB(A) picture's BT.601 luma in [0, 1], read with SimpleITK."""
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # [rows, cols, components]
    return _luma(rgb) / 65535


NRRD_COLOUR_KINDS = {"RGB-color": 3, "RGBA-color": 4}
"""NRRD kinds of colour voxels and their number of components: 3D Slicer writes a colour picture's vector volume
with them (vtkITKImageWriter writes itk::RGBPixel / RGBAPixel images; ITK's NRRD writer names their kind so)."""


def read_colour_nrrd(path: Path, max_bytes: int) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(grey [rows, cols], LPS affine, 'nrrd') of a colour NRRD radiograph; None for one value per voxel.

    3D Slicer loads a colour PNG/JPEG as a vector volume with one slice and writes it as an RGB-color (RGBA-color)
    NRRD. Its grey is read as the picture's (`read_picture`): BT.601 luma, alpha dropped, unsigned integer
    components divided by their type's maximum (so the same 8- or 16-bit picture reads identically either way);
    floating-point components are kept in their units. The grid is the file's, as for a grey NRRD.
    """
    with open(path, "rb") as file:
        if file.read(4) != b"NRRD":
            return None  # the volume reader says what is wrong with it
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("NrrdImageIO")
    reader.ReadImageInformation()
    components, size = reader.GetNumberOfComponents(), reader.GetSize()
    if components == 1:
        return None
    key = "NRRD_kinds[pixel]"
    kind = reader.GetMetaData(key) if reader.HasMetaDataKey(key) else "vector"
    if NRRD_COLOUR_KINDS.get(kind) != components:
        raise ImageReadError(
            path,
            f"has {components} {kind!r} components per voxel; a colour radiograph's are "
            "RGB-color (3) or RGBA-color (4)",
        )
    if size[2:] not in ((), (1,)):
        raise ImageReadError(path, f"is a {'x'.join(map(str, size))} colour volume; a radiograph has one slice")
    check_size(path, (*size[:2], components), np.dtype(np.float64).itemsize, max_bytes)
    lps = _itk_lps(reader)
    problem = affine_problem(lps, len(size))
    if problem:
        raise ImageReadError(path, problem)
    rgb = sitk.GetArrayFromImage(reader.Execute()).reshape(size[1], size[0], components)  # [rows, cols, components]
    grey = _luma(rgb)
    return (grey / np.iinfo(rgb.dtype).max if rgb.dtype.kind == "u" else grey), lps, "nrrd"


def _itk_lps(reader: sitk.ImageFileReader) -> np.ndarray:
    """The LPS affine of the first three axes of an image whose header ITK has read."""
    n = min(reader.GetDimension(), 3)
    lps = np.eye(4)
    lps[:n, :n] = np.reshape(reader.GetDirection(), (reader.GetDimension(), -1))[:n, :n] * reader.GetSpacing()[:n]
    lps[:n, 3] = reader.GetOrigin()[:n]
    return lps


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of [..., R G B (A)] pixels, in their units; a fourth (alpha) channel is dropped."""
    return np.asarray(rgb[..., :3], dtype=np.float64) @ LUMA_BT601
