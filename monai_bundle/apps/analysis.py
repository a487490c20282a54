"""One image through one bundle task, with machine-readable progress: what 3D Slicer's Analyze runs.

    python -m monai_bundle.apps.analysis --task ct_segmentation --input IN.nrrd --output-dir OUT [--device cpu]
        [--output-format nifti|dicom|both]
    python -m monai_bundle.apps.analysis --bundle /path/to/zoo_bundle --input IN.nii.gz --output-dir OUT

The built-in tasks run through `runner.run_task` (the same `monai.bundle run` of the same configs as
the scripts); another MONAI bundle runs its own `configs/inference.json` the Model Zoo way
(`bundle_root`, `dataset_dir`, `output_dir`). `--output-format` sets a built-in task's `output_format`
(a DICOM input's result as DICOM SEG + SR, docs/dicom.md); without it the config's default holds.
Progress goes to stdout as lines starting with PROGRESS_PREFIX followed by JSON: {"stage": ...,
"fraction": ...}, then one {"stage": "done", "outputs": [...]} or {"stage": "failed", "error": "..."}.
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


def run_builtin(
    task: str, input_path: Path, output_dir: Path, device: str | None, output_format: str | None = None
) -> None:
    from monai_bundle.apps import runner

    overrides = {"dataset_dir": str(input_path), "output_dir": str(output_dir)}
    if device:
        overrides["device"] = f"$torch.device('{device}')"
    if output_format:
        overrides["output_format"] = output_format
    runner.run_task(task, "inference", **overrides)


def run_other_bundle(bundle: Path, input_path: Path, output_dir: Path, device: str | None) -> None:
    """A Model Zoo style bundle: its configs/inference.json with dataset_dir = the input's folder."""
    from monai.bundle import run

    configs = bundle / "configs"
    config = next((configs / name for name in ("inference.json", "inference.yaml") if (configs / name).is_file()), None)
    if config is None:
        raise FileNotFoundError(f"{bundle}: no configs/inference.json or .yaml")
    overrides = {"bundle_root": str(bundle), "dataset_dir": str(input_path.parent), "output_dir": str(output_dir)}
    if device:
        overrides["device"] = f"$torch.device('{device}')"
    meta = configs / "metadata.json"
    run(config_file=str(config), meta_file=str(meta) if meta.is_file() else None, **overrides)


def analyze(
    input_path: Path,
    output_dir: Path,
    task: str | None = None,
    bundle: Path | None = None,
    device: str | None = None,
    output_format: str | None = None,
) -> list[str]:
    """Run one task (or another bundle's inference) on one image; return the files it wrote."""
    if not input_path.exists():
        raise FileNotFoundError(f"{input_path}: input not found")
    output_dir.mkdir(parents=True, exist_ok=True)
    before = {p for p in output_dir.rglob("*") if p.is_file()}
    emit("starting", 0.02, task=task, bundle=str(bundle) if bundle else None, device=device or "auto")
    emit("running", 0.1)
    if bundle is not None:
        run_other_bundle(bundle, input_path, output_dir, device)
    else:
        run_builtin(task, input_path, output_dir, device, output_format)
    outputs = output_files(output_dir, before)
    if not outputs:
        raise RuntimeError("the run finished but wrote no output (see the log above)")
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, type=Path, help="one image file (NRRD, NIfTI, DICOM, PNG ...)")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--task", help="a built-in task (metadata.json 'medimg' block)")
    parser.add_argument("--bundle", type=Path, help="another MONAI bundle folder; runs its inference config")
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
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    started = time.monotonic()
    try:
        outputs = analyze(args.input, args.output_dir, args.task, args.bundle, args.device, args.output_format)
    except BaseException as error:  # noqa: BLE001 - reported as one event and an exit code, whatever it was
        if isinstance(error, KeyboardInterrupt):
            raise
        cause = error
        while isinstance(cause, RuntimeError) and str(cause).startswith(_WRAPPERS) and cause.__cause__ is not None:
            cause = cause.__cause__  # MONAI's "Failed to evaluate <expression>" says nothing of what failed
        message = " ".join(line.strip() for line in str(cause).strip().splitlines()) or type(cause).__name__
        if isinstance(error, MemoryError):
            message = "out of memory: close other programs, or run on a smaller image / another device"
        emit("failed", None, error=message, kind=type(error).__name__)
        logging.getLogger(__name__).exception("analysis failed")
        return 1
    emit("done", 1.0, outputs=outputs, seconds=round(time.monotonic() - started, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
