"""The images of a set as jobs: planned per split, rendered in this process or a pool, one labels.csv row each."""

from __future__ import annotations

import csv
import io
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monai_bundle.data.drr.opacities import opacity_region, opacity_volume_ml
from monai_bundle.data.drr.render import DrrParams, random_params, render_drr
from monai_bundle.data.drr.sources import SourceCT
from monai_bundle.io import write_bytes_atomic
from monai_bundle.io.png import png_bytes

SPLITS = ("train", "test")


_MIN_SOURCE_SHARE = 0.05  # of a split's lung volume: the weight of a source with little lung


@dataclass(frozen=True)
class _Job:
    split: str
    index: int
    source: str
    positive: bool
    seed: int


def _share(n: int, weights: Sequence[float]) -> list[int]:
    """Split n into integer parts proportional to weights (largest remainder)."""
    exact = np.asarray(weights, float) / float(sum(weights)) * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _plan_split(split: str, n: int, sources: Sequence[SourceCT], positive_fraction: float, seed: int) -> list[_Job]:
    """Jobs of one split: sources weighted by lung volume (at least 5 % each), classes balanced per source."""
    split_code = SPLITS.index(split)
    rng = np.random.default_rng([seed, split_code])
    total = sum(s.lung_ml for s in sources)
    counts = _share(n, [max(s.lung_ml, _MIN_SOURCE_SHARE * total) for s in sources]) if sources else []
    positives = _share(round(n * positive_fraction), counts) if n else counts
    plan = []
    for source, count, positive in zip(sources, counts, positives):
        plan += [(source.name, i < positive) for i in range(count)]
    order = rng.permutation(len(plan))
    return [
        _Job(split, i, *plan[j], int(np.random.SeedSequence([seed, split_code, i]).generate_state(1)[0]))
        for i, j in enumerate(order)
    ]


_WORKER: dict = {}


def _init_worker(sources: dict[str, SourceCT], root: Path, size: int, opacity: str) -> None:
    _WORKER.update(sources=sources, root=root, size=size, opacity=opacity)


def _render_job(job: _Job) -> dict[str, str]:
    """Render one image into the set being built; return its labels.csv row."""
    source = _WORKER["sources"][job.source]
    params = random_params(np.random.default_rng(job.seed), source, _WORKER["size"], job.positive, _WORKER["opacity"])
    relative = f"{job.split}/{params.label}/synthetic_{job.source}_{job.index:05d}.png"
    image = render_drr(source, params.view, params.display, params.opacities)
    write_bytes_atomic(_WORKER["root"] / relative, png_bytes(image))
    return _csv_row(relative, job, params, source)


def _fmt(values, digits: int = 1) -> str:
    return " ".join(f"{v:.{digits}f}" for v in values)


def _csv_row(relative: str, job: _Job, params: DrrParams, source: SourceCT) -> dict[str, str]:
    ops, view, shown = params.opacities, params.view, params.display
    volumes = [opacity_volume_ml(source, o)[0] for o in ops]
    regions = [opacity_region(source, o) for o in ops]
    return {
        "file": relative,
        "split": job.split,
        "class": params.label,
        "source_ct": job.source,
        "n_opacities": str(len(ops)),
        "opacity_centre_mm": ";".join(_fmt(o.centre_mm) for o in ops),
        "opacity_diameters_mm": ";".join(_fmt(o.diameters_mm) for o in ops),
        "opacity_density_hu": ";".join(f"{o.density_hu:.1f}" for o in ops),
        "opacity_kind": ";".join(o.kind for o in ops),
        "opacity_side": ";".join(side for side, _ in regions),
        "opacity_region": ";".join(region for _, region in regions),
        "opacity_volume_ml": ";".join(f"{v:.2f}" for v in volumes),
        "opacity_pixel_rc": ";".join(_fmt(view.pixel_of(o.centre_mm, shown.size)) for o in ops),
        "projection": view.projection,
        "source_distance_mm": "parallel" if view.source_distance_mm is None else f"{view.source_distance_mm:.1f}",
        "angles_deg": _fmt(view.angles_deg, 2),
        "field_mm": f"{view.field_mm:.1f}",
        "view_centre_mm": _fmt(view.centre_mm),
        **{name: f"{getattr(shown, name):g}" for name in ("lo", "hi", "k", "gamma", "blur_px", "photons", "unsharp")},
        "image_seed": str(job.seed),
    }


def _render_all(
    jobs: list[_Job], sources: dict[str, SourceCT], root: Path, size: int, workers: int, opacity: str
) -> list[dict]:
    """Rows of all jobs, rendered in this process or in `workers` processes (same result)."""
    if workers <= 1 or len(jobs) < 2 * workers:
        _init_worker(sources, root, size, opacity)
        return [_render_job(job) for job in jobs]
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _init_worker, (sources, root, size, opacity)) as pool:
        return pool.map(_render_job, jobs, chunksize=8)


_CSV_COLUMNS = (
    "file",
    "split",
    "class",
    "source_ct",
    "n_opacities",
    "opacity_centre_mm",
    "opacity_diameters_mm",
    "opacity_density_hu",
    "opacity_kind",
    "opacity_side",
    "opacity_region",
    "opacity_volume_ml",
    "opacity_pixel_rc",
    "projection",
    "source_distance_mm",
    "angles_deg",
    "field_mm",
    "view_centre_mm",
    "lo",
    "hi",
    "k",
    "gamma",
    "blur_px",
    "photons",
    "unsharp",
    "image_seed",
)


def _csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: (SPLITS.index(r["split"]), r["file"])))
    return buffer.getvalue()
