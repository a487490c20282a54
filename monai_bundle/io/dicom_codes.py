"""Standard codes for the bundle's labels and classes, as plain data that can move into metadata per label.

Each code is [code value, coding scheme designator, code meaning], as DICOM writes it (the meanings are those of
DICOM PS3.16, as pydicom's code dictionary has them). A segment has a property category, a property type and,
for paired organs labelled together, a type modifier ('Bilateral'). SCT is SNOMED CT, DCM is DICOM's own scheme.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydicom.sr.coding import Code

_ANATOMY = ["91723000", "SCT", "Anatomical Structure"]  # CID 7150 Segmentation Property Categories
_TISSUE = ["85756007", "SCT", "Tissue"]
_BILATERAL = ["51440002", "SCT", "Bilateral"]  # CID 244 Laterality

LABEL_CODES: dict[str, dict[str, list[str]]] = {
    # ct_segmentation (types from CID 7166/7192 segmentation property types)
    "lungs": {"category": _ANATOMY, "type": ["39607008", "SCT", "Lung"], "modifier": _BILATERAL},
    "heart": {"category": _ANATOMY, "type": ["80891009", "SCT", "Heart"]},
    "aorta": {"category": _ANATOMY, "type": ["15825003", "SCT", "Aorta"]},
    "liver": {"category": _ANATOMY, "type": ["10200004", "SCT", "Liver"]},
    "spleen": {"category": _ANATOMY, "type": ["78961009", "SCT", "Spleen"]},
    "kidneys": {"category": _ANATOMY, "type": ["64033007", "SCT", "Kidney"], "modifier": _BILATERAL},
    "stomach": {"category": _ANATOMY, "type": ["69695003", "SCT", "Stomach"]},
    "bone": {"category": _TISSUE, "type": ["3138006", "SCT", "Bone"]},
    # mri_brain_segmentation; 'CSF and other brain' is mostly CSF: its nearest standard type
    "grey_matter": {"category": _ANATOMY, "type": ["389081007", "SCT", "Gray Matter"]},
    "white_matter": {"category": _ANATOMY, "type": ["389080008", "SCT", "White Matter"]},
    "csf_and_other_brain": {"category": _ANATOMY, "type": ["65216001", "SCT", "Cerebrospinal Fluid"]},
}
"""Segment codes of each label name of the bundle's segmentation tasks."""

CLASS_CODES: dict[str, list[str]] = {
    # xray_classification: the predicted class is the value of a 'Classification' qualitative evaluation
    "normal": ["17621005", "SCT", "Normal"],
    "pneumonia": ["233604007", "SCT", "Pneumonia"],
}
"""The code of each class name of the bundle's classification task."""

SEGMENTATION_ALGORITHM_FAMILY = ["123110", "DCM", "Artificial Intelligence"]  # CID 7162
VOLUME = ["118565006", "SCT", "Volume"]
MILLILITRE = ["ml", "UCUM", "milliliter"]
PROBABILITY = ["122157", "DCM", "Probability"]
NO_UNITS = ["1", "UCUM", "no units"]
CLASSIFICATION = ["278201002", "SCT", "Classification"]
IMAGING_PROCEDURE = ["363679005", "SCT", "Imaging procedure"]  # CID 100


def code(entry: Code | list[str] | tuple[str, str, str]) -> Code:
    """A pydicom Code from [value, scheme, meaning] (a Code is returned as it is)."""
    return entry if isinstance(entry, Code) else Code(*entry)


def label_codes(name: str, given: Mapping | None = None) -> dict[str, Code]:
    """'category', 'type' (and 'modifier') codes of a label: `given` ones first, else the table's.

    Raises:
        KeyError: the label has no code in `given` nor in LABEL_CODES (a segment must have one).
    """
    entry = {**LABEL_CODES.get(name, {}), **{k: v for k, v in (given or {}).items() if k in _SEGMENT_CODE_KEYS}}
    missing = [key for key in ("category", "type") if key not in entry]
    if missing:
        raise KeyError(f"label {name!r} has no {' or '.join(missing)} code: give one, or add it to LABEL_CODES")
    return {key: code(value) for key, value in entry.items()}


_SEGMENT_CODE_KEYS = ("category", "type", "modifier")
