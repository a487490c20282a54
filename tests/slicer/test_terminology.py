"""Segments get the bundle's standard codes (monai_bundle/io/dicom_codes.py) as 3D Slicer terminology strings."""

from __future__ import annotations

import json
import sys

import pytest

from monai_bundle.apps import runner
from monai_bundle.io import dicom_codes

from conftest import REPO

MODULE_DIR = REPO / "MedImgExtension" / "MedImgAnalysis"
sys.path.insert(0, str(MODULE_DIR))
from MedImgAnalysisLib import results, tasks, terminology  # noqa: E402

TASKS = tasks.builtin_tasks(runner.METADATA)


def slicer_deserialize(text: str) -> dict[str, tuple[str, str, str] | str]:
    """What vtkSlicerTerminologiesModuleLogic::DeserializeTerminologyEntry (Slicer v5.10.0 and main) accepts: seven
    '~' parts (context, category, type, modifier, region context, region, region modifier), a category other than
    '^^', category and type of three '^' parts (scheme, value, meaning)."""
    parts = text.split("~")
    assert len(parts) == 7 and parts[1] != "^^", text
    names = ("context", "category", "type", "modifier", "region context", "region", "region modifier")
    entry = dict(zip(names, parts, strict=True))
    for key in ("category", "type", "modifier", "region", "region modifier"):
        codes = tuple(entry[key].split("^"))
        assert len(codes) == 3 or key not in ("category", "type"), text
        entry[key] = codes
    return entry


def test_entries_have_slicers_serialized_format():
    lungs = terminology.entry(dicom_codes.LABEL_CODES["lungs"])
    assert lungs == (
        "Segmentation category and type - DICOM master list~SCT^91723000^Anatomical Structure"
        "~SCT^39607008^Lung~SCT^51440002^Bilateral~Anatomic codes - DICOM master list~^^~^^"
    )
    heart = slicer_deserialize(terminology.entry(dicom_codes.LABEL_CODES["heart"]))
    assert heart["type"] == ("SCT", "80891009", "Heart") and heart["modifier"] == ("", "", "")
    assert heart["region"] == ("", "", "") and heart["region context"] == terminology.REGION_CONTEXT
    with pytest.raises(ValueError, match="cannot hold"):
        terminology.entry({"category": ["1", "SCT", "a~b"], "type": ["2", "SCT", "c"]})


def test_every_segment_gets_the_codes_the_bundles_dicom_seg_writer_uses(tmp_path):
    for task in (t for t in TASKS.values() if t.kind == "segmentation"):
        segments = results.collect(task, [str(tmp_path / "input_seg.nrrd")], REPO).segments
        assert len(segments) == len(task.labels) > 0
        for segment in segments:
            entry = slicer_deserialize(segment.terminology)
            codes = dicom_codes.label_codes(segment.name)
            for key in ("category", "type", "modifier"):
                code = codes.get(key)
                expected = (code.scheme_designator, code.value, code.meaning) if code else ("", "", "")
                assert entry[key] == expected, (task.name, segment.name, key)


def test_labels_without_a_category_and_a_type_keep_slicers_default():
    assert terminology.entry({}) == terminology.entry({"type": ["80891009", "SCT", "Heart"]}) == ""


def test_another_bundles_labels_get_the_codes_of_the_same_names(tmp_path):
    configs = tmp_path / "zoo" / "configs"
    configs.mkdir(parents=True)
    channels = {"0": "background", "1": "spleen", "2": "tumour"}
    meta = {
        "network_data_format": {
            "inputs": {"image": {"type": "image"}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "channel_def": channels}},
        }
    }
    (configs / "metadata.json").write_text(json.dumps(meta))
    (configs / "inference.json").write_text("{}")
    task = tasks.other_bundle_task(tmp_path / "zoo", tasks.codes_by_name(TASKS))
    assert task.codes == {1: dicom_codes.LABEL_CODES["spleen"]}  # no code for a name the bundle does not know
    segments = results.collect(task, [str(tmp_path / "pred.nii.gz")], REPO).segments
    assert "~SCT^78961009^Spleen~" in segments[0].terminology and segments[1].terminology == ""


def test_only_the_radiograph_task_reads_colour_pictures():
    assert {name for name, task in TASKS.items() if task.reads_colour} == {"xray_classification"}
    assert tasks.suggest_task((512, 512, 133), (0, 255), TASKS, colour=True) == "xray_classification"
    zoo = tasks.Task("zoo", "classification", input_ndim=2, bundle=REPO)
    assert not zoo.reads_colour and tasks.suggest_task((64, 64, 1), (0, 255), {"zoo": zoo}, colour=True) is None
