"""`check_result_grid`: a result on a whole-number refinement of its input's grid, and nothing else, passes."""

from __future__ import annotations

import numpy as np
import pytest

from monai_bundle.io import check_result_grid, write_image


@pytest.fixture
def source(tmp_path):
    affine = np.array([[0.0, 0.9, 0.1, -20.0], [1.0, 0.0, 0.0, 5.5], [0.0, -0.1, 2.95, 40.0], [0, 0, 0, 1]])
    path = tmp_path / "thick.nii.gz"
    write_image(np.zeros((6, 7, 5), np.float32), affine, path)
    return str(path), affine


def test_a_refined_grid_keeps_origin_and_direction(source):
    path, affine = source
    fine = affine.copy()
    fine[:3, 2] /= 3
    check_result_grid(path, (6, 7, 13), fine, "refined")
    check_result_grid(path, (6, 7, 5), affine, "refined")  # refined by 1 along every axis: the grid itself
    check_result_grid(path, (6, 7, 5), affine)
    with pytest.raises(ValueError, match="differs from the input's"):
        check_result_grid(path, (6, 7, 13), fine)  # "input": the same grid only


@pytest.mark.parametrize(
    ("shape", "slice_scale", "shift_mm", "problem"),
    [
        ((6, 7, 14), 1 / 3, 0.0, "not a whole-number refinement"),  # one slice too many
        ((6, 7, 11), 1 / 2.5, 0.0, "not a whole-number refinement"),
        ((6, 7, 9), 2.0, 0.0, "not a whole-number refinement"),  # coarser
        ((6, 7, 13), 1 / 3, 1.0, "origin/direction differ"),  # the first voxel centre moved
    ],
)
def test_anything_else_is_refused_with_one_line_naming_the_input(source, shape, slice_scale, shift_mm, problem):
    path, affine = source
    other = affine.copy()
    other[:3, 2] *= slice_scale
    other[2, 3] += shift_mm
    with pytest.raises(ValueError, match=problem) as error:
        check_result_grid(path, shape, other, "refined")
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)
