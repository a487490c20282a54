"""The runner reads tasks from metadata checked against configs/medimg_tasks.schema.json; kinds are declared."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from monai_bundle import BUNDLE_ROOT
from monai_bundle.apps import batch, runner

SHIPPED = json.loads(runner.METADATA.read_text())


@pytest.fixture
def metadata_file(tmp_path, monkeypatch):
    """Point the runner at a metadata file of the test's making; the cached metadata is dropped before and after."""
    path = tmp_path / "metadata.json"
    monkeypatch.setattr(runner, "METADATA", path)
    runner.metadata.cache_clear()
    yield path
    runner.metadata.cache_clear()


def _broken(change) -> dict:
    meta = copy.deepcopy(SHIPPED)
    change(meta["medimg"]["tasks"]["ct_segmentation"])
    return meta["medimg"]


def test_the_shipped_metadata_follows_the_schema_and_the_default_bundle_is_the_package():
    assert runner.medimg_problem(SHIPPED["medimg"]) is None
    assert runner.BUNDLE_DIR == BUNDLE_ROOT and runner.root_overrides() == {}
    kinds = {task: block["kind"] for task, block in runner.tasks().items()}
    assert kinds["xray_classification"] == "classification" and kinds["mri_registration"] == "registration"


@pytest.mark.parametrize(
    "change, where, what",
    [
        (lambda t: t.update(kind="segmentaton"), "medimg.tasks.ct_segmentation.kind", "is not one of"),
        (lambda t: t.pop("kind"), "medimg.tasks.ct_segmentation", "'kind' is a required property"),
        (lambda t: t.pop("inputs"), "medimg.tasks.ct_segmentation", "'inputs' is a required property"),
        (
            lambda t: t["inputs"]["image"].update(ndim=4),
            "medimg.tasks.ct_segmentation.inputs.image.ndim",
            "is not one of",
        ),
        (lambda t: t["configs"].update(train=[]), "medimg.tasks.ct_segmentation.configs.train", "should be non-empty"),
        (lambda t: t.update(sha256="abc"), "medimg.tasks.ct_segmentation.sha256", "does not match"),
        (lambda t: t.pop("sha256"), "medimg.tasks.ct_segmentation", "'sha256' is a dependency of 'weights'"),
        (lambda t: t.update(label=t.pop("labels")), "medimg.tasks.ct_segmentation", "'label' was unexpected"),
        (lambda t: t["labels"].update(one="lungs"), "medimg.tasks.ct_segmentation.labels", "does not match"),
    ],
)
def test_each_schema_violation_is_one_line_saying_where(change, where, what):
    problem = runner.medimg_problem(_broken(change))
    assert problem.startswith(f"{where}: ") and what in problem and "\n" not in problem


def test_runner_and_batch_refuse_bad_metadata_with_one_line_naming_the_file(metadata_file, capsys):
    metadata_file.write_text(json.dumps({**SHIPPED, "medimg": _broken(lambda t: t.update(kind="segmentaton"))}))
    assert runner.main(["--print-command"]) == 2
    assert batch.main(["--input", "in", "--output", "out"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"{metadata_file}: medimg.tasks.ct_segmentation.kind: " + lines[0].split("kind: ", 1)[1]
    assert lines[1] == f"medimg-batch: {lines[0]}" and len(lines) == 2
    metadata_file.write_text("{not json")
    with pytest.raises(runner.MetadataError, match=f"^{re.escape(str(metadata_file))}: Expecting property name"):
        runner.tasks()


def test_batch_takes_the_declared_kind_not_the_name(metadata_file):
    meta = copy.deepcopy(SHIPPED)
    tasks = meta["medimg"]["tasks"]
    tasks["denoising_segmentation"] = {**tasks["ct_denoising"]}  # an image task whose name ends in segmentation
    tasks["brain_parcels"] = {**tasks["mri_brain_segmentation"]}  # a segmentation task whose name does not
    metadata_file.write_text(json.dumps(meta))
    assert batch.task_kind("denoising_segmentation") == "image" and batch.task_kind("brain_parcels") == "segmentation"
    assert batch.batch_tasks() == [  # segmentations and images (kind "image": a new volume per input)
        "brain_parcels",
        "ct_denoising",
        "ct_segmentation",
        "denoising_segmentation",
        "mri_brain_segmentation",
        "mri_super_resolution",
    ]


def test_the_bundle_folder_can_be_another_one(tmp_path):
    """MEDIMG_BUNDLE_ROOT (read once, at import) moves configs, metadata and bundle_root; unset, nothing changes."""
    code = (
        "from monai_bundle.apps import runner; "
        "print(runner.CONFIG_DIR, runner.METADATA, runner.root_overrides()['bundle_root'], sep='|')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "MEDIMG_BUNDLE_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out.split("|") == [str(tmp_path / "configs"), str(tmp_path / "configs" / "metadata.json"), str(tmp_path)]
    assert Path(runner.bundle_command("ct_segmentation", "inference")[5]).parent == BUNDLE_ROOT / "configs"
