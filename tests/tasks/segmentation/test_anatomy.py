"""The CT anatomy rules on synthetic CTs whose body, lungs and bowel gas are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ct_phantoms import AFFINE, VOXEL_ML, head, trunk
from monai.data import MetaTensor

from monai_bundle.tasks.segmentation import ChestOnlyOrgansd, LungsOnlyInAird, MaskOutsideBodyd, NoTrunkOrgansInHeadd
from monai_bundle.tasks.segmentation.anatomy import body_mask, bone_cavity_cm2, lung_air, rule_out, to_hu

HU_RANGE = (-1000.0, 1000.0)


def _scaled(hu: np.ndarray) -> MetaTensor:
    """The image as the CT preprocessing hands it on: HU window -1000..1000 scaled to 0..1, channel first."""
    return MetaTensor(
        torch.from_numpy(((np.clip(hu, *HU_RANGE) + 1000) / 2000).astype(np.float32))[None], affine=AFFINE
    )


def test_to_hu_undoes_the_intensity_window():
    hu = np.array([-1000.0, -500.0, 0.0, 1000.0])
    assert np.allclose(to_hu(_scaled(hu).numpy()[0], HU_RANGE), hu, atol=1e-3)


def test_body_mask_is_the_body_with_its_lungs_and_gas_and_not_the_table():
    phantom = trunk()
    body = body_mask(phantom["hu"])
    assert not (body & phantom["table"]).any()
    assert (body == phantom["body"]).mean() > 0.998  # the outline may differ by a voxel where noise meets the edge
    assert body[phantom["lungs"]].all() and body[phantom["gas"]].all()


def test_body_mask_keeps_a_scan_of_one_slice():
    one_slice = head()["hu"][:, :, :1]
    assert body_mask(one_slice).sum() == head()["body"][:, :, :1].sum()


def test_lung_air_finds_the_aerated_lungs_but_not_bowel_gas_or_a_head():
    phantom = trunk()
    lungs = lung_air(phantom["hu"], body_mask(phantom["hu"]), VOXEL_ML)
    assert lungs[phantom["lungs"]].mean() > 0.99
    assert not lungs[phantom["gas"]].any()
    skull = head()["hu"]
    assert not lung_air(skull, body_mask(skull), VOXEL_ML).any()


def test_rule_out_gives_the_next_most_likely_class():
    probabilities = torch.tensor([[0.1], [0.6], [0.3]])  # background, lungs, liver at one voxel
    out = rule_out(probabilities, np.array([True]), [1])
    assert torch.allclose(out[:, 0], torch.tensor([0.25, 0.0, 0.75]))
    assert torch.allclose(rule_out(probabilities, np.array([True]))[:, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(rule_out(probabilities, np.array([False]), [1]), probabilities)


def _lungs_everywhere(shape) -> MetaTensor:
    """Probabilities that call every voxel lungs (0.6), else liver (0.3), else background (0.1)."""
    probabilities = torch.empty((3, *shape))
    probabilities[0], probabilities[1], probabilities[2] = 0.1, 0.6, 0.3
    return MetaTensor(probabilities, affine=AFFINE)


def test_mask_outside_body_leaves_no_organ_in_the_air_or_on_the_table():
    phantom = trunk()
    out = MaskOutsideBodyd("pred", hu_range=HU_RANGE)(
        {"pred": _lungs_everywhere(phantom["hu"].shape), "image": _scaled(phantom["hu"])}
    )
    labels = out["pred"].argmax(0).numpy()
    assert (labels[~body_mask(phantom["hu"])] == 0).all() and (labels[phantom["body"]] > 0).mean() > 0.99
    assert (labels[phantom["table"]] == 0).all()


def test_lungs_only_in_air_hands_other_voxels_to_the_next_class():
    phantom = trunk()
    item = {"pred": _lungs_everywhere(phantom["hu"].shape), "image": _scaled(phantom["hu"])}
    labels = (
        LungsOnlyInAird("pred", ["background", "lungs", "liver"], hu_range=HU_RANGE, margin_voxels=0)(item)["pred"]
        .argmax(0)
        .numpy()
    )
    assert (labels[phantom["lungs"]] == 1).mean() > 0.99
    assert (labels[phantom["gas"]] == 2).all()  # bowel gas is no lung: the next class wins
    assert (labels[phantom["body"] & ~phantom["lungs"]] != 1).all()


def test_chest_only_organs_leaves_the_heart_beside_the_lungs_and_nowhere_else():
    phantom = trunk()
    shape = phantom["hu"].shape
    probabilities = torch.zeros((3, *shape))
    probabilities[0], probabilities[1], probabilities[2] = 0.1, 0.6, 0.3  # "heart" everywhere, else liver
    item = {"pred": MetaTensor(probabilities, affine=AFFINE), "image": _scaled(phantom["hu"])}
    out = (
        ChestOnlyOrgansd("pred", ["background", "heart", "liver"], hu_range=HU_RANGE, margin_mm=6.0)(item)["pred"]
        .argmax(0)
        .numpy()
    )
    first_chest_slice = shape[2] // 2  # the phantom's lungs fill the upper half
    assert (out[:, :, first_chest_slice - 2 :] == 1).all()  # the chest and a 6 mm (two-slice) margin below it
    assert (out[:, :, : first_chest_slice - 2] == 2).all()  # below: the heart is ruled out, the next class wins


PIXEL_CM2 = float(AFFINE[0, 0] * AFFINE[1, 1]) / 100.0


def test_bone_cavity_is_a_skulls_and_not_a_trunks():
    phantom = head()
    assert bone_cavity_cm2(phantom["hu"], PIXEL_CM2) == pytest.approx(np.pi * 7.4 * 8.9, rel=0.05)  # 207 cm²
    assert bone_cavity_cm2(trunk()["hu"], PIXEL_CM2) == 0.0  # its spine is solid bone, its ribs leave gaps
    fat = phantom["hu"].copy()
    fat[(fat > -500) & (fat < 500)] = -100.0  # the same ring around fat: no skull
    assert bone_cavity_cm2(fat, PIXEL_CM2) == 0.0
    cut = phantom["hu"].copy()
    cut[:, 40:50] = -1000.0  # the ring opened on both sides: nothing enclosed
    assert bone_cavity_cm2(cut, PIXEL_CM2) == 0.0


def _liver_over_bone(shape) -> MetaTensor:
    """Probabilities that call every voxel liver (0.6), else bone (0.3), else background (0.1)."""
    probabilities = torch.empty((3, *shape))
    probabilities[0], probabilities[1], probabilities[2] = 0.1, 0.6, 0.3
    return MetaTensor(probabilities, affine=AFFINE)


def test_no_trunk_organs_in_a_head_but_in_a_scan_that_reaches_the_lungs():
    rule = NoTrunkOrgansInHeadd("pred", ["background", "liver", "bone"], hu_range=HU_RANGE)
    skull = head()["hu"]
    out = rule({"pred": _liver_over_bone(skull.shape), "image": _scaled(skull)})["pred"].argmax(0).numpy()
    assert (out == 2).all()  # the liver ruled out everywhere: the next class wins
    body = trunk()["hu"]
    body[25:115, 10:100, -6:] = skull[:, :, :6]  # a head above the chest: the lungs are in the image
    item = {"pred": _liver_over_bone(body.shape), "image": _scaled(body)}
    assert rule(item)["pred"] is item["pred"]
    item = {"pred": _liver_over_bone(skull.shape), "image": _scaled(skull)}
    assert NoTrunkOrgansInHeadd("pred", ["background", "grey_matter"], hu_range=HU_RANGE)(item)["pred"] is item["pred"]
    mri = np.select([skull > 500, skull > -500], [800.0, 100.0], 0.0)  # a bright rim, no air, no fat: an MRI
    item = {"pred": _liver_over_bone(mri.shape), "image": _scaled(mri)}
    assert rule(item)["pred"] is item["pred"]


def test_classes_the_task_does_not_have_are_left_alone():
    phantom = trunk()
    item = {"pred": _lungs_everywhere(phantom["hu"].shape), "image": _scaled(phantom["hu"])}
    for transform in (
        LungsOnlyInAird("pred", ["background", "liver", "spleen"], hu_range=HU_RANGE),
        ChestOnlyOrgansd("pred", ["background", "liver", "spleen"], hu_range=HU_RANGE),
    ):
        assert transform(item)["pred"] is item["pred"]


def test_a_window_that_hides_air_turns_the_anatomy_rules_off():
    phantom = trunk()
    item = {"pred": _lungs_everywhere(phantom["hu"].shape), "image": _scaled(phantom["hu"])}
    window = (-200.0, 300.0)  # a soft-tissue window: air, lung and fat all read -200
    for transform in (
        MaskOutsideBodyd("pred", hu_range=window),
        LungsOnlyInAird("pred", ["background", "lungs", "liver"], hu_range=window),
        ChestOnlyOrgansd("pred", ["background", "heart", "liver"], hu_range=window),
        NoTrunkOrgansInHeadd("pred", ["background", "lungs", "liver"], hu_range=window),
    ):
        assert transform(item)["pred"] is item["pred"]
