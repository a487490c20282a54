#!/usr/bin/env python
"""HD-BET's network pass alone, in process: fp32 (the reference) vs bf16 autocast, channels-last and a bf16 copy.

A benchmark, not a test: it bounds how fast any pipeline around HD-BET's network can be on this CPU
(`compare_brain_extraction.py` times whole runs). The input is the size the 1 mm MNI152 head has on HD-BET's
1.5 mm grid after its padding; each arm is timed after one warm-up pass, best of `--repeats`, and printed
as a ratio to fp32 with its mask's agreement (share of voxels with the same argmax). Needs the [hdbet] extra.

    python scripts/benchmark_hdbet_network.py
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable

import torch

from monai_bundle.engines import CPU_BF16_FLAGS, cpu_flags, cpu_name
from monai_bundle.tasks.mri_brain_segmentation.brain_extraction import hdbet_network, hdbet_weights_dir


def best_seconds(arm: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    """Best wall time of `repeats` calls after a warm-up, and the last output."""
    output = arm()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = arm()
        times.append(time.perf_counter() - start)
    return min(times), output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 160, 128])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    flags = " ".join(sorted(cpu_flags() & set(CPU_BF16_FLAGS))) or "no bf16 flags"
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, {flags}")
    network = hdbet_network(hdbet_weights_dir() / "0.model").eval()
    image = torch.randn(1, 1, *args.shape)
    channels_last = copy.deepcopy(network).to(memory_format=torch.channels_last_3d)
    bf16_copy = copy.deepcopy(network).to(torch.bfloat16)

    def autocast(net: torch.nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        def arm() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(x)

        return arm

    arms = {
        "fp32": lambda: network(image),
        "bf16 autocast (ours)": autocast(network, image),
        "bf16 autocast, channels-last 3D": autocast(channels_last, image.to(memory_format=torch.channels_last_3d)),
        "network cast to bf16": lambda: bf16_copy(image.to(torch.bfloat16)),
    }
    print(f"input 1 x 1 x {' x '.join(map(str, args.shape))}\narm | seconds | ratio to fp32 | same argmax as fp32")
    print("---|---|---|---")
    with torch.inference_mode():
        reference_seconds, reference = best_seconds(arms.pop("fp32"), args.repeats)
        print(f"fp32 | {reference_seconds:.2f} | 1.00 | 1")
        for name, arm in arms.items():
            seconds, output = best_seconds(arm, args.repeats)
            same = (output.float().argmax(1) == reference.argmax(1)).float().mean().item()
            print(f"{name} | {seconds:.2f} | {seconds / reference_seconds:.2f} | {same:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
