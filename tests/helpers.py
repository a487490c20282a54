"""Helpers shared by several test modules: DICOM series writers, test images on known grids, tiny bundle overrides,
Slicer-style runs."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from monai_bundle.data.phantoms import CT_PHANTOM_LABELS
from monai_bundle.io import ImageReadError, lps_to_ras, read_image

PHANTOM_CLASSES = [CT_PHANTOM_LABELS[k] for k in sorted(CT_PHANTOM_LABELS)]
TINY = {
    "class_names": repr(PHANTOM_CLASSES),
    "pixdim": "[2.0,2.0,2.0]",
    "roi_size": "[32,32,32]",
    "network_def#channels": "[8,16,32,64,128]",
    "num_workers": 0,
    "seed": 0,
    # soft-tissue window: the phantoms' liver, spleen and kidneys differ by 10-30 HU
    "intensity_transform#a_min": -200,
    "intensity_transform#a_max": 300,
    "largest_component_labels": "[2,3]",
}


IOP_ROW, IOP_COL = np.array([0.8, 0.6, 0.0]), np.array([-0.576, 0.768, 0.28])  # exact unit, orthogonal
NORMAL = np.cross(IOP_ROW, IOP_COL)
ORIGIN = np.array([-20.5, 30.25, -100.0])
ROWS, COLS, PIXEL_SPACING, SLICE_STEP = 32, 40, (0.6, 0.8), 2.5  # JPEG 2000 needs >= 32 pixels


def dicom_pixels(k: int) -> np.ndarray:
    return (1000 + 100 * k + np.arange(ROWS * COLS).reshape(ROWS, COLS)).astype(np.uint16)


def write_dicom_slice(path, k, *, series_uid, position=None, frames=None, compressed=False):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "1.2.3", series_uid, "1.2.3.4"
    ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", "TEST", k + 1
    ds.ImageOrientationPatient = [*IOP_ROW, *IOP_COL]
    position = ORIGIN + k * SLICE_STEP * NORMAL if position is None else position
    ds.ImagePositionPatient = [round(float(v), 6) for v in position]
    ds.PixelSpacing, ds.SliceThickness = list(PIXEL_SPACING), SLICE_STEP
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLS, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    pixels = dicom_pixels(k)
    if frames:
        ds.NumberOfFrames = frames
        pixels = np.stack([pixels] * frames)
    ds.PixelData = pixels.tobytes()
    if compressed:
        ds.compress(JPEG2000Lossless, pixels)
    ds.save_as(path, enforce_file_format=True)


def write_dicom_series(folder: Path, n=6, series_uid="1.2.3.4.5", skip=(), **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"IM{random.Random(k).randrange(10**6):06d}_{k}" for k in range(n)]  # file order != slice order
    random.Random(1).shuffle(names)
    for k, name in enumerate(names):
        if k not in skip:
            write_dicom_slice(folder / name, k, series_uid=series_uid, **kwargs)
    return folder


def write_as_slicer_does(array_xyz: np.ndarray, ras_affine: np.ndarray, path: Path) -> None:
    """An uncompressed NRRD with an LPS header, as Slicer's volume storage node writes a scalar volume."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_xyz.T))
    lps = np.diag([-1.0, -1.0, 1.0]) @ ras_affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps / spacing).flatten().tolist())
    image.SetOrigin((np.diag([-1.0, -1.0, 1.0]) @ ras_affine[:3, 3]).tolist())
    sitk.WriteImage(image, str(path), useCompression=False)


def run_to_end(run, timeout: float = 600):
    """Start a MedImgAnalysisLib AnalysisRun and poll it (as the module's timer does) until it ends."""
    run.start()
    deadline = time.monotonic() + timeout
    while run.state in ("preparing", "running") and time.monotonic() < deadline:
        run.poll()
        time.sleep(0.1)
    return run


def slicer_image_task_volume(task_name: str, array_xyz: np.ndarray, ras_affine: np.ndarray, temp_root: Path):
    """Run the Slicer module's exact command for a built-in image task on a volume written as Slicer writes it;
    returns (the run, ended and still to `finish()`, and the header (shape, affine, ...) of its one result volume)."""
    import sys

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "MedImgExtension" / "MedImgAnalysis"))
    from MedImgAnalysisLib import tasks
    from MedImgAnalysisLib.analysis import AnalysisRun
    from monai_bundle.apps import runner
    from monai_bundle.io import read_header

    task = tasks.builtin_tasks(runner.METADATA)[task_name]
    assert task.kind == "image"
    write = lambda path: write_as_slicer_does(array_xyz, ras_affine, path)  # noqa: E731
    run = run_to_end(
        AnalysisRun(task, write, sys.executable, device="cpu", bundle_package_parent=repo, temp_root=temp_root)
    )
    assert run.state == "importing", (run.error, run.log[-20:])
    [volume] = run.results.volumes
    return run, read_header(volume)


# ---------------------------------------------------------------- test images on known grids (tests/io)


def float32_exact(affine) -> np.ndarray:
    """NIfTI-1 stores its sform as float32: keep test affines exactly representable there."""
    return np.asarray(affine, dtype=np.float32).astype(np.float64)


def rotation(axis: int, degrees: float) -> np.ndarray:
    """A rotation by `degrees` about axis 0, 1 or 2."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _affine(matrix, origin) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = matrix, origin
    return float32_exact(affine)


FORMAT_OF_SUFFIX = {".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "nrrd", ".mha": "metaimage"}
"""The volume formats every round trip covers, and the `Volume.format` each is read as."""


GEOMETRIES = {
    "oblique": _affine(rotation(2, 20) @ rotation(0, 20) @ np.diag([0.8, 0.9, 1.5]), [-90.5, 12.25, 40.0]),
    "flipped": _affine(np.diag([-1.25, -0.75, -2.0]), [100.0, 80.0, -30.0]),
    "anisotropic": _affine(np.diag([0.7, 0.7, 2.5]), [-50.0, -60.0, 10.0]),
    "2d": _affine(np.diag([-0.5, 0.75, 1.0]), [10.0, -20.0, 0.0]),
}
"""Grids (RAS, float32-exact) that image tests write and read back."""


def image_data(geometry: str, dtype=np.int16) -> np.ndarray:
    """Random CT-like values on a GEOMETRIES grid's shape (5x6 for "2d", else 5x6x7), the same every call."""
    shape = (5, 6) if geometry == "2d" else (5, 6, 7)
    return np.random.default_rng(0).integers(-1000, 3000, size=shape).astype(dtype)


def assert_affine(actual, expected, fmt: str) -> None:
    """Exact for NIfTI (float32-exact affines); ITK splits NRRD/MetaImage into spacing x direction (1 ulp)."""
    if fmt.startswith(".nii"):
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-9)


def read_error(path, match: str, **kwargs) -> ImageReadError:
    """Read `path`, expecting one clear error that names it."""
    with pytest.raises(ImageReadError, match=match) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert Path(path).name in message
    assert info.value.path == os.fspath(path)
    return info.value


def nifti_bytes(data=None, affine=None) -> bytes:
    """A NIfTI-1 file's bytes (default: 4x5x6 zeros on the identity grid)."""
    data = np.zeros((4, 5, 6), np.int16) if data is None else data
    return nib.Nifti1Image(data, np.eye(4) if affine is None else affine).to_bytes()


def write_file(path: Path, content: bytes) -> Path:
    """`path`, holding `content`."""
    path.write_bytes(content)
    return path


def expected_dicom_affine(n=6) -> np.ndarray:
    """The RAS affine of `write_dicom_series(folder, n)`, worked out from the DICOM attributes by hand."""
    lps = np.eye(4)
    lps[:3, 0] = IOP_ROW * PIXEL_SPACING[1]  # i runs along a row: across columns
    lps[:3, 1] = IOP_COL * PIXEL_SPACING[0]
    lps[:3, 2] = NORMAL * SLICE_STEP if n > 1 else NORMAL
    lps[:3, 3] = ORIGIN
    return lps_to_ras(lps)


def expected_dicom_array(n=6) -> np.ndarray:
    """The voxels [i, j, k] of `write_dicom_series(folder, n)` in HU."""
    return np.stack([dicom_pixels(k).T.astype(np.float32) - 1024 for k in range(n)], axis=-1)
