"""Helpers for scripts that chain bundle workflows (experiments, demo-weight training) or time them (benchmarks).

Every step is a real `python -m monai.bundle run` child process of the bundle's own configs (`run`).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from monai_bundle.apps import runner
from monai_bundle.io import write_text_atomic


def run(task: str, workflow: str, *, stream: bool = False, **overrides) -> None:
    """One bundle workflow as a child `python -m monai.bundle run` process; exit with its error output on failure.

    Args:
        task: a task of the bundle's metadata.
        workflow: one of the task's workflows (train, evaluate, inference, ...).
        stream: let the child write to this terminal as it runs (long training shows its progress);
            by default its output is kept and only its end is shown, on failure.
        overrides: config keys and values, as `--key value` on the command line.
    """
    command = runner.bundle_command(task, workflow, **overrides)
    print("$", " ".join(map(str, command[1:])), flush=True)
    result = subprocess.run(command, capture_output=not stream, text=True)
    if result.returncode:
        error = "" if stream else f":\n{result.stderr[-3000:]}"
        sys.exit(f"{task} {workflow} failed (exit {result.returncode}){error}")


def timed(command: list[str], cwd: Path | None = None) -> float:
    """Wall-clock seconds of a child process, as a user feels it; exit with its output if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def train(task: str, out: Path, workflow: str = "train", **overrides) -> Path:
    """Train into `out` unless it already holds a final model; return `out/models/model.pt`."""
    if not (out / "models" / "model.pt").is_file():
        run(task, workflow, output_dir=out, **overrides)
    return out / "models" / "model.pt"


def evaluate_classifier(checkpoint: Path, out: Path, dataset_dir, network_name: str, image_size: int) -> dict:
    """Test-split metrics of an X-ray classifier checkpoint (at its own stored threshold)."""
    run(
        "xray_classification",
        "evaluate",
        checkpoint=checkpoint,
        output_dir=out,
        dataset_dir=dataset_dir,
        network_name=network_name,
        image_size=image_size,
    )
    return json.loads((out / "report.json").read_text())["metrics"]


def summarise(rows: list[dict], methods: list[str], key: str = "roc_auc") -> dict:
    """Mean, min and max of `key` per method."""
    summary = {}
    for method in methods:
        values = [row[key] for row in rows if row["method"] == method]
        summary[method] = {f"mean_{key}": statistics.mean(values), f"min_{key}": min(values), f"max_{key}": max(values)}
    return summary


def markdown_table(rows: list[dict]) -> str:
    """Classifier runs as a Markdown table."""
    lines = ["| training | seed | test ROC AUC | sensitivity | specificity |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['method']} | {r['seed']} | {r['roc_auc']:.3f} | {r['sensitivity']:.3f} | {r['specificity']:.3f} |"
        for r in rows
    ]
    return "\n".join(lines)


def write_results(result: dict, *paths) -> None:
    """The same JSON to every non-empty path."""
    text = json.dumps(result, indent=2) + "\n"
    for path in paths:
        if path:
            write_text_atomic(path, text)
