"""`python -m monai_bundle.tasks.ct_denoising IN OUT`: a simulated low-dose copy of a CT, optionally scored."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from monai_bundle.tasks.ct_denoising.baselines import (
    classical_denoisers,
    denoise_slices,
)
from monai_bundle.tasks.ct_denoising.lowdose import (
    DEFAULT_ANGLES,
    DEFAULT_PHOTONS,
    noise_hu,
    simulate_low_dose_volume,
)
from monai_bundle.tasks.ct_denoising.metrics import scores


def main(argv: list[str] | None = None) -> int:
    """`python -m monai_bundle.tasks.ct_denoising IN OUT [--photons N] [--angles N] [--seed N]`.

    Writes a simulated low-dose copy of a CT on the same grid and header (`--slices`: a part of it);
    `--score` prints PSNR/SSIM of the copy and of each classical denoiser. Returns the exit code.
    """
    from monai_bundle.io import ImageReadError, read_image, write_image

    parser = argparse.ArgumentParser(
        description="Simulate a low-dose scan of a CT (noise insertion; see the module docstring)."
    )
    parser.add_argument("input", help="a CT in HU (NIfTI, NRRD, MetaImage, DICOM folder)")
    parser.add_argument("output", help="where the low-dose CT goes (same grid and header)")
    parser.add_argument(
        "--photons", type=float, default=DEFAULT_PHOTONS, help=f"per ray, unattenuated (default {DEFAULT_PHOTONS:g})"
    )
    parser.add_argument(
        "--angles", type=int, default=DEFAULT_ANGLES, help=f"views over 180 degrees (default {DEFAULT_ANGLES})"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slices", help="only axial slices START:STOP (the output keeps just these)")
    parser.add_argument(
        "--score",
        action="store_true",
        help="print PSNR/SSIM (window -1000..1000 HU) of the low-dose copy and of each classical denoiser",
    )
    args = parser.parse_args(argv)
    try:
        ct = read_image(args.input, ndim=3)
    except ImageReadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    spacing = ct.spacing
    if abs(spacing[0] - spacing[1]) > 1e-3 * spacing[0]:
        print(
            f"error: {args.input}: in-plane pixels are not square ({spacing[0]:g} x {spacing[1]:g} mm)", file=sys.stderr
        )
        return 1
    hu, affine = np.asarray(ct.array, np.float32), ct.affine
    reference = None if Path(args.input).is_dir() else args.input
    if args.slices:
        start, stop = (int(part) if part else None for part in args.slices.split(":"))
        first = range(hu.shape[2])[slice(start, stop)][0]
        hu, affine, reference = hu[:, :, start:stop], affine.copy(), None  # a new grid: no header to reuse
        affine[:3, 3] += first * affine[:3, 2]
    low = simulate_low_dose_volume(hu, spacing[0], args.photons, args.angles, args.seed)
    write_image(np.round(low).astype(np.int16), affine, args.output, reference=reference)
    print(
        f"{args.output}: {args.photons:g} photons/ray, {args.angles} views; inserted noise std "
        f"{noise_hu(low, hu, hu > -500):.1f} HU inside the body"
    )
    if args.score:
        print(f"  {'low-dose input':<30} {_score_line(scores(low, hu))}")
        for name, denoise in classical_denoisers().items():
            print(f"  {name:<30} {_score_line(scores(denoise_slices(denoise, low), hu))}")
    return 0


def _score_line(score: dict[str, float]) -> str:
    return f"PSNR {score['psnr_db']:.2f} dB  SSIM {score['ssim']:.3f}"
