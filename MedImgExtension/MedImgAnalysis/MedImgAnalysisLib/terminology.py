"""Standard terminology (DICOM / SNOMED CT codes) of the segments the module creates, in 3D Slicer's own format.

Slicer keeps a segment's terminology as one string in the segment's "TerminologyEntry" tag (vtkSegment::SetTerminology),
written by vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry (Slicer v5.10.0 and main):

    context~category~type~type modifier~region context~region~region modifier

each code as `coding scheme designator^code value^code meaning`, and `^^` for none. The codes are the bundle's own
per label in each task's "codes" block of metadata.json, which its DICOM SEG writer uses too
(monai_bundle/io/dicom_codes.py); `tasks.builtin_tasks` reads them with the labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

CONTEXT = "Segmentation category and type - DICOM master list"
"""The terminology context named in the entries: the codes are DICOM's (PS3.16 segmentation property codes)."""

REGION_CONTEXT = "Anatomic codes - DICOM master list"
"""The (empty) region's context, as in a new vtkSegment's default entry (Libs/vtkSegmentationCore/vtkSegment.cxx)."""

NO_CODE = ("", "", "")


def code_text(code: Sequence[str]) -> str:
    """`scheme^value^meaning` of a code given as [code value, coding scheme designator, code meaning]."""
    value, scheme, meaning = code
    if any(mark in part for part in code for mark in "~^"):
        raise ValueError(f"code {list(code)} contains '~' or '^', which Slicer's terminology string cannot hold")
    return f"{scheme}^{value}^{meaning}"


def entry(codes: Mapping[str, Sequence[str]]) -> str:
    """Slicer's serialized terminology entry of a segment from its 'category', 'type' and optional 'modifier'
    codes, each [code value, coding scheme designator, code meaning] as metadata.json has them; '' (Slicer keeps
    its default) without a category and a type, which Slicer's entries must have."""
    if not (codes.get("category") and codes.get("type")):
        return ""
    parts = [code_text(codes[key]) for key in ("category", "type")]
    return "~".join(
        [
            CONTEXT,
            *parts,
            code_text(codes.get("modifier", NO_CODE)),
            REGION_CONTEXT,
            code_text(NO_CODE),
            code_text(NO_CODE),
        ]
    )
