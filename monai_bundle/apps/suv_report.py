"""`medimg-suv-report`: SUVmax, SUVmean, SUVpeak and volume per label of PET images, in the batch tool's report.

    medimg-suv-report --pet PET --labels LABELS --output OUT_DIR [--task ct_segmentation] [--save-suv]
    medimg-suv-report --pet PET.nii.gz --pet-unit BQML --weight-kg 70 --dose-bq 3.7e8 --decay-s 3600 ...

PET is a DICOM PET series (folder or one of its files), a NIfTI/NRRD/MetaImage PET with its unit stated
(`--pet-unit SUV`, or `BQML` with weight and dose: such files carry no unit, and none is guessed), or a folder of
them; LABELS is a label map (or a folder of them) in the PET's frame of reference, e.g. `medimg-batch`'s result on
the CT of the same PET/CT study. A folder of PET images is paired with the label map of the same relative folder
named `<case>` or `<case>_<postfix>` (`--labels-postfix`, default "seg", as `medimg-batch` names its results).
A label map on another grid is resampled onto the PET grid by nearest neighbour in patient coordinates (noted in
the report); NIfTI carries no frame-of-reference UID, so that the frames match is the user's statement.

OUT_DIR/report.csv and report.json (written as `medimg-batch` writes them) get one row per PET image: its status,
the one-line reason of a failure, notes, and per label `suv_max_`, `suv_mean_`, `suv_peak_` and `volume_ml_`.
SUV is body-weight SUV (`monai_bundle.io.pet`); SUVpeak is the highest mean SUV of a 1 mL sphere (radius 6.2 mm:
voxels whose centres lie within it) centred on a voxel of the label, as PERCIST defines it. `--save-suv` writes each
PET in SUV as `<case>_suv.nii.gz` on its exact grid. Exit codes: 0 all done, 1 some failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from monai_bundle.apps import runner
from monai_bundle.apps.batch import STATUSES, ThreadNotes, UsageError, failure_reason, write_report
from monai_bundle.io import (
    GRID_TOLERANCE_MM,
    PET_UNITS,
    ImageReadError,
    StatedUnit,
    Volume,
    case_name,
    find_images,
    image_suffix,
    output_path,
    read_image,
    read_suv,
    write_image,
)
from monai_bundle.io.pet import F18_HALF_LIFE_S

PROG = "medimg-suv-report"

PEAK_SPHERE_ML = 1.0
"""SUVpeak's sphere: 1 mL (radius 6.2 mm), PERCIST 1.0's."""


@dataclass(frozen=True)
class Pair:
    """A PET image, its label map ('' where none was found) and its path relative to the PET folder."""

    rel: str
    pet: str
    labels: str


def suv_statistics(suv: Volume, labels: Volume, names: dict[int, str]) -> tuple[dict[str, float | None], list[str]]:
    """Per label of `names`: suv_max_, suv_mean_, suv_peak_ (None where the label is absent) and volume_ml_.

    `labels` on another grid than `suv` is resampled onto it by nearest neighbour (a note says so).

    Returns:
        the report columns, and notes.
    """
    label_array, notes = labels_on_grid(labels, suv)
    voxel_ml = abs(float(np.linalg.det(suv.affine[:3, :3]))) / 1000.0
    peak = peak_means(suv, label_array > 0)
    columns: dict[str, float | None] = {}
    for value, name in names.items():
        inside = label_array == value
        count = int(np.count_nonzero(inside))
        values = suv.array[inside]
        columns[f"suv_max_{name}"] = round(float(values.max()), 6) if count else None
        columns[f"suv_mean_{name}"] = round(float(values.mean(dtype=np.float64)), 6) if count else None
        columns[f"suv_peak_{name}"] = round(float(peak[inside].max()), 6) if count else None
        columns[f"volume_ml_{name}"] = round(count * voxel_ml, 3)
    return columns, notes


def labels_on_grid(labels: Volume, target: Volume) -> tuple[np.ndarray, list[str]]:
    """The label map on `target`'s grid: as it is on the same grid, else nearest-neighbour resampled (noted)."""
    array = np.asarray(labels.array)
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise ImageReadError(labels.path, "not a label map: its values are not whole numbers")
    array = array.astype(np.int32, copy=False)
    same = array.shape == target.array.shape and np.abs(labels.affine - target.affine).max() <= GRID_TOLERANCE_MM
    if same:
        return array, []
    to_label = np.linalg.inv(labels.affine) @ target.affine  # PET voxel index -> label voxel index
    resampled = ndimage.affine_transform(
        array, to_label[:3, :3], to_label[:3, 3], output_shape=target.array.shape, order=0, mode="constant", cval=0
    )
    if np.any(array) and not np.any(resampled):
        raise ImageReadError(labels.path, "no label lies inside the PET's field of view: another frame of reference?")
    grid = "x".join(map(str, array.shape))
    return resampled, [f"labels resampled from their {grid} grid onto the PET grid (nearest neighbour)"]


def peak_means(suv: Volume, mask: np.ndarray) -> np.ndarray:
    """`sphere_means` of 1 mL (SUVpeak's) at the voxels of `mask`, computed only on the box around them.

    The box reaches a sphere radius beyond the mask (or to the image edge), so each mean is the one the whole
    image gives; elsewhere the result is NaN.
    """
    peak = np.full(suv.array.shape, np.nan)
    if not mask.any():
        return peak
    reach = sphere_reach(suv.affine, PEAK_SPHERE_ML)
    found = np.nonzero(mask)
    box = tuple(
        slice(max(int(i.min()) - r, 0), min(int(i.max()) + r + 1, n))
        for i, r, n in zip(found, reach, mask.shape, strict=True)
    )
    peak[box] = sphere_means(suv.array[box], suv.affine, PEAK_SPHERE_ML)
    return peak


def sphere_reach(affine: np.ndarray, ml: float) -> np.ndarray:
    """How many voxels along each axis a sphere of `ml` millilitres reaches from its centre (one more, to be safe)."""
    return np.floor(sphere_radius_mm(ml) / np.linalg.norm(affine[:3, :3], axis=0)).astype(int) + 1


def sphere_radius_mm(ml: float) -> float:
    return (3 * ml * 1000 / (4 * np.pi)) ** (1 / 3)


def sphere_means(array: np.ndarray, affine: np.ndarray, ml: float) -> np.ndarray:
    """The mean of `array` over the voxels whose centres lie within a sphere of `ml` millilitres around each voxel.

    Voxels outside the image are left out of the mean (a sphere at the edge is a part sphere).
    """
    offsets = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in sphere_reach(affine, ml)], indexing="ij"), axis=-1)
    ball = (np.linalg.norm(offsets @ affine[:3, :3].T, axis=-1) <= sphere_radius_mm(ml)).astype(np.float64)
    sums = ndimage.correlate(array.astype(np.float64), ball, mode="constant", cval=0.0)
    counts = ndimage.correlate(np.ones(array.shape), ball, mode="constant", cval=0.0)
    return sums / counts


def pair(pet: Path, labels: Path | None, postfix: str) -> list[Pair]:
    """Each PET image below `pet` (or that one) with its label map: `labels` itself for one PET, else by name."""
    cases = pet.is_dir() and image_suffix(pet) != "dicom"  # a folder of PET images, not one DICOM series
    sources, root = (find_images(pet), pet) if cases else ([str(pet)], pet.parent)
    if labels is None or labels.is_file():
        if len(sources) > 1 and labels is not None:
            raise UsageError(f"{labels}: one label map for {len(sources)} PET images; give a folder of label maps")
        return [Pair(Path(s).name, s, str(labels or "")) for s in sources]
    pairs = []
    for source in sources:
        rel = Path(source).relative_to(root).as_posix()
        folder = labels / Path(rel).parent
        wanted = {case_name(source), f"{case_name(source)}_{postfix}"}
        found = sorted(
            str(p) for p in folder.glob("*") if p.is_file() and image_suffix(p) and case_name(str(p)) in wanted
        )
        pairs.append(Pair(rel, source, found[0] if found else ""))
    return pairs


def label_names(task: str | None, labels: Volume) -> dict[int, str]:
    """Label value -> name: the task's labels (metadata), and `label_<value>` for any other value in the map."""
    named = {int(value): name for value, name in runner.tasks()[task]["labels"].items()} if task else {}
    present = {int(v): f"label_{int(v)}" for v in np.unique(labels.array) if v and int(v) not in named}
    return {**named, **present}


def measure(item: Pair, args: argparse.Namespace, stated: StatedUnit | None, notes: list[str]) -> dict:
    """One report row's results: the PET in SUV, per-label statistics, the SUV image written if asked."""
    if not item.labels and args.labels is not None:
        raise ImageReadError(item.pet, f"no label map named {case_name(item.pet)}[_{args.labels_postfix}] found")
    suv = read_suv(item.pet, stated)
    row: dict = {"labels": item.labels, "suv_max": round(float(suv.array.max()), 6)}
    if args.save_suv:
        target = output_path(item.pet, str(args.output / Path(item.rel).parent), "suv", ".nii.gz")
        write_image(suv.array, suv.affine, target)
        row["output"] = target.relative_to(args.output).as_posix()
    if item.labels:
        labels = read_image(item.labels, ndim=3)
        columns, resampled = suv_statistics(suv, labels, label_names(args.task, labels))
        row.update(columns)
        notes += resampled
    return row


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="SUVmax/SUVmean/SUVpeak and volume per label of PET images (body-weight SUV).",
    )
    parser.add_argument("--pet", required=True, type=Path, help="a PET image or DICOM series, or a folder of them")
    parser.add_argument("--labels", type=Path, help="a label map in the PET's frame of reference, or a folder of them")
    parser.add_argument("--output", required=True, type=Path, help="folder of report.csv/json (and SUV images)")
    parser.add_argument("--labels-postfix", default="seg", help="label maps named <case>_<postfix> (default seg)")
    segmenters = sorted(task for task, block in runner.tasks().items() if block["kind"] == "segmentation")
    parser.add_argument("--task", choices=segmenters, help="name the labels as this segmentation task does")
    parser.add_argument("--save-suv", action="store_true", help="write each PET in SUV as <case>_suv.nii.gz")
    unit = parser.add_argument_group("unit of a NIfTI/NRRD/MetaImage PET (DICOM carries its own)")
    unit.add_argument("--pet-unit", choices=PET_UNITS, help="SUV (values are SUVbw) or BQML (Bq/mL)")
    unit.add_argument("--weight-kg", type=float, help="patient weight, for BQML")
    unit.add_argument("--dose-bq", type=float, help="injected dose at injection (Bq), for BQML")
    unit.add_argument("--decay-s", type=float, default=0.0, help="seconds from injection to the image's decay time")
    unit.add_argument("--half-life-s", type=float, default=F18_HALF_LIFE_S, help="default F-18: 6586.2")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`medimg-suv-report ...`; returns the exit code."""
    args = _arguments().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        for path in (args.pet, args.labels):
            if path is not None and not path.exists():
                raise UsageError(f"{path}: not found")
        pairs = pair(args.pet, args.labels, args.labels_postfix)
        if not pairs:
            raise UsageError(f"{args.pet}: no NIfTI, NRRD, MetaImage or DICOM images found")
    except UsageError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    stated = StatedUnit(args.pet_unit, args.weight_kg, args.dose_bq, args.decay_s, args.half_life_s)
    started, rows, collector = time.time(), [], ThreadNotes()
    logging.getLogger("monai_bundle.io").addHandler(collector)
    for item in pairs:
        row, notes, clock = {"input": item.rel, "status": "done", "error": ""}, [], time.perf_counter()
        try:
            with collector.collect(notes):
                row.update(measure(item, args, stated if args.pet_unit else None, notes))
        except Exception as error:  # one line per failed input; the others go on
            row.update(status="failed", error=failure_reason(item.pet, error))
            print(f"failed: {row['error']}", file=sys.stderr)
        row.update(note="; ".join(notes), read_s=round(time.perf_counter() - clock, 3))
        rows.append(row)
    logging.getLogger("monai_bundle.io").removeHandler(collector)
    header = {"tool": PROG, "input_dir": str(args.pet.resolve()), "output_dir": str(args.output.resolve())}
    csv_path = write_report(args.output, None, {**header, "seconds": round(time.time() - started, 1)}, rows, started)
    count = {status: sum(row["status"] == status for row in rows) for status in STATUSES}
    print(f"{count['done']} done, {count['failed']} failed; report: {csv_path}")
    return 1 if count["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
