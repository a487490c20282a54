"""The one table of file formats, and the functions that find, read and write images through it.

Each `ImageFormat` names what its module does: header and data readers (volumes), a writer, a radiograph reader.
Bad input raises `ImageReadError` ('<path>: <problem>'); every reader is wrapped so that nothing else escapes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monai_bundle.io import dicom, itk, nifti, radiograph
from monai_bundle.io.errors import ImageReadError, check_size, problem_of, read_errors
from monai_bundle.io.files import atomic_output
from monai_bundle.io.geometry import (
    GRID_TOLERANCE_MM,
    Header,
    Volume,
    affine_problem,
    lps_to_ras,
    with_plane_normal,
)

logger = logging.getLogger(__name__)


DEFAULT_MAX_BYTES = 8 * 1024**3
"""Refuse images whose decoded voxel data would exceed this many bytes."""


@dataclass(frozen=True)
class ImageFormat:
    """How one file format is recognised, read and written; a role left None is one the format does not have.

    Attributes:
        label: its name in messages ("NIfTI").
        suffixes: lower-case name endings (none for DICOM: known by content; a folder of it is one image).
        read_header: path -> `Header` (shape, RAS affine, dtype), without reading the voxel data.
        read_data: (path, its Header) -> the voxel data [i, j(, k)] in file order.
        write: (array, RAS affine, temp path, reference file of this format or None, compress) -> None.
        read_radiograph: (path, max_bytes) -> (grey [rows, columns] in [0, 1], LPS affine, format name);
            a volume format without one is read as a 2D image.
        read_colour: (path, max_bytes) -> what read_radiograph returns, for a file of this volume format that holds
            colour (RGB/RGBA) voxels; None when it holds one value per voxel (then it is read as a 2D image).
    """

    label: str
    suffixes: tuple[str, ...]
    read_header: Callable[[Path], Header] | None = None
    read_data: Callable[[Path, Header], np.ndarray] | None = None
    write: Callable[[np.ndarray, np.ndarray, Path, Path | None, bool], None] | None = None
    read_radiograph: Callable[[Path, int], tuple[np.ndarray, np.ndarray, str]] | None = None
    read_colour: Callable[[Path, int], tuple[np.ndarray, np.ndarray, str] | None] | None = None


FORMATS: dict[str, ImageFormat] = {  # key: Volume.format
    "nifti": ImageFormat("NIfTI", (".nii", ".nii.gz"), nifti.read_header, nifti.read_data, nifti.write),
    "nrrd": ImageFormat(
        "NRRD",
        (".nrrd", ".nhdr"),
        itk.read_nrrd_header,
        itk.read_data,
        itk.write_nrrd,
        read_colour=radiograph.read_colour_nrrd,
    ),
    "metaimage": ImageFormat(
        "MetaImage", (".mha", ".mhd"), itk.read_metaimage_header, itk.read_data, itk.write_metaimage
    ),
    "dicom": ImageFormat("DICOM", (), dicom.read_header, dicom.read_data, read_radiograph=radiograph.read_dicom),
    "picture": ImageFormat("picture", radiograph.PICTURE_SUFFIXES, read_radiograph=radiograph.read_picture),
}


def _choices(words: list[str]) -> str:
    """'a, b or c'."""
    return f"{', '.join(words[:-1])} or {words[-1]}"


def _described(formats: list[ImageFormat]) -> list[str]:
    """Each format's suffixes, or its label when it has none."""
    return [word for fmt in formats for word in fmt.suffixes or (fmt.label,)]


_VOLUMES = [fmt for fmt in FORMATS.values() if fmt.read_header]
_READABLE = _choices(_described(_VOLUMES))
_WRITABLE = _choices([suffix for fmt in FORMATS.values() if fmt.write for suffix in fmt.suffixes])
_RADIOGRAPHS = _choices(
    _described([fmt for fmt in FORMATS.values() if fmt.read_radiograph])
    + [fmt.label for fmt in _VOLUMES if not fmt.read_radiograph]
)


def _named_format(name: str, *, volumes: bool = True) -> tuple[str, str] | None:
    """(format key, suffix) of the volume format (or any format) whose suffix `name` ends with, in any case."""
    lower = name.lower()
    for key, fmt in FORMATS.items():
        suffix = next((suffix for suffix in fmt.suffixes if lower.endswith(suffix)), None)
        if suffix and (fmt.read_header or not volumes):
            return key, suffix
    return None


def image_suffix(path) -> str | None:
    """'.nii.gz', '.nii', '.nrrd', '.nhdr', '.mha', '.mhd'; 'dicom' for a DICOM file or a folder holding one."""
    path = Path(path)
    named = _named_format(path.name)
    if named:
        return named[1]
    if path.is_dir():
        return "dicom" if dicom.holds_dicom(path) else None
    return "dicom" if dicom.is_dicom_file(path) else None


def find_images(root) -> list[str]:
    """Every NIfTI/NRRD/MetaImage file and DICOM folder below `root` (hidden entries skipped), sorted."""
    found = []
    for folder, files in _visible_files(root):
        found += [os.path.join(folder, f) for f in files if _named_format(f)]
        if any(dicom.is_dicom_file(Path(folder, f)) for f in files if not _named_format(f)):
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


def _visible_files(root) -> Iterator[tuple[str, list[str]]]:
    """(folder, sorted file names) for `root` and every folder below it, hidden ones skipped."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield folder, sorted(f for f in files if not f.startswith("."))


def radiograph_format(path: Path) -> str | None:
    """The key of the format a radiograph file is read as: by suffix, else DICOM by '.dcm' or preamble; else None."""
    named = _named_format(path.name, volumes=False)
    if named:
        return named[0]
    return "dicom" if path.suffix.lower() == ".dcm" or dicom.is_dicom_file(path) else None


def _is_radiograph_file(path: str) -> bool:
    """Whether `find_radiographs` lists this file: a volume file only if its header is 2D (or unreadable)."""
    key = radiograph_format(Path(path))
    if key is None or FORMATS[key].read_radiograph:
        return key is not None
    try:
        return len(read_header(path)[0]) == 2
    except ImageReadError:
        return True


def read_header(path, *, max_bytes=DEFAULT_MAX_BYTES) -> tuple[tuple[int, ...], np.ndarray, str]:
    """(shape, affine RAS 4x4, format) without reading voxel data; validates size/dims.

    The shape is the one `read_image(path)` returns (trailing singleton axes past 3D dropped).
    """
    with read_errors(path):
        key, header = _inspect(Path(path), max_bytes)
        shape = _spatial_shape(path, header.shape, None)
    return shape, header.affine.copy(), key


def read_image(path, *, ndim: int | None = None, max_bytes=DEFAULT_MAX_BYTES, dtype=None) -> Volume:
    """Read an image file or DICOM series: integer data keeps its type, everything else is float32.

    ndim=3 rejects 2D and 4D (4D with a singleton 4th dim is squeezed); ndim=2 rejects 3D (a 3D with
    one slice is squeezed); None accepts 2D or 3D and rejects >=4D that cannot be squeezed.
    """
    if ndim not in (None, 2, 3):
        raise ValueError(f"ndim must be 2, 3 or None, not {ndim!r}")
    with read_errors(path):
        key, header = _inspect(Path(path), max_bytes)
        shape = _spatial_shape(path, header.shape, ndim)
        array = FORMATS[key].read_data(Path(path), header)
        array = array.reshape(shape) if array.shape != shape else array
        _check_finite(path, array)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
    return Volume(array, header.affine.copy(), os.fspath(path), key)


def _inspect(path: Path, max_bytes: int) -> tuple[str, Header]:
    """The format key and checked header of any supported image."""
    key = _volume_format(path)
    header = FORMATS[key].read_header(path)
    spatial = min(len(header.shape), 3)
    problem = affine_problem(header.affine, spatial)
    if problem:
        raise ImageReadError(path, problem)
    if spatial == 2:
        header.affine = with_plane_normal(header.affine)
    check_size(path, header.shape, header.dtype.itemsize, max_bytes)
    return key, header


def _volume_format(path: Path) -> str:
    """The key of the format `path` is read as, after checking the file can be read at all."""
    if path.is_dir():
        return "dicom"
    _check_not_empty(path)
    named = _named_format(path.name)
    if named:
        return named[0]
    if dicom.is_dicom_file(path):
        return "dicom"
    raise ImageReadError(path, f"unknown image format (expected {_READABLE})")


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
    NIfTI, NRRD, MetaImage: `read_image(path, ndim=2)` as float32, intensities unchanged; except a colour
    (RGB-color/RGBA-color) NRRD, as 3D Slicer writes a colour picture: read as that picture is (BT.601 luma,
    alpha dropped, unsigned integer components / their type's maximum), on the file's grid.
    """
    source = Path(path)
    with read_errors(path):
        if source.is_dir():
            raise ImageReadError(path, "is a folder; a radiograph is one file")
        _check_not_empty(source)
        key = radiograph_format(source)
        if key is None:
            raise ImageReadError(path, f"unknown radiograph format (expected {_RADIOGRAPHS})")
        read = FORMATS[key].read_radiograph or FORMATS[key].read_colour
        found = read(source, max_bytes) if read else None
        if found is None:
            return read_image(path, ndim=2, max_bytes=max_bytes, dtype=np.float32)
        grey, lps, name = found
        return Volume(grey.T.astype(np.float32), lps_to_ras(lps), os.fspath(path), name)


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
    named = _named_format(path.name)
    if named is None or FORMATS[named[0]].write is None:
        raise ValueError(f"{path}: cannot write this format; use {_WRITABLE}")
    array = _writable_array(path, array)
    affine = np.asarray(affine, dtype=np.float64)
    problem = affine_problem(affine, array.ndim) if affine.shape == (4, 4) else "affine must be 4x4"
    if problem:
        raise ValueError(f"{path}: {problem}")
    if array.ndim == 2:
        affine = with_plane_normal(affine)
    reference = _same_format(path, reference)
    if reference is not None:
        _check_reference_grid(path, reference, array.shape, affine)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(path) as tmp:
            FORMATS[named[0]].write(array, affine, tmp, reference, compress is not False)
    except Exception as error:
        kind = OSError if isinstance(error, OSError) else ValueError
        raise kind(f"{path}: cannot write ({problem_of(error)})") from error


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


def _same_format(path: Path, reference) -> Path | None:
    """`reference` as a Path if it is a file of `path`'s format, else None."""
    if reference is None:
        return None
    reference = Path(reference)
    named = _named_format(reference.name)
    if not (named and named[0] == _named_format(path.name)[0] and reference.is_file()):
        logger.debug("%s: not reusing the header of %s (another format)", path, reference)
        return None
    return reference


def _check_reference_grid(path: Path, reference: Path, shape: tuple[int, ...], affine: np.ndarray) -> None:
    ref_shape, ref_affine, _ = read_header(reference)
    if tuple(shape) != tuple(ref_shape):
        raise ValueError(f"{path}: array shape {tuple(shape)} differs from reference {reference}'s {tuple(ref_shape)}")
    error = float(np.abs(affine - ref_affine).max())
    if error > GRID_TOLERANCE_MM:
        raise ValueError(f"{path}: affine differs from reference {reference}'s by {error:.3g} mm")
