"""Standard codes of the bundle's labels and classes: read from metadata.json, where each task keeps them per label.

A task block of configs/metadata.json ("medimg" block) has "codes": label value -> {"category", "type" and, for
paired organs labelled together, "modifier" ('Bilateral')}; a classification task gives each class its "type".
Each code is [code value, coding scheme designator, code meaning], as DICOM writes it (the meanings are those of
DICOM PS3.16, as pydicom's code dictionary has them). SCT is SNOMED CT, DCM is DICOM's own scheme. LABEL_CODES
and CLASS_CODES gather them by name: the fallback for a label that brings no codes of its own (another bundle's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from monai_bundle import BUNDLE_ROOT

if TYPE_CHECKING:  # pydicom.sr loads its whole code dictionary (0.4 s): only where a Code is made
    from pydicom.sr.coding import Code


def task_codes(metadata: Mapping[str, Any], task: str) -> dict[str, dict[str, list[str]]]:
    """Label (or class) name -> its codes, as the `task`'s block of `metadata` (a bundle's metadata.json) gives them.

    A task without a "codes" block (or unknown to the metadata) has none: {}.
    """
    block = metadata.get("medimg", {}).get("tasks", {}).get(task, {})
    names = block.get("labels", {})
    return {names[value]: dict(entry) for value, entry in block.get("codes", {}).items() if value in names}


def codes_by_name(metadata: Mapping[str, Any], kind: str) -> dict[str, dict[str, list[str]]]:
    """Name -> codes over every task of `kind` ('segmentation', 'classification') in `metadata`, first task first."""
    found: dict[str, dict[str, list[str]]] = {}
    for task, block in metadata.get("medimg", {}).get("tasks", {}).items():
        if block.get("kind") == kind:
            for name, entry in task_codes(metadata, task).items():
                found.setdefault(name, entry)
    return found


_METADATA = json.loads((BUNDLE_ROOT / "configs" / "metadata.json").read_text(encoding="utf-8"))

LABEL_CODES: dict[str, dict[str, list[str]]] = codes_by_name(_METADATA, "segmentation")
"""Segment codes of each label name of the bundle's segmentation tasks (from metadata.json)."""

CLASS_CODES: dict[str, list[str]] = {
    name: entry["type"] for name, entry in codes_by_name(_METADATA, "classification").items()
}
"""The code of each class name of the bundle's classification tasks (from metadata.json)."""

SEGMENTATION_ALGORITHM_FAMILY = ["123110", "DCM", "Artificial Intelligence"]  # CID 7162
VOLUME = ["118565006", "SCT", "Volume"]
MILLILITRE = ["ml", "UCUM", "milliliter"]
PROBABILITY = ["122157", "DCM", "Probability"]
NO_UNITS = ["1", "UCUM", "no units"]
CLASSIFICATION = ["278201002", "SCT", "Classification"]
IMAGING_PROCEDURE = ["363679005", "SCT", "Imaging procedure"]  # CID 100


def code(entry: Code | list[str] | tuple[str, str, str]) -> Code:
    """A pydicom Code from [value, scheme, meaning] (a Code is returned as it is)."""
    from pydicom.sr.coding import Code

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
