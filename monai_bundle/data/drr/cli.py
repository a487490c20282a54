"""`medimg-make-xray-set` (and `python -m monai_bundle.data.drr`): render a set from the command line."""

from __future__ import annotations

import argparse
import os
import sys

from monai_bundle.data.drr.dataset import (
    DEFAULT_TEST_SOURCES,
    DEFAULT_TRAIN_SOURCES,
    make_phantom_xray_dataset,
    make_xray_dataset,
)
from monai_bundle.data.drr.opacities import DEFAULT_OPACITY, OPACITY_RANGES
from monai_bundle.data.drr.sources import DrrError


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medimg-make-xray-set",
        description="Render a SYNTHETIC labelled chest X-ray set (normal / pneumonia-like opacity) "
        "from real CTs (or phantoms); Kermany layout plus labels.csv and README.txt.",
    )
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --overwrite)")
    parser.add_argument("--n-train", type=int, default=1500)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="output width and height in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--positive-fraction", type=float, default=0.5)
    parser.add_argument(
        "--train-sources",
        type=_names,
        default=DEFAULT_TRAIN_SOURCES,
        help=f"comma-separated CT names (default {','.join(DEFAULT_TRAIN_SOURCES)})",
    )
    parser.add_argument(
        "--test-sources",
        type=_names,
        default=DEFAULT_TEST_SOURCES,
        help=f"comma-separated CT names (default {','.join(DEFAULT_TEST_SOURCES)})",
    )
    parser.add_argument(
        "--opacity",
        choices=sorted(OPACITY_RANGES),
        default=DEFAULT_OPACITY,
        help="size/density of the painted opacities: "
        + "; ".join(f"{k}: {v.describe()}" for k, v in OPACITY_RANGES.items()),
    )
    parser.add_argument("--phantom", action="store_true", help="render synthetic phantoms instead (offline)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    """medimg-make-xray-set OUT [options]: render the set and print a one-line summary."""
    from monai_bundle.data.sample_data import SampleDataError

    args = _parser().parse_args(argv)
    common = {
        "n_train": args.n_train,
        "n_test": args.n_test,
        "size": args.size,
        "seed": args.seed,
        "positive_fraction": args.positive_fraction,
        "overwrite": args.overwrite,
        "workers": args.workers,
        "opacity": args.opacity,
    }
    try:
        if args.phantom:
            summary = make_phantom_xray_dataset(args.out, **common)
        else:
            summary = make_xray_dataset(
                args.out, train_sources=args.train_sources, test_sources=args.test_sources, **common
            )
    except (DrrError, SampleDataError, ValueError, OSError) as exc:  # ImageReadError is a ValueError
        print(f"medimg-make-xray-set: error: {exc}", file=sys.stderr)
        return 1
    counts = summary["counts"]
    print(
        f"wrote SYNTHETIC radiographs to {summary['out_dir']}: "
        f"train {sum(counts['train'].values())} ({counts['train']['PNEUMONIA']} PNEUMONIA) from "
        f"{','.join(summary['sources']['train'])}; test {sum(counts['test'].values())} "
        f"({counts['test']['PNEUMONIA']} PNEUMONIA) from {','.join(summary['sources']['test'])}; "
        f"{summary['seconds']:.1f} s ({summary['seconds_per_image']:.3f} s/image)"
    )
    return 0
