"""Small MONAI bundles in the Model Zoo layout for tests: configs/inference.json and metadata.json, models/model.pt.

The config follows the zoo's segmentation bundles (spleen_ct_segmentation, wholeBody_ct_segmentation,
swin_unetr_btcv_segmentation, brats_mri_segmentation): `datalist` globs `dataset_dir/imagesTs/*.nii.gz`,
`dataset#data` wraps it, LoadImaged with MONAI's own reader, Orientationd/Spacingd, a sliding window,
then Activationsd -> Invertd -> AsDiscreted -> SaveImaged (float32, `separate_folder`), an evaluator whose
CheckpointLoader loads models/model.pt. The network is a tiny UNet with seeded random weights: its label
maps are real outputs on the inputs' grids, which is what these bundles test (not learning).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from monai.networks.nets import UNet

CHANNELS = [4, 8, 16]


def _network(in_channels: int, out_channels: int) -> dict:
    return {
        "_target_": "UNet",
        "spatial_dims": 3,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "channels": CHANNELS,
        "strides": [2, 2],
        "num_res_units": 1,
        "norm": "batch",
    }


SOFTMAX_TAIL = [
    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
    {
        "_target_": "Invertd",
        "keys": "pred",
        "transform": "@preprocessing",
        "orig_keys": "@image_key",
        "nearest_interp": False,
        "to_tensor": True,
    },
    {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
]
"""spleen / swin_unetr: probabilities inverted (bilinear), then argmax."""


LABELS_FIRST_TAIL = [
    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
    {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
    {
        "_target_": "Invertd",
        "keys": "pred",
        "transform": "@preprocessing",
        "orig_keys": "@image_key",
        "nearest_interp": True,
        "to_tensor": True,
    },
]
"""wholeBody_ct_segmentation: argmax first, labels inverted with nearest neighbours."""


def inference_config(
    in_channels: int = 1,
    out_channels: int = 3,
    tail: list[dict] | None = None,
    imports: list[str] | None = None,
    pixdim: tuple[float, float, float] = (2.0, 2.0, 2.0),
) -> dict:
    """A zoo-style configs/inference.json as a dict."""
    return {
        "imports": ["$import glob", "$import numpy", "$import os", *(imports or [])],
        "bundle_root": ".",
        "image_key": "image",
        "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".nii.gz",
        "output_dtype": "$numpy.float32",
        "output_postfix": "trans",
        "separate_folder": True,
        "load_pretrain": True,
        "dataset_dir": "/workspace/data/not_here",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": _network(in_channels, out_channels),
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "@image_key"},
                {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
                {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "@image_key", "pixdim": list(pixdim), "mode": "bilinear"},
                {
                    "_target_": "ScaleIntensityRanged",
                    "keys": "@image_key",
                    "a_min": -200,
                    "a_max": 300,
                    "b_min": 0,
                    "b_max": 1,
                    "clip": True,
                },
                {"_target_": "EnsureTyped", "keys": "@image_key"},
            ],
        },
        "dataset": {
            "_target_": "Dataset",
            "data": "$[{'image': i} for i in @datalist]",
            "transform": "@preprocessing",
        },
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": 0,
        },
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 2, "overlap": 0.25},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                *(SOFTMAX_TAIL if tail is None else tail),
                {
                    "_target_": "SaveImaged",
                    "keys": "pred",
                    "output_dir": "@output_dir",
                    "output_ext": "@output_ext",
                    "output_dtype": "@output_dtype",
                    "output_postfix": "@output_postfix",
                    "separate_folder": "@separate_folder",
                },
            ],
        },
        "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
        },
        "checkpointloader": {
            "_target_": "CheckpointLoader",
            "load_path": "$@bundle_root + '/models/model.pt'",
            "load_dict": {"model": "@network"},
        },
        "initialize": [
            "$monai.utils.set_determinism(seed=123)",
            "$@checkpointloader(@evaluator) if @load_pretrain else None",
        ],
        "run": ["$@evaluator.run()"],
    }


def metadata(input_channels: dict[str, str], output_channels: dict[str, str], **extra) -> dict:
    """A zoo-style configs/metadata.json: what network_data_format says of the input and the output."""
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "monai_version": "1.4.0",
        "pytorch_version": "2.4.0",
        "numpy_version": "1.24.4",
        "optional_packages_version": {"nibabel": "5.2.1", "pytorch-ignite": "0.4.11"},
        "name": "Tiny test segmentation",
        "task": "a test bundle",
        "description": "A tiny randomly initialised network in the Model Zoo layout, for tests",
        "authors": "MedImg tests",
        "copyright": "none",
        "network_data_format": {
            "inputs": {"image": {**_tensor_def("hounsfield", input_channels), "modality": "CT"}},
            "outputs": {"pred": _tensor_def("segmentation", output_channels)},
        },
        **extra,
    }


def write_bundle(folder: Path, config: dict, meta: dict, seed: int = 0) -> Path:
    """configs/inference.json, configs/metadata.json and models/model.pt (the config's network, seeded weights)."""
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=4) + "\n")
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
    spec = {key: value for key, value in config["network_def"].items() if key != "_target_"}
    torch.manual_seed(seed)
    network = UNet(**spec)
    with torch.no_grad():  # batch norm statistics that make the random network's output vary over the image
        network.train()
        network(torch.rand(2, spec["in_channels"], 32, 32, 32))
    torch.save(network.eval().state_dict(), folder / "models" / "model.pt")
    return folder


ORGANS = {"0": "background", "1": "liver", "2": "spleen"}


def plain_bundle(folder: Path, tail: list[dict] | None = None) -> Path:
    """One CT channel in, softmax over background/liver/spleen out (the spleen bundle's pattern)."""
    return write_bundle(folder, inference_config(tail=tail), metadata({"0": "image"}, ORGANS))


def multichannel_bundle(folder: Path) -> Path:
    """BraTS-like: four MRI channels in, three overlapping sigmoid channels out, remapped to 1/2/4 in a Lambdad."""
    remap = "$lambda x: torch.where(x[[2]] > 0, 4, torch.where(x[[0]] > 0, 1, torch.where(x[[1]] > 0, 2, 0)))"
    tail = [
        {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
        {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5},
        {"_target_": "Lambdad", "keys": "pred", "func": remap},
    ]
    config = inference_config(in_channels=4, out_channels=3, tail=tail)
    inputs = {"0": "T1c", "1": "T1", "2": "T2", "3": "FLAIR"}
    meta = metadata(inputs, {"0": "Tumor core", "1": "Whole tumor", "2": "Enhancing tumor"})
    return write_bundle(folder, config, meta)


def remapped_bundle(folder: Path) -> Path:
    """Softmax over three channels whose argmax 0/1/2 the postprocessing writes as 0/1/4 (MapLabelValued)."""
    remap = {"_target_": "MapLabelValued", "keys": "pred", "orig_labels": [0, 1, 2], "target_labels": [0, 1, 4]}
    return write_bundle(folder, inference_config(tail=[*SOFTMAX_TAIL, remap]), metadata({"0": "image"}, ORGANS))


def code_remapped_bundle(folder: Path) -> Path:
    """One channel in, but the label values are rewritten in a Lambdad: values the config cannot tell."""
    tail = [*SOFTMAX_TAIL, {"_target_": "Lambdad", "keys": "pred", "func": "$lambda x: x * 2"}]
    return write_bundle(folder, inference_config(tail=tail), metadata({"0": "image"}, ORGANS))


def needs_package_bundle(folder: Path) -> Path:
    """The plain bundle, but its metadata requires a package that is not installed (as swin_unetr needs einops)."""
    meta = metadata({"0": "image"}, ORGANS, required_packages_version={"medimg-no-such-package": "0.7.0"})
    return write_bundle(folder, inference_config(), meta)


def _tensor_def(data_format: str, channels: dict) -> dict:
    """One network_data_format entry as the zoo's metadata writes it (32³ patches, float32 in [0, 1])."""
    return {
        "type": "image",
        "format": data_format,
        "num_channels": len(channels),
        "spatial_shape": [32, 32, 32],
        "dtype": "float32",
        "value_range": [0, 1],
        "is_patch_data": True,
        "channel_def": channels,
    }
