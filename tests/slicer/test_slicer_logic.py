"""The Slicer module's logic without Slicer: the exact child command on real files, cancel, failures, tasks."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from slicer_writes import write_colour_as_slicer_does

from monai_bundle.apps import runner
from monai_bundle.io import read_header, read_image, read_radiograph

from conftest import REPO, run_cli
from helpers import run_to_end, write_as_slicer_does

sys.path.insert(0, str(REPO / "MedImgExtension" / "MedImgAnalysis"))
from MedImgAnalysisLib import dependencies, tasks  # noqa: E402
from MedImgAnalysisLib.analysis import AnalysisRun  # noqa: E402
from MedImgAnalysisLib.process import AnalysisProcess, analysis_command, parse_line  # noqa: E402
from MedImgAnalysisLib.results import label_colour  # noqa: E402

TASKS = tasks.builtin_tasks(runner.METADATA)


def run_as_the_module_does(task: str, write_input, tmp_path: Path) -> AnalysisRun:
    """The exact command the module builds (on the CPU), run to its end; it must have results to import."""
    run = AnalysisRun(TASKS[task], write_input, sys.executable, "cpu", bundle_package_parent=REPO, temp_root=tmp_path)
    run_to_end(run)
    assert run.state == "importing", (run.error, run.log[-20:])
    return run


def test_suggested_task_follows_the_image():
    assert tasks.suggest_task((512, 512, 1), (0, 4095), TASKS) == "xray_classification"
    assert tasks.suggest_task((512, 512, 133), (-1024, 3071), TASKS) == "ct_segmentation"
    assert tasks.suggest_task((91, 109, 91), (0, 800), TASKS) == "mri_brain_segmentation"
    assert tasks.suggest_task((256, 256, 20), (0, 900), TASKS, modality="CT") == "ct_segmentation"
    assert {t.kind for t in TASKS.values()} == {"segmentation", "classification", "image"}


def test_the_module_offers_one_input_tasks_by_their_declared_kind(tmp_path):
    assert set(TASKS) == {
        "ct_segmentation",
        "mri_brain_segmentation",
        "xray_classification",
        "ct_denoising",
        "mri_super_resolution",
    }
    one, inference = {"image": {"ndim": 3}}, {"inference": ["x.json"]}
    declared = {
        "scan_segmentation": {"kind": "classification", "inputs": one, "configs": inference},  # the kind, not the name
        "maker_classification": {"kind": "synthesis", "inputs": one, "configs": inference},  # shown as volumes
        "pair": {"kind": "segmentation", "inputs": {**one, "fixed": {"ndim": 3}}, "configs": inference},
        "nothing_in": {"kind": "image", "inputs": {}, "configs": inference},
        "no_inference": {"kind": "segmentation", "inputs": one, "configs": {"train": ["t.json"]}},
        "undeclared_segmentation": {"inputs": one, "configs": inference},
    }
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps({"medimg": {"tasks": declared}}))
    offered = {name: task.kind for name, task in tasks.builtin_tasks(path).items()}
    assert offered == {"scan_segmentation": "classification", "maker_classification": "image"}


def test_another_bundle_needs_an_image_in_and_a_label_map_out(tmp_path):
    configs = tmp_path / "zoo" / "configs"
    configs.mkdir(parents=True)
    with pytest.raises(tasks.BundleError, match="no configs/metadata.json"):
        tasks.other_bundle_task(tmp_path / "zoo")
    meta = {
        "name": "spleen",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "modality": "CT"}},
            "outputs": {
                "pred": {"type": "image", "format": "segmentation", "channel_def": {"0": "background", "1": "spleen"}}
            },
        },
    }
    (configs / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(tasks.BundleError, match="no configs/inference"):
        tasks.other_bundle_task(tmp_path / "zoo")
    (configs / "inference.json").write_text("{}")
    task = tasks.other_bundle_task(tmp_path / "zoo")
    assert task.kind == "segmentation" and task.labels == {1: "spleen"} and task.bundle == tmp_path / "zoo"
    meta["network_data_format"]["outputs"]["pred"]["format"] = "classification"
    (configs / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(tasks.BundleError, match="label map"):
        tasks.other_bundle_task(tmp_path / "zoo")


def test_progress_lines_and_log_lines_are_told_apart():
    assert parse_line('MEDIMG-PROGRESS {"stage": "running", "fraction": 0.1}\n').stage == "running"
    assert parse_line("2026 INFO loading weights\n").log == "2026 INFO loading weights"
    assert parse_line("MEDIMG-PROGRESS not json").log is not None
    assert label_colour(3) == label_colour(3) and label_colour(3) != label_colour(4)


def test_dependencies_check_versions_and_install_with_argument_lists():
    versions = {"torch": "2.5.1", "monai": "1.5.1", "pytorch-ignite": "0.5.2"}
    version = lambda dist: versions.get(dist, "99.0")  # noqa: E731
    found = lambda name: None if name == "skimage" else object()  # noqa: E731
    assert dependencies.missing(found, version) == ["torch", "skimage"]  # torch too old, scikit-image absent
    versions["torch"] = "2.8.0+cu128"
    assert dependencies.missing(found, version) == ["skimage"]
    assert dependencies.release("2.8") == dependencies.release("2.8.0") and dependencies.release("2.10") > (2, 9)
    plan = dependencies.install_plan(["torch", "monai"], pytorch_extension=True, version=lambda d: "1.3.0")
    assert "PyTorch extension" in plan[0] and "monai>=1.5.1 (1.3.0 installed)" in plan[1]
    calls = []
    dependencies.install(["torch", "monai"], calls.append, install_torch=lambda rule: calls.append(("torch", rule)))
    assert calls == [("torch", ">=2.8"), ["--upgrade", "monai>=1.5.1"]]
    calls.clear()
    dependencies.install(["torch"], calls.append)
    assert calls == [["torch>=2.8"]]  # a list: Slicer's pip_install shlex-splits strings


def test_environment_versions_bundle_location_devices_and_python(tmp_path):
    from MedImgAnalysisLib import environment
    from MedImgAnalysisLib.process import (
        PythonNotFoundError,
        popen_options,
        python_slicer,
    )

    assert environment.version_problem((5, 10), (3, 12)) == ""
    assert "5.10 or later" in environment.version_problem((5, 8), (3, 9))
    module_dir = tmp_path / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    module_dir.mkdir(parents=True)
    assert environment.locate_bundle(module_dir, find_spec=lambda name: None) is None
    assert environment.locate_bundle(REPO / "MedImgExtension" / "MedImgAnalysis").how == "source"
    assert "GPU (CUDA)" not in environment.device_choices("darwin")
    assert "GPU (CUDA)" in environment.device_choices("linux")
    assert popen_options("nt")["creationflags"] & 0x08000000  # CREATE_NO_WINDOW, as launchConsoleProcess
    assert popen_options("posix") == {"start_new_session": True}
    slicer_bin = tmp_path / "Slicer" / "bin"
    slicer_bin.mkdir(parents=True)
    (slicer_bin / "PythonSlicer").write_text("")
    app = str(slicer_bin / "SlicerApp-real")
    assert python_slicer(app, which=lambda name: None) == str(slicer_bin / "PythonSlicer")
    with pytest.raises(PythonNotFoundError, match="PythonSlicer was not found"):
        python_slicer(str(tmp_path / "SlicerApp-real"), which=lambda name: None)


def test_results_tables_heat_maps_and_titles():
    from MedImgAnalysisLib.results import heat_map_threshold, numeric_columns

    rows = [{"file": "a.nrrd", "probability": "0.25", "predicted": "normal", "threshold": "0.5"}]
    assert numeric_columns(rows) == ["probability", "threshold"]
    assert heat_map_threshold((0.0, 1.0)) == (0.05, 1.0)
    assert TASKS["ct_segmentation"].title == "CT segmentation"
    assert TASKS["xray_classification"].title == "X-ray classification"


@pytest.mark.realdata
def test_module_command_segments_a_real_ct_on_its_own_grid(tmp_path):
    """The exact command the module builds, on the real CT written as the module writes it."""
    from monai_bundle.data import sample_data

    ct = read_image(sample_data.fetch("ts_ct"), ndim=3)
    run = AnalysisRun(
        TASKS["ct_segmentation"],
        lambda path: write_as_slicer_does(ct.array, ct.affine, path),
        sys.executable,
        device="cpu",
        bundle_package_parent=REPO,
        temp_root=tmp_path,
    )
    assert run.command(Path("in.nrrd"), Path("out"))[2:4] == ["-m", "monai_bundle.apps.analysis"]
    run_to_end(run)
    assert run.state == "importing", (run.error, run.log[-20:])
    results = run.results
    assert results.label_map.name == "input_seg.nrrd" and [s.name for s in results.segments][:2] == ["lungs", "heart"]
    shape, affine, _ = read_header(results.label_map)
    assert shape == ct.array.shape and np.allclose(affine, ct.affine, atol=1e-4)
    labels = np.asarray(read_image(results.label_map).array)
    assert labels.dtype == np.uint8 and {4, 8} <= set(np.unique(labels).tolist())  # liver and bone found
    run.finish()
    assert run.state == "done" and not run.workspace.path.exists()


@pytest.mark.realdata
def test_module_command_classifies_a_real_radiograph_with_a_heat_map(tmp_path):
    from monai_bundle.data import sample_data

    image = read_radiograph(sample_data.fetch("rg1"))
    volume = image.array[:, :, None]  # Slicer holds a radiograph as a one-slice volume
    affine = image.affine.copy()
    affine[:3, 2] = np.cross(affine[:3, 0], affine[:3, 1]) / np.linalg.norm(np.cross(affine[:3, 0], affine[:3, 1]))
    run = run_as_the_module_does(
        "xray_classification", lambda path: write_as_slicer_does(volume, affine, path), tmp_path
    )
    row = run.results.table[0]
    assert 0.0 <= float(row["probability"]) <= 1.0 and "threshold" in row
    heat_map = next(p for p in run.results.volumes if "gradcam" in p.name)
    shape, heat_affine, _ = read_header(heat_map)
    assert shape[:2] == volume.shape[:2] and np.allclose(heat_affine[:3, :2], affine[:3, :2], atol=1e-4)
    assert any(p.suffix == ".png" for p in run.results.pictures)
    run.finish()


PICTURE_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # a PNG in ITK, so in Slicer: 1 mm pixels at 0 on LPS axes


def _colour_chest(rows=120, cols=100) -> np.ndarray:
    """A tinted, chest-like picture [rows, cols, RGB] (bright body, two dark lung fields, noise)."""
    y, x = np.mgrid[:rows, :cols] / np.array([rows, cols])[:, None, None]
    lungs = sum(np.exp(-((x - centre) ** 2 + (y - 0.5) ** 2) / 0.02) for centre in (0.3, 0.7))
    grey = 0.75 - 0.5 * lungs + np.random.default_rng(3).normal(0, 0.03, x.shape)
    tint = np.array([1.0, 0.93, 0.8])  # a sepia scan of a film
    return np.clip(grey[..., None] * tint * 255, 0, 255).astype(np.uint8)


def test_a_colour_picture_written_by_slicer_gets_the_pngs_probability(tmp_path):
    pixels = _colour_chest()
    png = tmp_path / "chest.png"
    Image.fromarray(pixels).save(png)
    run_cli(analysis_command(sys.executable, png, tmp_path / "png", task="xray_classification", device="cpu"))
    with open(tmp_path / "png" / "predictions.csv", newline="") as file:
        from_png = next(csv.DictReader(file))

    volume = pixels.transpose(1, 0, 2)[:, :, None, :]  # Slicer's one-slice vector volume [x, y, z, RGB]
    write = lambda path: write_colour_as_slicer_does(volume, PICTURE_RAS, path)  # noqa: E731
    run = run_as_the_module_does("xray_classification", write, tmp_path)
    from_slicer = run.results.table[0]
    for column in ("probability", "predicted_class", "threshold"):
        assert from_slicer[column] == from_png[column], column
    assert 0.0 < float(from_slicer["probability"]) < 1.0
    heat = read_image(next(p for p in run.results.volumes if "gradcam" in p.name))
    png_heat = read_image(tmp_path / "png" / "chest_gradcam.nii.gz")
    assert heat.array.shape == png_heat.array.shape == (100, 120)  # on the picture's grid
    np.testing.assert_allclose(heat.affine, PICTURE_RAS, atol=1e-9)
    np.testing.assert_allclose(png_heat.affine, PICTURE_RAS, atol=1e-9)
    np.testing.assert_array_equal(heat.array, png_heat.array)
    run.finish()


def test_a_failing_run_reports_one_line_and_cleans_up(tmp_path):
    bad = lambda path: path.write_bytes(b"not an image at all")  # noqa: E731
    run = run_to_end(
        AnalysisRun(
            TASKS["ct_segmentation"], bad, sys.executable, device="cpu", bundle_package_parent=REPO, temp_root=tmp_path
        ),
        timeout=300,
    )
    assert run.state == "failed" and "input.nrrd" in run.error and "\n" not in run.error
    assert not run.workspace.path.exists()


def test_cancel_ends_the_child_and_its_children_within_two_seconds(tmp_path):
    marker = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(marker)!r}, 'w').write(str(p.pid)); "
        'print(\'MEDIMG-PROGRESS {"stage": "running", "fraction": 0.1}\', flush=True); time.sleep(60)'
    )
    process = AnalysisProcess([sys.executable, "-c", script])
    process.start()
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    grandchild = int(marker.read_text())
    started = time.monotonic()
    process.cancel()
    assert time.monotonic() - started < 0.2  # never blocks the GUI
    process.wait(2.0)
    assert time.monotonic() - started < 2.0 and process.returncode is not None
    events = []  # the reader thread reports 'exited' once the pipe closes, a moment after the process ends
    while not events or events[-1].stage != "exited":
        assert time.monotonic() - started < 2.0, f"no 'exited' event within two seconds: {events}"
        events += process.events()
        time.sleep(0.01)
    time.sleep(0.1)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a killed orphan may wait for init to reap it)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cancel_of_a_real_analysis_removes_its_temp_files(tmp_path):
    ct = np.full((64, 64, 64), -1000, np.int16)
    run = AnalysisRun(
        TASKS["ct_segmentation"],
        lambda path: write_as_slicer_does(ct, np.eye(4), path),
        sys.executable,
        device="cpu",
        bundle_package_parent=REPO,
        temp_root=tmp_path,
    )
    run.start()
    time.sleep(1.0)  # the child is importing torch/MONAI
    assert run.state == "running"
    started = time.monotonic()
    run.cancel()
    assert run.state == "cancelling" and run.percent is None
    while run.state == "cancelling" and time.monotonic() - started < 2.0:
        run.poll()
        time.sleep(0.05)
    assert run.state == "cancelled" and not run.process.running and not run.workspace.path.exists()


def test_undecodable_output_is_logged_and_the_run_still_ends(tmp_path):
    script = "import sys; sys.stdout.buffer.write(b'\\xff\\xfe bad bytes\\n'); sys.stdout.flush(); sys.exit(3)"
    process = AnalysisProcess([sys.executable, "-c", script])
    process.start()
    process.wait(10)
    deadline = time.monotonic() + 5
    events = []
    while not any(e.stage == "exited" for e in events) and time.monotonic() < deadline:
        events += process.events()
        time.sleep(0.05)
    assert events[-1].stage == "exited" and events[-1].data["returncode"] == 3
    assert any(e.log and "bad bytes" in e.log for e in events)


def test_the_command_names_the_task_or_the_bundle():
    command = analysis_command("py", Path("in.nrrd"), Path("out"), task="ct_segmentation", device="cpu")
    assert command == [
        "py",
        "-u",
        "-m",
        "monai_bundle.apps.analysis",
        "--input",
        "in.nrrd",
        "--output-dir",
        "out",
        "--task",
        "ct_segmentation",
        "--device",
        "cpu",
    ]
    assert "--bundle" in analysis_command("py", Path("in.nii.gz"), Path("out"), bundle=Path("zoo"))
