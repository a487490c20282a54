#!/usr/bin/env python
"""The shipped CT model on real images it was not trained for: organ volumes with and without the anatomy steps.

    python scripts/ct_other_regions.py

Runs inference.json (a real `monai.bundle run`) twice over `OTHER_INPUTS` (heads, a cropped slice, an MRI,
two held-out CTs): with the network alone (`anatomy_postprocessing` empty) and as shipped. Prints and writes to
monai_bundle/docs/results/ct_segmentation.json (`other_regions`) the chest/abdomen organ volumes and the flag.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from monai_bundle.apps.demo_weights import results_file, write_results
from monai_bundle.apps.experiments import run
from monai_bundle.tasks.ct_segmentation import OTHER_INPUTS, SHOULD_HAVE_NO_TRUNK_ORGANS, write_sample_as_volume
from monai_bundle.tasks.segmentation.anatomy import TRUNK_CLASSES
from monai_bundle.tasks.segmentation.quality import read_quality

ARMS = {"network only": {"anatomy_postprocessing#transforms": "[]"}, "shipped": {}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave the results file alone")
    args = parser.parse_args(argv)
    rows = {
        name: {"input": what, "should_be_0_ml": name in SHOULD_HAVE_NO_TRUNK_ORGANS}
        for name, what in OTHER_INPUTS.items()
    }
    with tempfile.TemporaryDirectory() as work:
        inputs = Path(work) / "inputs"
        inputs.mkdir()
        for name in OTHER_INPUTS:
            write_sample_as_volume(name, inputs)
        for arm, overrides in ARMS.items():
            out = Path(work) / arm.replace(" ", "_")
            run("ct_segmentation", "inference", dataset_dir=inputs, output_dir=out, **overrides)
            for name in OTHER_INPUTS:
                quality = read_quality(out / f"{name}_seg.nii.gz")
                organs = {organ: quality["volumes_ml"].get(organ, 0.0) for organ in TRUNK_CLASSES}
                rows[name][arm] = {
                    "trunk_organs_ml": round(sum(organs.values()), 1),
                    "organs_ml": organs,
                    "quality": quality["quality"],
                    "reasons": quality["reasons"],
                }
    for name, row in rows.items():
        net, shipped = row["network only"], row["shipped"]
        first = shipped["reasons"][0] if shipped["reasons"] else ""
        print(
            f"{name:14s} network only {net['trunk_organs_ml']:8.1f} mL | shipped {shipped['trunk_organs_ml']:8.1f} mL"
            f"{' (should be 0)' if row['should_be_0_ml'] else ''} | {shipped['quality']}: {first}"
        )
    if not args.no_write:
        results = json.loads(results_file("ct_segmentation").read_text())
        results["other_regions"] = rows
        write_results("ct_segmentation", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
