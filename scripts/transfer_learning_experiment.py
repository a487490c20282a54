"""Does transfer learning help with few labels? Fine-tuning vs training from scratch on the same scarce labels.

1. Pre-train the X-ray classifier on the training images *outside* a labelled fraction (default 90%).
2. For each seed, train on the labelled fraction only (default 10%): once from scratch, once
   fine-tuned from the pre-trained weights (`xray_finetune.json`).
3. Evaluate every model on the test split and write a JSON + a Markdown table of test ROC AUC,
   sensitivity and specificity.

Every step is a real `python -m monai.bundle run` of the bundle's own configs. Example:

    python scripts/transfer_learning_experiment.py --dataset_dir data/xray_synthetic --output_dir runs/transfer
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from monai_bundle import runner
from monai_bundle.files import write_text_atomic

TASK = "xray_classification"


def run(workflow: str, **overrides) -> None:
    """One bundle workflow in a child process; stop with its output on failure."""
    command = runner.bundle_command(TASK, workflow, **overrides)
    print("$", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{workflow} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")


def train(out: Path, workflow: str, common: dict, **overrides) -> Path:
    """Train (or fine-tune) into `out`; return the best checkpoint."""
    if not (out / "models" / "model.pt").is_file():
        run(workflow, output_dir=out, **common, **overrides)
    return out / "models" / "model.pt"


def evaluate(checkpoint: Path, out: Path, common: dict) -> dict:
    """Test-split metrics of a checkpoint (at its own stored threshold)."""
    run("evaluate", checkpoint=checkpoint, output_dir=out, dataset_dir=common["dataset_dir"],
        network_name=common["network_name"], image_size=common["image_size"])
    return json.loads((out / "report.json").read_text())["metrics"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True, help="class-folder dataset (train/<CLASS>, test/<CLASS>)")
    parser.add_argument("--output_dir", default="runs/transfer_learning")
    parser.add_argument("--network_name", default="densenet121", choices=["densenet121", "seed_cnn"])
    parser.add_argument("--image_size", type=int, default=150)
    parser.add_argument("--label_fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain_epochs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--results", default="", help="also write the JSON results here (e.g. the bundle docs)")
    args = parser.parse_args(argv)

    out = Path(args.output_dir)
    common = {"dataset_dir": args.dataset_dir, "network_name": args.network_name, "image_size": args.image_size}
    few = {"label_fraction": args.label_fraction, "label_seed": 0}
    pretrained = train(out / "pretrain", "train", common, max_epochs=args.pretrain_epochs, label_subset="rest", **few)
    rows = []
    for seed in args.seeds:
        for method, workflow, extra in (("scratch", "train", {}), ("fine-tuned", "finetune", {"pretrained_weights": pretrained})):
            name = f"{method}-seed{seed}"
            checkpoint = train(out / name, workflow, common, seed=seed, max_epochs=args.epochs, label_subset="labelled",
                               early_stop_patience=args.epochs, **few, **extra)
            metrics = evaluate(checkpoint, out / f"{name}-test", common)
            rows.append({"method": method, "seed": seed, **{k: metrics[k] for k in ("roc_auc", "sensitivity", "specificity", "n")}})
            print(f"{name}: test AUC {metrics['roc_auc']:.3f}", flush=True)

    summary = {}
    for method in ("scratch", "fine-tuned"):
        aucs = [row["roc_auc"] for row in rows if row["method"] == method]
        summary[method] = {"mean_auc": statistics.mean(aucs), "min_auc": min(aucs), "max_auc": max(aucs)}
    result = {"settings": vars(args), "runs": rows, "summary": summary}
    text = json.dumps(result, indent=2) + "\n"
    write_text_atomic(out / "transfer_learning.json", text)
    if args.results:
        write_text_atomic(args.results, text)
    print(markdown_table(rows))
    return 0


def markdown_table(rows: list[dict]) -> str:
    """The runs as a Markdown table."""
    lines = ["| training | seed | test ROC AUC | sensitivity | specificity |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['seed']} | {r['roc_auc']:.3f} | {r['sensitivity']:.3f} | {r['specificity']:.3f} |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
