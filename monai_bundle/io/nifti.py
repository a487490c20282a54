"""NIfTI-1 and NIfTI-2 (.nii, .nii.gz): header, voxel data with the gzip CRC checked, writing, displacement fields."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_bundle.io.errors import ImageReadError
from monai_bundle.io.files import atomic_output
from monai_bundle.io.geometry import Header, c_ordered, ras_to_lps_vectors, with_plane_normal

try:  # ISA-L's gzip: the same format, several times faster than zlib
    from isal.igzip import IGzipFile as _GzipFile
    from isal.igzip import open as _gzip_open
except ImportError:  # pragma: no cover - isal is a dependency; plain zlib is the fallback
    _GzipFile, _gzip_open = gzip.GzipFile, gzip.open


NIFTI_GZIP_LEVEL = 1 if _GzipFile is not gzip.GzipFile else 6
"""Compression level of written .nii.gz files: ISA-L level 1 (label maps ~1.6x zlib-6's size, ~17x faster)."""


def read_header(path: Path) -> Header:
    """The NIfTI header: its shape, best affine (sform, else qform) and the dtype its data is read as."""
    hdr = _parse_header(path, _head(path))
    dim = hdr["dim"]
    if not 1 <= dim[0] <= 7 or np.any(dim[1 : dim[0] + 1] < 1):
        raise ImageReadError(path, f"bad NIfTI dimensions {dim.tolist()}")
    stored = hdr.get_data_dtype()
    if stored.kind not in "iuf":
        raise ImageReadError(path, f"unsupported voxel type {stored} (RGB/complex NIfTI is not supported)")
    slope, inter = hdr.get_slope_inter()
    scaled = slope not in (None, 1) or inter not in (None, 0)
    dtype = stored.newbyteorder("=") if stored.kind in "iu" and not scaled else np.dtype(np.float32)
    return Header(hdr.get_data_shape(), hdr.get_best_affine(), dtype, hdr)


def _gzipped(path: Path) -> bool:
    return path.name.lower().endswith(".nii.gz")


def _head(path: Path) -> bytes:
    """The first 540 bytes (a NIfTI-2 header's size) of the uncompressed file."""
    opener = gzip.open if _gzipped(path) else open
    with opener(path, "rb") as file:
        return file.read(540)


def _parse_header(path: Path, block: bytes):
    for klass, magic in ((nib.Nifti2Header, b"n+2"), (nib.Nifti1Header, b"n+1")):
        if klass.may_contain_header(block):
            hdr = klass(binaryblock=block[: klass.sizeof_hdr], check=False)
            if hdr["sizeof_hdr"] == klass.sizeof_hdr and hdr["magic"] == magic:
                return hdr
    raise ImageReadError(path, "not a NIfTI file (bad header)")


def read_data(path: Path, header: Header) -> np.ndarray:
    """The voxel data in C order: integers as stored, scaled or floating-point data as float32."""
    hdr = header.state
    image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    offset = max(int(hdr.get_data_offset()), hdr.sizeof_hdr + 4)
    end = offset + math.prod(header.shape) * hdr.get_data_dtype().itemsize
    gz = _gzipped(path)
    data = _gunzip(path, end) if gz else None  # decompressed once, checking the gzip CRC nibabel skips
    size = len(data) if gz else path.stat().st_size
    if size < end:
        raise ImageReadError(path, f"truncated: {size} bytes, the header declares {end}")
    img = image_class.from_bytes(data) if gz else image_class.from_filename(path, mmap=False)
    if header.dtype.kind != "f":  # integers as stored, native byte order
        return c_ordered(np.asarray(img.dataobj.get_unscaled()), header.dtype)
    if img.get_data_dtype().kind not in "iu":  # floating-point data: nibabel's own scaling
        return c_ordered(np.asarray(img.get_fdata(dtype=np.float32, caching="unchanged")))
    # integers with a slope/intercept (CT in HU): transpose the small integers, scale in float32 after
    slope, inter = hdr.get_slope_inter()
    scaled = c_ordered(np.asarray(img.dataobj.get_unscaled()), np.float32)
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


def write(array: np.ndarray, affine: np.ndarray, tmp: Path, reference: Path | None, compress: bool) -> None:
    """Write `array` with the reference's header, or one built from `affine`; gzip follows the suffix."""
    img = _like(reference, array) if reference else _from_affine(array, affine)
    with open(tmp, "wb") as raw:
        stream = _GzipFile(fileobj=raw, mode="wb", compresslevel=NIFTI_GZIP_LEVEL, mtime=0) if _gzipped(tmp) else raw
        with stream as file:
            img.to_file_map({"image": nib.FileHolder(fileobj=file)})


def _from_affine(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(array, affine, dtype=array.dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return img


def _like(reference: Path, array: np.ndarray):
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


def write_displacement_field(displacement_ras: np.ndarray, affine: np.ndarray, path) -> None:
    """Write a displacement field on a 2D or 3D grid as a NIfTI vector image, atomically.

    `displacement_ras` has shape (*grid, 3): each voxel's displacement in mm along RAS world axes.
    The file stores, per voxel, the vector in **LPS** mm (x, y sign-flipped), shape (X, Y, Z, 1, 3)
    (Z = 1 for a 2D grid), intent "displacement vector", the grid's affine as sform and qform.
    Point x of the grid corresponds to x + u(x). (ITK's NIfTI reader converts vector images in its
    own way: check a field before using it as an ITK transform.)
    """
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: displacement fields are written as NIfTI (.nii, .nii.gz)")
    field = np.asarray(displacement_ras, dtype=np.float32)
    if field.ndim not in (3, 4) or field.shape[-1] != 3:
        raise ValueError(f"{path}: a displacement field needs shape (*grid, 3), not {field.shape}")
    lps = ras_to_lps_vectors(field)
    affine = np.asarray(affine, dtype=np.float64)
    if field.ndim == 3:
        affine, lps = with_plane_normal(affine), lps[:, :, None]
    image = _from_affine(lps[:, :, :, None, :], affine)
    image.header.set_intent("displacement vector")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        image.to_filename(tmp)
