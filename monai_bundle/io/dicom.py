"""DICOM images: a folder's largest series, the series holding a given file, or a multi-frame (enhanced) object, as
one checked grid in float32.

DICOM files are known by their content (the 'DICM' preamble) or a '.dcm' name, not by a suffix of their own.
Scanners round slice positions and tables drift, so slices rarely lie exactly on a grid: a series whose slices all
lie within `SLICE_JITTER_MM` (and `SLICE_SPACING_RTOL` of the spacing) of the regular grid fitted to them is read on
that grid, with a note; a missing slice, overlapping or uneven slices are refused. Slices stacked off their normal
(gantry tilt) keep their acquired positions as a sheared grid. Why these choices: docs/dicom.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import iter_pixels
from pydicom.uid import UID, SegmentationStorage

from monai_bundle.io.errors import ImageReadError, read_errors
from monai_bundle.io.geometry import GRID_TOLERANCE_MM, Header, lps_to_ras

logger = logging.getLogger(__name__)


SLICE_JITTER_MM = 0.2
"""How far (mm) a slice may lie from the regular grid fitted to its series and still be read on that grid.

dcm2niix's tolerance for gaps (ITK and Slicer read any spacing and only warn); rounding to 0.1 mm moves 0.09 mm."""

SLICE_SPACING_RTOL = 0.2
"""The same limit as a fraction of the slice spacing; the smaller applies, so that thin slices move little."""

_NOT_IMAGES = {SegmentationStorage, UID("1.2.840.10008.5.1.4.1.1.66.7")}  # (label map) segmentations: not images

_FRAME_ATTRIBUTES = {  # attribute -> the functional group that holds it in a multi-frame (enhanced) object
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "PixelSpacing": "PixelMeasuresSequence",
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
}


@dataclass(frozen=True)
class Plane:
    """One image plane of a series: a single-frame file, or one frame of a multi-frame file.

    Attributes:
        file: the file that holds it.
        frame: its 0-based frame number in a multi-frame file; None for a single-frame file.
        position: its ImagePositionPatient (LPS mm) as stored, before any regularisation.
        rescale: (RescaleSlope, RescaleIntercept).
    """

    file: Path
    frame: int | None
    position: np.ndarray
    rescale: tuple[float, float]


@dataclass
class Series:
    """A series, or a multi-frame object, as one grid.

    Attributes:
        planes: the image planes in slice (k) order.
        shape: (columns, rows(, slices)): the array shape `read_image` gives.
        affine: voxel-to-RAS affine of the grid.
        notes: what was done to make a grid (regularised positions, a sheared grid, other series ignored); each
            is also logged as a warning of this module's logger when the header is read, where batch collects it.
        max_shift_mm: how far regularisation moved a plane from its stored position (0 when none was needed).
        tilt_degrees: the angle between the stacking direction and the planes' normal (gantry tilt); 0 if none.
    """

    planes: list[Plane]
    shape: tuple[int, ...]
    affine: np.ndarray
    notes: list[str] = field(default_factory=list)
    max_shift_mm: float = 0.0
    tilt_degrees: float = 0.0


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
    """The checked grid of the series; its notes are logged as warnings (batch shows them per input)."""
    series = read_series(path)
    for note in series.notes:
        logger.warning("%s: %s", path, note)
    return Header(series.shape, series.affine, np.dtype(np.float32), series)


def read_series(path: str | Path) -> Series:
    """The grid of the series `path` names (a folder's largest, or the one holding a file), from headers only.

    Checks: one size, pixel spacing and orientation; slices on one regular grid within the jitter tolerance
    (`SLICE_JITTER_MM`, `SLICE_SPACING_RTOL`), with no slice missing and none at the same position.

    Args:
        path: a DICOM file or a folder of DICOM files.

    Raises:
        ImageReadError: one line naming `path` and what is wrong.
    """
    path = Path(path)
    files, notes = _series_files(path)
    first = files[0][1]
    if int(first.get("SamplesPerPixel", 1)) != 1:
        raise ImageReadError(path, "colour DICOM is not supported")
    planes = [(file, frame, attributes) for file, ds in files for frame, attributes in _frames(path, file, ds)]
    for keyword in ("Rows", "Columns"):
        _check_same(path, keyword, [ds.get(keyword) for _, ds in files])
    for keyword in ("PixelSpacing", "ImageOrientationPatient"):
        _check_same(path, keyword, [attributes.get(keyword) for _, _, attributes in planes])
    row_dir, col_dir, positions = _slice_geometry(path, [attributes for _, _, attributes in planes])
    normal = np.cross(row_dir, col_dir)
    order = np.argsort(positions @ normal, kind="stable")
    grid = _fit_grid(path, positions[order], normal)
    lps = plane_lps(row_dir, col_dir, _pixel_spacing(path, planes[0][2]), grid.origin)
    lps[:3, 2] = grid.step
    shape = (int(first.Columns), int(first.Rows)) + ((len(planes),) if len(planes) > 1 else ())
    ordered = []
    for i in order:
        file, frame, attributes = planes[i]
        ordered.append(Plane(file, frame, positions[i], _rescale(attributes)))
    return Series(ordered, shape, lps_to_ras(lps), notes + grid.notes, grid.shift, grid.tilt)


def _check_same(path: Path, keyword: str, values: list) -> None:
    """Refuse a series whose planes differ in `keyword` (numbers compared to 1e-4)."""
    arrays = [np.ravel(np.asarray(v if v is not None else [], dtype=float)) for v in values]
    if any(a.shape != arrays[0].shape or not np.allclose(a, arrays[0], atol=1e-4) for a in arrays):
        raise ImageReadError(path, f"slices differ in {keyword}")


def _series_files(path: Path) -> tuple[list[tuple[Path, Dataset]], list[str]]:
    """(file, header) of the series to read, the one holding `path` or a folder's largest (most planes), and notes."""
    folder = path if path.is_dir() else path.parent
    by_uid: dict[str, list] = {}
    for file in sorted(folder.iterdir()):
        ds = _image_header(path, file)
        if ds is not None:
            by_uid.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((file, ds))
    if path.is_dir():
        if not by_uid:
            raise ImageReadError(path, "no DICOM image files in folder")
        uid = max(by_uid, key=lambda u: (sum(_frame_count(ds) for _, ds in by_uid[u]), u))
    else:
        uid = next((u for u, s in by_uid.items() if any(f.name == path.name for f, _ in s)), None)
        if uid is None:
            raise ImageReadError(path, "not a DICOM image file")
    notes = []
    if len(by_uid) > 1:
        notes.append(f"reading series {uid} ({len(by_uid[uid])} files); {len(by_uid) - 1} other series ignored")
    return by_uid[uid], notes


def _frame_count(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames") or 1)


def _image_header(path: Path, file: Path) -> Dataset | None:
    """The header of a DICOM image file; None for anything else (segmentations included)."""
    if file.name.startswith(".") or not file.is_file():
        return None
    with read_errors(path, file.name):
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except InvalidDicomError:
            return None
    return ds if "Rows" in ds and ds.get("SOPClassUID") not in _NOT_IMAGES else None


def _frames(path: Path, file: Path, ds: Dataset) -> list[tuple[int | None, Dataset]]:
    """(frame number or None, its geometry and rescale attributes) of each image plane a file holds.

    A single-frame file is its own plane; a multi-frame (enhanced) object's frames take each attribute from their
    per-frame functional group, else the shared one.
    """
    frames = _frame_count(ds)
    if "PerFrameFunctionalGroupsSequence" not in ds:
        if frames > 1:
            raise ImageReadError(
                path,
                f"{file.name}: multi-frame DICOM without per-frame functional groups "
                "(no frame positions): cannot place its frames in space",
            )
        return [(None, ds)]
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != frames:
        raise ImageReadError(path, f"{file.name}: {len(per_frame)} per-frame functional groups for {frames} frames")
    planes = []
    for number, groups in enumerate(per_frame):
        flat = Dataset()
        for keyword, group in _FRAME_ATTRIBUTES.items():
            item = next((g[group][0] for g in (groups, shared) if g.get(group) and keyword in g[group][0]), None)
            if item is not None:
                flat[keyword] = item[keyword]
        planes.append((number, flat))
    return planes


def _rescale(ds: Dataset) -> tuple[float, float]:
    return float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)


def _slice_geometry(path: Path, planes: list[Dataset]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row and column directions and every plane's position (LPS)."""
    first = planes[0]
    if len(planes) == 1 and "ImagePositionPatient" not in first and "ImageOrientationPatient" not in first:
        return np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.zeros((1, 3))  # projection X-ray
    if any("ImagePositionPatient" not in ds for ds in planes) or "ImageOrientationPatient" not in first:
        raise ImageReadError(path, "slices lack ImagePositionPatient/ImageOrientationPatient")
    row_dir, col_dir = unit_directions(path, first.ImageOrientationPatient)
    return row_dir, col_dir, np.array([np.asarray(ds.ImagePositionPatient, dtype=float) for ds in planes])


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


@dataclass
class _Grid:
    origin: np.ndarray
    step: np.ndarray
    notes: list[str]
    shift: float = 0.0
    tilt: float = 0.0


def _fit_grid(path: Path, positions: np.ndarray, normal: np.ndarray) -> _Grid:
    """The regular grid (origin, step; LPS) of slice positions sorted along their plane normal.

    The grid is the least-squares line through the positions, orthogonal (step along the normal) when that fits
    within tolerance, else sheared (gantry tilt). Refused: two slices at one position, a slice farther than the
    tolerance from the grid (uneven spacing), a gap of about two spacings or more (missing slices).
    """
    z = positions @ normal
    gaps = np.diff(z)
    if not len(gaps):
        return _Grid(positions[0], normal, [])
    if gaps.min() < 1e-3:
        i = int(gaps.argmin())
        raise ImageReadError(path, f"two slices at the same position z={z[i]:.2f}")
    step0 = gaps[gaps >= np.median(gaps) / 2].min()  # one spacing, even where some gaps are several
    multiples = np.maximum(1, np.rint(gaps / step0))
    k = np.concatenate([[0.0], np.cumsum(multiples)])
    design = np.stack([np.ones_like(k), k], axis=1)
    (origin, step), *_ = np.linalg.lstsq(design, positions, rcond=None)
    spacing = float(step @ normal)
    tolerance = min(SLICE_JITTER_MM, SLICE_SPACING_RTOL * spacing)
    straight = spacing * normal
    straight_origin = (positions - k[:, None] * straight).mean(axis=0)
    shift = _largest_shift(positions, straight_origin, straight, k)
    if shift <= tolerance:
        origin, step = straight_origin, straight
    else:
        shift = _largest_shift(positions, origin, step, k)
    if shift > tolerance:
        gap_range = f"{gaps.min():.4g} to {gaps.max():.4g} mm"
        raise ImageReadError(
            path,
            f"uneven slice spacing ({gap_range}): a slice lies {shift:.3g} mm off the best "
            f"regular grid, more than the {tolerance:.3g} mm allowed",
        )
    if multiples.max() > 1:
        i = int(np.argmax(multiples > 1))
        where = f"between z={z[i]:.2f} and z={z[i + 1]:.2f} (gap {gaps[i]:.3g} mm, spacing {spacing:.3g} mm)"
        raise ImageReadError(path, f"missing slice(s) {where}")
    sheared = step is not straight
    tilt = float(np.degrees(np.arccos(min(1.0, spacing / np.linalg.norm(step))))) if sheared else 0.0
    shift = shift if shift > GRID_TOLERANCE_MM else 0.0
    notes = []
    if shift:
        notes.append(
            f"slice positions regularised: gaps {gaps.min():.4g} to {gaps.max():.4g} mm read as a regular "
            f"{spacing:.4g} mm grid (slices moved up to {shift:.3g} mm)"
        )
    if sheared:
        notes.append(
            f"slices are stacked {tilt:.3g} degrees off their normal (gantry tilt): read as a sheared grid "
            "at the acquired positions, not resampled"
        )
    return _Grid(origin, step, notes, shift, tilt)


def _largest_shift(positions: np.ndarray, origin: np.ndarray, step: np.ndarray, k: np.ndarray) -> float:
    return float(np.linalg.norm(positions - (origin + k[:, None] * step), axis=1).max())


def read_data(path: Path, header: Header) -> np.ndarray:
    """The planes in slice order, rescaled (RescaleSlope/Intercept, per frame for multi-frame objects) to float32."""
    series: Series = header.state
    array = np.empty((*header.shape[:2], len(series.planes)), dtype=np.float32, order="F")
    slots: dict[Path, dict[int, int]] = {}  # file -> {frame number: k}; a single-frame file's one frame is 0
    for k, plane in enumerate(series.planes):
        slots.setdefault(plane.file, {})[plane.frame or 0] = k
    for file, frames in slots.items():
        with read_errors(path, file.name):
            numbers = sorted(frames)
            for number, pixels in zip(numbers, iter_pixels(file, indices=numbers), strict=True):
                k = frames[number]
                slope, intercept = series.planes[k].rescale
                array[:, :, k] = pixels.T * slope + intercept  # pixels are [rows, cols] = [j, i]
    return array
