"""One way to run a bundle task, shared by the demo, scripts and the Slicer module.

The tasks and their config files are listed in configs/metadata.json (block "medimg", checked against
configs/medimg_tasks.schema.json); running a task means `monai.bundle run` with those files, so a task
runs the same from here as from the CLI. The environment variable MEDIMG_BUNDLE_ROOT, read once at
import, points the runner at another bundle folder (configs/, models/), e.g. a copy with one more task.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shlex
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from monai_bundle import BUNDLE_ROOT

BUNDLE_DIR = Path(os.environ.get("MEDIMG_BUNDLE_ROOT") or BUNDLE_ROOT).resolve()
"""The bundle folder the runner reads (configs/, models/): $MEDIMG_BUNDLE_ROOT, else the installed package's."""


CONFIG_DIR = BUNDLE_DIR / "configs"


METADATA = CONFIG_DIR / "metadata.json"


SCHEMA = BUNDLE_ROOT / "configs" / "medimg_tasks.schema.json"
"""JSON schema of metadata's "medimg" block: the package's, whichever bundle folder is read."""


DEFAULT_TASK = "ct_segmentation"


class MetadataError(ValueError):
    """Unreadable metadata, or a "medimg" block that breaks the schema; str() is one line naming the file."""


@lru_cache(maxsize=1)
def metadata() -> dict[str, Any]:
    """The bundle's metadata.json, after checking its "medimg" block against SCHEMA."""
    try:
        meta = json.loads(METADATA.read_text())
    except (OSError, ValueError) as error:
        raise MetadataError(f"{METADATA}: {' '.join(str(error).split())}") from None
    problem = medimg_problem(meta.get("medimg") if isinstance(meta, dict) else None)
    if problem:
        raise MetadataError(f"{METADATA}: {problem}")
    return meta


def medimg_problem(block: Any) -> str | None:
    """The first schema violation of a "medimg" block as one line ('<where>: <what>'), or None when it is valid."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    error = jsonschema.exceptions.best_match(validator.iter_errors(block))
    if error is None:
        return None
    where = ".".join(["medimg", *map(str, error.absolute_path)])
    return f"{where}: {' '.join(error.message.split())}"


def tasks() -> dict[str, dict[str, Any]]:
    """Task name -> its block in metadata.json."""
    return metadata()["medimg"]["tasks"]


def root_overrides() -> dict[str, str]:
    """{"bundle_root": BUNDLE_DIR} when MEDIMG_BUNDLE_ROOT names another folder (its models/ then), else {}."""
    return {} if BUNDLE_DIR == BUNDLE_ROOT else {"bundle_root": str(BUNDLE_DIR)}


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
    for key, value in {**root_overrides(), **overrides}.items():
        command += [f"--{key}", str(value)]
    return command


def run_task(task: str, workflow: str = "inference", **overrides: Any) -> None:
    """Run a task's workflow in this process through MONAI's bundle API."""
    from monai.bundle import run

    run(config_file=config_files(task, workflow), meta_file=str(METADATA), **{**root_overrides(), **overrides})


def main(argv: list[str] | None = None) -> int:
    """`python -m monai_bundle.apps.runner --task T --workflow W [--print-command] [--key value ...]`."""
    try:
        tasks()
    except MetadataError as error:
        print(error, file=sys.stderr)
        return 2
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
