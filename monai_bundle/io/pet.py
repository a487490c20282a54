"""PET images in body-weight SUV: from a DICOM PET series' own attributes, or from a NIfTI/NRRD whose unit is stated.

SUVbw = activity concentration (Bq/mL) x patient weight (g) / injected dose (Bq) decayed to the time the image is
decay-corrected to. It is unitless where tissue is taken as 1 g/mL. A DICOM PET series is converted by the
vendor-neutral recipe of QIBA's FDG-PET/CT profile ("SUV calculation" pseudo-code), as Cornerstone's calculate-suv
implements it too:

- `CorrectedImage` must include ATTN and DECY; `DecayCorrection` START (to the scan time, below) or ADMIN (to the
  injection: no decay); NONE is refused (each slice would need its own acquisition time).
- Scan time: SeriesDate/SeriesTime when it is not after the earliest slice's AcquisitionDate/AcquisitionTime; else
  (a series re-processed later) GE's private post-injection date-time (0009,100D) where present, else that
  earliest acquisition date-time.
- Injection: RadiopharmaceuticalStartDateTime, else RadiopharmaceuticalStartTime on the SeriesDate (the day before
  when that would be after the scan: an injection before midnight); dose RadionuclideTotalDose (Bq) and
  RadionuclideHalfLife (s) from the first RadiopharmaceuticalInformationSequence item.
- Units: BQML (values after each slice's RescaleSlope/Intercept are Bq/mL); GML (already SUVbw: kept);
  CNTS only with Philips' private SUV scale factor (7053,1000), or its activity-concentration factor (7053,1009)
  that turns counts into Bq/mL; anything else is refused.

Not handled (refused or documented): enhanced (multi-frame) PET objects, dynamic series (several frames per
position), SUVlbm/SUVbsa, Siemens' per-frame back-computation from FrameReferenceTime (the earliest acquisition is
used, QIBA's vendor-neutral rule), DecayCorrection NONE.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

from monai_bundle.io.dicom import read_series
from monai_bundle.io.errors import ImageReadError, read_errors
from monai_bundle.io.geometry import Volume
from monai_bundle.io.registry import DEFAULT_MAX_BYTES, image_suffix, read_image

logger = logging.getLogger(__name__)


F18_HALF_LIFE_S = 6586.2
"""Half-life of fluorine-18 in seconds (109.77 min), the default for a stated unit's decay."""

PET_UNITS = ("SUV", "BQML")
"""Units a user may state for a NIfTI/NRRD/MetaImage PET, which carries none."""

_GE_CREATOR, _GE_POST_INJECTION = "GEMS_PETD_01", 0x0D  # (0009,100D) post-injection date-time (DT)
_PHILIPS_CREATOR, _PHILIPS_SUV, _PHILIPS_ACTIVITY = "Philips PET Private Group", 0x00, 0x09  # (7053,1000/1009)

_SERIES_ATTRIBUTES = (
    "Units",
    "CorrectedImage",
    "DecayCorrection",
    "PatientWeight",
    "SeriesDate",
    "SeriesTime",
    "RadiopharmaceuticalInformationSequence",
)
"""Attributes every slice of one PET series must share: SUV uses one value of each."""


@dataclass(frozen=True)
class StatedUnit:
    """The unit of a PET image file that carries none (NIfTI, NRRD, MetaImage), as the user states it.

    Args:
        unit: "SUV" (values are SUVbw already) or "BQML" (Bq/mL, converted with the next three).
        weight_kg: patient weight, for BQML.
        dose_bq: injected dose (Bq) at injection, for BQML.
        decay_s: seconds from injection to the time the image is decay-corrected to (the scan start); 0 when the
            dose given is already the dose at that time.
        half_life_s: the radionuclide's half-life (default F-18).
    """

    unit: str
    weight_kg: float | None = None
    dose_bq: float | None = None
    decay_s: float = 0.0
    half_life_s: float = F18_HALF_LIFE_S

    def factor(self, path) -> float:
        """The factor that turns this image's values into SUVbw; raise naming `path` if the statement is short."""
        unit = self.unit.upper()
        if unit == "SUV":
            return 1.0
        if unit != "BQML":
            raise ImageReadError(path, f"PET unit {self.unit!r} is not one of {', '.join(PET_UNITS)}")
        for name, value in (("weight_kg", self.weight_kg), ("dose_bq", self.dose_bq)):
            if value is None or not value > 0:
                raise ImageReadError(path, f"PET unit BQML needs a positive {name} (got {value})")
        if not (self.decay_s >= 0 and self.half_life_s > 0):
            raise ImageReadError(path, f"decay_s must be >= 0 and half_life_s > 0 ({self.decay_s}, {self.half_life_s})")
        return bodyweight_factor(self.weight_kg, self.dose_bq, self.decay_s, self.half_life_s)


def bodyweight_factor(weight_kg: float, dose_bq: float, decay_s: float, half_life_s: float) -> float:
    """SUVbw per Bq/mL: weight (g) / (dose decayed over `decay_s`)."""
    return weight_kg * 1000.0 / (dose_bq * 2.0 ** (-decay_s / half_life_s))


def read_suv(path, stated: StatedUnit | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Volume:
    """A 3D PET image in SUVbw (float32) on its exact grid.

    A DICOM series is converted from its own attributes (module docstring); a unit stated for it is not used.
    Any other image needs `stated`: its files carry no PET unit, and none is guessed.

    Raises:
        ImageReadError: one line naming the file and the attribute or statement that is missing or inconsistent.
    """
    volume = read_image(path, ndim=3, max_bytes=max_bytes, dtype=np.float32)
    if volume.format == "dicom":
        factors = dicom_suv_factors(path)  # one per slice, in the order read_image stacks them
        if stated is not None:
            logger.warning("%s: a DICOM PET carries its own units; the stated unit %s is not used", path, stated.unit)
        volume.array = volume.array * factors.astype(np.float32)
    else:
        if stated is None:
            raise ImageReadError(
                path,
                f"{image_suffix(path)} carries no PET unit: state it (SUV, or BQML with weight_kg and dose_bq)",
            )
        volume.array = volume.array * np.float32(stated.factor(path))
    return volume


def dicom_suv_factors(path) -> np.ndarray:
    """The factor that turns each slice's rescaled values (in slice order) into SUVbw, from the series' headers."""
    series = read_series(path)
    headers = []
    for plane in series.planes:
        if plane.frame is not None:
            raise ImageReadError(path, f"{plane.file.name}: enhanced (multi-frame) PET is not supported for SUV")
        with read_errors(path, plane.file.name):
            headers.append((plane.file.name, pydicom.dcmread(plane.file, stop_before_pixels=True)))
    name, first = headers[0]
    if first.get("Modality") != "PT":
        raise ImageReadError(path, f"{name}: Modality is {first.get('Modality')!r}, not PT: not a PET series")
    for keyword in _SERIES_ATTRIBUTES:
        other = next((n for n, ds in headers if ds.get(keyword) != first.get(keyword)), None)
        if other is not None:
            raise ImageReadError(path, f"{other}: {keyword} differs from {name}'s within one PET series")
    units = str(_required(path, name, first, "Units")).upper()
    if units == "GML":
        return np.ones(len(headers))
    corrected = {str(v).upper() for v in _listed(first.get("CorrectedImage"))}
    if not {"ATTN", "DECY"} <= corrected:
        raise ImageReadError(path, f"{name}: CorrectedImage {sorted(corrected)} lacks ATTN or DECY: no SUV")
    if units == "CNTS":
        return _philips_factors(path, headers)
    if units != "BQML":
        raise ImageReadError(path, f"{name}: Units {units} cannot be converted to SUV (BQML, GML or Philips CNTS)")
    return np.full(len(headers), _bodyweight_factor(path, headers))


def _philips_factors(path, headers: list[tuple[str, Dataset]]) -> np.ndarray:
    """Philips CNTS: the per-slice SUV scale factor, else the activity-concentration factor times the BQML factor."""
    suv = [_positive_or_none(_private(ds, _PHILIPS_CREATOR, 0x7053, _PHILIPS_SUV)) for _, ds in headers]
    if all(suv):
        return np.asarray(suv, dtype=float)
    activity = [_positive_or_none(_private(ds, _PHILIPS_CREATOR, 0x7053, _PHILIPS_ACTIVITY)) for _, ds in headers]
    if all(activity):
        return np.asarray(activity, dtype=float) * _bodyweight_factor(path, headers)
    missing = next(n for (n, _), s, a in zip(headers, suv, activity) if not (s and a))
    raise ImageReadError(
        path, f"{missing}: Units CNTS without Philips' SUV scale factor (7053,1000) or activity factor (7053,1009)"
    )


def _bodyweight_factor(path, headers: list[tuple[str, Dataset]]) -> float:
    """SUVbw per Bq/mL of a BQML series: weight / dose decayed from injection to the decay-correction time."""
    name, first = headers[0]
    weight = _positive(path, name, first, "PatientWeight")
    info = _required(path, name, first, "RadiopharmaceuticalInformationSequence")
    drug = info[0] if len(info) else Dataset()
    dose = _positive(path, name, drug, "RadionuclideTotalDose")
    half_life = _positive(path, name, drug, "RadionuclideHalfLife")
    correction = str(_required(path, name, first, "DecayCorrection")).upper()
    if correction == "ADMIN":
        return bodyweight_factor(weight, dose, 0.0, half_life)
    if correction != "START":
        raise ImageReadError(path, f"{name}: DecayCorrection {correction} is not handled (START or ADMIN)")
    scan = _scan_time(path, headers)
    injection = _injection_time(path, name, first, drug, scan)
    decay_s = (scan - injection).total_seconds()
    if decay_s < 0:
        raise ImageReadError(path, f"{name}: the injection ({injection}) is after the scan ({scan})")
    return bodyweight_factor(weight, dose, decay_s, half_life)


def _scan_time(path, headers: list[tuple[str, Dataset]]) -> dt.datetime:
    """The time START decay correction refers to: QIBA's series / GE private / earliest acquisition rule."""
    name, first = headers[0]
    series = _date_time(path, name, first, "SeriesDate", "SeriesTime")
    earliest = min(_date_time(path, n, ds, "AcquisitionDate", "AcquisitionTime") for n, ds in headers)
    if series <= earliest:
        return series
    ge = _private(first, _GE_CREATOR, 0x0009, _GE_POST_INJECTION)
    if not ge:
        return earliest
    with read_errors(path, f"{name}: GE post-injection date-time (0009,100D)"):
        return _naive(DT(ge))


def _injection_time(path, name: str, ds: Dataset, drug: Dataset, scan: dt.datetime) -> dt.datetime:
    """RadiopharmaceuticalStartDateTime, else StartTime on the series date (the day before if after the scan)."""
    if drug.get("RadiopharmaceuticalStartDateTime"):
        with read_errors(path, f"{name}: RadiopharmaceuticalStartDateTime"):
            return _naive(DT(drug.RadiopharmaceuticalStartDateTime))
    if not drug.get("RadiopharmaceuticalStartTime"):
        raise ImageReadError(
            path, f"{name}: RadiopharmaceuticalStartDateTime and RadiopharmaceuticalStartTime are both missing"
        )
    with read_errors(path, f"{name}: RadiopharmaceuticalStartTime"):
        start = dt.datetime.combine(DA(_required(path, name, ds, "SeriesDate")), TM(drug.RadiopharmaceuticalStartTime))
    return start - dt.timedelta(days=1) if start > scan else start


def _date_time(path, name: str, ds: Dataset, date_keyword: str, time_keyword: str) -> dt.datetime:
    date, time = _required(path, name, ds, date_keyword), _required(path, name, ds, time_keyword)
    with read_errors(path, f"{name}: {date_keyword}/{time_keyword}"):
        return dt.datetime.combine(DA(date), TM(time))


def _naive(value: dt.datetime) -> dt.datetime:
    """A DICOM DT without its UTC offset: the other times of a series are local times without one."""
    return value.replace(tzinfo=None)


def _required(path, name: str, ds: Dataset, keyword: str):
    value = ds.get(keyword)
    if value is None or value == "":
        raise ImageReadError(path, f"{name}: {keyword} is missing; it is needed for SUV")
    return value


def _positive(path, name: str, ds: Dataset, keyword: str) -> float:
    value = _required(path, name, ds, keyword)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ImageReadError(path, f"{name}: {keyword} is {value}; a positive number is needed for SUV")
    return number


def _private(ds: Dataset, creator: str, group: int, element: int) -> str | None:
    """A private attribute's value as text (raw bytes where its VR is unknown), or None where it is absent."""
    try:
        value = ds.get_private_item(group, element, creator).value
    except KeyError:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return text.strip(" \0") or None


def _positive_or_none(text: str | None) -> float | None:
    try:
        number = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def _listed(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, pydicom.multival.MultiValue | list | tuple) else [value]
