"""One image through one bundle task, with machine-readable progress: what 3D Slicer's Analyze runs.

    python -m monai_bundle.apps.analysis --task ct_segmentation --input IN.nrrd --output-dir OUT [--device cpu]
        [--output-format nifti|dicom|both]
    python -m monai_bundle.apps.analysis --bundle /path/to/zoo_bundle --input IN.nii.gz --output-dir OUT
        [--precision auto|bf16|fp32] [--fast true|false]
    python -m monai_bundle.apps.analysis --bundle /path/to/zoo_bundle --check

The built-in tasks run through the bundle engine (`engines.pipeline.Pipeline.run_one`: the same configs
as `monai.bundle run` and medimg-batch); an outside MONAI bundle runs its own `configs/inference.json`
through the same engine (`engines.zoo`: checked first, fast path where safe; `--check` only checks it and
prints its label names). `--output-format` sets a built-in task's `output_format` (a DICOM input's result
as DICOM SEG + SR, docs/dicom.md); without it the config's default holds.
Progress goes to stdout as lines starting with PROGRESS_PREFIX followed by JSON: {"stage": ...,
"fraction": ...}, then one {"stage": "done", "outputs": [...]} (a segmentation's also "quality": "ok" or "review"
and "quality_reasons": [...], its quality file among the outputs) or {"stage": "failed", "error": "..."}.
Everything else on stdout/stderr is log.
Exit codes: 0 done, 1 the run failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

PROGRESS_PREFIX = "MEDIMG-PROGRESS "


_WRAPPERS = ("Failed to evaluate", "applying transform")
"""How MONAI's errors that wrap the one that happened begin (a config expression's, a transform's)."""


def emit(stage: str, fraction: float | None = None, **fields) -> None:
    """One progress line on stdout (flushed at once: the reader is another process)."""
    event = {"stage": stage, "fraction": fraction, "time": round(time.time(), 3), **fields}
    print(PROGRESS_PREFIX + json.dumps(event), flush=True)


def output_files(output_dir: Path, before: set[Path]) -> list[str]:
    """Files written under `output_dir` by this run (temp names excluded), sorted."""
    files = {p for p in output_dir.rglob("*") if p.is_file() and not p.name.startswith(".")}
    return sorted(str(p) for p in files - before)


def run_overrides(device: str | None = None, output_format: str | None = None) -> dict[str, str]:
    """Config overrides for a run's device and output format (none: the config's defaults)."""
    overrides = {"device": f"$torch.device('{device}')"} if device else {}
    if output_format:
        overrides["output_format"] = output_format
    return overrides


def failure_message(error: BaseException) -> str:
    """What went wrong, as one line for a 'failed' event (and the Slicer status line)."""
    if isinstance(error, MemoryError):
        return "out of memory: close other programs, or run on a smaller image / another device"
    cause = error
    while isinstance(cause, RuntimeError) and str(cause).startswith(_WRAPPERS) and cause.__cause__ is not None:
        cause = cause.__cause__  # MONAI's "Failed to evaluate <expression>" says nothing of what failed
    return " ".join(line.strip() for line in str(cause).strip().splitlines()) or type(cause).__name__


def analyze(
    input_path: Path,
    output_dir: Path,
    task: str | None = None,
    bundle: Path | None = None,
    device: str | None = None,
    output_format: str | None = None,
    engine_options: dict[str, str] | None = None,
) -> list[str]:
    """Run one task (or an outside bundle's inference) on one image; return the files it wrote.

    `engine_options`: an outside bundle's `precision` and `fast` (engines.zoo.ENGINE_OPTIONS).
    """
    if not input_path.exists():
        raise FileNotFoundError(f"{input_path}: input not found")
    output_dir.mkdir(parents=True, exist_ok=True)
    emit("starting", 0.02, task=task, bundle=str(bundle) if bundle else None, device=device or "auto")
    emit("running", 0.1)
    from monai_bundle.engines.pipeline import Pipeline

    overrides = {**run_overrides(device, output_format), **(engine_options or {})}
    outputs = Pipeline(bundle or task, overrides).run_one(input_path, output_dir, progress=emit)
    if not outputs:
        raise RuntimeError("the run finished but wrote no output (see the log above)")
    return outputs


def check_bundle(bundle: Path, engine_options: dict[str, str] | None = None) -> dict:
    """An outside bundle checked as a run would check it (network built, weights loaded): what the Slicer module
    shows of it. Raises the engine's one-line PipelineError (or WeightsError) when it cannot run."""
    from monai_bundle.engines.pipeline import Pipeline

    pipeline = Pipeline(bundle, dict(engine_options or {}))
    pipeline.load()
    return {
        "name": pipeline.task,
        "description": pipeline.declared.description,
        "modality": pipeline.declared.modality,
        "labels": {str(value): name for value, name in enumerate(pipeline.class_names) if value > 0 and name},
        "notes": pipeline.notes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="one image file (NRRD, NIfTI, DICOM, PNG ...)")
    parser.add_argument("--output-dir", type=Path)
    parser.add_argument("--task", help="a built-in task (metadata.json 'medimg' block)")
    parser.add_argument("--bundle", type=Path, help="an outside MONAI bundle folder; runs its inference config")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], help="an outside bundle's network precision")
    parser.add_argument("--fast", choices=["true", "false"], help="false: an outside bundle's own pipeline")
    parser.add_argument("--check", action="store_true", help="check an outside bundle, print its labels")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: a GPU when one is usable")
    parser.add_argument(
        "--output-format",
        choices=["nifti", "dicom", "both"],
        help="a built-in task's output_format: nifti (default), dicom (DICOM SEG + SR of a DICOM input), both",
    )
    args = parser.parse_args(argv)
    if (args.task is None) == (args.bundle is None):
        parser.error("give exactly one of --task and --bundle")
    if args.bundle is not None and args.output_format:
        parser.error("--output-format applies to the built-in tasks (--task), not to another bundle")
    engine_options = {key: value for key in ("precision", "fast") if (value := getattr(args, key)) is not None}
    if args.bundle is None and (engine_options or args.check):
        parser.error("--precision, --fast and --check apply to an outside bundle (--bundle)")
    if not args.check and (args.input is None or args.output_dir is None):
        parser.error("--input and --output-dir are required")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    started = time.monotonic()
    try:
        if args.check:
            emit("checked", 1.0, **check_bundle(args.bundle, engine_options))
            return 0
        outputs = analyze(
            args.input, args.output_dir, args.task, args.bundle, args.device, args.output_format, engine_options
        )
    except BaseException as error:  # noqa: BLE001 - reported as one event and an exit code, whatever it was
        if isinstance(error, KeyboardInterrupt):
            raise
        emit("failed", None, error=failure_message(error), kind=type(error).__name__)
        logging.getLogger(__name__).exception("analysis failed")
        return 1
    from monai_bundle.tasks.segmentation import with_quality

    outputs, quality = with_quality(outputs)
    emit("done", 1.0, outputs=outputs, seconds=round(time.monotonic() - started, 2), **quality)
    return 0


if __name__ == "__main__":
    sys.exit(main())
