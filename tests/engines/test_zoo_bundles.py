"""Outside MONAI bundles in the Model Zoo layout (tests/zoo_bundles.py) through medimg-batch, the analysis child and
the Slicer library: outputs on the input's grid, labels as the bundle writes them, refusals in one line each."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zoo_bundles
from monai.bundle import run

from monai_bundle.apps import analysis, batch, demo
from monai_bundle.apps.analysis import PROGRESS_PREFIX
from monai_bundle.engines.pipeline import Pipeline, PipelineError
from monai_bundle.io import check_same_grid, read_header

from conftest import REPO

sys.path.insert(0, str(REPO / "MedImgExtension" / "MedImgAnalysis"))
from MedImgAnalysisLib import tasks  # noqa: E402


@pytest.fixture(scope="module")
def cts(tmp_path_factory) -> list[Path]:
    """Two small CT phantoms on anisotropic grids (shape 40x36x28), in a folder of their own."""
    from monai_bundle.data.phantoms import write_phantom_dataset

    root = tmp_path_factory.mktemp("cts")
    data = write_phantom_dataset(root / "phantoms", n=2, modality="ct", shape=(40, 36, 28), seed=0)
    (root / "in").mkdir()
    return [Path(shutil.copy(image, root / "in")) for image in sorted((data / "imagesTr").iterdir())]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    makers = {
        "plain": zoo_bundles.plain_bundle,
        "multichannel": zoo_bundles.multichannel_bundle,
        "remapped": zoo_bundles.remapped_bundle,
        "code_remapped": zoo_bundles.code_remapped_bundle,
        "needs_package": zoo_bundles.needs_package_bundle,
    }
    return {name: make(root / name) for name, make in makers.items()}


def _labels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def _on_grid(source: Path, output: Path) -> None:
    shape, affine, _ = read_header(output)
    check_same_grid(str(source), shape, affine)


def _batch(bundle: Path, source: Path, out: Path, *options: str) -> list[Path]:
    assert batch.main(["--bundle", str(bundle), "--input", str(source), "--output", str(out), "--quiet", *options]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["bundle"] == str(bundle.resolve()) and report["counts"]["done"] >= 1
    return sorted(out.rglob("*_seg.*"))


def _events(stdout: str) -> list[dict]:
    return [
        json.loads(line[len(PROGRESS_PREFIX) :]) for line in stdout.splitlines() if line.startswith(PROGRESS_PREFIX)
    ]


def test_a_zoo_bundle_gives_its_own_labels_as_integers_on_the_input_grid(bundles, cts, tmp_path):
    """The zoo's own run (`monai.bundle run`, float32 labels in a folder per case) vs ours: exact with --fast false,
    the same with --precision fp32 (boundary-only inversion), near-identical under bf16 autocast."""
    bundle, source = bundles["plain"], cts[0]
    (tmp_path / "zoo" / "imagesTs").mkdir(parents=True)
    shutil.copy(source, tmp_path / "zoo" / "imagesTs")
    run(config_file=str(bundle / "configs/inference.json"), meta_file=str(bundle / "configs/metadata.json"),
        bundle_root=str(bundle), dataset_dir=str(tmp_path / "zoo"), output_dir=str(tmp_path / "zoo_out"))  # fmt: skip
    (theirs_path,) = (tmp_path / "zoo_out").rglob("*.nii.gz")
    theirs = _labels(theirs_path)
    assert theirs.dtype == np.float32 and set(np.unique(theirs)) <= {0, 1, 2}

    (exact,) = _batch(bundle, source, tmp_path / "exact", "--fast", "false")
    (fp32,) = _batch(bundle, source, tmp_path / "fp32", "--precision", "fp32")
    (fast,) = _batch(bundle, source, tmp_path / "fast")
    for output in (exact, fp32, fast):
        _on_grid(source, output)
        assert nib.load(output).get_data_dtype() == np.uint8
    assert np.array_equal(_labels(exact), theirs)
    assert (_labels(fp32) == theirs).mean() > 0.999  # the same interpolation; float ties may round apart
    assert (_labels(fast) == theirs).mean() > 0.99
    assert len(np.unique(theirs)) == 3  # the random network does draw every label: the comparison means something


def test_the_wholebody_pattern_argmax_then_nearest_inversion_runs_exactly(bundles, cts, tmp_path):
    """wholeBody_ct_segmentation's tail (argmax, then Invertd nearest) is kept as the bundle's own steps."""
    bundle = zoo_bundles.plain_bundle(tmp_path / "wholebody_like", tail=zoo_bundles.LABELS_FIRST_TAIL)
    pipeline = Pipeline(bundle, {"precision": "fp32"})
    assert any("own postprocessing" in note for note in pipeline.notes)
    outputs = pipeline.run_one(cts[1], tmp_path / "out")
    assert outputs == [str(tmp_path / "out" / cts[1].name.replace(".nii.gz", "_seg.nii.gz"))]
    _on_grid(cts[1], Path(outputs[0]))
    assert set(np.unique(_labels(Path(outputs[0])))) <= {0, 1, 2}


def test_analysis_runs_the_given_image_not_its_neighbours_and_checks_for_slicer(bundles, cts, tmp_path, capsys):
    """The input sits beside an imagesTs/ with another image (what made the old `dataset_dir` way run the wrong one)."""
    folder = tmp_path / "scan"
    (folder / "imagesTs").mkdir(parents=True)
    source = Path(shutil.copy(cts[0], folder / "input.nii.gz"))
    shutil.copy(cts[1], folder / "imagesTs" / "other.nii.gz")
    out = tmp_path / "out"
    assert analysis.main(["--bundle", str(bundles["plain"]), "--input", str(source), "--output-dir", str(out)]) == 0
    done = _events(capsys.readouterr().out)[-1]
    assert done["stage"] == "done" and done["outputs"] == [str(out / "input_seg.nii.gz")]
    _on_grid(source, Path(done["outputs"][0]))

    task = tasks.other_bundle_task(bundles["plain"], python=sys.executable)
    assert task.labels == {1: "liver", 2: "spleen"} and task.kind == "segmentation" and task.modality == "CT"


def test_remapped_label_values_are_read_from_the_config_and_named_by_value(bundles, cts, tmp_path):
    bundle = bundles["remapped"]
    assert Pipeline(bundle).class_names == ["background", "liver", "", "", "spleen"]
    (output,) = _batch(bundle, cts[0], tmp_path / "out")
    _on_grid(cts[0], output)
    assert set(np.unique(_labels(output))) <= {0, 1, 4} and 4 in _labels(output)
    assert analysis.check_bundle(bundle)["labels"] == {"1": "liver", "4": "spleen"}  # what the Slicer library shows


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("multichannel", "the network takes 4 input channels (T1c, T1, T2, FLAIR)"),
        ("code_remapped", "its postprocessing writes label values in code (Lambdad: $lambda x: x * 2)"),
        ("needs_package", "needs Python packages that are not installed: pip install 'medimg-no-such-package>=0.7.0'"),
    ],
)
def test_bundles_we_cannot_run_are_refused_in_one_line_before_running(bundles, cts, tmp_path, capsys, name, reason):
    bundle = bundles[name]
    out = tmp_path / "out"
    assert batch.main(["--bundle", str(bundle), "--input", str(cts[0]), "--output", str(out), "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"medimg-batch: {bundle.resolve()}: " + line.split(": ", 2)[2] and reason in line
    assert not out.exists()
    assert analysis.main(["--bundle", str(bundle), "--check"]) == 1
    assert reason in _events(capsys.readouterr().out)[-1]["error"]
    if name == "multichannel":  # the Slicer library refuses it from the metadata alone, without a child
        with pytest.raises(tasks.BundleError, match="4 input channels"):
            tasks.other_bundle_task(bundle)


def test_an_nrrd_input_gets_an_nrrd_label_map_on_its_grid_on_both_paths(bundles, cts, tmp_path):
    """What Slicer and many scanners write: our reader on the fast path, the bundle's own MONAI reader when exact."""
    import SimpleITK as sitk

    (tmp_path / "in").mkdir()
    nrrd = tmp_path / "in" / "scan.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(cts[0])), str(nrrd))
    (fast,) = _batch(bundles["plain"], tmp_path / "in", tmp_path / "fast", "--precision", "fp32")
    (exact,) = _batch(bundles["plain"], tmp_path / "in", tmp_path / "exact", "--fast", "false")
    for output in (fast, exact):
        assert output.name == "scan_seg.nrrd"
        _on_grid(nrrd, output)
    agree = sitk.GetArrayFromImage(sitk.ReadImage(str(fast))) == sitk.GetArrayFromImage(sitk.ReadImage(str(exact)))
    assert agree.mean() > 0.999


def test_the_demo_takes_a_bundle_too(bundles, cts, tmp_path, capsys):
    assert demo.main(["--bundle", str(bundles["plain"]), "--input", str(cts[1]), "--output-dir", str(tmp_path)]) == 0
    output = tmp_path / cts[1].name.replace(".nii.gz", "_seg.nii.gz")
    _on_grid(cts[1], output)
    assert f"label map : {output}" in capsys.readouterr().out and (tmp_path / "phantom_001_overlay.png").is_file()


@pytest.mark.slow
def test_the_slicer_library_gets_the_engine_reason_from_its_child(bundles):
    with pytest.raises(tasks.BundleError, match="pip install 'medimg-no-such-package>=0.7.0'"):
        tasks.other_bundle_task(bundles["needs_package"], python=sys.executable)


def test_missing_or_misfit_weights_and_unknown_overrides_stop_the_run_with_exit_2(bundles, cts, tmp_path, capsys):
    bundle = Path(shutil.copytree(bundles["plain"], tmp_path / "bundle"))
    args = ["--bundle", str(bundle), "--input", str(cts[0]), "--output", str(tmp_path / "out"), "--quiet"]
    assert batch.main([*args, "--roi_sizes", "[16,16,16]"]) == 2
    assert capsys.readouterr().err.strip().endswith("unknown override --roi_sizes: " + str(
        bundle.resolve() / "configs" / "inference.json") + " has no such key")  # fmt: skip
    other = zoo_bundles.plain_bundle(tmp_path / "other")  # same layout, one more output channel
    config = json.loads((other / "configs" / "inference.json").read_text())
    config["network_def"]["out_channels"] = 4
    zoo_bundles.write_bundle(other, config, json.loads((other / "configs" / "metadata.json").read_text()))
    shutil.copy(other / "models" / "model.pt", bundle / "models" / "model.pt")
    assert batch.main(args) == 2
    assert "model.pt: does not fit the network" in capsys.readouterr().err
    (bundle / "models" / "model.pt").unlink()
    assert batch.main(args) == 2
    assert "model.pt: weight file not found" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "out").exists()
    with pytest.raises(PipelineError, match="multi-channel"):
        Pipeline(bundles["multichannel"])
