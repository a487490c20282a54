"""One way to run a bundle task, shared by the demo, scripts and the Slicer module.

The tasks and their config files are listed in configs/metadata.json (block "medimg"); running a
task means `monai.bundle run` with those files, so a task runs the same from here as from the CLI.
"""
from __future__ import annotations

import argparse
import ast
import json
import shlex
import sys
from functools import lru_cache
from typing import Any

from monai_bundle import BUNDLE_ROOT

CONFIG_DIR = BUNDLE_ROOT / "configs"


METADATA = CONFIG_DIR / "metadata.json"


DEFAULT_TASK = "ct_segmentation"


@lru_cache(maxsize=1)
def metadata() -> dict[str, Any]:
    """The bundle's metadata.json."""
    return json.loads(METADATA.read_text())


def tasks() -> dict[str, dict[str, Any]]:
    """Task name -> its block in metadata.json."""
    return metadata()["medimg"]["tasks"]


def config_files(task: str, workflow: str) -> list[str]:
    """The config files (absolute paths, merge order) that make up `workflow` of `task`."""
    if task not in tasks():
        raise ValueError(f"unknown task {task!r}; known: {', '.join(tasks())}")
    workflows = tasks()[task]["configs"]
    if workflow not in workflows:
        raise ValueError(f"task {task!r} has no {workflow!r} workflow; it has: {', '.join(workflows)}")
    return [str(CONFIG_DIR / name) for name in workflows[workflow]]


def bundle_command(task: str, workflow: str, python: str = sys.executable, **overrides: Any) -> list[str]:
    """The `python -m monai.bundle run ...` command line for a task, as a list of arguments."""
    files = config_files(task, workflow)
    config_arg = files[0] if len(files) == 1 else json.dumps(files)
    command = [python, "-m", "monai.bundle", "run", "--config_file", config_arg]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    return command


def run_task(task: str, workflow: str = "inference", **overrides: Any) -> None:
    """Run a task's workflow in this process through MONAI's bundle API."""
    from monai.bundle import run

    run(config_file=config_files(task, workflow), meta_file=str(METADATA), **overrides)


def main(argv: list[str] | None = None) -> int:
    """`python -m monai_bundle.apps.runner --task T --workflow W [--print-command] [--key value ...]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=DEFAULT_TASK, choices=sorted(tasks()))
    parser.add_argument("--workflow", default="inference")
    parser.add_argument("--print-command", action="store_true", help="print the monai.bundle command and exit")
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    if args.print_command:
        print(shlex.join(bundle_command(args.task, args.workflow, **overrides)))
        return 0
    run_task(args.task, args.workflow, **overrides)
    return 0


def parse_overrides(words: list[str]) -> dict[str, Any]:
    """['--key', 'value', ...] -> {'key': value}, values parsed as Python literals where they are one (as fire does)."""
    if len(words) % 2 or not all(word.startswith("--") for word in words[::2]):
        raise SystemExit(f"overrides must be --key value pairs, got: {' '.join(words)}")
    return {key[2:]: _literal(value) for key, value in zip(words[::2], words[1::2])}


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


if __name__ == "__main__":
    sys.exit(main())
