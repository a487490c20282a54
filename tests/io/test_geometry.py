"""Tests for monai_bundle.io.geometry: the LPS/RAS convention, 2D grids' plane normal, voxel spacing."""

from __future__ import annotations

import numpy as np

from monai_bundle.io import Volume, lps_to_ras, ras_to_lps, read_image, write_image

from helpers import GEOMETRIES


def test_lps_ras_conversion_is_an_involution():
    affine = GEOMETRIES["oblique"]
    np.testing.assert_array_equal(lps_to_ras(affine)[2:], affine[2:])
    np.testing.assert_array_equal(lps_to_ras(affine)[:2], -affine[:2])
    np.testing.assert_array_equal(ras_to_lps(lps_to_ras(affine)), affine)


def test_2d_affine_gets_a_unit_normal(tmp_path):
    affine = np.array([[0.5, 0, 0, 1], [0, -0.5, 0, 2], [0, 0, 0, 0], [0, 0, 0, 1]])  # third column unset
    write_image(np.zeros((3, 4), np.uint8), affine, tmp_path / "flat.nii.gz")
    expected = affine.copy()
    expected[2, 2] = -1.0  # cross(+x, -y)
    np.testing.assert_array_equal(read_image(tmp_path / "flat.nii.gz").affine, expected)


def test_volume_spacing():
    volume = Volume(np.zeros((2, 3)), GEOMETRIES["2d"], "x.nii", "nifti")
    assert volume.spacing == (0.5, 0.75)
