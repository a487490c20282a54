"""What the DICOM SEG and SR writers share: the algorithm that made a result, the source objects they reference
(reduced to the patient and study attributes DICOM requires), where they may be written, and atomic saving."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import Comprehensive3DSRStorage, SegmentationStorage, generate_uid

from monai_bundle.io.dicom import read_series
from monai_bundle.io.errors import ImageReadError, read_errors
from monai_bundle.io.files import sha256_of, write_bytes_atomic

MANUFACTURER = "MedImg"

REQUIRED_PATIENT_STUDY = (  # Patient and General Study modules: their type 1 and 2 attributes, nothing optional
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip

_REFERENCED = (  # what a derived object takes from its source besides patient and study: identity, geometry
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality",
    "FrameOfReferenceUID", "PositionReferenceIndicator", "ImageType", "Rows", "Columns", "NumberOfFrames",
    "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness", "SpacingBetweenSlices",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "DimensionOrganizationType",
)  # fmt: skip


@dataclass(frozen=True)
class Algorithm:
    """The algorithm that made a result, as every SEG segment and SR measurement group names it.

    Attributes:
        task: the bundle task id, e.g. 'ct_segmentation'.
        version: the bundle's version (metadata.json 'version').
        weights_sha256: sha256 of the weights used ('' when unknown).
        name: the software's name.
        parameters: further parameters recorded with it, e.g. {'threshold': '0.5'}.
    """

    task: str
    version: str
    weights_sha256: str = ""
    name: str = MANUFACTURER
    parameters: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, value: Algorithm | Mapping[str, Any]) -> Algorithm:
        """`value` itself, or an Algorithm from a mapping with these field names (e.g. from JSON or a config).

        Instead of weights_sha256 the mapping may name the weight file, 'weights': its sha256 is taken (a config
        names its checkpoint; the hash is computed only when a DICOM object is written).
        """
        if isinstance(value, Algorithm):
            return value
        value = dict(value)
        weights = value.pop("weights", None)
        if weights and not value.get("weights_sha256"):
            value["weights_sha256"] = sha256_of(weights) if Path(weights).is_file() else ""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown algorithm field(s) {unknown}; known: {sorted(known)}")
        return cls(**value)

    @property
    def label(self) -> str:
        """Its name in viewers: 'MedImg ct_segmentation'."""
        return f"{self.name} {self.task}"

    def all_parameters(self) -> dict[str, str]:
        """Task, weights and the further parameters, as name -> text."""
        weights = {"weights_sha256": self.weights_sha256} if self.weights_sha256 else {}
        return {"task": self.task, **weights, **{str(k): str(v) for k, v in self.parameters.items()}}

    def device_uid(self) -> str:
        """A UID that stays the same for the same software, task, version and weights (the observing device)."""
        return generate_uid(entropy_srcs=[self.name, self.task, self.version, self.weights_sha256])


def source_objects(source: Path, files: Sequence[Path]) -> list[Dataset]:
    """The headers of the source `files`, reduced to what a derived object may copy from them.

    That is their identity and geometry, and of the patient and study only what DICOM requires (present, maybe
    empty). SOP Class and Instance UIDs missing from a dataset are taken from its file meta information.

    Raises:
        ImageReadError: a source lacks the study, series or frame of reference a derived object must reference.
    """
    reduced = []
    for file in dict.fromkeys(files):  # each file once, in order
        with read_errors(source, file.name):
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        out = Dataset()
        out.file_meta = ds.file_meta
        for keyword in (*REQUIRED_PATIENT_STUDY, *_REFERENCED):
            if keyword in ds:
                out[keyword] = ds[keyword]
            elif keyword in REQUIRED_PATIENT_STUDY:
                setattr(out, keyword, None)
        out.SOPClassUID = out.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
        out.SOPInstanceUID = out.get("SOPInstanceUID") or ds.file_meta.get("MediaStorageSOPInstanceUID")
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if not out.get(keyword):
                raise ImageReadError(source, f"{file.name}: no {keyword}: a derived object cannot reference it")
        reduced.append(out)
    return reduced


def check_derived(path: str | Path, source: str | Path) -> Dataset:
    """The header of the SEG or SR at `path`, checked to be one that references the series of the DICOM `source`.

    What a resumed batch run asks of an existing result before it keeps it.

    Raises:
        ValueError: `path` is not a readable SEG or SR, or references another series.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        first = read_series(source).planes[0].file
        uid = pydicom.dcmread(first, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]).SeriesInstanceUID
        sop_class = ds.SOPClassUID
        referenced = {item.SeriesInstanceUID for item in ds.get("ReferencedSeriesSequence", [])}
        for evidence in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
            referenced |= {item.SeriesInstanceUID for item in evidence.get("ReferencedSeriesSequence", [])}
    except (ImageReadError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
    except Exception as error:  # pydicom's InvalidDicomError, a missing attribute: not a usable object
        raise ValueError(f"{path}: not a readable DICOM SEG or SR ({type(error).__name__})") from None
    if sop_class not in DERIVED_SOP_CLASSES:
        raise ValueError(f"{path}: a {getattr(sop_class, 'name', sop_class)} object, not a SEG or SR")
    if uid not in referenced:
        raise ValueError(f"{path}: does not reference the series of {source}")
    return ds


DERIVED_SOP_CLASSES = (SegmentationStorage, Comprehensive3DSRStorage)
"""What MedImg writes for a DICOM input: a Segmentation and a Comprehensive 3D SR."""


def check_output(path: str | Path, source: str | Path) -> Path:
    """`path`, refused (ValueError) where it lies in the folder of `source` or below it: inputs are never written."""
    path, folder = Path(path).resolve(), Path(source).resolve()
    folder = folder if folder.is_dir() else folder.parent
    if path.is_relative_to(folder):
        raise ValueError(f"{path}: inside the input folder {folder}; write derived objects elsewhere")
    return path


def save_atomic(ds: Dataset, path: Path) -> None:
    """Write `ds` as a DICOM file (with preamble and file meta) to a temp name beside `path`, then rename it."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    write_bytes_atomic(path, buffer.getvalue())
