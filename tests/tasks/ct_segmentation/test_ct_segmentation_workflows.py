"""The bundle as MONAI and its users see it: conformance checks, training, evaluation, inference, DDP."""

from __future__ import annotations

import json
import shutil
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_bundle.apps import runner
from monai_bundle.io import sha256_of

from conftest import CONFIGS, REPO, bundle_args, bundle_run, run_cli
from helpers import PHANTOM_CLASSES, TINY


def test_metadata_is_valid_against_monai_schema():
    run_cli(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "verify_metadata",
            "--meta_file",
            str(CONFIGS / "metadata.json"),
            "--filepath",
            str(REPO / "tests" / "fixtures" / "meta_schema_20240725.json"),
        ]
    )


def test_shipped_weights_are_listed_with_their_sha256():
    for task, spec in runner.tasks().items():
        weights = REPO / "monai_bundle" / spec["weights"]
        assert weights.is_file(), f"{task}: {weights} missing"
        assert weights.stat().st_size <= 25 * 1024**2
        assert spec["sha256"] == sha256_of(weights), task


def test_config_labels_agree_with_metadata():
    from monai.bundle import ConfigParser

    for task, spec in runner.tasks().items():
        if "labels" not in spec:  # an image-to-image task (denoising)
            continue
        parser = ConfigParser()
        parser.read_config(runner.config_files(task, "inference" if "inference" in spec["configs"] else "sample"))
        names = parser.get_parsed_content("class_names")
        labels = [spec["labels"][key] for key in sorted(spec["labels"], key=int)]
        assert names == (labels if "0" in spec["labels"] else ["background", *labels]), task


def test_verify_net_in_out():
    run_cli(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "verify_net_in_out",
            "network_def",
            "--meta_file",
            str(CONFIGS / "metadata.json"),
            "--config_file",
            str(CONFIGS / "inference.json"),
            "--device",
            "cpu",
            "--n",
            "4",
        ]
    )


def test_ckpt_export_to_torchscript(tmp_path):
    weights = REPO / "monai_bundle" / runner.tasks()["ct_segmentation"]["weights"]
    exported = tmp_path / "model.ts"
    run_cli(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "ckpt_export",
            "network_def",
            "--filepath",
            str(exported),
            "--ckpt_file",
            str(weights),
            "--meta_file",
            str(CONFIGS / "metadata.json"),
            "--config_file",
            str(CONFIGS / "inference.json"),
        ]
    )
    scripted = torch.jit.load(str(exported))
    assert scripted(torch.zeros(1, 1, 64, 64, 64)).shape == (1, 9, 64, 64, 64)


@pytest.fixture(scope="module")
def trained_phantom_model(phantom_dataset, tmp_path_factory):
    """Train the segmentation config on synthetic phantoms through MONAI's CLI; return (output dir, checkpoint)."""
    out = tmp_path_factory.mktemp("train")
    bundle_run(
        ["inference.json", "train.json"],
        dataset_dir=phantom_dataset,
        output_dir=out,
        max_epochs=120,
        val_interval=20,
        learning_rate=0.003,
        **TINY,
    )
    checkpoint = out / "models" / "model.pt"
    assert checkpoint.is_file()
    return out, checkpoint


def test_training_learns_phantom_anatomy(trained_phantom_model, phantom_dataset, tmp_path):
    """A learning test: fails if training, the loss or the data pipeline breaks."""
    _, checkpoint = trained_phantom_model
    out = tmp_path / "eval"
    bundle_run(
        ["inference.json", "evaluate.json"], dataset_dir=phantom_dataset, output_dir=out, checkpoint=checkpoint, **TINY
    )
    report = json.loads((out / "report.json").read_text())
    dice = report["metrics"]["mean_dice"]["per_label"]
    assert set(dice) == set(PHANTOM_CLASSES[1:])
    mean = np.mean([entry["mean"] for entry in dice.values()])
    assert mean > 0.9, dice
    hd95 = report["metrics"]["hd95_mm"]["per_label"]
    assert all(entry["mean"] < 10.0 for entry in hd95.values()), hd95
    assert (out / "metrics.csv").is_file()


def _dice_per_label(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> list[float]:
    return [
        2 * np.sum((predicted == k) & (truth == k)) / (np.sum(predicted == k) + np.sum(truth == k))
        for k in range(1, num_classes)
    ]


def _stored_flipped_and_rotated(array: np.ndarray, affine: np.ndarray, axes=(0,), degrees=17.0):
    """The same anatomy stored with reversed voxel order along `axes` and a grid rotated about z.

    Reversing the voxel order is compensated in the affine (the patient is not mirrored); the rotation
    turns the patient by `degrees` in the scanner, as an oblique acquisition would.
    """
    reorder = np.eye(4)
    for axis in axes:
        reorder[axis, axis], reorder[axis, 3] = -1.0, array.shape[axis] - 1
    angle = np.deg2rad(degrees)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return np.flip(array, axes).copy(), rotation @ affine @ reorder


def test_inference_keeps_oblique_and_flipped_geometry(trained_phantom_model, phantom_dataset, tmp_path):
    """inference.json on a folder with an oblique+flipped NIfTI and an NRRD: outputs on the exact input grids."""
    from monai_bundle.io import read_header, read_image, write_image

    _, checkpoint = trained_phantom_model
    source = read_image(sorted((phantom_dataset / "imagesTr").iterdir())[0], ndim=3)
    label = read_image(sorted((phantom_dataset / "labelsTr").iterdir())[0], ndim=3)
    inputs = tmp_path / "in"
    stored, affine = _stored_flipped_and_rotated(np.asarray(source.array), source.affine)
    truth = {
        "oblique_flipped": _stored_flipped_and_rotated(np.asarray(label.array), label.affine)[0],
        "plain": np.asarray(label.array),
    }
    assert np.linalg.det(affine[:3, :3]) < 0 < np.linalg.det(source.affine[:3, :3])
    write_image(stored, affine, inputs / "oblique_flipped.nii.gz")
    write_image(source.array, source.affine, inputs / "nested" / "plain.nrrd")
    out = tmp_path / "out"
    bundle_run(["inference.json"], dataset_dir=inputs, output_dir=out, checkpoint=checkpoint, **TINY)

    for name, suffix in [("oblique_flipped", ".nii.gz"), ("plain", ".nrrd")]:
        result = out / f"{name}_seg{suffix}"
        in_path = next(inputs.rglob(f"{name}{suffix}"))
        shape_in, affine_in, _ = read_header(in_path)
        shape_out, affine_out, _ = read_header(result)
        assert shape_out == shape_in
        assert np.abs(affine_out - affine_in).max() < 1e-4
        # the same voxels get the same labels whatever the header says: a flipped or shifted result would
        # swap liver and spleen or miss the organs, and its Dice would collapse
        predicted = np.asarray(read_image(result, ndim=3).array)
        dice = _dice_per_label(predicted, truth[name], len(PHANTOM_CLASSES))
        assert min(dice) > 0.75 and np.mean(dice) > 0.85, (name, dice)
    header = nib.load(out / "oblique_flipped_seg.nii.gz").header
    assert np.allclose(header.get_sform(), nib.load(inputs / "oblique_flipped.nii.gz").header.get_sform())


def test_multi_process_training_with_torchrun(phantom_dataset, tmp_path):
    """Two DDP processes on CPU (gloo) train one epoch and save a checkpoint that loads into the plain network."""
    out = tmp_path / "ddp"
    workflow = ("inference.json", "train.json", "multi_gpu_train.json")
    command = bundle_args(workflow, dataset_dir=phantom_dataset, output_dir=out, max_epochs=2, val_interval=1, **TINY)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run_cli([*torchrun, *command[1:]], OMP_NUM_THREADS="1")
    state = torch.load(out / "models" / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in state)


def test_runner_builds_the_same_command_the_cli_takes():
    command = runner.bundle_command("mri_brain_segmentation", "inference", dataset_dir="in", output_dir="out")
    assert command[1:4] == ["-m", "monai.bundle", "run"]
    assert json.loads(command[5]) == [str(CONFIGS / "inference.json"), str(CONFIGS / "mri_brain_segmentation.json")]
    assert command[-4:] == ["--dataset_dir", "in", "--output_dir", "out"]


def test_bf16_inference_agrees_with_fp32(trained_phantom_model, phantom_dataset, tmp_path):
    """The fast path (bf16 autocast) must give the fp32 answer: per-label Dice between the two >= 0.99."""
    from monai_bundle.io import read_image

    _, checkpoint = trained_phantom_model
    image = sorted((phantom_dataset / "imagesTr").iterdir())[-1]
    results = {}
    for precision in ("fp32", "bf16"):
        bundle_run(
            ["inference.json"],
            dataset_dir=image,
            output_dir=tmp_path / precision,
            checkpoint=checkpoint,
            precision=precision,
            **TINY,
        )
        results[precision] = np.asarray(read_image(next((tmp_path / precision).iterdir()), ndim=3).array)
    dice = _dice_per_label(results["bf16"], results["fp32"], len(PHANTOM_CLASSES))
    assert min(dice) >= 0.99, dice


def test_inference_carries_on_past_a_bad_file_and_exits_nonzero(trained_phantom_model, phantom_dataset, tmp_path):
    import subprocess

    _, checkpoint = trained_phantom_model
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(sorted((phantom_dataset / "imagesTr").iterdir())[0], inputs / "good.nii.gz")
    (inputs / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    args = bundle_args(
        ["inference.json"], dataset_dir=inputs, output_dir=tmp_path / "out", checkpoint=checkpoint, **TINY
    )
    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert "broken.nii.gz" in result.stderr and "1 input(s) could not be read" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_quality.json", "good_seg.nii.gz"]
