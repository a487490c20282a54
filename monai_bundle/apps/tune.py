"""`medimg-tune`: search a task's training settings (learning rate, regularisation, network width, augmentation)
with Optuna, each trial a real training scored by the task's own validation metric.

    medimg-tune --task ct_segmentation --dataset_dir DIR --trials 20 [--study_dir DIR] [--timeout S]
        [--space FILE] [--seed 0] [--key value ...]

It runs the task's `tune` workflow (its train configs plus the tune overlay, whose `tune` block says what is
searched), so `python -m monai.bundle run --config_file "[..., 'tune.json']" --dataset_dir DIR --tune#trials 20`
runs the same search. `--key value` pairs are overrides of every trial (e.g. --max_epochs 50). A rerun with
the same --study_dir resumes the study: --trials is the total. The report (trials.md, trials.csv, plots and
best_overrides.json) is written in the study folder; engines.tuning says how.
Exit codes: 0 done, 1 every trial failed, 2 bad arguments, task, search space or dataset, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monai_bundle.apps import runner
from monai_bundle.apps.analysis import failure_message

PROG = "medimg-tune"


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the search; a bad argument, task, space or dataset ends with one line on stderr."""
    try:
        tune_tasks = sorted(task for task, spec in runner.tasks().items() if "tune" in spec["configs"])
    except runner.MetadataError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=" ".join(__doc__.split("\n\n")[0].split()),
        epilog="--key value pairs after the options override every trial's config, e.g. --max_epochs 50.",
    )
    parser.add_argument("--task", required=True, help=f"a task with a tune workflow: {', '.join(tune_tasks)}")
    parser.add_argument("--dataset_dir", required=True, type=Path)
    parser.add_argument("--trials", type=int, help="trials the study should hold (default: the tune config's)")
    parser.add_argument("--study_dir", type=Path, help="default: the tune config's (runs/<task>/tune)")
    parser.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    parser.add_argument("--space", type=Path, help="a JSON search space (a list of entries, or {'space': [...]})")
    parser.add_argument("--seed", type=int, help="the TPE sampler's seed (default: the tune config's)")
    args, rest = parser.parse_known_args(argv)
    problem = _argument_problem(args, tune_tasks)
    if problem:  # said before torch and MONAI load (seconds)
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    from monai_bundle.data.datalists import DatasetError
    from monai_bundle.engines.tuning import TrialsFailed, TuningError, read_space_file

    try:
        study_dir = None if args.study_dir is None else str(args.study_dir)
        block = {"trials": args.trials, "study_dir": study_dir, "timeout": args.timeout, "seed": args.seed}
        if args.space is not None:
            block["space"] = read_space_file(args.space)
        if rest:
            block["overrides"] = runner.parse_overrides(rest)
        overrides = {f"tune#{key}": value for key, value in block.items() if value is not None}
        runner.run_task(args.task, "tune", dataset_dir=str(args.dataset_dir), **overrides)
    except Exception as error:
        cause = _known_cause(error, (TuningError, DatasetError))
        if cause is None:
            raise
        print(f"{PROG}: {failure_message(cause)}", file=sys.stderr)
        return 1 if isinstance(cause, TrialsFailed) else 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished trials are kept in the study and a rerun resumes it", file=sys.stderr)
        return 130
    return 0


def _argument_problem(args: argparse.Namespace, tune_tasks: list[str]) -> str | None:
    """What is wrong with the arguments, as one line, or None."""
    if args.task not in tune_tasks:
        return f"unknown task {args.task!r} for tuning; tasks with a tune workflow: {', '.join(tune_tasks)}"
    if not args.dataset_dir.is_dir():
        return f"{args.dataset_dir}: dataset folder not found"
    if args.trials is not None and args.trials < 1:
        return "--trials must be >= 1"
    return None


def _known_cause(error: BaseException, kinds: tuple[type, ...]) -> BaseException | None:
    """`error` or the error it wraps (MONAI wraps a config expression's error) when it is one of `kinds`."""
    seen, cause = set(), error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, kinds):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
