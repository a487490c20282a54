"""DICOM image series: a folder's largest series, or the one holding a given file, as one checked grid in float32.

DICOM files are known by their content (the 'DICM' preamble) or a '.dcm' name, not by a suffix of their own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from monai_bundle.io.errors import ImageReadError, read_errors
from monai_bundle.io.geometry import Header, lps_to_ras

logger = logging.getLogger(__name__)


SLICE_SPACING_RTOL = 0.01
"""DICOM slice gaps may differ from the series' spacing by this fraction of it."""


def is_dicom_file(path: Path) -> bool:
    """A '.dcm' file, or one with the DICOM preamble."""
    if path.suffix.lower() == ".dcm":
        return path.is_file()
    try:
        with open(path, "rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def holds_dicom(folder: Path) -> bool:
    """Whether a visible file of `folder` is a DICOM file."""
    return any(is_dicom_file(f) for f in sorted(folder.iterdir()) if not f.name.startswith("."))


def read_header(path: Path) -> Header:
    """The grid of the series (checked: one size, spacing and orientation; evenly spaced, collinear slices)."""
    series = _series(path)
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
    lps = plane_lps(row_dir, col_dir, _pixel_spacing(path, first), positions[0])
    if len(files) > 1:
        lps[:3, 2] = (positions[-1] - positions[0]) / (len(files) - 1)
    _check_collinear(path, positions, lps[:3, 2])
    shape = (int(first.Columns), int(first.Rows)) + ((len(files),) if len(files) > 1 else ())
    return Header(shape, lps_to_ras(lps), np.dtype(np.float32), files)


def _series(path: Path) -> list[tuple[Path, pydicom.Dataset]]:
    """(file, header) of the series to read: the one holding `path`, or a folder's largest."""
    folder = path if path.is_dir() else path.parent
    by_uid: dict[str, list] = {}
    for file in sorted(folder.iterdir()):
        ds = _image_header(path, file)
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


def _image_header(path: Path, file: Path) -> pydicom.Dataset | None:
    """The header of a DICOM image file; None for anything else."""
    if file.name.startswith(".") or not file.is_file():
        return None
    with read_errors(path, file.name):
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
    row_dir, col_dir = unit_directions(path, first.ImageOrientationPatient)
    return row_dir, col_dir, np.array([np.asarray(ds.ImagePositionPatient, dtype=float) for _, ds in series])


def unit_directions(path: Path, orientation) -> tuple[np.ndarray, np.ndarray]:
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


def plane_lps(row_dir, col_dir, spacing: tuple[float, float], origin) -> np.ndarray:
    """LPS affine of one DICOM image: i runs along a row (column spacing), j down a column; the normal third."""
    row_spacing, col_spacing = spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 3] = row_dir * col_spacing, col_dir * row_spacing, origin
    lps[:3, 2] = np.cross(row_dir, col_dir)
    return lps


def _pixel_spacing(path: Path, ds) -> tuple[float, float]:
    """(row spacing, column spacing): the distance between rows, then between columns."""
    found = pixel_spacing(ds)
    if found is None:
        spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        raise ImageReadError(path, f"missing or non-positive PixelSpacing {spacing}")
    return found[0]


def pixel_spacing(ds) -> tuple[tuple[float, float], str] | None:
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


def read_data(path: Path, header: Header) -> np.ndarray:
    """Slices in order, rescaled (RescaleSlope/Intercept) to float32."""
    files = header.state
    array = np.empty((*header.shape[:2], len(files)), dtype=np.float32, order="F")
    for k, file in enumerate(files):
        with read_errors(path, file.name):
            ds = pydicom.dcmread(file)
            slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
            array[:, :, k] = ds.pixel_array.T * slope + intercept  # pixel_array is [rows, cols] = [j, i]
    return array
