"""The contrast-phase augmentation on an image whose organs and intensities are known."""

from __future__ import annotations

import numpy as np
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
