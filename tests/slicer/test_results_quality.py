"""The Slicer module's results carry the bundle's quality flag and turn `review` into a status warning."""

from __future__ import annotations

import json
import sys

from monai_bundle.apps import runner

from conftest import REPO

sys.path.insert(0, str(REPO / "MedImgExtension" / "MedImgAnalysis"))
from MedImgAnalysisLib import results, tasks  # noqa: E402

CT_TASK = tasks.builtin_tasks(runner.METADATA)["ct_segmentation"]


def test_a_review_flag_among_the_outputs_becomes_a_warning(tmp_path):
    flag = {"quality": "review", "reasons": ["body region: no chest or abdomen", "noisy: 80 HU"], "measures": {}}
    (tmp_path / "head_quality.json").write_text(json.dumps(flag))
    found = results.collect(CT_TASK, [str(tmp_path / "head_seg.nrrd"), str(tmp_path / "head_quality.json")])
    assert found.label_map == tmp_path / "head_seg.nrrd" and found.quality == "review"
    assert found.warning == "Review this result: body region: no chest or abdomen; noisy: 80 HU"


def test_ok_or_no_flag_gives_no_warning(tmp_path):
    (tmp_path / "ct_quality.json").write_text(json.dumps({"quality": "ok", "reasons": []}))
    ok = results.collect(CT_TASK, [str(tmp_path / "ct_seg.nrrd"), str(tmp_path / "ct_quality.json")])
    assert ok.quality == "ok" and ok.warning == ""
    unflagged = results.collect(CT_TASK, [str(tmp_path / "other_seg.nrrd")])  # an outside bundle's result
    assert unflagged.quality == "" and unflagged.warning == ""


def test_the_flag_beside_the_label_map_is_found_when_the_run_did_not_list_it(tmp_path):
    (tmp_path / "ct.v2_quality.json").write_text(json.dumps({"quality": "review", "reasons": ["noisy: 90 HU"]}))
    found = results.collect(CT_TASK, [str(tmp_path / "ct.v2_seg.nii.gz")])
    assert found.warning == "Review this result: noisy: 90 HU"
