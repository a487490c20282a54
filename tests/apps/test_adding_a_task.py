"""docs/adding_a_task.md kept true: a bundle with one more task, made by its steps, is picked up everywhere.

The extra task `toy_segmentation` is a small UNet with random weights on the CT phantoms' labels: its
metadata block, its inference config (named by its id), its weights with their sha256. The runner,
medimg-batch and the Slicer library find it with nothing else changed; MEDIMG_BUNDLE_ROOT points the
tools at the copy of the bundle that holds it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from monai_bundle.apps import runner
from monai_bundle.io import read_header, sha256_of

from conftest import CONFIGS, REPO, run_cli
from helpers import PHANTOM_CLASSES

sys.path.insert(0, str(REPO / "MedImgExtension" / "MedImgAnalysis"))
from MedImgAnalysisLib import tasks as slicer_tasks  # noqa: E402

TASK = "toy_segmentation"
DOC = REPO / "monai_bundle" / "docs" / "adding_a_task.md"
SMALL = {
    "pixdim": [2.0, 2.0, 2.0],
    "roi_size": [32, 32, 32],
    "sw_batch_size": 1,
    "largest_component_labels": [],
    "network_def#channels": [4, 8, 16],
    "network_def#strides": [2, 2],
    "network_def#num_res_units": 1,
}
"""The toy task's own facts, on top of the CT task's inference config: a network small enough for a test."""


def _inference_config() -> dict:
    """The toy task's inference config: its base, declaring its facts (task id, classes, network)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(runner.config_files("ct_segmentation", "inference"))
    parser.update({"task": TASK, "class_names": PHANTOM_CLASSES, **SMALL})
    config = parser.get()
    config.pop("_meta_", None)
    return config


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A copy of the bundle's configs with the toy task added as the doc says: config, weights, metadata block."""
    from monai.bundle import ConfigParser

    root = tmp_path_factory.mktemp("bundle")
    shutil.copytree(CONFIGS, root / "configs")
    config = root / "configs" / f"{TASK}_inference.json"
    config.write_text(json.dumps(_inference_config(), indent=4) + "\n")
    parser = ConfigParser()
    parser.read_config(str(config))
    torch.manual_seed(0)
    weights = root / "models" / f"{TASK}.pt"
    weights.parent.mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), weights)
    metadata = root / "configs" / "metadata.json"
    meta = json.loads(metadata.read_text())
    meta["medimg"]["tasks"][TASK] = {
        "kind": "segmentation",
        "inputs": {"image": {"ndim": 3}},
        "description": "toy phantom segmentation (a test's random weights)",
        "modality": "CT",
        "configs": {"inference": [config.name]},
        "labels": {str(k): name for k, name in enumerate(PHANTOM_CLASSES) if k},
        "weights": f"models/{weights.name}",
        "sha256": sha256_of(weights),
    }
    metadata.write_text(json.dumps(meta, indent=4) + "\n")
    assert runner.medimg_problem(meta["medimg"]) is None
    return root


def _phantom(phantom_dataset: Path) -> Path:
    return sorted((phantom_dataset / "imagesTr").iterdir())[0]


def test_the_runner_lists_the_task_and_runs_its_inference(bundle, phantom_dataset, tmp_path):
    image = _phantom(phantom_dataset)
    command = [sys.executable, "-m", "monai_bundle.apps.runner", "--task", TASK]
    printed = run_cli([*command, "--print-command"], MEDIMG_BUNDLE_ROOT=str(bundle)).stdout
    assert str(bundle / "configs" / f"{TASK}_inference.json") in printed and f"--bundle_root {bundle}" in printed
    result = run_cli(
        [*command, "--dataset_dir", str(image), "--output_dir", str(tmp_path)], MEDIMG_BUNDLE_ROOT=str(bundle)
    )
    log = result.stdout + result.stderr  # the weights were checked against metadata's sha256:
    assert f"loaded weights {bundle / 'models' / TASK}.pt" in log and "not a shipped weight file" not in log
    output = tmp_path / image.name.replace(".nii.gz", "_seg.nii.gz")
    assert read_header(output)[0] == read_header(image)[0]


def test_medimg_batch_offers_the_task_and_runs_it(bundle, phantom_dataset, tmp_path):
    image = _phantom(phantom_dataset)
    run_cli(
        [
            sys.executable,
            "-m",
            "monai_bundle.apps.batch",
            "--task",
            TASK,
            "--input",
            str(image),
            "--output",
            str(tmp_path),
            "--quiet",
            "--device",
            "cpu",
        ],
        MEDIMG_BUNDLE_ROOT=str(bundle),
    )
    (row,) = json.loads((tmp_path / "report.json").read_text())["cases"]
    assert row["status"] == "done" and {f"volume_ml_{name}" for name in PHANTOM_CLASSES[1:]} <= set(row)


def test_the_slicer_module_offers_the_task(bundle):
    task = slicer_tasks.builtin_tasks(bundle / "configs" / "metadata.json")[TASK]
    assert task.kind == "segmentation" and task.modality == "CT"
    assert task.labels == {k: name for k, name in enumerate(PHANTOM_CLASSES) if k}


def test_the_doc_names_what_the_schema_asks_for():
    """Every key and kind of the task schema appears in the doc, so the doc follows the schema."""
    text = DOC.read_text()
    task = json.loads(runner.SCHEMA.read_text())["$defs"]["task"]
    missing = [word for word in [*task["properties"], *task["properties"]["kind"]["enum"]] if f"`{word}`" not in text]
    assert not missing, f"{DOC.name} does not mention: {missing}"
    assert "MEDIMG_BUNDLE_ROOT" in text and Path(__file__).name in text
