"""A colour radiograph as 3D Slicer writes it (an RGB(A)-color NRRD of a one-slice vector volume) reads as its PNG."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from monai_bundle.io import ImageReadError, read_image, read_radiograph

from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "slicer"))
from slicer_writes import write_colour_as_slicer_does  # noqa: E402

ROWS, COLS = 7, 10
RNG = np.random.default_rng(17)
PICTURE_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # ITK (and so Slicer) and read_picture: 1 mm pixels at 0, LPS axes


def _slicer_volume(pixels: np.ndarray) -> np.ndarray:
    """A picture's pixels [rows, cols, components] as Slicer's one-slice vector volume [x, y, z, components]."""
    return pixels.transpose(1, 0, 2)[:, :, None, :]


def _png(path, pixels):
    if pixels.dtype == np.uint16:  # Pillow writes no 16-bit colour
        sitk.WriteImage(sitk.GetImageFromArray(pixels, isVector=True), str(path))
    else:
        Image.fromarray(pixels).save(path)


@pytest.mark.parametrize(("dtype", "components"), [(np.uint8, 3), (np.uint8, 4), (np.uint16, 3)])
def test_a_colour_picture_written_by_slicer_reads_as_the_picture(tmp_path, dtype, components):
    pixels = RNG.integers(0, np.iinfo(dtype).max + 1, size=(ROWS, COLS, components)).astype(dtype)
    pixels[0, 0, :3] = np.iinfo(dtype).max  # white stays 1.0
    _png(tmp_path / "picture.png", pixels)
    write_colour_as_slicer_does(_slicer_volume(pixels), PICTURE_RAS, tmp_path / "input.nrrd")
    picture, volume = read_radiograph(tmp_path / "picture.png"), read_radiograph(tmp_path / "input.nrrd")
    assert volume.array.dtype == np.float32 and volume.array.shape == (COLS, ROWS)
    np.testing.assert_array_equal(volume.array, picture.array)  # the same grey to the bit: the same prediction
    np.testing.assert_array_equal(volume.affine, picture.affine)
    assert volume.array[0, 0] == 1.0 and volume.format == "nrrd"


def test_the_colour_volume_keeps_its_grid(tmp_path):
    ras = np.array([[0.0, -0.5, 0.0, 12.0], [-0.8, 0.0, 0.0, -3.5], [0.0, 0.0, 2.5, 40.0], [0, 0, 0, 1]])
    pixels = RNG.integers(0, 256, size=(ROWS, COLS, 3)).astype(np.uint8)
    write_colour_as_slicer_does(_slicer_volume(pixels), ras, tmp_path / "oblique.nrrd")
    volume = read_radiograph(tmp_path / "oblique.nrrd")
    np.testing.assert_allclose(volume.affine, ras, atol=1e-12)
    grey = np.asarray(pixels, np.float64) @ [0.299, 0.587, 0.114] / 255
    np.testing.assert_allclose(volume.array, grey.T, atol=1e-7)

    plane = np.diag([-0.5, -0.75, 1.0, 1.0])
    write_colour_as_slicer_does(_slicer_volume(pixels)[:, :, 0], plane, tmp_path / "flat.nrrd")  # a 2D colour NRRD
    volume = read_radiograph(tmp_path / "flat.nrrd")
    np.testing.assert_allclose(volume.array, grey.T, atol=1e-7)
    np.testing.assert_array_equal(volume.affine, plane)


def test_vectors_stacks_and_colour_volumes_are_refused_with_one_line(tmp_path):
    field = RNG.normal(size=(COLS, ROWS, 1, 3)).astype(np.float32)
    write_colour_as_slicer_does(field, PICTURE_RAS, tmp_path / "field.nrrd", kind="vector")
    with pytest.raises(ImageReadError, match="3 'vector' components per voxel; a colour radiograph's are RGB-color"):
        read_radiograph(tmp_path / "field.nrrd")
    stack = RNG.integers(0, 256, size=(COLS, ROWS, 3, 3)).astype(np.uint8)
    write_colour_as_slicer_does(stack, PICTURE_RAS, tmp_path / "stack.nrrd")
    with pytest.raises(ImageReadError, match=r"is a 10x7x3 colour volume; a radiograph has one slice"):
        read_radiograph(tmp_path / "stack.nrrd")
    with pytest.raises(ImageReadError, match="vector/RGB images are not supported"):
        read_image(tmp_path / "stack.nrrd")  # volumes stay grey-only: no silent colour-to-grey for a CT task


def test_grey_nrrd_radiographs_are_read_as_before(tmp_path):
    (tmp_path / "fake.nrrd").write_bytes(b"P6 not a NRRD at all")
    with pytest.raises(ImageReadError, match="bad magic"):
        read_radiograph(tmp_path / "fake.nrrd")
    grey = RNG.integers(0, 4096, size=(COLS, ROWS, 1)).astype(np.int16)
    image = sitk.GetImageFromArray(grey.T)
    sitk.WriteImage(image, str(tmp_path / "grey.nrrd"))
    np.testing.assert_array_equal(read_radiograph(tmp_path / "grey.nrrd").array, grey[:, :, 0])  # unchanged values
