"""In-plane resampling of training CTs to other pixel sizes: the grid and the HU scale stay exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_bundle.data import sample_data
from monai_bundle.io import read_image, write_image
from monai_bundle.tasks import ct_denoising as lowdose

# a flipped, rotated in-plane grid with 0.7 mm pixels and 2.5 mm slices
_ANGLE = np.deg2rad(20)
_AFFINE = np.array(
    [
        [-0.7 * np.cos(_ANGLE), 0.7 * np.sin(_ANGLE), 0, 120.0],
        [0.7 * np.sin(_ANGLE), 0.7 * np.cos(_ANGLE), 0, -80.0],
        [0, 0, 2.5, 30.0],
        [0, 0, 0, 1],
    ]
)


def _world(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World (x, y, z) of every voxel, [3, i, j, k]."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).reshape(3, -1)
    return (affine[:3, :3] @ index + affine[:3, 3:]).reshape(3, *shape)


def _ramp(world: np.ndarray) -> np.ndarray:
    """HU as a linear function of world position (linear interpolation reproduces it exactly)."""
    return (2.0 * world[0] - 3.0 * world[1] + 0.5 * world[2]).astype(np.float32)


@pytest.mark.parametrize("pixel_mm", [0.5, 1.1, 1.5])
def test_resampled_values_are_the_ramp_at_each_new_voxels_world_position(pixel_mm):
    shape = (60, 50, 3)
    hu = _ramp(_world(_AFFINE, shape))
    resampled, affine = lowdose.resample_in_plane(hu, _AFFINE, pixel_mm)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    assert resampled.shape[2] == 3 and np.allclose(affine[:3, 2], _AFFINE[:3, 2])  # slices untouched
    assert resampled.shape[:2] == tuple(round(n * 0.7 / pixel_mm) for n in shape[:2])
    assert np.allclose(spacing[:2], pixel_mm, rtol=0.03)  # up to rounding the field of view to whole pixels
    # directions kept; the field of view kept edge to edge (world of the outer pixel edges)
    assert np.allclose(affine[:3, :2] / spacing[:2], _AFFINE[:3, :2] / 0.7)
    edge = lambda a, n: a[:3, :3] @ (np.array([n[0], n[1], 0]) - 0.5) + a[:3, 3]  # noqa: E731
    assert np.allclose(edge(affine, resampled.shape), edge(_AFFINE, shape))
    assert np.allclose(edge(affine, (0, 0)), edge(_AFFINE, (0, 0)))
    # the HU scale and every voxel's position: the ramp at the new voxel's world position, away from the edges
    expected = _ramp(_world(affine, resampled.shape))
    margin = max(4, int(np.ceil(4 * pixel_mm / 0.7)))
    inside = (slice(margin, -margin), slice(margin, -margin))
    assert np.abs(resampled[inside] - expected[inside]).max() < 1e-2  # HU, on a ramp of about 3 HU per mm


def test_resampling_keeps_a_uniform_region_at_its_hu_and_rejects_bad_input():
    hu = np.full((40, 40, 2), 40.0, np.float32)
    resampled, _ = lowdose.resample_in_plane(hu, _AFFINE, 1.3)
    assert np.array_equal(resampled, np.full_like(resampled, 40.0))
    with pytest.raises(ValueError, match="pixel size"):
        lowdose.resample_in_plane(hu, _AFFINE, 0.0)
    with pytest.raises(ValueError, match="volume"):
        lowdose.resample_in_plane(hu[:, :, 0], _AFFINE, 1.0)


def test_pairs_at_random_pixel_sizes_share_a_grid_that_covers_the_original_field_of_view(tmp_path, monkeypatch):
    """write_pairs with pixel_mm_range: normal- and low-dose copies on one grid, the pixel size drawn from the
    range, the phantom's water disc still at 0 HU and still centred where it was in the world."""
    yy, xx = np.mgrid[:64, :64] - 31.5
    disc = xx**2 + yy**2 < 24**2
    hu = np.repeat(np.where(disc, 0.0, -1000.0)[:, :, None], 2, axis=2).astype(np.int16)
    source = tmp_path / "phantom.nii.gz"
    write_image(hu, _AFFINE, source)
    monkeypatch.setattr(sample_data, "fetch", lambda name: source)
    sources = {"train": (("phantom", 1, 1), ("phantom", 1, 1))}
    out = lowdose.write_pairs(tmp_path / "pairs", sources, 1e6, angles=90, seed=3, pixel_mm_range=(0.5, 1.5))
    spec = json.loads((out / "dataset.json").read_text())
    assert spec["settings"]["pixel_mm_range"] == [0.5, 1.5]
    centre = _AFFINE[:3, :3] @ [31.5, 31.5, 0] + _AFFINE[:3, 3]
    sizes = []
    for entry in spec["train"]:
        clean, low = read_image(out / entry["label"]), read_image(out / entry["image"])
        assert np.allclose(clean.affine, low.affine) and clean.array.shape == low.array.shape
        pixel = float(np.linalg.norm(clean.affine[:3, 0]))
        sizes.append(pixel)
        assert 0.5 * 0.97 <= pixel <= 1.5 * 1.03 and f"{pixel:.2f}mm" in entry["label"]
        water = np.asarray(clean.array) > -500
        positions = _world(clean.affine, clean.array.shape)[:, water]
        assert np.allclose(positions.mean(axis=1)[:2], centre[:2], atol=0.5 * pixel)  # the disc has not moved
        inner = np.asarray(clean.array) > -5  # well inside the disc, away from its blurred edge
        assert abs(float(np.asarray(clean.array)[inner].mean())) < 1.0
        assert abs(float(np.asarray(low.array, np.float64)[inner].mean())) < 10.0  # noise, not a bias
    assert sizes[0] != sizes[1]  # each source its own draw
    with pytest.raises(ValueError, match="pixel_mm_range"):
        lowdose.write_pairs(tmp_path / "bad", sources, 1e6, pixel_mm_range=(1.5, 0.5))
