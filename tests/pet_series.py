"""A synthetic PET DICOM series (PET Image Storage) with known activity in known regions, for the SUV tests.

No real PET file was found in the registries (pydicom, pydicom-data, highdicom, @cornerstonejs/calculate-suv,
ami.js, daikon hold none), so every SUV figure is checked against this series, whose answer is worked out by hand:
activity (Bq/mL) per region, a different RescaleSlope on every slice, weight, dose and times known.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid

from monai_bundle.io import lps_to_ras

from helpers import IOP_COL, IOP_ROW, NORMAL

ROWS, COLS, SLICES = 16, 20, 6
PIXEL_SPACING = (2.0, 2.5)  # (between rows, between columns) mm
SLICE_STEP = 3.0
ORIGIN = np.array([-120.5, 80.25, -300.0])
SLOPES = (0.5, 1.0, 1.25, 2.0, 2.5, 4.0)  # per slice: every activity below divides exactly into uint16 pixels

WEIGHT_KG = 70.0
DOSE_BQ = 3.7e8
INJECTION, SCAN = "090000", "100000"  # one hour: decay 3600 s
F18_HALF_LIFE_S = 6586.2
DECAYED_DOSE_BQ = 3.7e8 * 2 ** (-3600 / 6586.2)
"""The dose at the scan, by hand: 3.7e8 Bq x 2^(-3600/6586.2) = 3.7e8 x 0.6846329 = 253,314,180 Bq."""

BACKGROUND, LESION, ORGAN, HOT = 2000.0, 20000.0, 8000.0, 30000.0  # Bq/mL
LESION_BOX = (slice(5, 10), slice(4, 8), slice(2, 4))  # [i (column), j (row), k (slice)]
ORGAN_BOX = (slice(12, 18), slice(10, 14), slice(1, 5))
HOT_VOXEL = (14, 11, 3)  # inside ORGAN_BOX


def activity() -> np.ndarray:
    """Activity concentration (Bq/mL) [i, j, k] of the series."""
    array = np.full((COLS, ROWS, SLICES), BACKGROUND)
    array[LESION_BOX] = LESION
    array[ORGAN_BOX] = ORGAN
    array[HOT_VOXEL] = HOT
    return array


def labels() -> np.ndarray:
    """The label map [i, j, k]: 1 on the lesion, 2 on the organ (hot voxel included), 0 elsewhere."""
    array = np.zeros((COLS, ROWS, SLICES), np.uint8)
    array[LESION_BOX] = 1
    array[ORGAN_BOX] = 2
    return array


def suv_of(bq_ml: float) -> float:
    """SUVbw of an activity concentration in this series, by hand: Bq/mL x 70,000 g / decayed dose."""
    return bq_ml * WEIGHT_KG * 1000 / DECAYED_DOSE_BQ


def expected_affine() -> np.ndarray:
    """The series' RAS affine, worked out from its attributes by hand."""
    lps = np.eye(4)
    lps[:3, 0] = IOP_ROW * PIXEL_SPACING[1]
    lps[:3, 1] = IOP_COL * PIXEL_SPACING[0]
    lps[:3, 2] = NORMAL * SLICE_STEP
    lps[:3, 3] = ORIGIN
    return lps_to_ras(lps)


def pet_dataset(k: int, series_uid: str, study_uid: str, frame_uid: str) -> Dataset:
    """Slice k of the series as a PET Image Storage dataset (the modules dciodvfy checks)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # save_as(enforce_file_format=True) adds the rest
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = PositronEmissionTomographyImageStorage, generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.PositionReferenceIndicator = ""
    ds.Laterality, ds.CollimatorType = "", "NONE"
    ds.Modality, ds.Manufacturer, ds.InstanceNumber, ds.ImageIndex = "PT", "MedImg synthetic", k + 1, k + 1
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Synthetic^PET", "PET-SUV-1", "", "O"
    ds.PatientWeight, ds.PatientSize = WEIGHT_KG, 1.75
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20260101"
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = SCAN
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName, ds.SeriesNumber = "1", "", "", 1
    ds.Units, ds.CountsSource, ds.SeriesType = "BQML", "EMISSION", ["STATIC", "IMAGE"]
    ds.CorrectedImage, ds.DecayCorrection = ["ATTN", "DECY", "SCAT", "NORM"], "START"
    ds.RandomsCorrectionMethod, ds.AttenuationCorrectionMethod = "DLYD", "CT"
    ds.ReconstructionMethod, ds.NumberOfSlices, ds.FrameReferenceTime = "OSEM", SLICES, 0
    ds.ActualFrameDuration, ds.DecayFactor = 180000, 1.0
    ds.PatientGantryRelationshipCodeSequence = Sequence([_code("102540008", "SCT", "headfirst")])
    orientation = _code("102538003", "SCT", "recumbent")
    orientation.PatientOrientationModifierCodeSequence = Sequence([_code("40199007", "SCT", "supine")])
    ds.PatientOrientationCodeSequence = Sequence([orientation])
    drug = Dataset()
    drug.Radiopharmaceutical = "Fluorodeoxyglucose"
    drug.RadionuclideCodeSequence = Sequence([_code("77004003", "SCT", "^18^Fluorine")])
    drug.RadiopharmaceuticalStartTime = INJECTION
    drug.RadiopharmaceuticalStartDateTime = "20260101" + INJECTION
    drug.RadionuclideTotalDose, drug.RadionuclideHalfLife = DOSE_BQ, F18_HALF_LIFE_S
    drug.RadionuclidePositronFraction = 0.97
    ds.RadiopharmaceuticalInformationSequence = Sequence([drug])
    ds.ImageOrientationPatient = [*IOP_ROW, *IOP_COL]
    ds.ImagePositionPatient = [round(float(v), 6) for v in ORIGIN + k * SLICE_STEP * NORMAL]
    ds.PixelSpacing, ds.SliceThickness = list(PIXEL_SPACING), SLICE_STEP
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLS, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = SLOPES[k], 0
    pixels = activity()[:, :, k].T / SLOPES[k]  # [rows, columns]
    assert np.array_equal(pixels, np.round(pixels)) and pixels.max() < 2**16
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.LossyImageCompression = "00"
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def write_pet_series(folder: Path, edit=None, skip=()) -> Path:
    """The series in `folder` (one file per slice, reverse order of names); `edit(k, ds)` changes slice k first."""
    folder.mkdir(parents=True, exist_ok=True)
    uids = generate_uid(), generate_uid(), generate_uid()
    for k in range(SLICES):
        if k in skip:
            continue
        ds = pet_dataset(k, *uids)
        if edit is not None:
            edit(k, ds)
        ds.save_as(folder / f"PT{SLICES - k:03d}.dcm", enforce_file_format=True)
    return folder


def hand_decay_factor() -> float:
    """2^(-3600/6586.2) written out: exp(-ln 2 x 3600 / 6586.2)."""
    return math.exp(-math.log(2) * 3600 / 6586.2)
