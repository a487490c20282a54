"""The contrast-phase augmentation on an image whose organs and intensities are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_bundle.tasks.ct_segmentation import RandEnhancementd

CLASSES = ["background", "aorta", "liver"]
HU_RANGE = (-1000.0, 1000.0)


def _scaled(hu):
    return (np.asarray(hu, np.float32) - HU_RANGE[0]) / (HU_RANGE[1] - HU_RANGE[0])


def _case():
    rng = np.random.default_rng(0)
    hu = rng.normal(60.0, 10.0, (1, 20, 20, 10)).astype(np.float32)  # liver-like soft tissue
    label = np.zeros((1, 20, 20, 10), np.uint8)
    label[0, 5:10, 5:10] = 1
    hu[label == 1] += 240.0  # an enhanced aorta: about 300 HU
    label[0, 12:18, 12:18] = 2
    return {"image": torch.from_numpy(_scaled(hu)), "label": torch.from_numpy(label)}


def test_an_enhanced_aorta_gets_the_drawn_mean_and_keeps_its_texture_and_nothing_else_changes():
    case = _case()
    out = RandEnhancementd("image", "label", CLASSES, classes=["aorta"], hu_target=(40.0, 40.0), prob=1.0)(case)
    aorta, rest = case["label"] == 1, case["label"] != 1
    assert abs(float(out["image"][aorta].mean()) - float(_scaled(40.0))) < 1e-5
    before, after = case["image"][aorta], out["image"][aorta]
    torch.testing.assert_close(after - after.mean(), before - before.mean())
    assert torch.equal(out["image"][rest], case["image"][rest])
    assert float(case["image"][aorta].mean()) > float(_scaled(250.0))  # the input is left alone


def test_without_a_ct_window_or_listed_classes_nothing_changes():
    case = _case()
    for transform in (
        RandEnhancementd("image", "label", CLASSES, hu_range=None, prob=1.0),  # an MRI task
        RandEnhancementd("image", "label", ["background", "grey_matter"], prob=1.0),
        RandEnhancementd("image", "label", CLASSES, classes=["aorta"], prob=0.0),
    ):
        assert torch.equal(transform(dict(case))["image"], case["image"])


def _fov_crop(task: str, **overrides):
    """The training's field-of-view crop and the pad after it, as the task's train workflow builds them."""
    from monai.bundle import ConfigParser

    from monai_bundle.apps import runner

    parser = ConfigParser()
    parser.read_config(runner.config_files(task, "train"))
    parser.read_meta(str(runner.METADATA))
    parser.update(overrides)
    crop, pad = (parser.get_parsed_content(f"train#random_transforms#{i}") for i in (0, 1))
    crop.set_random_state(seed=0)
    return crop, pad, parser.get_parsed_content("roi_size"), parser.get_parsed_content("pixdim")


def _slab_case(slices: int = 111):
    """A body-axis ramp: slice z holds image (z + 1) / slices and label z % 7 + 1 (a crop shows where it came from)."""
    z = torch.arange(slices, dtype=torch.float32)
    image = ((z + 1) / slices).expand(1, 70, 70, slices).clone()
    label = (torch.arange(slices) % 7 + 1).to(torch.uint8).expand(1, 70, 70, slices).clone()
    return {"image": image, "label": label}


def test_ct_training_crops_the_body_axis_to_partial_fields_of_view_padded_with_air():
    crop, pad, roi, pixdim = _fov_crop("ct_segmentation")
    case, lengths = _slab_case(), []
    for _ in range(200):
        out = pad(crop(dict(case)))
        image, label = out["image"][0, 0, 0], out["label"][0, 0, 0]
        assert out["image"].shape[1:3] == (70, 70) and image.shape == label.shape and image.shape[0] >= roi[2]
        body = image > 0  # padding is 0: air after the CT window's scaling
        first = int(torch.round(image[body][0] * 111)) - 1
        kept = torch.arange(first, first + int(body.sum()))
        assert torch.equal(label[body], (kept % 7 + 1).to(torch.uint8))  # image and label cropped together
        assert torch.all(label[~body] == 0)
        lengths.append(int(body.sum()))
    lengths = np.asarray(lengths)
    assert 0.35 < np.mean(lengths < 111) < 0.65  # about half the draws are cropped
    assert lengths.min() >= round(30 / pixdim[2]) and np.mean(lengths < roi[2]) > 0.15  # short slabs, padded


@pytest.mark.parametrize(
    ("task", "overrides"), [("mri_brain_segmentation", {}), ("ct_segmentation", {"fov_crop_prob": 0.0})]
)
def test_without_fov_crops_training_keeps_the_whole_field_of_view(task, overrides):
    crop, pad, roi, _ = _fov_crop(task, **overrides)
    case = _slab_case()
    for _ in range(50):
        assert torch.equal(pad(crop(dict(case)))["image"], case["image"])
