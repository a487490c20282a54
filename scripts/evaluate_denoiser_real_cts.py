#!/usr/bin/env python
"""Score the low-dose CT denoiser and the classical baselines on every real sample CT at two doses.

    python scripts/evaluate_denoiser_real_cts.py                      # the shipped weights, 2e4 and 1e5 photons/ray
    python scripts/evaluate_denoiser_real_cts.py --checkpoint W.pt --photons 2e4
    python scripts/evaluate_denoiser_real_cts.py --unseen    # CTs no training pair is made from

Per dose: simulated low-dose copies of every n-th slice of each CT (`ct_denoising.real_cts`), then the
task's evaluate workflow on them (network, low-dose input, every setting of every classical denoiser).
One row per CT (each classical method at its best setting) into WORK_DIR/real_cts.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from monai_bundle.apps.experiments import run, write_results
from monai_bundle.io import write_text_atomic
from monai_bundle.tasks.ct_denoising import real_cts

TASK = "ct_denoising"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / "ct_denoising_real_cts")
    parser.add_argument("--photons", type=float, nargs="+", default=list(real_cts.EVAL_PHOTONS))
    parser.add_argument("--checkpoint", type=Path, help="generator weights (default: the shipped ones)")
    parser.add_argument(
        "--unseen", action="store_true", help="score the CTs no training pair is made from (real_cts.UNSEEN_CTS)"
    )
    args = parser.parse_args(argv)
    cts, prefix = (real_cts.UNSEEN_CTS, "unseen_") if args.unseen else (real_cts.REAL_CTS, "")
    rows, minutes = [], {}
    for photons in args.photons:
        started = time.monotonic()
        pairs = real_cts.write_real_ct_pairs(args.work_dir / f"{prefix}pairs_{photons:g}", photons, cts=cts)
        out = args.work_dir / f"{prefix}eval_{photons:g}"
        extra = {"checkpoint": args.checkpoint.resolve()} if args.checkpoint else {}
        run(TASK, "evaluate", dataset_dir=pairs, output_dir=out, eval_split="test", **extra)
        rows += real_cts.real_ct_rows(json.loads((out / "report.json").read_text()), photons)
        minutes[f"{photons:g}"] = round((time.monotonic() - started) / 60, 1)
    rows.sort(key=lambda row: (row["ct"], row["photons"]))
    table = real_cts.markdown_tables(rows)
    checkpoint = str(args.checkpoint) if args.checkpoint else "shipped"
    result = {"task": TASK, "checkpoint": checkpoint, "minutes": minutes, "rows": rows}
    write_results(result, args.work_dir / f"{prefix}real_cts.json")
    write_text_atomic(args.work_dir / f"{prefix}real_cts.md", table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
