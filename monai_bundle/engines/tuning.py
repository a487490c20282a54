"""Tuning from evaluation results: an Optuna search over a task's training config overrides.

The search space (which config keys, which ranges) is data: the `tune` block of a task's tune overlay
(configs/tune.json, configs/<task>_tune.json) or a JSON file given to `medimg-tune --space`. Each trial
is a real training through the task's own train configs (MONAI's `create_workflow`, as `monai.bundle run`
builds it) with the trial's overrides; its value is the best key metric that the train config's own
validator computed (`validate#evaluator`, MONAI's `best_metric`: what the saved checkpoint scored).
`TrialReporter` hands every validation round to Optuna, whose MedianPruner stops hopeless trials early.

The study lives in `<study_dir>/study.db` (SQLite), so an interrupted search resumes where it stopped
and `--trials N` means N trials in the study, not N more. `write_report` leaves the trials table (CSV and
Markdown), the best trial's overrides as a config overlay to pass after the train configs, and two plots.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monai_bundle.apps import runner
from monai_bundle.apps.analysis import failure_message
from monai_bundle.io import write_text_atomic

logger = logging.getLogger(__name__)

STUDY_NAME = "medimg"
"""The one study of a study folder (its SQLite file may hold only this one)."""

BEST_OVERRIDES = "best_overrides.json"
"""The best trial's overrides: a config overlay to list after the task's train configs."""

_TYPES = ("float", "int", "categorical")


class TuningError(ValueError):
    """A search that cannot run (bad search space, unusable study folder); str() is one line."""


class TrialsFailed(TuningError):
    """Every trial of a run failed: a broken config or data rather than a bad setting; str() names the first error."""


@dataclass(frozen=True)
class Parameter:
    """One searched config key.

    Args:
        key: the config id the trial overrides, e.g. "learning_rate" or "network_def#channels".
        type: "float", "int" or "categorical".
        low: lower bound (float, int).
        high: upper bound, included (float, int).
        log: sample on a log scale (float, int).
        step: grid step (float, int); None for a continuous float.
        choices: the values (categorical); any JSON values (lists too: Optuna sees their JSON text).
    """

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    @classmethod
    def from_dict(cls, entry: Any, where: str) -> Parameter:
        """A search-space entry {"key": ..., "type": ..., ...}; a bad one is a TuningError naming `where`."""
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"]:
            raise TuningError(f"{where}: each search-space entry needs a 'key' (a config id), got {entry!r}")
        key = entry["key"].replace("::", "#")
        unknown = set(entry) - {"key", "type", "low", "high", "log", "step", "choices"}
        if entry.get("type") not in _TYPES or unknown:
            raise TuningError(f"{where}: {key}: 'type' must be one of {', '.join(_TYPES)} (other fields: {unknown})")
        if entry["type"] == "categorical":
            choices = entry.get("choices")
            if not isinstance(choices, list) or len(choices) < 1:
                raise TuningError(f"{where}: {key}: a categorical entry needs a non-empty 'choices' list")
            return cls(key, "categorical", choices=tuple(choices))
        low, high = entry.get("low"), entry.get("high")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low > high:
            raise TuningError(f"{where}: {key}: needs numbers 'low' <= 'high', got {low!r}, {high!r}")
        if entry.get("log") and low <= 0:
            raise TuningError(f"{where}: {key}: a log-scale range must start above 0, got low={low!r}")
        return cls(key, entry["type"], low, high, bool(entry.get("log", False)), entry.get("step"))

    def suggest(self, trial) -> Any:
        """The value Optuna suggests for this trial, as the config override takes it."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return self.decode(trial.suggest_categorical(self.key, [self._encode(choice) for choice in self.choices]))

    def decode(self, value: Any) -> Any:
        """A stored parameter value -> the override value (categorical lists and dicts are stored as JSON text)."""
        if self.type == "categorical" and isinstance(value, str) and value not in self.choices:
            return json.loads(value)
        return value

    @staticmethod
    def _encode(choice: Any) -> Any:
        # Optuna's categorical choices must be None, bool, int, float or str
        return choice if choice is None or isinstance(choice, (bool, int, float, str)) else json.dumps(choice)


def search_space(entries: Any, where: str = "tune#space") -> list[Parameter]:
    """The parameters of a search-space list; one clear TuningError for a bad one."""
    if isinstance(entries, dict) and "space" in entries:  # a whole `tune` block, as a --space file may hold
        entries = entries["space"]
    if not isinstance(entries, list) or not entries:
        raise TuningError(f"{where}: the search space must be a non-empty list of entries")
    space = [Parameter.from_dict(entry, where) for entry in entries]
    keys = [parameter.key for parameter in space]
    if len(set(keys)) != len(keys):
        raise TuningError(f"{where}: a key is listed twice: {keys}")
    return space


def read_space_file(path: str | Path) -> list[dict]:
    """The search-space entries of a JSON file (a list, or an object with "space"); one clear line if unusable."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise TuningError(f"{path}: cannot read the search space: {' '.join(str(error).split())}") from None
    search_space(content, str(path))
    return content["space"] if isinstance(content, dict) else content


class TrialReporter:
    """Evaluator handler: reports each validation round's key metric to an Optuna trial; stops the trainer when
    Optuna prunes the trial or the metric is not finite (a diverged run).

    Stopping is `trainer.terminate()`, so the training loop ends as after its last epoch (handlers finish,
    files close); the objective then raises optuna.TrialPruned or records the failure.

    Args:
        trial: the Optuna trial.
        trainer: the trainer whose ValidationHandler runs the evaluator; its epoch is the report's step.
    """

    def __init__(self, trial, trainer) -> None:
        self.trial = trial
        self.trainer = trainer
        self.pruned_at: int | None = None
        self.diverged_at: int | None = None

    def attach(self, evaluator) -> None:
        from ignite.engine import Events

        evaluator.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, evaluator) -> None:
        value = float(evaluator.state.metrics[evaluator.state.key_metric_name])
        epoch = self.trainer.state.epoch
        if not math.isfinite(value):
            self.diverged_at = epoch
            self.trainer.terminate()
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            self.trainer.terminate()


def run_study(
    dataset_dir: str,
    study_dir: str,
    space: Sequence[dict],
    train_configs: Sequence[str],
    trials: int = 20,
    timeout: float | None = None,
    seed: int = 0,
    direction: str = "maximize",
    pruner: dict | None = None,
    overrides: dict | None = None,
) -> Path:
    """Run (or resume) the search in `study_dir` until it holds `trials` finished trials; write the report.

    The `tune` block of a tune overlay holds these arguments, so `monai.bundle run` with the overlay and
    `medimg-tune` run the same search.

    Args:
        dataset_dir: the dataset every trial trains and validates on.
        study_dir: the study folder: study.db, one folder per trial (its checkpoint, logs) and the report.
        space: search-space entries (see `Parameter`).
        train_configs: the task's train config files, in merge order.
        trials: finished trials (complete, pruned or failed) the study should hold.
        timeout: stop starting trials after this many seconds of this run (None: no limit).
        seed: seed of the TPE sampler (offset by the trials already run, so a resumed search does not
            replay the first suggestions).
        direction: "maximize" (MONAI's key metrics: higher is better) or "minimize".
        pruner: MedianPruner arguments (n_startup_trials, n_warmup_steps, interval_steps).
        overrides: config overrides applied to every trial (epochs, workers, ...).

    Returns:
        the Markdown report's path.

    Raises:
        TuningError: the space or the study folder is unusable.
        TrialsFailed: every trial of this run failed (the report is written first).
        monai_bundle.data.datalists.DatasetError: the dataset cannot be read.
    """
    import optuna

    parameters = search_space(list(space))
    overrides = {key.replace("::", "#"): value for key, value in (overrides or {}).items()}
    fixed = {**runner.root_overrides(), **overrides, "dataset_dir": str(dataset_dir)}
    metric = _check_data(train_configs, fixed)
    study_dir = Path(study_dir).expanduser().resolve()
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{study_dir / 'study.db'}", heartbeat_interval=60, grace_period=180
    )  # a trial of a killed run is marked failed once its heartbeat is stale
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        direction=direction,
        pruner=optuna.pruners.MedianPruner(**(pruner or {})),
        load_if_exists=True,
    )
    _check_same_search(study, study_dir, parameters, overrides)
    study.set_user_attr("metric", metric)
    finished = [t for t in study.trials if t.state.is_finished()]
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(finished))
    remaining = trials - len(finished)
    if remaining > 0:
        objective = _Objective(parameters, list(train_configs), fixed, study_dir)
        try:
            study.optimize(objective, n_trials=remaining, timeout=timeout, catch=(Exception,), gc_after_trial=True)
        finally:  # an interrupted search reports the trials it finished too
            report = write_report(study, study_dir, parameters, overrides)
        ours = [t for t in study.trials if t.number >= len(finished) and t.state.is_finished()]
        if ours and all("error" in t.user_attrs for t in ours):
            raise TrialsFailed(f"every trial failed; trial {ours[0].number}: {ours[0].user_attrs['error']}")
        return report
    return write_report(study, study_dir, parameters, overrides)


def _check_data(train_configs: Sequence[str], fixed: dict) -> str:
    """Build the train and validation datalists once, so a bad dataset is one error, not N failed trials;
    return the name of the validator's key metric (the trials' objective)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(list(train_configs))
    parser.update(fixed)
    for key in ("train#datalist", "validate#datalist"):
        if key in parser and not parser.get_parsed_content(key):
            raise TuningError(f"{fixed['dataset_dir']}: no cases for {key.split('#')[0]}")
    return next(iter(parser.get("validate#key_metric", {"metric": None})))


def _check_same_search(study, study_dir: Path, parameters: list[Parameter], overrides: dict) -> None:
    """Record the search on the study's first run; refuse to resume it with another space or other overrides."""
    search = json.loads(json.dumps({"space": [vars(p) for p in parameters], "overrides": overrides}, default=list))
    recorded = study.user_attrs.get("search")
    if recorded is None:
        study.set_user_attr("search", search)
    elif recorded != search:
        raise TuningError(f"{study_dir}: this study was run with another search space or overrides; use a new folder")


class _Objective:
    """One trial: a real training with the trial's overrides; its value is the validator's best key metric."""

    def __init__(self, parameters: list[Parameter], train_configs: list[str], fixed: dict, study_dir: Path) -> None:
        self.parameters, self.train_configs, self.fixed, self.study_dir = parameters, train_configs, fixed, study_dir

    def __call__(self, trial) -> float:
        import optuna
        from monai.bundle import create_workflow

        params = {parameter.key: parameter.suggest(trial) for parameter in self.parameters}
        output_dir = self.study_dir / f"trial_{trial.number:03d}"
        start = time.perf_counter()
        try:
            workflow = create_workflow(
                config_file=self.train_configs,
                meta_file=str(runner.METADATA),
                **{**self.fixed, **params, "output_dir": str(output_dir)},
            )
            trainer = workflow.parser.get_parsed_content("train#trainer")
            evaluator = workflow.parser.get_parsed_content("validate#evaluator")
            reporter = TrialReporter(trial, trainer)
            reporter.attach(evaluator)
            workflow.run()
            workflow.finalize()
        except Exception as error:
            trial.set_user_attr("error", failure_message(error)[:500])
            raise
        except KeyboardInterrupt:  # Optuna records the trial as failed and stops the search
            trial.set_user_attr("error", "interrupted")
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        trial.set_user_attr("epochs", trainer.state.epoch)
        if reporter.diverged_at is not None:
            trial.set_user_attr("error", f"diverged: non-finite validation metric at epoch {reporter.diverged_at}")
            return float("nan")  # Optuna records the trial as failed
        if reporter.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at epoch {reporter.pruned_at}")
        if evaluator.state.best_metric_epoch < 0:
            trial.set_user_attr("error", "no validation round ran: max_epochs < val_interval")
            return float("nan")
        return float(evaluator.state.best_metric)


def trial_rows(study, parameters: list[Parameter]) -> list[dict[str, Any]]:
    """One row per trial: number, state, the searched values, metric (best, or last reported when pruned),
    validated epochs, seconds, note."""
    rows = []
    for trial in study.trials:
        intermediate = trial.intermediate_values
        value = trial.value if trial.value is not None else intermediate.get(max(intermediate, default=None))
        note = trial.user_attrs.get("error", "")
        if trial.state.name == "PRUNED" and intermediate:
            note = f"pruned after epoch {max(intermediate)}"
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                **{p.key: _text(p.decode(trial.params[p.key])) if p.key in trial.params else "" for p in parameters},
                "metric": "" if value is None or not math.isfinite(value) else round(float(value), 4),
                "epochs": trial.user_attrs.get("epochs", ""),
                "seconds": trial.user_attrs.get("seconds", ""),
                "note": note,
            }
        )
    return rows


def best_overrides(study, parameters: list[Parameter]) -> dict[str, Any] | None:
    """The best complete trial's searched values as {config id: value}; None before any trial completed."""
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        return None
    best = study.best_trial
    return {p.key: p.decode(best.params[p.key]) for p in parameters if p.key in best.params}


def write_report(study, study_dir: Path, parameters: list[Parameter], overrides: dict) -> Path:
    """trials.csv, trials.md, best_overrides.json, metric_over_trials.png and param_importance.png in `study_dir`.

    Every file is written to a temp name and renamed, so a reader never sees half a report.
    """
    rows = trial_rows(study, parameters)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["number"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(study_dir / "trials.csv", text.getvalue())
    best = best_overrides(study, parameters)
    if best is not None:
        write_text_atomic(study_dir / BEST_OVERRIDES, json.dumps(best, indent=4) + "\n")
    metric = study.user_attrs.get("metric", "metric")
    _plot_metric(rows, study.direction.name.lower(), metric, study_dir / "metric_over_trials.png")
    importance = _plot_importance(study, study_dir / "param_importance.png")
    report = study_dir / "trials.md"
    write_text_atomic(report, _markdown(rows, best, overrides, importance, metric))
    return report


def _text(value: Any) -> Any:
    """A table cell: lists and dicts (channel lists) as JSON text, numbers as they are."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _cell(value: Any) -> str:
    """A Markdown cell: floats to 4 significant digits (the CSV keeps them whole)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "/")


def _markdown(
    rows: list[dict], best: dict | None, overrides: dict, importance: dict[str, float] | str, metric: str
) -> str:
    lines = ["# Tuning trials", ""]
    lines += [f"metric: {metric}, the best validation round of a complete trial, the last of a pruned one.", ""]
    lines += [f"Overrides of every trial: `{json.dumps(overrides)}`" if overrides else "No fixed overrides.", ""]
    if rows:
        columns = list(rows[0])
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    if best is not None:
        lines += ["", f"Best overrides ({BEST_OVERRIDES}): `{json.dumps(best)}`"]
    if isinstance(importance, dict):
        shares = ", ".join(f"{key} {share:.2f}" for key, share in importance.items())
        lines += ["", f"Parameter importance (PED-ANOVA, param_importance.png): {shares}"]
    else:
        lines += ["", f"Parameter importance: {importance}"]
    return "\n".join(lines) + "\n"


def _plot_metric(rows: list[dict], direction: str, metric: str, png: Path) -> None:
    """Each trial's metric (complete: best of its validation rounds; pruned: its last) and the best so far."""
    from monai_bundle.io.figures import _pyplot, _save_figure

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.5))
    better = max if direction == "maximize" else min
    best_so_far, running = [], None
    for state, marker in (("complete", "o"), ("pruned", "x")):
        points = [(row["number"], row["metric"]) for row in rows if row["state"] == state and row["metric"] != ""]
        if points:
            axes.scatter(*zip(*points), marker=marker, label=state)
    for row in rows:
        if row["state"] == "complete" and row["metric"] != "":
            running = row["metric"] if running is None else better(running, row["metric"])
        best_so_far.append(running)
    if any(value is not None for value in best_so_far):
        axes.step([row["number"] for row in rows], best_so_far, where="post", label="best so far", color="grey")
    failed = [row["number"] for row in rows if row["state"] == "fail"]
    if failed:
        axes.scatter(failed, [axes.get_ylim()[0]] * len(failed), marker="v", color="red", label="failed")
    axes.set_xlabel("trial")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_ylabel(metric)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    _save_figure(figure, png, dpi=100)


def _plot_importance(study, png: Path) -> dict[str, float] | str:
    """Optuna's PED-ANOVA importance of each searched key, as a bar chart; why not, when it cannot be computed.

    PED-ANOVA (Optuna's own, numpy only) rather than the default fANOVA, which needs scikit-learn. With a
    handful of trials any importance is rough: it says which key moved the metric in this study, no more.
    """
    import optuna

    from monai_bundle.io.figures import _pyplot, _save_figure

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        png.unlink(missing_ok=True)
        return f"needs 2 complete trials, the study has {len(complete)}"
    try:
        importance = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
        )
    except (ValueError, RuntimeError, ImportError) as error:
        png.unlink(missing_ok=True)
        return f"not computed ({' '.join(str(error).split())})"
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 0.6 + 0.5 * len(importance)))
    names = list(importance)[::-1]
    axes.barh(names, [importance[name] for name in names])
    axes.set_xlabel("importance (PED-ANOVA, normalised to sum 1)")
    axes.set_xlim(0, 1)
    figure.tight_layout()
    _save_figure(figure, png, dpi=100)
    return dict(importance)
