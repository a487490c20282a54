"""The X-ray classification task end to end through MONAI's CLI: train, evaluate, fine-tune, infer."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from monai_bundle.apps import runner
from monai_bundle.io import read_image, read_radiograph

from conftest import REPO, bundle_args, bundle_run

TINY = {"image_size": 64, "batch_size": 32, "num_workers": 0}
LEARNING = {  # per network: enough steps to learn the set below; augmentation off to keep it short
    "seed_cnn": {"max_epochs": 100, "learning_rate": 0.001},
    "densenet121": {"max_epochs": 15, "learning_rate": 0.0005},
}


@pytest.fixture(scope="session")
def xray_set(tmp_path_factory) -> Path:
    """Synthetic radiographs (DRRs of CT phantoms; test phantoms held out) with large, dense opacities: learnable."""
    from monai_bundle.data.drr import make_phantom_xray_dataset

    root = tmp_path_factory.mktemp("xray") / "set"
    make_phantom_xray_dataset(root, n_train=400, n_test=60, size=64, seed=0, n_train_phantoms=8, opacity="pronounced")
    return root


@pytest.fixture(scope="session", params=["seed_cnn", pytest.param("densenet121", marks=pytest.mark.slow)])
def trained_xray(request, xray_set, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    out = tmp_path_factory.mktemp(f"xray-{name}")
    epochs = LEARNING[name]["max_epochs"]
    bundle_run(
        ["xray_classification_inference.json", "xray_classification_train.json"],
        dataset_dir=xray_set,
        output_dir=out,
        network_name=name,
        early_stop_patience=epochs,
        augment_prob=0.0,
        flip_prob=0.0,
        **LEARNING[name],
        **TINY,
    )
    return name, out / "models" / "model.pt"


def test_each_network_learns_the_synthetic_set(trained_xray, xray_set, tmp_path):
    name, checkpoint = trained_xray
    card = json.loads(checkpoint.with_suffix(".json").read_text())
    assert card["network"] == name and 0.0 < card["threshold"] < 1.0
    bundle_run(
        ["xray_classification_inference.json", "xray_classification_evaluate.json"],
        dataset_dir=xray_set,
        output_dir=tmp_path,
        checkpoint=checkpoint,
        network_name=name,
        image_size=TINY["image_size"],
    )
    report = json.loads((tmp_path / "report.json").read_text())
    metrics = report["metrics"]
    assert metrics["n"] == 60 and metrics["threshold"] == pytest.approx(card["threshold"])
    assert metrics["roc_auc"] > 0.9, f"{name}: test AUC {metrics['roc_auc']:.3f}"
    assert metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"] == 60
    for png in ("roc_curve.png", "confusion_matrix.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert len(rows) == 60 and {row["label"] for row in rows} == {"normal", "pneumonia"}


def test_finetune_from_trained_weights_with_few_labels(trained_xray, xray_set, tmp_path):
    name, checkpoint = trained_xray
    if name != "seed_cnn":
        pytest.skip("one network is enough to exercise the fine-tune config")
    workflow = (
        "xray_classification_inference.json",
        "xray_classification_train.json",
        "xray_classification_finetune.json",
    )
    command = bundle_args(
        workflow,
        dataset_dir=xray_set,
        output_dir=tmp_path,
        pretrained_weights=checkpoint,
        network_name=name,
        label_fraction=0.2,
        freeze_features=True,
        max_epochs=2,
        **TINY,
    )
    subprocess.run(command, check=True, cwd=REPO, capture_output=True)
    report = json.loads((tmp_path / "transfer_report.json").read_text())
    assert report["loaded"] == 8 and not report["skipped"] and not report["not_in_weights"]
    assert report["frozen_parameters"] == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]
    assert (tmp_path / "models" / "model.pt").is_file()


def test_inference_writes_table_and_heat_maps_on_the_input_grid(trained_xray, xray_set, tmp_path):
    name, checkpoint = trained_xray
    inputs = tmp_path / "in"
    inputs.mkdir()
    pictures = sorted((xray_set / "test" / "PNEUMONIA").glob("*.png"))[:2]
    for picture in pictures:
        shutil.copy(picture, inputs)
    nifti = _as_oblique_nifti(pictures[0], inputs / "oblique.nii.gz")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = tmp_path / "out"
    command = runner.bundle_command(
        "xray_classification",
        "inference",
        dataset_dir=inputs,
        output_dir=out,
        checkpoint=checkpoint,
        network_name=name,
        image_size=TINY["image_size"],
    )
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0, "a bad file must make the run exit non-zero"
    assert "broken.png" in result.stderr

    rows = {Path(row["file"]).name: row for row in csv.DictReader((out / "predictions.csv").open())}
    assert sorted(rows) == sorted([p.name for p in pictures] + ["oblique.nii.gz"])
    threshold = json.loads(checkpoint.with_suffix(".json").read_text())["threshold"]
    for name_, row in rows.items():
        probability = float(row["probability"])
        assert row["predicted_class"] == ("pneumonia" if probability >= threshold else "normal")
        assert float(row["threshold"]) == pytest.approx(threshold, abs=1e-6)
        source = read_radiograph(inputs / name_)
        heat = read_image(row["heatmap"])
        assert heat.array.shape == source.array.shape
        assert np.allclose(heat.affine, source.affine, atol=1e-5)
        assert 0.0 <= heat.array.min() and heat.array.max() <= 1.0 and heat.array.max() > 0.5
        assert Path(row["heatmap"].replace(".nii.gz", ".png")).is_file()
    assert not list(out.glob("broken*"))
    assert nifti.exists()


def _as_oblique_nifti(png: Path, target: Path) -> Path:
    """The PNG's pixels as a 2D NIfTI with rotated, anisotropic pixels (the heat map must keep that grid)."""
    import nibabel as nib

    array = read_radiograph(png).array
    angle = np.deg2rad(20)
    affine = np.eye(4)
    affine[:2, :2] = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.diag([0.7, 0.9])
    affine[:3, 3] = [-40.0, 12.5, 3.0]
    nib.save(nib.Nifti1Image(array.astype(np.float32), affine), target)
    return target


@pytest.mark.realdata
def test_shipped_weights_classify_the_real_radiograph_rg1(tmp_path):
    from monai_bundle.data.sample_data import fetch

    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(fetch("rg1"), inputs / "RG1_UNCR.dcm")
    bundle_run(["xray_classification_inference.json"], dataset_dir=inputs, output_dir=tmp_path / "out")
    (row,) = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert 0.0 <= float(row["probability"]) <= 1.0 and row["predicted_class"] in ("normal", "pneumonia")
    heat = read_image(row["heatmap"])
    source = read_radiograph(inputs / "RG1_UNCR.dcm")
    assert heat.array.shape == source.array.shape
    assert np.allclose(heat.affine, source.affine, atol=1e-5)
    assert (tmp_path / "out" / "RG1_UNCR_gradcam.png").is_file()
