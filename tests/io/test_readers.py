"""Tests for monai_bundle.io.readers: LoadImaged and Invertd, writing back; no fallback to other readers."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd, Spacingd

from monai_bundle.io import ImageReadError, MedImgReader, read_image, write_image

from helpers import (
    COLS,
    FORMAT_OF_SUFFIX,
    GEOMETRIES,
    ROWS,
    assert_affine,
    expected_dicom_affine,
    image_data,
    nifti_bytes,
    write_file,
)
from helpers import write_dicom_series as _write_series


def _pipeline():
    keys = ["image"]
    return Compose(
        [
            LoadImaged(keys=keys, reader=MedImgReader),
            EnsureChannelFirstd(keys=keys),
            Orientationd(keys=keys, axcodes="RAS"),
            Spacingd(keys=keys, pixdim=2.0, mode="nearest"),
        ]
    )


@pytest.mark.parametrize(
    ("suffix", "geometry"), [(".nii.gz", "oblique"), (".nrrd", "flipped"), (".mha", "anisotropic"), (".nii.gz", "2d")]
)
def test_monai_load_invert_and_write_back(tmp_path, suffix, geometry):
    data, affine = image_data(geometry), GEOMETRIES[geometry]
    source = tmp_path / f"input{suffix}"
    write_image(data, affine, source)
    pre = _pipeline()
    item = pre({"image": str(source)})
    meta = item["image"].meta
    assert meta["source_format"] == FORMAT_OF_SUFFIX[suffix] and meta["space"] == "RAS"
    assert meta["filename_or_obj"] == str(source)
    np.testing.assert_allclose(np.asarray(meta["original_affine"]), affine, atol=1e-9)
    assert tuple(np.asarray(meta["spatial_shape"])) == data.shape

    item["pred"] = item["image"].clone()
    inverted = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True)(item)["pred"]
    assert tuple(inverted.shape) == (1, *data.shape)
    np.testing.assert_allclose(inverted.affine.numpy(), affine, atol=1e-4)

    out = tmp_path / f"pred{suffix}"
    write_image(inverted[0].numpy().astype(np.int16), inverted.affine.numpy(), out, reference=source)
    assert_affine(read_image(out).affine, read_image(source).affine, suffix)


def test_monai_dicom_folder_and_channel_stack(tmp_path):
    folder = _write_series(tmp_path / "ct")
    image = LoadImaged(keys="image", reader=MedImgReader)({"image": str(folder)})["image"]
    assert isinstance(image, torch.Tensor) and tuple(image.shape) == (COLS, ROWS, 6)
    np.testing.assert_allclose(image.affine.numpy(), expected_dicom_affine(), atol=1e-6)
    write_image(image_data("anisotropic"), GEOMETRIES["anisotropic"], tmp_path / "a.nii.gz")
    write_image(image_data("anisotropic") + 1, GEOMETRIES["anisotropic"], tmp_path / "b.nrrd")
    stacked = LoadImaged(keys="image", reader=MedImgReader, ensure_channel_first=True)(
        {"image": [str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nrrd")]}
    )["image"]
    assert tuple(stacked.shape) == (2, 5, 6, 7)


def test_monai_does_not_fall_back_to_other_readers(tmp_path):
    corrupt = bytearray(gzip.compress(nifti_bytes()))
    corrupt[-6] ^= 0xFF
    path = write_file(tmp_path / "crc.nii.gz", bytes(corrupt))
    with pytest.raises(ImageReadError, match="gzip CRC check failed"):
        LoadImaged(keys="image", reader=MedImgReader)({"image": str(path)})


def test_reader_verify_suffix(tmp_path):
    reader = MedImgReader()
    assert reader.verify_suffix("a.nii.gz") and reader.verify_suffix(["a.nrrd", "b.mha"])
    assert not reader.verify_suffix("a.png")
