"""MRI super-resolution through every way in: train and evaluate (MONAI's CLI) on a synthetic volume with a
known answer, then infer onto the exact fine grid of oblique, anisotropic NIfTI and NRRD inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from monai_bundle.io import ImageReadError, read_header, read_image, write_image
from monai_bundle.tasks.mri_super_resolution import degrade, fine_target, thick_affine

from conftest import bundle_run

TASK = ["mri_super_resolution_inference.json"]
TINY = {
    "patch_size": [32, 32],
    "patches_per_volume": 8,
    "batch_size": 8,
    "max_epochs": 12,
    "epoch_length": 10,
    "g_learning_rate": 0.002,
    "network_def#channels": [8, 16, 32],
    "network_def#strides": [2, 2],
    "slice_size": [64, 64],
}
SMALL = {key: TINY[key] for key in ("network_def#channels", "network_def#strides", "slice_size")}
"""The tiny network's shape, for the workflows that load its weights."""


def _texture(seed: int, shape=(40, 40, 61)) -> np.ndarray:
    """A smooth random texture (noise blurred by sigma 1.5 voxels), 1 mm isotropic, values about 0..100."""
    noise = gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.5)
    return (50 + 50 * noise / noise.std()).astype(np.float32)


def _oblique_affine(spacing) -> np.ndarray:
    rotation = np.linalg.qr(np.random.default_rng(7).normal(size=(3, 3)))[0]
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = [-31.5, 12.25, 80.0]
    return affine


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """dataset.json of thick (3 mm, Gaussian slice profile) / fine (1 mm) pairs of two different textures."""
    root = tmp_path_factory.mktemp("sr_pairs")
    spec = {}
    for split, seed in (("train", 0), ("test", 1)):
        fine = _texture(seed)
        write_image(degrade(fine, 2, 3), thick_affine(np.eye(4), 2, 3), root / split / "thick.nii.gz")
        write_image(fine_target(fine, 2, 3), np.eye(4), root / split / "fine.nii.gz")
        spec[split] = [{"image": f"{split}/thick.nii.gz", "label": f"{split}/fine.nii.gz"}]
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def test_pix2pix_training_learns_what_interpolation_cannot_on_a_held_out_texture():
    """In-process, seconds: the generator (the task's network shape, tiny) trained by Pix2PixTrainer on one texture's
    slices across the slice axis beats its own input, the cubic B-spline upsampling, on another texture by 0.5 dB:
    the slice profile's attenuation is learnable, and interpolation leaves it."""
    from monai.networks.nets import PatchDiscriminator

    from monai_bundle.engines import Pix2PixTrainer
    from monai_bundle.tasks.ct_denoising import ResidualUNet
    from monai_bundle.tasks.ct_denoising.metrics import scores
    from monai_bundle.tasks.mri_super_resolution import upsample

    def planes(seed):  # [j, 1, i, k] planes holding the slice axis k: cubic B-spline input and fine target, scaled
        fine = _texture(seed)
        thick = degrade(fine, 2, 3)
        scale = np.percentile(thick, 99.5)
        cubic, target = upsample(thick, 2, 3, 3) / scale, fine_target(fine, 2, 3) / scale
        as_planes = lambda v: torch.from_numpy(np.ascontiguousarray(np.moveaxis(v[:, :, :56], 1, 0)[:, None]))  # noqa: E731
        return as_planes(cubic), as_planes(target)

    torch.manual_seed(0)
    inputs, targets = planes(0)
    generator = ResidualUNet(2, (8, 16, 32), (2, 2), residual_scale=0.02)
    discriminator = PatchDiscriminator(2, 16, 2, num_layers_d=2, norm="INSTANCE")
    batches = [{"image": inputs[i : i + 8], "label": targets[i : i + 8]} for i in range(0, 40, 8)]
    trainer = Pix2PixTrainer(
        "cpu",
        30,
        batches,
        generator,
        discriminator,
        torch.optim.Adam(generator.parameters(), 2e-3, betas=(0.5, 0.999)),
        torch.optim.Adam(discriminator.parameters(), 1e-4, betas=(0.5, 0.999)),
        adversarial_weight=0.05,
        precision="fp32",
    )
    trainer.run()  # 150 steps
    generator.eval()
    cubic, fine = planes(1)
    with torch.no_grad():
        network = generator(cubic)
    as_volume = lambda x: np.moveaxis(x[:, 0].numpy(), 0, 1)  # noqa: E731 - [i, j, k] again, scored per k slice
    by_network, by_cubic = (scores(as_volume(x), as_volume(fine), (0.0, 1.0)) for x in (network, cubic))
    assert by_network["psnr_db"] > by_cubic["psnr_db"] + 0.5, (by_network, by_cubic)
    assert by_network["ssim"] > by_cubic["ssim"], (by_network, by_cubic)


@pytest.mark.slow
def test_a_short_training_beats_interpolation_on_a_held_out_texture(pairs, tmp_path):
    """The texture's detail across the thick slices is attenuated by the slice profile, which interpolation cannot
    undo and the network learns to: on another texture it must beat trilinear and cubic B-spline in PSNR."""
    bundle_run([*TASK, "mri_super_resolution_train.json"], dataset_dir=pairs, output_dir=tmp_path / "train", **TINY)
    checkpoint = tmp_path / "train" / "models" / "model.pt"
    bundle_run(
        [*TASK, "mri_super_resolution_evaluate.json"],
        dataset_dir=pairs,
        output_dir=tmp_path / "eval",
        checkpoint=checkpoint,
        **SMALL,
    )
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    [case] = report["cases"]
    assert case["trilinear"]["psnr_db"] < case["cubic B-spline"]["psnr_db"]
    assert case["network"]["psnr_db"] > case["cubic B-spline"]["psnr_db"] + 0.5, case
    assert case["network"]["ssim"] > case["trilinear"]["ssim"], case


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The task's inference as every way in runs it (engines.pipeline: analysis, Slicer's worker, medimg-batch), with
    a fresh generator whose correction is scaled by 0.001 (`residual_scale`): about the identity on the B-spline
    upsampling, so the result at the input's slices must be the input there."""
    from monai_bundle.engines.pipeline import Pipeline
    from monai_bundle.tasks.ct_denoising import ResidualUNet

    weights = tmp_path_factory.mktemp("sr_fresh") / "fresh.pt"
    torch.manual_seed(0)
    torch.save(ResidualUNet(2, SMALL["network_def#channels"], SMALL["network_def#strides"]).state_dict(), weights)
    overrides = {"checkpoint": str(weights), "device": "$torch.device('cpu')", "network_def#residual_scale": 0.001}
    return Pipeline("mri_super_resolution", {**overrides, **SMALL})


@pytest.mark.parametrize(("suffix", "axis"), [(".nii.gz", 2), (".nrrd", 0)])
def test_inference_writes_the_exact_fine_grid_and_overlays_the_input(pipeline, tmp_path, suffix, axis):
    """Oblique, anisotropic input (slice axis 2 in NIfTI, 0 in NRRD): same origin and direction, slice spacing / 3,
    and at each input voxel's position (physical mm) the result holds the input's value, better than one fine
    slice off."""
    spacing = [0.9, 1.1, 0.9]
    spacing[axis] = 3.0
    thick = np.moveaxis(degrade(_texture(2), 2, 3), 2, axis)
    source = tmp_path / f"thick{suffix}"
    write_image(thick, _oblique_affine(spacing), source)
    source_affine = read_header(source)[1]  # as the file stores it (NRRD: LPS, its own precision)
    [written] = pipeline.run_one(source, tmp_path / "out")
    assert Path(written).name == f"thick_sr{suffix}"
    result = read_image(written, ndim=3)
    expected_shape = list(thick.shape)
    expected_shape[axis] = (thick.shape[axis] - 1) * 3 + 1
    assert result.array.shape == tuple(expected_shape)
    np.testing.assert_allclose(result.affine[:3, 3], source_affine[:3, 3], atol=1e-4)  # first voxel centre
    directions = lambda a: a[:3, :3] / np.linalg.norm(a[:3, :3], axis=0)  # noqa: E731
    np.testing.assert_allclose(directions(result.affine), directions(source_affine), atol=1e-5)
    expected_spacing = np.array(spacing) / np.where(np.arange(3) == axis, 3.0, 1.0)
    np.testing.assert_allclose(result.spacing, expected_spacing, atol=1e-4)
    # physical overlay: each input voxel centre, mapped through the result's affine, is a result voxel holding its value
    index = np.stack(np.meshgrid(*map(np.arange, thick.shape), indexing="ij"), -1).reshape(-1, 3)
    world = source_affine[:3, :3] @ index.T + source_affine[:3, 3:]
    in_result = np.linalg.solve(result.affine[:3, :3], world - result.affine[:3, 3:]).T
    np.testing.assert_allclose(in_result, np.round(in_result), atol=1e-3)
    voxels = np.round(in_result).astype(int)
    error = np.abs(result.array[tuple(voxels.T)] - thick.reshape(-1)).mean()
    assert error < 0.02 * np.percentile(thick, 99.5), error
    for shift in (-1, 1):  # one fine slice off is clearly worse: the overlay is not off by a voxel
        shifted = voxels.copy()
        shifted[:, axis] = np.clip(shifted[:, axis] + shift, 0, result.array.shape[axis] - 1)
        assert np.abs(result.array[tuple(shifted.T)] - thick.reshape(-1)).mean() > 3 * error


def test_batch_reports_each_fine_grid_refuses_a_thin_slice_volume_and_resumes(pipeline, tmp_path, capsys):
    """medimg-batch over a folder (NIfTI slice axis last, NRRD slice axis first, one isotropic volume): results on
    their fine grids with shape and spacing in report.csv, one failed row, and a second run skips the done ones
    (the resume check accepts a refined grid)."""
    import csv

    from monai_bundle.apps import batch

    inputs = tmp_path / "in"
    write_image(degrade(_texture(4), 2, 3), thick_affine(_oblique_affine([1.0, 1.0, 1.0]), 2, 3), inputs / "ax.nii.gz")
    write_image(degrade(_texture(5), 0, 3), thick_affine(_oblique_affine([1.0, 1.0, 1.0]), 0, 3), inputs / "sag.nrrd")
    write_image(_texture(6, (20, 20, 20)), np.eye(4), inputs / "iso.nii.gz")
    weights = pipeline.overrides["checkpoint"]
    argv = ["--task", "mri_super_resolution", "--input", str(inputs), "--output", str(tmp_path / "out")]
    argv += ["--checkpoint", weights, "--network_def#residual_scale", "0.001"]
    argv += [part for key, value in SMALL.items() for part in (f"--{key}", json.dumps(value))]
    for expected in ("done", "skipped"):
        assert batch.main(argv) == 1  # one input failed
        with open(tmp_path / "out" / "report.csv", newline="") as file:
            rows = {row["input"]: row for row in csv.DictReader(file)}
        assert rows["ax.nii.gz"]["status"] == rows["sag.nrrd"]["status"] == expected
        assert rows["ax.nii.gz"]["shape"] == rows["sag.nrrd"]["shape"] == "40x40x61"  # (n - 1) x 3 + 1 slices
        assert rows["ax.nii.gz"]["spacing_mm"] == rows["sag.nrrd"]["spacing_mm"] == "1x1x1"
        assert rows["iso.nii.gz"]["status"] == "failed" and "not a thick-slice volume" in rows["iso.nii.gz"]["error"]
    assert not list((tmp_path / "out").glob("iso*"))


def test_bad_input_gets_one_line_naming_the_file(pipeline, tmp_path):
    """A volume whose slices are already as fine as in-plane, and a 2D image: one line each, nothing written."""
    from monai_bundle.apps.analysis import failure_message

    iso = tmp_path / "iso.nii.gz"
    write_image(_texture(3, (20, 20, 20)), np.eye(4), iso)
    flat = tmp_path / "flat.nii.gz"
    write_image(_texture(3, (20, 20, 1))[:, :, 0], np.eye(4), flat)
    for path, problem in ((iso, "would be finer than the in-plane 1 mm"), (flat, "2D")):
        with pytest.raises(RuntimeError) as error:  # MONAI wraps what a transform raised
            pipeline.run_one(path, tmp_path / "out")
        assert isinstance(error.value.__cause__, ImageReadError)
        message = failure_message(error.value)  # what analysis (Slicer) and medimg-batch report
        assert message.startswith(f"{path}: ") and problem in message and "\n" not in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.realdata
def test_slicer_command_super_resolves_a_real_thick_mri_onto_its_fine_grid(tmp_path):
    """The Slicer module's exact command with the shipped network on the held-out template made thick (3 mm axial),
    written as Slicer writes a volume: the result lies on the input's fine grid."""
    from monai_bundle.data import sample_data
    from monai_bundle.tasks.mri_super_resolution import fine_affine

    from helpers import slicer_image_task_volume

    mri = read_image(sample_data.fetch("mni6_t1"), ndim=3)
    thick, affine = degrade(mri.array, 2, 3), thick_affine(mri.affine, 2, 3)
    run, (shape, result_affine, _) = slicer_image_task_volume("mri_super_resolution", thick, affine, tmp_path)
    assert shape == (thick.shape[0], thick.shape[1], (thick.shape[2] - 1) * 3 + 1)
    np.testing.assert_allclose(result_affine, fine_affine(affine, 2, 3), atol=1e-4)
    run.finish()
