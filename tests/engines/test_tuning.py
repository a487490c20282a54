"""medimg-tune on CT phantoms: a search with one learning rate known to learn nothing finds the good one, resumes
without re-running trials, writes an overlay that MONAI applies, and refuses bad input with one line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from monai_bundle.apps import runner, tune
from monai_bundle.engines.tuning import STUDY_NAME, TrialReporter, TuningError, search_space

from helpers import PHANTOM_CLASSES

GOOD_LR, DEAD_LR = 0.03, 1e-6
"""Adam at 1e-6 moves the tiny UNet nowhere in 10 epochs (Dice stays at its start, ~0.03); 0.03 reaches ~0.2."""

SPACE = [
    {"key": "learning_rate", "type": "categorical", "choices": [DEAD_LR, GOOD_LR]},
    {"key": "network_def#channels", "type": "categorical", "choices": [[4, 8, 16], [8, 16, 32]]},
]

TINY_TRIAL = {  # a 3-level UNet on 16^3 patches at 4 mm: one trial trains 10 epochs in ~3 s on one core
    "class_names": repr(PHANTOM_CLASSES),
    "pixdim": "[4.0,4.0,4.0]",
    "roi_size": "[16,16,16]",
    "network_def#strides": "[2,2]",
    "network_def#num_res_units": 0,
    "intensity_transform#a_min": -200,
    "intensity_transform#a_max": 300,
    "largest_component_labels": "[]",
    "samples_per_image": 4,
    "batch_size": 4,
    "num_workers": 0,
    "max_epochs": 10,
    "val_interval": 2,
    "validate#additional_metrics": "{}",
}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    """Four small CT phantoms (three train, one validates)."""
    from monai_bundle.data.phantoms import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("tune") / "ph", n=4, modality="ct", shape=(40, 40, 40))


def tune_args(
    dataset_dir, study_dir, trials: int, space_file: Path, task: str = "ct_segmentation", **overrides
) -> list[str]:
    """medimg-tune's arguments."""
    args = ["--task", task, "--dataset_dir", str(dataset_dir), "--study_dir", str(study_dir), "--trials", str(trials)]
    args += ["--space", str(space_file)]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    return args


def tune_here(args: list[str]) -> int:
    """medimg-tune in this process (no second start of torch and MONAI), its trials on one core as a child gets."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return tune.main(args)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def study(phantoms, tmp_path_factory) -> dict:
    """Two trials, then a rerun asking for four: the study folder, and the trials after each run."""
    root = tmp_path_factory.mktemp("study")
    space_file = root / "space.json"
    space_file.write_text(json.dumps(SPACE))
    study_dir = root / "study"
    runs = []
    for trials in (2, 4):
        assert tune_here(tune_args(phantoms, study_dir, trials, space_file, **TINY_TRIAL)) == 0
        loaded = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{study_dir / 'study.db'}")
        runs.append(loaded.trials)
    return {"dir": study_dir, "first": runs[0], "second": runs[1]}


def test_search_finds_the_learning_rate_that_learns(study):
    trials = study["second"]
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    by_lr = {lr: [t.value for t in trials if t.params["learning_rate"] == lr] for lr in (GOOD_LR, DEAD_LR)}
    assert by_lr[GOOD_LR] and by_lr[DEAD_LR], f"the search tried only one learning rate: {by_lr}"
    best = max(trials, key=lambda t: t.value)
    worst = min(trials, key=lambda t: t.value)
    assert best.params["learning_rate"] == GOOD_LR
    assert best.value > worst.value + 0.1, by_lr  # mean Dice: ~0.2 against ~0.03
    assert max(by_lr[DEAD_LR]) < 0.06, by_lr
    overlay = json.loads((study["dir"] / "best_overrides.json").read_text())
    assert overlay["learning_rate"] == GOOD_LR and overlay["network_def#channels"] in ([4, 8, 16], [8, 16, 32])


def test_rerun_resumes_the_study_without_rerunning_trials(study):
    first, second = study["first"], study["second"]
    assert len(first) == 2 and len(second) == 4
    for before, after in zip(first, second[:2]):
        assert (after.number, after.params, after.value) == (before.number, before.params, before.value)
        assert after.datetime_start == before.datetime_start and after.datetime_complete == before.datetime_complete
    assert sorted(p.name for p in study["dir"].glob("trial_*")) == [f"trial_{n:03d}" for n in range(4)]


def test_resuming_with_another_space_is_refused(study, phantoms, tmp_path, capsys):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE[:1]))
    assert tune_here(tune_args(phantoms, study["dir"], 5, space_file, **TINY_TRIAL)) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        line
        == f"medimg-tune: {study['dir']}: this study was run with another search space or overrides; use a new folder"
    )
    assert len(optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{study['dir'] / 'study.db'}").trials) == 4


def test_report_has_the_trials_table_and_plots(study):
    rows = list(csv.DictReader((study["dir"] / "trials.csv").open()))
    assert [row["number"] for row in rows] == ["0", "1", "2", "3"]
    assert {row["state"] for row in rows} == {"complete"} and all(float(row["seconds"]) > 0 for row in rows)
    assert [float(row["metric"]) for row in rows] == [round(t.value, 4) for t in study["second"]]
    table = (study["dir"] / "trials.md").read_text()
    assert "| number | state | learning_rate | network_def#channels | metric |" in table
    assert "metric: val_mean_dice," in table  # the train config's own key metric
    assert "Parameter importance (PED-ANOVA" in table
    for png in ("metric_over_trials.png", "param_importance.png"):
        assert (study["dir"] / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_monai_applies_the_best_overrides_after_the_train_configs(study):
    overlay = study["dir"] / "best_overrides.json"
    parser = ConfigParser()
    parser.read_config([*runner.config_files("ct_segmentation", "train"), str(overlay)])
    expected = json.loads(overlay.read_text())
    assert parser.get_parsed_content("optimizer#lr") == expected["learning_rate"]
    assert parser.get_parsed_content("network_def#channels") == expected["network_def#channels"]
    first_conv = next(m for m in parser.get_parsed_content("network_def").modules() if isinstance(m, torch.nn.Conv3d))
    assert first_conv.out_channels == expected["network_def#channels"][0]  # the network is built with them


TUNE_TASKS = sorted(task for task, spec in runner.tasks().items() if "tune" in spec["configs"])


@pytest.mark.parametrize("task", TUNE_TASKS)
def test_tune_workflow_searches_keys_of_the_task_train_config(task):
    """The tune overlay's `tune` block is what medimg-tune fills in: the same study through monai.bundle run."""
    parser = ConfigParser()
    parser.read_config(runner.config_files(task, "tune"))
    block = parser.get_parsed_content("tune")
    assert block["train_configs"] == runner.config_files(task, "train")
    keys = {parameter.key for parameter in search_space(block["space"])}
    assert {"learning_rate", "optimizer#weight_decay"} <= keys
    for key in keys:  # every searched key is in the train configs, or its component is (a constructor argument)
        assert key in parser or key.rsplit("#", 1)[0] in parser, key


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"task": "no_such_task"}, "unknown task 'no_such_task' for tuning"),
        (
            {"space": [{"key": "learning_rate", "type": "float", "low": 0, "high": 1, "log": True}]},
            "must start above 0",
        ),
    ],
    ids=["task", "space"],
)
def test_bad_task_or_space_is_one_line_and_exit_2(phantoms, tmp_path, capsys, change, expected):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(change.get("space", SPACE)))
    args = tune_args(phantoms, tmp_path / "study", 2, space_file, task=change.get("task", "ct_segmentation"))
    assert tune.main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medimg-tune: ") and expected in lines[0], lines
    assert not (tmp_path / "study").exists()


def test_missing_dataset_is_one_line_and_exit_2_from_the_command(tmp_path):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    args = tune_args(tmp_path / "missing", tmp_path / "study", 2, space_file)
    result = subprocess.run([sys.executable, "-m", "monai_bundle.apps.tune", *args], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"medimg-tune: {tmp_path / 'missing'}: dataset folder not found"]
    assert not (tmp_path / "study").exists()


def test_failed_trials_are_recorded_and_the_search_goes_on(phantoms, tmp_path, capsys):
    """A UNet of one level cannot be built: both trials fail, both are in the table, and the command says why."""
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps([{"key": "network_def#channels", "type": "categorical", "choices": [[4]]}]))
    study_dir = tmp_path / "study"
    assert tune_here(tune_args(phantoms, study_dir, 2, space_file, **TINY_TRIAL)) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("medimg-tune: every trial failed; trial 0: ") and "channels" in line, line
    rows = list(csv.DictReader((study_dir / "trials.csv").open()))
    assert [(row["number"], row["state"]) for row in rows] == [("0", "fail"), ("1", "fail")]
    assert all("channels" in row["note"] for row in rows)
    assert not (study_dir / "best_overrides.json").exists()


def test_reporter_prunes_through_optuna_and_stops_the_trainer_cleanly():
    """A trial whose validation metric stays below the median of earlier trials is pruned at its report."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))

    def fake_training(trial, metric: float) -> tuple[TrialReporter, Engine]:
        trainer, evaluator = Engine(lambda e, b: None), Engine(lambda e, b: None)
        evaluator.state.key_metric_name = "val_mean_dice"

        @evaluator.on(Events.EPOCH_COMPLETED(once=1))
        def _score(engine):  # what MONAI's evaluator computes before our handler runs
            engine.state.metrics = {"val_mean_dice": metric}

        reporter = TrialReporter(trial, trainer)
        reporter.attach(evaluator)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0]))
        trainer.run([0], max_epochs=5)
        return reporter, trainer

    good = study.ask()
    reporter, trainer = fake_training(good, 0.8)
    assert reporter.pruned_at is None and trainer.state.epoch == 5
    study.tell(good, 0.8)
    bad = study.ask()
    reporter, trainer = fake_training(bad, 0.1)
    assert reporter.pruned_at == 1 and trainer.state.epoch == 1  # stopped after its first validation
    diverged = study.ask()
    reporter, trainer = fake_training(diverged, float("nan"))
    assert reporter.diverged_at == 1 and trainer.state.epoch == 1


def test_search_space_entries_are_checked():
    with pytest.raises(TuningError, match="learning_rate: 'type' must be one of"):
        search_space([{"key": "learning_rate", "type": "loguniform"}])
    with pytest.raises(TuningError, match="listed twice"):
        search_space([{"key": "a", "type": "int", "low": 1, "high": 2}] * 2)
    (parameter,) = search_space([{"key": "network_def::channels", "type": "categorical", "choices": [[4, 8], [8, 16]]}])
    assert parameter.key == "network_def#channels"
    trial = optuna.create_study().ask()
    assert parameter.suggest(trial) in ([4, 8], [8, 16])
    assert trial.params["network_def#channels"] in ("[4, 8]", "[8, 16]")  # Optuna keeps lists as their JSON text
