"""Helpers shared by several test modules: DICOM series writers, tiny bundle overrides, Slicer-style runs."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from monai_bundle.data.phantoms import CT_PHANTOM_LABELS

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
