"""medimg-suv-report: SUVmax, SUVmean, SUVpeak and volume per label of the synthetic PET series (tests/pet_series.py),
whose answers are worked out by hand; labels on another grid; pairing a folder; a failing input; the CLI."""

from __future__ import annotations

import csv
import itertools
import json
import sys

import nibabel as nib
import numpy as np
import pytest
from pet_series import BACKGROUND, HOT, LESION, ORGAN, activity, expected_affine, labels, suv_of, write_pet_series

from monai_bundle.apps.suv_report import main, peak_means, sphere_means
from monai_bundle.io import Volume, read_image

from conftest import run_cli

RTOL = 1e-4
VOXEL_ML = 2.5 * 2.0 * 3.0 / 1000


def save_labels(path, array=None, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = labels() if array is None else array
    nib.save(nib.Nifti1Image(data, expected_affine() if affine is None else affine), path)
    return path


def report(out) -> list[dict]:
    return json.loads((out / "report.json").read_text())["cases"]


def test_suv_per_label_by_hand(tmp_path):
    pet = write_pet_series(tmp_path / "pet" / "case1")
    seg = save_labels(tmp_path / "case1_seg.nii.gz")
    out = tmp_path / "out"
    assert main(["--pet", str(pet), "--labels", str(seg), "--output", str(out), "--save-suv"]) == 0
    (row,) = report(out)
    assert row["status"] == "done" and row["input"] == "case1" and row["error"] == ""
    # lesion: 40 voxels of 20,000 Bq/mL
    assert row["suv_max_label_1"] == pytest.approx(suv_of(LESION), rel=RTOL)
    assert row["suv_mean_label_1"] == pytest.approx(suv_of(LESION), rel=RTOL)
    assert row["volume_ml_label_1"] == pytest.approx(40 * VOXEL_ML)
    # organ: 96 voxels, 95 of 8,000 Bq/mL and one of 30,000
    assert row["suv_max_label_2"] == pytest.approx(suv_of(HOT), rel=RTOL)
    assert row["suv_mean_label_2"] == pytest.approx(suv_of((95 * ORGAN + HOT) / 96), rel=RTOL)
    assert row["volume_ml_label_2"] == pytest.approx(96 * VOXEL_ML)
    assert row["suv_max"] == pytest.approx(suv_of(HOT), rel=RTOL)
    # SUVpeak: a direct sum over the 1 mL sphere around every voxel of the label, written out independently
    peaks = brute_force_peaks(suv_of(1.0) * activity(), labels())
    assert row["suv_peak_label_1"] == pytest.approx(peaks[1], rel=RTOL)
    assert row["suv_peak_label_2"] == pytest.approx(peaks[2], rel=RTOL)
    assert suv_of(BACKGROUND) < row["suv_peak_label_2"] < row["suv_max_label_2"]
    written = read_image(out / "case1_suv.nii.gz")  # the SUV image on the PET's exact grid
    np.testing.assert_allclose(written.affine, expected_affine(), atol=1e-5)
    np.testing.assert_allclose(written.array, suv_of(1.0) * activity(), rtol=RTOL)
    with open(out / "report.csv", newline="") as file:
        assert float(next(csv.DictReader(file))["suv_max_label_1"]) == pytest.approx(suv_of(LESION), rel=RTOL)


def brute_force_peaks(suv: np.ndarray, label_map: np.ndarray) -> dict[int, float]:
    """Per label, the highest mean over voxel centres within 6.2035 mm (1 mL) of one of its voxels, inside the image."""
    radius = (3000 / (4 * np.pi)) ** (1 / 3)
    directions = expected_affine()[:3, :3]
    peaks = {}
    for value in (1, 2):
        best = -np.inf
        for centre in zip(*np.nonzero(label_map == value)):
            total, count = 0.0, 0
            for voxel in itertools.product(*(range(n) for n in suv.shape)):
                if np.linalg.norm(directions @ (np.array(voxel) - centre)) <= radius:
                    total, count = total + suv[voxel], count + 1
            best = max(best, total / count)
        peaks[value] = best
    return peaks


def test_sphere_mean_of_a_uniform_block_larger_than_the_sphere_is_its_value():
    array = np.zeros((20, 20, 20))
    array[4:16, 4:16, 4:16] = 3.0  # 24 mm cube at 2 mm: a 12.4 mm sphere fits inside around its centre
    array[5, 5, 5] = 10.0
    means = sphere_means(array, np.diag([2.0, 2.0, 2.0, 1.0]), 1.0)
    assert means[10, 10, 10] == pytest.approx(3.0, abs=1e-12)
    assert means[5, 5, 5] < 10.0
    # computed on the box around a mask only, the means there are the whole image's (edges included)
    suv = Volume(np.random.default_rng(0).random((20, 20, 20)), np.diag([2.0, 2.0, 3.0, 1.0]), "", "nifti")
    mask = np.zeros(suv.array.shape, bool)
    mask[0:3, 8:10, 17:20] = True
    np.testing.assert_allclose(peak_means(suv, mask)[mask], sphere_means(suv.array, suv.affine, 1.0)[mask])


def test_labels_on_a_larger_grid_are_resampled_onto_the_pet(tmp_path):
    """A label map with 3 more voxels before each axis (same spacing and directions) gives the same statistics."""
    pet = write_pet_series(tmp_path / "pet")
    padded = np.pad(labels(), ((3, 1), (3, 2), (3, 0)))
    affine = expected_affine()
    affine[:3, 3] -= affine[:3, :3] @ [3, 3, 3]
    seg = save_labels(tmp_path / "labels.nii.gz", padded, affine)
    out = tmp_path / "out"
    assert main(["--pet", str(pet), "--labels", str(seg), "--output", str(out), "--task", "ct_segmentation"]) == 0
    (row,) = report(out)
    assert "labels resampled from their 24x21x9 grid onto the PET grid" in row["note"]
    # named as ct_segmentation names labels 1 and 2
    assert row["suv_mean_lungs"] == pytest.approx(suv_of(LESION), rel=RTOL)
    assert row["suv_max_heart"] == pytest.approx(suv_of(HOT), rel=RTOL)
    assert row["volume_ml_heart"] == pytest.approx(96 * VOXEL_ML)
    assert row["suv_max_liver"] is None and row["volume_ml_liver"] == 0


def test_folder_pairing_and_a_failing_input_in_a_real_child_process(tmp_path):
    """Two PET inputs: a DICOM series with its `_seg` label map, a NIfTI without a stated unit (one line, exit 1)."""
    pets, segs, out = tmp_path / "pet", tmp_path / "seg", tmp_path / "out"
    write_pet_series(pets / "a" / "case1")
    save_labels(segs / "a" / "case1_seg.nii.gz")
    nib.save(nib.Nifti1Image(activity().astype(np.float32), expected_affine()), pets / "case2.nii.gz")
    save_labels(segs / "case2_seg.nii.gz")
    args = [sys.executable, "-m", "monai_bundle.apps.suv_report", "--pet", str(pets), "--labels", str(segs)]
    with pytest.raises(pytest.fail.Exception, match="exited 1"):
        run_cli([*args, "--output", str(out)])
    rows = {row["input"]: row for row in report(out)}
    assert rows["a/case1"]["status"] == "done" and rows["a/case1"]["labels"].endswith("a/case1_seg.nii.gz")
    assert rows["a/case1"]["suv_max_label_2"] == pytest.approx(suv_of(HOT), rel=RTOL)
    assert rows["case2.nii.gz"]["status"] == "failed"
    assert rows["case2.nii.gz"]["error"] == f"{pets / 'case2.nii.gz'}: .nii.gz carries no PET unit: state it " + (
        "(SUV, or BQML with weight_kg and dose_bq)"
    )
    stated = ["--pet-unit", "BQML", "--weight-kg", "70", "--dose-bq", "3.7e8", "--decay-s", "3600"]
    assert main([*args[3:], "--output", str(out), *stated]) == 0
    rows = {row["input"]: row for row in report(out)}
    assert rows["case2.nii.gz"]["suv_mean_label_1"] == pytest.approx(suv_of(LESION), rel=RTOL)
