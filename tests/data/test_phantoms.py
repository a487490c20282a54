"""Tests of the synthetic phantoms in monai_bundle.data.phantoms (fast, no data needed)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from monai_bundle.data import phantoms as ph

SEEDS = range(4)


@pytest.fixture(scope="module")
def ct_cases():
    return {seed: ph.make_ct_phantom(seed=seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def mri_cases():
    return {seed: ph.make_mri_phantom(seed=seed) for seed in SEEDS}


@pytest.mark.parametrize("make", [ph.make_ct_phantom, ph.make_mri_phantom])
def test_shapes_dtypes_affine(make):
    shape, spacing = (40, 36, 24), (2.5, 2.0, 4.0)
    image, labels, affine = make(shape=shape, spacing=spacing, seed=3)
    assert image.shape == labels.shape == shape
    assert image.dtype == np.float32 and labels.dtype == np.uint8
    assert affine.shape == (4, 4) and np.allclose(np.diag(affine)[:3], spacing)
    centre = affine @ [*((np.array(shape) - 1) / 2), 1.0]
    assert np.allclose(centre[:3], 0.0)  # volume centred on the origin
    assert nib.aff2axcodes(affine) == ("R", "A", "S")


def test_ct_label_set_is_declared(ct_cases):
    for _, labels, _ in ct_cases.values():
        assert np.unique(labels).tolist() == sorted(ph.CT_PHANTOM_LABELS)
    assert set(ph.CT_PHANTOM_HU) == set(ph.CT_PHANTOM_LABELS) - {0}


def test_mri_label_set_is_declared(mri_cases):
    for _, labels, _ in mri_cases.values():
        assert np.unique(labels).tolist() == sorted(ph.MRI_PHANTOM_LABELS)
    assert set(ph.MRI_PHANTOM_T1) == set(ph.MRI_PHANTOM_LABELS) - {0}


def test_ct_intensities_near_declared(ct_cases):
    for image, labels, _ in ct_cases.values():
        for label, hu in ph.CT_PHANTOM_HU.items():
            assert abs(image[labels == label].mean() - hu) <= 30.0, (label, hu)
        assert image.min() >= -1024 and image.max() <= 3071


def test_mri_intensities_near_declared(mri_cases):
    for image, labels, _ in mri_cases.values():
        for label, value in ph.MRI_PHANTOM_T1.items():
            assert abs(image[labels == label].mean() - value) <= 0.12 * value, (label, value)
        assert image.min() >= 0.0  # magnitude image


@pytest.mark.parametrize("make", [ph.make_ct_phantom, ph.make_mri_phantom])
def test_deterministic_per_seed(make):
    first, second, other = make(seed=7), make(seed=7), make(seed=8)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])
    assert not np.array_equal(first[0], other[0])


def test_ct_organs_inside_body():
    for seed in SEEDS:
        clean, labels, _ = ph.make_ct_phantom(seed=seed, noise_hu=0.0)
        air = clean < -950.0  # noise-free air stays within 10 HU of -1000
        organs = labels > 0
        assert not (ndimage.binary_dilation(organs, iterations=2) & air).any()
        # the body fills the field of view along k, and never touches the i/j borders
        assert not (~air[[0, -1], :, :]).any() and not (~air[:, [0, -1], :]).any()


def test_mri_white_matter_inside_grey_matter(mri_cases):
    for _, labels, _ in mri_cases.values():
        white = labels == 2
        assert not (ndimage.binary_dilation(white) & (labels == 0)).any()
        assert not (labels[[0, -1], :, :]).any()


@pytest.mark.parametrize("modality,labels", [("ct", ph.CT_PHANTOM_LABELS), ("MRI", ph.MRI_PHANTOM_LABELS)])
def test_write_msd_dataset(tmp_path, modality, labels):
    shape, spacing = (32, 32, 24), (3.0, 3.0, 4.0)
    out = ph.write_phantom_dataset(tmp_path / "ds", n=3, modality=modality, shape=shape, spacing=spacing, seed=1)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {str(k): v for k, v in labels.items()}
    assert meta["numTraining"] == 3 and meta["test"] == [] and "synthetic" in meta["description"]
    assert meta["modality"] == {"0": "CT" if modality == "ct" else "MRI"}
    expected_affine = ph.phantom_affine(shape, spacing)
    for case in meta["training"]:
        image = nib.load(out / case["image"])
        label = nib.load(out / case["label"])
        assert case["image"].startswith("./imagesTr/phantom_")
        assert image.shape == label.shape == shape
        assert np.allclose(image.affine, expected_affine)
        assert np.allclose(label.affine, expected_affine)
        assert label.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(label.dataobj))) <= set(labels)
    assert image.get_data_dtype() == (np.int16 if modality == "ct" else np.float32)


def test_write_dataset_is_deterministic_and_cases_differ(tmp_path):
    kwargs = dict(n=2, shape=(24, 24, 16), seed=5)
    first = ph.write_phantom_dataset(tmp_path / "a", **kwargs)
    second = ph.write_phantom_dataset(tmp_path / "b", **kwargs)

    def load(root, index):
        return np.asarray(nib.load(root / f"labelsTr/phantom_{index:03d}.nii.gz").dataobj)

    np.testing.assert_array_equal(load(first, 0), load(second, 0))
    assert not np.array_equal(load(first, 0), load(first, 1))


def test_write_folders_layout(tmp_path):
    out = ph.write_phantom_dataset(tmp_path, n=2, modality="mri", shape=(24, 24, 24), layout="folders")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["phantom_000.nii.gz", "phantom_001.nii.gz"]
    assert (out / "labels" / "phantom_001.nii.gz").is_file()
    assert not (out / "dataset.json").exists() and not (out / "imagesTr").exists()


def test_write_dataset_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="modality"):
        ph.write_phantom_dataset(tmp_path, modality="pet")
    with pytest.raises(ValueError, match="layout"):
        ph.write_phantom_dataset(tmp_path, layout="nnunet")
