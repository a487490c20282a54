"""The quality flag's rules with known answers: synthetic CTs of a known region, modality, noise and crop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ct_phantoms import AFFINE, head, trunk
from monai.data import MetaTensor

from monai_bundle.tasks.segmentation import (
    AssessQualityd,
    quality_line,
    read_quality,
    segmentation_results,
    with_quality,
)
from monai_bundle.tasks.segmentation.quality import assess, measure, network_measures, quality_path

CT_RULES = {"organ_max_ml": {"liver": 3500}}
NO_ORGANS = {"lungs": 0.0, "liver": 0.0}


def _reasons(hu: np.ndarray, volumes=NO_ORGANS, rules=CT_RULES) -> list[str]:
    return assess(measure(hu, AFFINE), volumes, rules)


def test_a_whole_trunk_ct_is_ok():
    hu = trunk()["hu"]
    m = measure(hu, AFFINE)
    assert m["trunk_slices"] == hu.shape[2] and m["chest_slices"] == hu.shape[2] // 2
    assert 500 < m["largest_cross_section_cm2"] < 540  # the 30 x 22 cm ellipse: 518 cm²
    assert m["noise_hu"] == pytest.approx(10.0, rel=0.15)
    assert _reasons(hu, {"lungs": 2000.0, "liver": 1500.0}) == []


def test_a_head_is_not_a_chest_or_abdomen_and_its_organs_are_impossible():
    hu = head()["hu"]
    reasons = _reasons(hu, {"lungs": 40.0, "liver": 0.0})
    assert reasons[0].startswith("body region: a head (bone encloses 20")  # its skull's cavity: 207 cm²
    assert reasons[1] == "40 mL of chest/abdomen organs labelled in an image without chest or abdomen"
    assert len(_reasons(hu, {"lungs": 4.0, "liver": 0.0})) == 1  # under 5 mL: the region alone is flagged
    neck = hu.copy()
    neck[neck > 300] = 35.0  # no skull (a neck, a limb): the body's size tells it is no trunk
    assert _reasons(neck)[0].startswith("body region: no chest or abdomen (largest body cross-section 2")


def test_an_mri_is_not_a_ct():
    mri = np.clip(trunk()["hu"] + 1000, 0, None)  # an image with no negative values, like any MRI
    reasons = _reasons(mri)
    assert len(reasons) == 1 and reasons[0].startswith("not a CT in Hounsfield units")


def test_a_noisy_ct_is_flagged_for_noise_only():
    reasons = _reasons(trunk(noise_hu=100.0)["hu"], {"lungs": 2000.0, "liver": 1500.0})
    assert len(reasons) == 1 and reasons[0].startswith("noisy: 1")


def test_a_ct_cropped_inside_the_body_is_flagged_as_cropped():
    cropped = trunk()["hu"][45:95, 30:80]
    reasons = _reasons(cropped)
    assert len(reasons) == 1 and reasons[0].startswith("cropped: the field of view cuts through the body (")
    abdomen_only = trunk()["hu"][45:95, 30:80, :20]  # no lung reaches the edge: all of it is body
    assert _reasons(abdomen_only) == [
        "cropped: the field of view cuts through the body (100% of the image edge is body)"
    ]
    thin = trunk()["hu"][:, :, 20:35]  # 45 mm along the body
    assert _reasons(thin, {"lungs": 500.0, "liver": 0.0}) == ["cropped: the body spans only 45 mm along its axis"]


def test_lungs_without_aerated_lung_and_oversized_organs_are_implausible():
    abdomen = trunk()["hu"][:, :, :20]  # the lower half: no lungs
    assert _reasons(abdomen, {"lungs": 300.0, "liver": 4000.0}) == [
        "300 mL labelled lungs, but the image shows no aerated lung",
        "implausible volume: liver 4000 mL (an adult's is at most 3500)",
    ]


def test_network_measures_count_organs_outside_the_body_and_uncertainty():
    certain = np.zeros((3, 4, 1, 1), np.float32)
    certain[1] = 1.0
    body = np.array([True, True, True, False])[:, None, None]
    assert network_measures(certain, body) == {"organ_entropy": 0.0, "organ_voxels_outside_body": 0.25}
    uniform = np.full((3, 4, 1, 1), 1 / 3, np.float32)
    uniform[1] += 1e-3  # argmax: an organ everywhere, with the largest possible entropy
    assert network_measures(uniform)["organ_entropy"] == pytest.approx(1.0, abs=1e-3)
    assert assess({"organ_entropy": 0.5}, {}, {"modality": "MR"})[0].startswith("uncertain: mean softmax entropy 0.50")
    assert assess({"organ_entropy": 0.1}, {}, {"modality": "MR"}) == []  # MR: no HU or anatomy rule


def _item(tmp_path, hu, labels, probabilities=None):
    image = MetaTensor(
        torch.from_numpy(((np.clip(hu, -1000, 1000) + 1000) / 2000).astype(np.float32))[None], affine=AFFINE
    )
    pred = MetaTensor(torch.from_numpy(labels[None]), meta={"affine": torch.as_tensor(AFFINE)})
    item = {"image": image, "pred": pred, "pred_path": str(tmp_path / "case_seg.nii.gz")}
    if probabilities is not None:
        item["probabilities"] = torch.from_numpy(probabilities)
    return item


def test_assess_qualityd_writes_the_flag_beside_the_label_map_and_into_the_item(tmp_path):
    phantom = head()
    labels = np.zeros(phantom["hu"].shape, np.uint8)
    labels[40:50, 40:50, 10:20] = 1  # 1000 voxels of 27 µL: 27 mL of "lungs" in a head
    probabilities = np.stack([labels == 0, labels == 1]).astype(np.float32)
    transform = AssessQualityd(
        "pred", ["background", "lungs"], hu_range=(-1000, 1000), rules={"trunk_organs": ["lungs"]}
    )
    out = transform(_item(tmp_path, phantom["hu"], labels, probabilities))
    assert "probabilities" not in out and out["quality_path"] == str(tmp_path / "case_quality.json")
    written = json.loads((tmp_path / "case_quality.json").read_text())
    assert written == out["quality"] == read_quality(tmp_path / "case_seg.nii.gz")
    assert written["quality"] == "review" and written["volumes_ml"] == {"lungs": 27.0}
    assert written["reasons"][1] == "27 mL of chest/abdomen organs labelled in an image without chest or abdomen"
    assert [p.name for p in tmp_path.iterdir()] == ["case_quality.json"]  # written atomically: no temp file left
    assert quality_line(written).startswith("review: body region: a head")
    assert quality_line({"quality": "ok", "reasons": []}) == "ok" and quality_line(None) == "not assessed"


def test_assess_qualityd_needs_the_hu_window_for_ct_only():
    with pytest.raises(ValueError, match="hu_range"):
        AssessQualityd("pred", ["background", "grey_matter"])
    AssessQualityd("pred", ["background", "grey_matter"], rules={"modality": "MR"})


def test_the_report_and_the_analysis_event_carry_the_flag(tmp_path):
    from monai_bundle.io import write_image

    write_image(np.ones((2, 2, 2), np.uint8), np.eye(4), tmp_path / "case_seg.nii.gz")
    item = {"pred_path": str(tmp_path / "case_seg.nii.gz")}
    columns = segmentation_results(item, ["background", "lungs", "liver"])
    assert columns == {"volume_ml_lungs": 0.0, "volume_ml_liver": 0.0, "quality": "", "quality_reasons": ""}
    quality = {"quality": "review", "reasons": ["a", "b"]}
    quality_path(item["pred_path"]).write_text(json.dumps(quality))  # a result written by an earlier run: read back
    columns = segmentation_results(item, ["background", "lungs"])
    assert columns["quality"] == "review" and columns["quality_reasons"] == "a; b"
    outputs, event = with_quality([item["pred_path"]])
    assert outputs == [item["pred_path"], str(tmp_path / "case_quality.json")]
    assert event == {"quality": "review", "quality_reasons": ["a", "b"]}
    assert with_quality([str(tmp_path / "predictions.csv")]) == ([str(tmp_path / "predictions.csv")], {})


def test_quality_path_names_the_case_not_the_result():
    assert quality_path("/out/ct_seg.nii.gz").name == "ct_quality.json"
    assert quality_path("/out/ct.v2_seg.nrrd").name == "ct.v2_quality.json"
    assert quality_path("/out/ct_mask.nii", "mask").name == "ct_quality.json"


def test_a_ct_window_that_hides_air_skips_the_ct_rules(tmp_path):
    phantom = head()
    labels = np.zeros(phantom["hu"].shape, np.uint8)
    transform = AssessQualityd("pred", ["background", "lungs"], probabilities_key=None, hu_range=(-200, 300))
    quality = transform(_item(tmp_path, phantom["hu"], labels))["quality"]
    assert quality["quality"] == "ok" and quality["measures"] == {
        "ct_checks": "skipped: the intensity window [-200, 300] HU hides air"
    }
