"""Geometry-exact reading and writing of NIfTI, NRRD, MetaImage and DICOM images, and of radiographs.

Every reader returns voxel data indexed [i, j(, k)] in file order plus a 4x4 affine mapping voxel
indices to RAS millimetres; every writer puts that grid back unchanged. ITK and DICOM work in LPS:
`lps_to_ras` / `ras_to_lps` are the only places where the two are converted.
Bad input raises `ImageReadError`, whose message is one line: '<path>: <problem>'.

`read_radiograph` reads a 2D X-ray (DICOM CR/DX/secondary capture, PNG, JPEG, BMP, TIFF, 2D NIfTI/NRRD/
MetaImage) as display intensities with bone bright; `RadiographReader` is its MONAI reader and
`find_radiographs` lists a folder's radiographs. `write_image` puts a 2D array (a heat map) back on
a radiograph's grid: any grid as NIfTI; as NRRD/MetaImage a grid in the z=0 plane, and any other as
one slice (`array[..., None]`).
"""
from __future__ import annotations

import contextlib
import gzip
import logging
import math
import os
import re
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import SimpleITK as sitk
import torch
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi

logger = logging.getLogger(__name__)


try:  # ISA-L's gzip: the same format, several times faster than zlib
    from isal.igzip import IGzipFile as _GzipFile
    from isal.igzip import open as _gzip_open
except ImportError:  # pragma: no cover - isal is a dependency; plain zlib is the fallback
    _GzipFile, _gzip_open = gzip.GzipFile, gzip.open


DEFAULT_MAX_BYTES = 8 * 1024**3
"""Refuse images whose decoded voxel data would exceed this many bytes."""


GZIP_LEVEL = 6
"""Compression level of compressed NRRD files (zlib)."""


NIFTI_GZIP_LEVEL = 1 if _GzipFile is not gzip.GzipFile else 6
"""Compression level of written .nii.gz files: ISA-L level 1 (label maps ~1.6x zlib-6's size, ~17x faster)."""


SLICE_SPACING_RTOL = 0.01
"""DICOM slice gaps may differ from the series' spacing by this fraction of it."""


REFERENCE_TOLERANCE_MM = 1e-3
"""`write_image(reference=...)`: how far the array's affine may be from the reference's grid."""


_FORMATS = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""Radiographs stored as pictures (read with Pillow): grey levels, no geometry (1 mm pixels)."""


LUMA_BT601 = np.array([0.299, 0.587, 0.114])
"""ITU-R BT.601 weights of R, G and B in the grey level of a colour radiograph."""


_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


_SITK_DTYPES = {
    sitk.sitkUInt8: np.uint8,
    sitk.sitkInt8: np.int8,
    sitk.sitkUInt16: np.uint16,
    sitk.sitkInt16: np.int16,
    sitk.sitkUInt32: np.uint32,
    sitk.sitkInt32: np.int32,
    sitk.sitkUInt64: np.uint64,
    sitk.sitkInt64: np.int64,
    sitk.sitkFloat32: np.float32,
    sitk.sitkFloat64: np.float64,
}


_KNOWN_PROBLEMS = (  # library error text -> what it means for the user
    (r"CRC check failed", "gzip CRC check failed — file is corrupt"),
    (r"Incorrect length of data produced", "gzip length check failed — file is corrupt"),
    (r"Compressed file ended|end-of-stream marker", "truncated: the gzip stream ends early"),
    (r"Not a gzipped file", "not a gzip-compressed file"),
    (r"fread got only|expected \d+ bytes but received|not read completely", "truncated: less voxel data than declared"),
    (r"gzFile|_nrrdGzRead|while decompressing data|incorrect data check", "corrupt compressed voxel data"),
    (r"Unable to determine ImageIO reader", "not a readable image file"),
    (r"cannot identify image file", "not a readable PNG, JPEG, BMP or TIFF image (unknown format or corrupt header)"),
    (r"image file is truncated", "truncated: the picture's data ends early"),
    (
        r"broken data stream|unrecognized data stream|PNGImageIO\(0x[0-9a-f]+\): Error while reading",
        "corrupt or truncated picture data",
    ),
)


class ImageReadError(ValueError):
    """Raised for unreadable/invalid input; str(err) is one line: '<path>: <problem>'."""

    def __init__(self, path, problem):
        self.path = os.fspath(path)
        self.problem = _one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):
        return type(self), (self.path, self.problem)


@dataclass
class Volume:
    """Voxel data indexed [i, j(, k)] in file order and its 4x4 voxel-to-RAS affine."""

    array: np.ndarray
    affine: np.ndarray
    path: str
    format: str

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, : self.array.ndim], axis=0))


@dataclass
class _Header:
    """What a format's header says: stored shape, RAS affine, in-memory dtype, reader state."""

    shape: tuple[int, ...]
    affine: np.ndarray
    format: str
    dtype: np.dtype
    state: Any = None


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """An LPS affine as RAS (or back: the conversion is its own inverse)."""
    return _LPS_RAS @ np.asarray(affine, dtype=np.float64)


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """A RAS affine as LPS."""
    return lps_to_ras(affine)


def image_suffix(path) -> str | None:
    """'.nii.gz', '.nii', '.nrrd', '.nhdr', '.mha', '.mhd'; 'dicom' for a DICOM file or a folder holding one."""
    path = Path(path)
    suffix = _name_suffix(path.name)
    if suffix:
        return suffix
    if path.is_dir():
        return "dicom" if _holds_dicom(path) else None
    return "dicom" if _is_dicom_file(path) else None


def find_images(root) -> list[str]:
    """Every NIfTI/NRRD/MetaImage file and DICOM folder below `root` (hidden entries skipped), sorted."""
    found = []
    for folder, files in _visible_files(root):
        found += [os.path.join(folder, f) for f in files if _name_suffix(f)]
        if any(_is_dicom_file(Path(folder, f)) for f in files if not _name_suffix(f)):
            found.append(folder)
    return sorted(found)


def find_radiographs(root) -> list[str]:
    """Every radiograph file below `root` (hidden entries skipped), sorted.

    That is each PNG/JPEG/BMP/TIFF file, each DICOM file ('.dcm' or with the DICOM preamble) and each
    NIfTI/NRRD/MetaImage file whose header is 2D; one whose header cannot be read is listed too, so
    that reading it says why.
    """
    found = []
    for folder, files in _visible_files(root):
        found += [path for f in files if _is_radiograph_file(path := os.path.join(folder, f))]
    return sorted(found)


def _visible_files(root):
    """(folder, sorted file names) for `root` and every folder below it, hidden ones skipped."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield folder, sorted(f for f in files if not f.startswith("."))


def _radiograph_kind(path: Path) -> str | None:
    """'picture' (PNG, JPEG, BMP, TIFF), 'image' (NIfTI, NRRD, MetaImage) or 'dicom' by name or preamble; else None."""
    if path.suffix.lower() in PICTURE_SUFFIXES:
        return "picture"
    if _name_suffix(path.name):
        return "image"
    return "dicom" if path.suffix.lower() == ".dcm" or _is_dicom_file(path) else None


def _is_radiograph_file(path: str) -> bool:
    """Whether `find_radiographs` lists this file."""
    kind = _radiograph_kind(Path(path))
    if kind != "image":
        return kind is not None
    try:
        return len(read_header(path)[0]) == 2
    except ImageReadError:
        return True


def _name_suffix(name: str) -> str | None:
    lower = name.lower()
    return next((suffix for suffix in _FORMATS if lower.endswith(suffix)), None)


def _is_dicom_file(path: Path) -> bool:
    """A '.dcm' file, or one with the DICOM preamble."""
    if path.suffix.lower() == ".dcm":
        return path.is_file()
    try:
        with open(path, "rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _holds_dicom(folder: Path) -> bool:
    return any(_is_dicom_file(f) for f in sorted(folder.iterdir()) if not f.name.startswith("."))


def read_header(path, *, max_bytes=DEFAULT_MAX_BYTES) -> tuple[tuple[int, ...], np.ndarray, str]:
    """(shape, affine RAS 4x4, format) without reading voxel data; validates size/dims.

    The shape is the one `read_image(path)` returns (trailing singleton axes past 3D dropped).
    """
    with _read_errors(path):
        header = _inspect(Path(path), max_bytes)
        shape = _spatial_shape(path, header.shape, None)
    return shape, header.affine.copy(), header.format


def read_image(path, *, ndim: int | None = None, max_bytes=DEFAULT_MAX_BYTES, dtype=None) -> Volume:
    """Read an image file or DICOM series: integer data keeps its type, everything else is float32.

    ndim=3 rejects 2D and 4D (4D with a singleton 4th dim is squeezed); ndim=2 rejects 3D (a 3D with
    one slice is squeezed); None accepts 2D or 3D and rejects >=4D that cannot be squeezed.
    """
    if ndim not in (None, 2, 3):
        raise ValueError(f"ndim must be 2, 3 or None, not {ndim!r}")
    with _read_errors(path):
        header = _inspect(Path(path), max_bytes)
        shape = _spatial_shape(path, header.shape, ndim)
        array = _DATA_READERS[header.format](Path(path), header)
        array = array.reshape(shape) if array.shape != shape else array
        _check_finite(path, array)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
    return Volume(array, header.affine.copy(), os.fspath(path), header.format)


def _inspect(path: Path, max_bytes: int) -> _Header:
    """The checked header of any supported image."""
    header = _HEADER_READERS[_format(path)](path)
    spatial = min(len(header.shape), 3)
    problem = _affine_problem(header.affine, spatial)
    if problem:
        raise ImageReadError(path, problem)
    if spatial == 2:
        header.affine = _with_plane_normal(header.affine)
    _check_size(path, header.shape, header.dtype.itemsize, max_bytes)
    return header


def _check_size(path, shape: tuple[int, ...], itemsize: int, max_bytes: int) -> None:
    """Refuse an image whose decoded data would exceed `max_bytes`, before decoding it."""
    nbytes = math.prod(shape) * itemsize
    if nbytes > max_bytes:
        voxels = "x".join(map(str, shape))
        raise ImageReadError(
            path, f"header declares {voxels} voxels ({_size(nbytes)}), more than the limit of {_size(max_bytes)}"
        )


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def _format(path: Path) -> str:
    """'nifti', 'nrrd', 'metaimage' or 'dicom', after checking the file can be read at all."""
    if path.is_dir():
        return "dicom"
    _check_not_empty(path)
    suffix = _name_suffix(path.name)
    if suffix:
        return _FORMATS[suffix]
    if _is_dicom_file(path):
        return "dicom"
    raise ImageReadError(path, "unknown image format (expected .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd or DICOM)")


def _check_not_empty(path: Path) -> None:
    """Raise for a missing, unreadable or empty file."""
    with open(path, "rb") as file:
        if not file.read(1):
            raise ImageReadError(path, "empty file (0 bytes)")


def _spatial_shape(path, shape: tuple[int, ...], ndim: int | None) -> tuple[int, ...]:
    """`shape` without trailing singleton axes past the wanted rank; raise if it has another rank."""
    want = ndim or min(max(len(shape), 2), 3)
    if len(shape) < want or any(n != 1 for n in shape[want:]):
        needed = f"a {want}D image" if ndim else "a 2D or 3D image"
        raise ImageReadError(path, f"is {len(shape)}D (shape {'x'.join(map(str, shape))}); {needed} is needed")
    return tuple(shape[:want])


def _check_finite(path, array: np.ndarray) -> None:
    if array.dtype.kind == "f" and array.size and not np.isfinite([array.min(), array.max()]).all():  # NaN propagates
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ImageReadError(path, f"contains {bad} NaN/Inf voxels")


def _affine_problem(affine: np.ndarray, ndim: int) -> str | None:
    """Why `affine` is not a usable grid for `ndim` axes, or None."""
    if affine.shape != (4, 4):
        return f"affine must be 4x4, not {'x'.join(map(str, affine.shape))}"
    if not np.all(np.isfinite(affine)):
        return "affine contains NaN/Inf"
    if not np.array_equal(affine[3], [0, 0, 0, 1]):
        return "affine's last row is not 0 0 0 1"
    columns = affine[:3, :ndim]
    norms = np.linalg.norm(columns, axis=0)
    if np.any(norms <= 0):
        return f"zero voxel spacing along axis {int(np.argmin(norms))}"
    if np.linalg.svd(columns / norms, compute_uv=False).min() < 1e-6:
        return "singular affine/direction (voxel axes are parallel)"
    return None


def _with_plane_normal(affine: np.ndarray) -> np.ndarray:
    """A 2D grid's affine, with the unit normal of its plane as third column if that one is degenerate."""
    if _affine_problem(affine, 3) is None:
        return affine
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    completed = affine.copy()
    completed[:3, 2] = normal / np.linalg.norm(normal)
    return completed


@contextlib.contextmanager
def _read_errors(path, context: str = ""):
    """Turn any failure while reading `path` into one ImageReadError."""
    prefix = f"{context}: " if context else ""
    try:
        yield
    except (ImageReadError, MemoryError):
        raise
    except PermissionError:
        raise ImageReadError(path, f"{prefix}permission denied") from None
    except FileNotFoundError:
        raise ImageReadError(path, f"{prefix}file not found") from None
    except Exception as error:
        raise ImageReadError(path, prefix + _problem(error)) from error


def _problem(error: BaseException) -> str:
    """A short reason from a library exception (ITK and nibabel messages run over several lines)."""
    text = str(error)
    for pattern, problem in _KNOWN_PROBLEMS:
        if re.search(pattern, text):
            return problem
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = next((line for line in lines if "ERROR:" in line), lines[0] if lines else type(error).__name__)
    return re.sub(r"^.*?ERROR:\s*(\w+\(0x[0-9a-f]+\):\s*)?", "", line)


def _one_line(text) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[0] if lines else "unknown problem")[:300]


def _nifti_header(path: Path) -> _Header:
    hdr = _parse_nifti_header(path, _nifti_head(path))
    dim = hdr["dim"]
    if not 1 <= dim[0] <= 7 or np.any(dim[1 : dim[0] + 1] < 1):
        raise ImageReadError(path, f"bad NIfTI dimensions {dim.tolist()}")
    stored = hdr.get_data_dtype()
    if stored.kind not in "iuf":
        raise ImageReadError(path, f"unsupported voxel type {stored} (RGB/complex NIfTI is not supported)")
    slope, inter = hdr.get_slope_inter()
    scaled = slope not in (None, 1) or inter not in (None, 0)
    dtype = stored.newbyteorder("=") if stored.kind in "iu" and not scaled else np.dtype(np.float32)
    return _Header(hdr.get_data_shape(), hdr.get_best_affine(), "nifti", dtype, hdr)


def _nifti_head(path: Path) -> bytes:
    """The first 540 bytes (a NIfTI-2 header's size) of the uncompressed file."""
    opener = gzip.open if _name_suffix(path.name) == ".nii.gz" else open
    with opener(path, "rb") as file:
        return file.read(540)


def _parse_nifti_header(path: Path, block: bytes):
    for klass, magic in ((nib.Nifti2Header, b"n+2"), (nib.Nifti1Header, b"n+1")):
        if klass.may_contain_header(block):
            hdr = klass(binaryblock=block[: klass.sizeof_hdr], check=False)
            if hdr["sizeof_hdr"] == klass.sizeof_hdr and hdr["magic"] == magic:
                return hdr
    raise ImageReadError(path, "not a NIfTI file (bad header)")


def _nifti_data(path: Path, header: _Header) -> np.ndarray:
    hdr = header.state
    image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    offset = max(int(hdr.get_data_offset()), hdr.sizeof_hdr + 4)
    end = offset + math.prod(header.shape) * hdr.get_data_dtype().itemsize
    gz = _name_suffix(path.name) == ".nii.gz"
    data = _gunzip(path, end) if gz else None  # decompressed once, checking the gzip CRC nibabel skips
    size = len(data) if gz else path.stat().st_size
    if size < end:
        raise ImageReadError(path, f"truncated: {size} bytes, the header declares {end}")
    img = image_class.from_bytes(data) if gz else image_class.from_filename(path, mmap=False)
    if header.dtype.kind != "f":  # integers as stored, native byte order
        return _c_ordered(np.asarray(img.dataobj.get_unscaled()), header.dtype)
    if img.get_data_dtype().kind not in "iu":  # floating-point data: nibabel's own scaling
        return _c_ordered(np.asarray(img.get_fdata(dtype=np.float32, caching="unchanged")))
    # integers with a slope/intercept (CT in HU): transpose the small integers, scale in float32 after
    slope, inter = hdr.get_slope_inter()
    scaled = _c_ordered(np.asarray(img.dataobj.get_unscaled()), np.float32)
    if slope not in (None, 1):
        scaled *= np.float32(slope)
    if inter not in (None, 0):
        scaled += np.float32(inter)
    return scaled


def _gunzip(path: Path, nbytes: int) -> bytes:
    """The first `nbytes` of a gzip file, reading it to the end so its CRC and length are checked.

    ISA-L's gzip (`isal`, same format, about twice zlib's speed) is used when installed.
    """
    with _gzip_open(path, "rb") as file:
        data = file.read(nbytes)
        while file.read(1 << 24):
            pass
    return data


def _itk_header(path: Path) -> _Header:
    fmt = _FORMATS[_name_suffix(path.name)]
    metaimage = _metaimage_fields(path) if fmt == "metaimage" else None
    if fmt == "nrrd" and _head(path, 4) != b"NRRD":
        raise ImageReadError(path, "not a NRRD file (bad magic)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("NrrdImageIO" if fmt == "nrrd" else "MetaImageIO")
    reader.ReadImageInformation()
    if reader.GetNumberOfComponents() != 1:
        components = reader.GetNumberOfComponents()
        raise ImageReadError(path, f"has {components} components per voxel; vector/RGB images are not supported")
    stored = _SITK_DTYPES.get(reader.GetPixelID())
    if stored is None:
        raise ImageReadError(path, f"unsupported voxel type {sitk.GetPixelIDValueAsString(reader.GetPixelID())}")
    spacing = np.array(reader.GetSpacing())
    if not np.all(spacing > 0):
        raise ImageReadError(path, f"non-positive voxel spacing {tuple(float(s) for s in spacing)}")
    dim, n = reader.GetDimension(), min(reader.GetDimension(), 3)
    direction = np.array(reader.GetDirection()).reshape(dim, dim)
    lps = np.eye(4)
    lps[:n, :n] = direction[:n, :n] * spacing[:n]
    lps[:n, 3] = reader.GetOrigin()[:n]
    dtype = np.dtype(stored if np.dtype(stored).kind in "iu" else np.float32)
    return _Header(tuple(reader.GetSize()), lps_to_ras(lps), fmt, dtype, (reader, np.dtype(stored), metaimage))


def _itk_data(path: Path, header: _Header) -> np.ndarray:
    reader, stored, metaimage = header.state
    if metaimage:
        _check_metaimage_data(path, *metaimage, math.prod(header.shape) * stored.itemsize)
    array = sitk.GetArrayFromImage(reader.Execute()).T  # ITK arrays are [z, y, x]
    return array.astype(header.dtype, copy=False)


def _head(path: Path, nbytes: int) -> bytes:
    with open(path, "rb") as file:
        return file.read(nbytes)


def _metaimage_fields(path: Path) -> tuple[dict[str, str], int]:
    """A MetaImage's 'Key = Value' header lines and the byte offset where they end."""
    fields, offset = {}, 0
    with open(path, "rb") as file:
        for line in iter(lambda: file.readline(4096), b""):
            key, sep, value = line.decode("latin-1").partition("=")
            if not sep or not re.fullmatch(r"[\x21-\x7e]+", key.strip()):
                break
            fields[key.strip()], offset = value.strip(), offset + len(line)
            if key.strip() == "ElementDataFile":
                return fields, offset
    raise ImageReadError(path, "not a MetaImage file (bad header)")


def _check_metaimage_data(path: Path, fields: dict[str, str], offset: int, nbytes: int) -> None:
    """Check a MetaImage's voxel data is complete: ITK accepts corrupt compressed data and misreports short data."""
    name = fields["ElementDataFile"]
    if name.upper() == "LOCAL":
        data_path = path
    elif "HeaderSize" in fields or "%" in name or " " in name or name.upper().startswith("LIST"):
        return  # layouts left to ITK
    else:
        data_path, offset = path.parent / name, 0
        if not data_path.is_file():
            raise ImageReadError(path, f"data file {name} not found")
    if fields.get("CompressedData", "").lower() == "true":
        if _inflated_size(data_path, offset) != nbytes:
            raise ImageReadError(path, "truncated or corrupt compressed voxel data")
    elif data_path.stat().st_size - offset < nbytes:
        raise ImageReadError(path, f"truncated: less voxel data than the header declares ({nbytes} bytes)")


def _inflated_size(path: Path, offset: int) -> int:
    """Size of the zlib stream at `offset` once decompressed (-1 if it ends early); checks its checksum."""
    inflater, total = zlib.decompressobj(), 0
    with open(path, "rb") as file:
        file.seek(offset)
        while not inflater.eof and (chunk := file.read(1 << 16)):
            total += len(inflater.decompress(chunk))
    return total if inflater.eof else -1


def _dicom_header(path: Path) -> _Header:
    series = _dicom_series(path)
    first = series[0][1]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise ImageReadError(path, "multi-frame DICOM is not supported yet")
    if int(first.get("SamplesPerPixel", 1)) != 1:
        raise ImageReadError(path, "colour DICOM is not supported")
    for keyword in ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient"):
        values = [np.ravel(np.asarray(ds.get(keyword) or [], dtype=float)) for _, ds in series]
        if any(v.shape != values[0].shape or not np.allclose(v, values[0], atol=1e-4) for v in values):
            raise ImageReadError(path, f"slices differ in {keyword}")
    row_dir, col_dir, positions = _slice_geometry(path, series)
    normal = np.cross(row_dir, col_dir)
    order = np.argsort(positions @ normal, kind="stable")
    positions, files = positions[order], [series[i][0] for i in order]
    _check_slice_gaps(path, positions @ normal)
    lps = _plane_lps(row_dir, col_dir, _pixel_spacing(path, first), positions[0])
    if len(files) > 1:
        lps[:3, 2] = (positions[-1] - positions[0]) / (len(files) - 1)
    _check_collinear(path, positions, lps[:3, 2])
    shape = (int(first.Columns), int(first.Rows)) + ((len(files),) if len(files) > 1 else ())
    return _Header(shape, lps_to_ras(lps), "dicom", np.dtype(np.float32), files)


def _dicom_series(path: Path) -> list[tuple[Path, pydicom.Dataset]]:
    """(file, header) of the series to read: the one holding `path`, or a folder's largest."""
    folder = path if path.is_dir() else path.parent
    by_uid: dict[str, list] = {}
    for file in sorted(folder.iterdir()):
        ds = _dicom_image_header(path, file)
        if ds is not None:
            by_uid.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((file, ds))
    if path.is_dir():
        if not by_uid:
            raise ImageReadError(path, "no DICOM image files in folder")
        uid = max(by_uid, key=lambda u: (len(by_uid[u]), u))
    else:
        uid = next((u for u, s in by_uid.items() if any(f.name == path.name for f, _ in s)), None)
        if uid is None:
            raise ImageReadError(path, "not a DICOM image file")
    if len(by_uid) > 1:
        others = len(by_uid) - 1
        logger.warning("%s: reading series %s (%d files); %d other series ignored", path, uid, len(by_uid[uid]), others)
    return by_uid[uid]


def _dicom_image_header(path: Path, file: Path) -> pydicom.Dataset | None:
    """The header of a DICOM image file; None for anything else."""
    if file.name.startswith(".") or not file.is_file():
        return None
    with _read_errors(path, file.name):
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except InvalidDicomError:
            return None
    return ds if "Rows" in ds else None


def _slice_geometry(path: Path, series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row and column directions and every slice's position (LPS)."""
    first = series[0][1]
    if len(series) == 1 and "ImagePositionPatient" not in first and "ImageOrientationPatient" not in first:
        return np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.zeros((1, 3))  # projection X-ray
    if any("ImagePositionPatient" not in ds for _, ds in series) or "ImageOrientationPatient" not in first:
        raise ImageReadError(path, "slices lack ImagePositionPatient/ImageOrientationPatient")
    row_dir, col_dir = _unit_directions(path, first.ImageOrientationPatient)
    return row_dir, col_dir, np.array([np.asarray(ds.ImagePositionPatient, dtype=float) for _, ds in series])


def _unit_directions(path: Path, orientation) -> tuple[np.ndarray, np.ndarray]:
    """The unit row and column directions (LPS) of an ImageOrientationPatient, checked."""
    orientation = np.asarray(orientation, dtype=float)
    axes = orientation.reshape(2, 3) if orientation.shape == (6,) else np.zeros((2, 3))
    norms = np.linalg.norm(axes, axis=1, keepdims=True)
    if not (np.all(np.isfinite(orientation)) and np.all(norms > 0)):
        raise ImageReadError(path, f"ImageOrientationPatient must be two non-zero 3-vectors: {orientation.tolist()}")
    row_dir, col_dir = axes / norms
    if abs(np.linalg.norm(np.cross(row_dir, col_dir)) - 1) > 1e-3:
        raise ImageReadError(path, "ImageOrientationPatient rows are not perpendicular")
    return row_dir, col_dir


def _plane_lps(row_dir, col_dir, spacing: tuple[float, float], origin) -> np.ndarray:
    """LPS affine of one DICOM image: i runs along a row (column spacing), j down a column; the normal third."""
    row_spacing, col_spacing = spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 3] = row_dir * col_spacing, col_dir * row_spacing, origin
    lps[:3, 2] = np.cross(row_dir, col_dir)
    return lps


def _pixel_spacing(path: Path, ds) -> tuple[float, float]:
    """(row spacing, column spacing): the distance between rows, then between columns."""
    found = _dicom_spacing(ds)
    if found is None:
        spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        raise ImageReadError(path, f"missing or non-positive PixelSpacing {spacing}")
    return found[0]


def _dicom_spacing(ds) -> tuple[tuple[float, float], str] | None:
    """((row spacing, column spacing), attribute) from the first valid PixelSpacing or ImagerPixelSpacing."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = ds.get(keyword)
        values = np.asarray(spacing if spacing else [], dtype=float)
        if values.shape == (2,) and np.all(np.isfinite(values)) and np.all(values > 0):
            return (float(values[0]), float(values[1])), keyword
    return None


def _check_slice_gaps(path: Path, z: np.ndarray) -> None:
    """Reject duplicate, missing or unevenly spaced slices (z: sorted positions along the normal)."""
    gaps = np.diff(z)
    if not len(gaps):
        return
    if gaps.min() < 1e-3:
        i = int(gaps.argmin())
        raise ImageReadError(path, f"two slices at the same position z={z[i]:.2f}")
    step = gaps.min()
    multiples = np.round(gaps / step)
    if np.any(np.abs(gaps - multiples * step) > SLICE_SPACING_RTOL * step):
        raise ImageReadError(path, f"uneven slice spacing ({gaps.min():.4g} to {gaps.max():.4g} mm)")
    if multiples.max() > 1:
        i = int(np.argmax(multiples > 1))
        where = f"between z={z[i]:.2f} and z={z[i + 1]:.2f} (gap {gaps[i]:.3g} mm, spacing {step:.3g} mm)"
        raise ImageReadError(path, f"missing slice(s) {where}")


def _check_collinear(path: Path, positions: np.ndarray, step: np.ndarray) -> None:
    expected = positions[0] + np.arange(len(positions))[:, None] * step
    if np.linalg.norm(positions - expected, axis=1).max() > SLICE_SPACING_RTOL * np.linalg.norm(step):
        raise ImageReadError(path, "slice positions do not lie on a straight line")


def _dicom_data(path: Path, header: _Header) -> np.ndarray:
    """Slices in order, rescaled (RescaleSlope/Intercept) to float32."""
    files = header.state
    array = np.empty((*header.shape[:2], len(files)), dtype=np.float32, order="F")
    for k, file in enumerate(files):
        with _read_errors(path, file.name):
            ds = pydicom.dcmread(file)
            slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
            array[:, :, k] = ds.pixel_array.T * slope + intercept  # pixel_array is [rows, cols] = [j, i]
    return array


_HEADER_READERS = {"nifti": _nifti_header, "nrrd": _itk_header, "metaimage": _itk_header, "dicom": _dicom_header}


_DATA_READERS = {"nifti": _nifti_data, "nrrd": _itk_data, "metaimage": _itk_data, "dicom": _dicom_data}


def read_radiograph(path, *, max_bytes=DEFAULT_MAX_BYTES) -> Volume:
    """A 2D radiograph as float32 [i, j] (i = column, j = row) display intensities, bone bright, and its RAS affine.

    DICOM (CR, DX, secondary capture; one frame): the Modality LUT (rescale or LUT), then the first VOI
    LUT, else the first window (LINEAR, LINEAR_EXACT or SIGMOID), else the full range of modality values
    the stored bits can hold, maps to [0, 1]: 0 black, 1 white as displayed. MONOCHROME1 is inverted
    by negating the VOI output's offset from 0.5, so a MONOCHROME1 file reads exactly as its MONOCHROME2
    twin (stored values mirrored in their range and the VOI mirrored with them; bit-identical where
    the modality values are exact binary fractions, e.g. integer rescale). Colour is converted to
    BT.601 luma. Grid: ImageOrientationPatient/ImagePositionPatient (else identity, origin 0) and
    PixelSpacing, else ImagerPixelSpacing, else 1 mm.
    PNG, JPEG, BMP, TIFF (8/16-bit grey, grey+alpha, RGB(A), palette): grey level / its maximum in
    [0, 1], colour as BT.601 luma, alpha dropped; 1 mm pixels, origin 0, as ITK gives them (a dpi is
    print resolution, not pixel spacing: it is ignored, where ITK would use a JPEG's).
    NIfTI, NRRD, MetaImage: `read_image(path, ndim=2)` as float32, intensities unchanged.
    """
    source = Path(path)
    with _read_errors(path):
        if source.is_dir():
            raise ImageReadError(path, "is a folder; a radiograph is one file")
        _check_not_empty(source)
        kind = _radiograph_kind(source)
        if kind is None:
            known = ", ".join(PICTURE_SUFFIXES)
            raise ImageReadError(path, f"unknown radiograph format (expected DICOM, {known}, NIfTI, NRRD or MetaImage)")
        if kind == "image":
            return read_image(path, ndim=2, max_bytes=max_bytes, dtype=np.float32)
        grey, lps, fmt = _RADIOGRAPH_READERS[kind](source, max_bytes)
        return Volume(grey.T.astype(np.float32), lps_to_ras(lps), os.fspath(path), fmt)


def _dicom_radiograph(path: Path, max_bytes: int) -> tuple[np.ndarray, np.ndarray, str]:
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
    _check_size(path, (int(ds.Columns), int(ds.Rows)), np.dtype(np.float64).itemsize, max_bytes)
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
    found = _dicom_spacing(ds)
    spacing, source = found if found else ((1.0, 1.0), "neither PixelSpacing nor ImagerPixelSpacing: 1 mm")
    logger.debug("%s: pixel spacing %s from %s", path, spacing, source)
    orientation = ds.get("ImageOrientationPatient")
    row_dir, col_dir = _unit_directions(path, orientation) if orientation else (np.eye(3)[0], np.eye(3)[1])
    origin = np.asarray(ds.get("ImagePositionPatient") or np.zeros(3), dtype=float)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise ImageReadError(path, f"ImagePositionPatient must be 3 numbers, not {origin.tolist()}")
    return _plane_lps(row_dir, col_dir, spacing, origin)


_PICTURE_GREY_MAX = {"1": 1, "L": 255, "LA": 255, "La": 255, "I;16": 65535, "I;16L": 65535, "I;16B": 65535}


_PICTURE_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr")


def _picture_radiograph(path: Path, max_bytes: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(grey [rows, cols] in [0, 1], LPS identity: 1 mm pixels at 0, picture format) of a PNG/JPEG/BMP/TIFF."""
    with Image.open(path) as picture:
        _check_size(path, picture.size, np.dtype(np.float64).itemsize, max_bytes)
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


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of [..., R G B (A)] pixels, in their units; a fourth (alpha) channel is dropped."""
    return np.asarray(rgb[..., :3], dtype=np.float64) @ LUMA_BT601


_RADIOGRAPH_READERS = {"dicom": _dicom_radiograph, "picture": _picture_radiograph}


def write_image(
    array: np.ndarray,
    affine: np.ndarray,
    path,
    *,
    reference: str | os.PathLike | None = None,
    compress: bool | None = None,
) -> None:
    """Write NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) by extension, atomically.

    With a `reference` file of the same format family, its header is reused (NIfTI: the whole header,
    qform/sform exactly; NRRD/MetaImage: space, origin, directions, spacing and metadata fields), so the
    grid is byte-identical to the reference's; `array` must then lie on that grid. Otherwise the header
    is built from `affine`. The data type is `array`'s (bool is written as uint8, float16 as float32).
    `compress` (default on) applies to NRRD/MetaImage; NIfTI compression follows the suffix.
    A 2D NRRD/MetaImage lies in the z=0 plane (LPS) and is read back with +z as its third axis; a 2D
    grid on another plane (an oblique radiograph's) is refused there: write NIfTI, or `array[..., None]`
    (one slice, same affine), which `read_image(path, ndim=2)` gives back as 2D on exactly that grid.
    """
    path = Path(path)
    suffix = _name_suffix(path.name)
    if suffix is None:
        raise ValueError(f"{path}: cannot write this format; use .nii, .nii.gz, .nrrd, .nhdr, .mha or .mhd")
    array = _writable_array(path, array)
    affine = np.asarray(affine, dtype=np.float64)
    problem = _affine_problem(affine, array.ndim) if affine.shape == (4, 4) else "affine must be 4x4"
    if problem:
        raise ValueError(f"{path}: {problem}")
    if array.ndim == 2:
        affine = _with_plane_normal(affine)
    reference = _same_family(path, reference)
    if reference is not None:
        _check_reference_grid(path, reference, array.shape, affine)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _atomic_output(path) as tmp:
            _WRITERS[_FORMATS[suffix]](array, affine, tmp, reference, compress is not False)
    except Exception as error:
        kind = OSError if isinstance(error, OSError) else ValueError
        raise kind(f"{path}: cannot write ({_problem(error)})") from error


def write_displacement_field(displacement_ras: np.ndarray, affine: np.ndarray, path) -> None:
    """Write a displacement field on a 2D or 3D grid as a NIfTI vector image, atomically.

    `displacement_ras` has shape (*grid, 3): each voxel's displacement in mm along RAS world axes.
    The file stores, per voxel, the vector in **LPS** mm (x, y sign-flipped), shape (X, Y, Z, 1, 3)
    (Z = 1 for a 2D grid), intent "displacement vector", the grid's affine as sform and qform.
    Point x of the grid corresponds to x + u(x). (ITK's NIfTI reader converts vector images in its
    own way: check a field before using it as an ITK transform.)
    """
    path = Path(path)
    if _name_suffix(path.name) not in (".nii", ".nii.gz"):
        raise ValueError(f"{path}: displacement fields are written as NIfTI (.nii, .nii.gz)")
    field = np.asarray(displacement_ras, dtype=np.float32)
    if field.ndim not in (3, 4) or field.shape[-1] != 3:
        raise ValueError(f"{path}: a displacement field needs shape (*grid, 3), not {field.shape}")
    lps = field * np.array([-1.0, -1.0, 1.0], np.float32)
    affine = np.asarray(affine, dtype=np.float64)
    if field.ndim == 3:
        affine, lps = _with_plane_normal(affine), lps[:, :, None]
    image = _nifti_from_affine(lps[:, :, :, None, :], affine)
    image.header.set_intent("displacement vector")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_output(path) as tmp:
        image.to_filename(tmp)


def _writable_array(path: Path, array) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"{path}: can only write 2D or 3D arrays, not shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{path}: cannot write voxel type {array.dtype}")
    return array


def _same_family(path: Path, reference) -> Path | None:
    """`reference` as a Path if it is a file of `path`'s format family, else None."""
    if reference is None:
        return None
    reference = Path(reference)
    same = _FORMATS.get(_name_suffix(reference.name) or "") == _FORMATS[_name_suffix(path.name)]
    if not (same and reference.is_file()):
        logger.debug("%s: not reusing the header of %s (another format)", path, reference)
        return None
    return reference


def _check_reference_grid(path: Path, reference: Path, shape: tuple[int, ...], affine: np.ndarray) -> None:
    ref_shape, ref_affine, _ = read_header(reference)
    if tuple(shape) != tuple(ref_shape):
        raise ValueError(f"{path}: array shape {tuple(shape)} differs from reference {reference}'s {tuple(ref_shape)}")
    error = float(np.abs(affine - ref_affine).max())
    if error > REFERENCE_TOLERANCE_MM:
        raise ValueError(f"{path}: affine differs from reference {reference}'s by {error:.3g} mm")


@contextlib.contextmanager
def _atomic_output(path: Path):
    """Yield a temp path named like `path` in a private folder beside it; then fsync and rename into place.

    Writers may add sidecar files (an .mhd's .raw, an .nhdr's data file): they are moved first.
    """
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        yield tmp_dir / path.name
        for file in sorted(tmp_dir.iterdir(), key=lambda f: f.name == path.name):
            _fsync(file)
            os.replace(file, path.parent / file.name)
        _fsync(path.parent)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # folders cannot be opened on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_nifti(array: np.ndarray, affine: np.ndarray, tmp: Path, reference: Path | None, compress: bool) -> None:
    img = _nifti_like(reference, array) if reference else _nifti_from_affine(array, affine)
    gz = _name_suffix(tmp.name) == ".nii.gz"
    with open(tmp, "wb") as raw:
        stream = _GzipFile(fileobj=raw, mode="wb", compresslevel=NIFTI_GZIP_LEVEL, mtime=0) if gz else raw
        with stream as file:
            img.to_file_map({"image": nib.FileHolder(fileobj=file)})


def _nifti_from_affine(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(array, affine, dtype=array.dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return img


def _nifti_like(reference: Path, array: np.ndarray):
    """A NIfTI image of `array` with the reference's header, scaling and display range reset."""
    ref = nib.load(reference)
    header = ref.header.copy()
    header.set_data_dtype(array.dtype)
    header.set_slope_inter(None, None)
    header["cal_min"] = header["cal_max"] = 0
    img = type(ref)(array, None, header=header)  # no affine: nibabel keeps the header's qform and sform
    if not np.array_equal(img.header.get_best_affine(), ref.affine):
        raise ValueError(f"reusing {reference}'s header changed its affine")  # never expected
    return img


def _write_nrrd(array: np.ndarray, affine: np.ndarray, tmp: Path, reference: Path | None, compress: bool) -> None:
    header = _nrrd_reference_header(reference) if reference else _nrrd_header(affine, array.ndim)
    header["encoding"] = "gzip" if compress else "raw"
    detached = _name_suffix(tmp.name) == ".nhdr"
    nrrd.write(str(tmp), array, header, index_order="F", compression_level=GZIP_LEVEL, detached_header=detached)


def _nrrd_header(affine: np.ndarray, ndim: int) -> dict:
    directions, origin = _lps_grid(affine, ndim)
    space = {"space": "left-posterior-superior"} if ndim == 3 else {"space dimension": 2}
    return {**space, "space directions": directions.T, "space origin": origin, "kinds": ["domain"] * ndim}


def _nrrd_reference_header(reference: Path) -> dict:
    """The reference's NRRD header without the fields that describe its data encoding."""
    header = nrrd.read_header(str(reference))
    encoding = {"type", "dimension", "sizes", "encoding", "endian", "data file", "datafile",
                "line skip", "lineskip", "byte skip", "byteskip"}  # fmt: skip
    return {key: value for key, value in header.items() if key not in encoding}


def _write_metaimage(array: np.ndarray, affine: np.ndarray, tmp: Path, reference: Path | None, compress: bool) -> None:
    image = sitk.GetImageFromArray(array.T)  # ITK arrays are [z, y, x]
    if reference:
        _copy_itk_grid(reference, image)
    else:
        directions, origin = _lps_grid(affine, array.ndim)
        spacing = np.linalg.norm(directions, axis=0)
        image.SetOrigin(tuple(origin))
        image.SetSpacing(tuple(spacing))
        image.SetDirection(tuple((directions / spacing).ravel()))
    sitk.WriteImage(image, str(tmp), useCompression=compress)


def _copy_itk_grid(reference: Path, image: sitk.Image) -> None:
    """Give `image` the reference's origin, spacing, direction and metadata fields."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(reference))
    reader.ReadImageInformation()
    image.SetOrigin(reader.GetOrigin())
    image.SetSpacing(reader.GetSpacing())
    image.SetDirection(reader.GetDirection())
    for key in reader.GetMetaDataKeys():
        if not key.startswith("ITK_"):
            image.SetMetaData(key, reader.GetMetaData(key))


def _lps_grid(affine: np.ndarray, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """(LPS axis vectors as columns, LPS origin) of an ndim grid; a 2D one must lie in the z=0 plane."""
    lps = ras_to_lps(affine)
    if ndim == 2 and np.abs(lps[2, [0, 1, 3]]).max() > 1e-9:
        raise ValueError(
            "a 2D NRRD/MetaImage lies in the z=0 plane and this grid does not; "
            "write NIfTI, or the array as one slice (array[..., None])"
        )
    return lps[:ndim, :ndim], lps[:ndim, 3]


_WRITERS = {"nifti": _write_nifti, "nrrd": _write_nrrd, "metaimage": _write_metaimage}


class _VolumeReader(ImageReader):
    """A MONAI ImageReader over one of this module's readers (`_read_one`).

    Meta data follows MONAI's NibabelReader: RAS 'affine'/'original_affine', 'spatial_shape',
    'original_channel_dim' ('no_channel'), 'space', 'filename_or_obj', plus 'source_format'.
    Several files are stacked as channels; they must share one grid.
    """

    def _read_one(self, name) -> Volume:
        raise NotImplementedError

    def read(self, data, **kwargs):
        try:
            volumes = [self._read_one(name) for name in ensure_tuple(data)]
        except ImageReadError as error:
            # LoadImage would try its other readers on a file we refused (nibabel skips gzip CRCs, for one):
            # hand the error over to get_data, which LoadImage does not guard.
            return error
        return volumes if len(volumes) > 1 else volumes[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        if isinstance(img, ImageReadError):
            raise img
        volumes = list(ensure_tuple(img))
        first = volumes[0]
        for other in volumes[1:]:
            same_affine = np.allclose(other.affine, first.affine, atol=REFERENCE_TOLERANCE_MM)
            if other.array.shape != first.array.shape or not same_affine:
                raise ImageReadError(other.path, f"grid differs from {first.path}'s; cannot stack them as channels")
        meta = {
            MetaKeys.AFFINE: first.affine.copy(),
            MetaKeys.ORIGINAL_AFFINE: first.affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(first.array.shape),
            MetaKeys.ORIGINAL_CHANNEL_DIM: "no_channel" if len(volumes) == 1 else 0,
            MetaKeys.SPACE: SpaceKeys.RAS,
            "filename_or_obj": first.path,
            "source_format": first.format,
        }
        array = _c_ordered(first.array) if len(volumes) == 1 else np.stack([v.array for v in volumes])
        return array, meta


def _c_ordered(array: np.ndarray, dtype=None) -> np.ndarray:
    """`array` in C order (and `dtype`), transposed and cast by torch on all cores, slab by slab.

    NIfTI data is stored x-fastest (Fortran order); MONAI would make this copy with numpy on one
    core, and for a large CT that copy is most of the load time.
    """
    dtype = np.dtype(dtype or array.dtype)
    if array.flags.c_contiguous:
        return array.astype(dtype, copy=False)
    try:
        source = torch.from_numpy(array)
        out = torch.empty(array.shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype)
    except (TypeError, ValueError):  # a dtype or byte order torch does not take
        return np.ascontiguousarray(array, dtype=dtype)
    if array.ndim < 3:
        return out.copy_(source).numpy()
    for start in range(0, array.shape[1], _TRANSPOSE_ROWS):  # slabs that stay in cache: ~2.5x faster
        out[:, start : start + _TRANSPOSE_ROWS] = source[:, start : start + _TRANSPOSE_ROWS]
    return out.numpy()


_TRANSPOSE_ROWS = 32


class MedImgReader(_VolumeReader):
    """`read_image` for MONAI: `LoadImaged(keys="image", reader=MedImgReader)`; the options are read_image's."""

    def __init__(self, ndim: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES, dtype=None, **kwargs):
        super().__init__()
        self.ndim, self.max_bytes, self.dtype = ndim, max_bytes, dtype

    def verify_suffix(self, filename) -> bool:
        return all(image_suffix(name) is not None for name in ensure_tuple(filename))

    def _read_one(self, name) -> Volume:
        return read_image(name, ndim=self.ndim, max_bytes=self.max_bytes, dtype=self.dtype)


class RadiographReader(_VolumeReader):
    """`read_radiograph` for MONAI: `LoadImaged(keys="image", reader=RadiographReader)` gives [i, j] float32.

    With `EnsureChannelFirstd` the image is (1, columns, rows) with the radiograph's RAS affine.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, **kwargs):
        super().__init__()
        self.max_bytes = max_bytes

    def verify_suffix(self, filename) -> bool:
        return all(_radiograph_kind(Path(name)) is not None for name in ensure_tuple(filename))

    def _read_one(self, name) -> Volume:
        return read_radiograph(name, max_bytes=self.max_bytes)
