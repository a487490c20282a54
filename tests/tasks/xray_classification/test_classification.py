"""X-ray classification parts: the seed CNN, metrics and threshold, transfer loading, class-folder data lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.metrics import compute_roc_auc
from monai.networks.nets import DenseNet121

from monai_bundle.data.datalists import DatasetError, class_folder_datalist
from monai_bundle.engines import WeightsError, load_matching_weights, read_state_dict
from monai_bundle.tasks import xray_classification as cls

# ---------------------------------------------------------------------------- the seed CNN


def test_seed_cnn_matches_the_seed_description_for_150x150():
    """Conv32 3x3 -> pool -> Conv64 3x3 -> pool -> flatten 36*36*64 -> Dense128 -> 1, valid convolutions as in Keras."""
    shapes = {}
    network = cls.SeedCNN(in_channels=3, spatial_size=150).eval()
    for name in ("conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "out"):
        getattr(network, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
    network(torch.zeros(2, 3, 150, 150))
    assert shapes == {
        "conv1": (32, 148, 148),
        "pool1": (32, 74, 74),
        "conv2": (64, 72, 72),
        "pool2": (64, 36, 36),
        "flatten": (82944,),
        "fc1": (128,),
        "out": (1,),
    }
    # Keras summary of the seed model on 150x150x3: 896 + 18,496 + 10,616,960 + 129 parameters
    assert sum(p.numel() for p in network.parameters()) == 10_636_481
    assert [m.p for m in (network.drop1, network.drop2, network.drop3)] == [0.25, 0.25, 0.5]
    # the grey-image variant the bundle uses differs only in the first convolution (3x3x1x32 + 32)
    assert sum(p.numel() for p in cls.SeedCNN(1, 150).parameters()) == 10_636_481 - 896 + 320


def test_classifier_switch_and_unknown_name():
    assert isinstance(cls.classifier("seed_cnn", 64), cls.SeedCNN)
    assert isinstance(cls.classifier("densenet121", 64), DenseNet121)
    for name in cls.NETWORKS:
        assert cls.classifier(name, 96)(torch.zeros(2, 1, 96, 96)).shape == (2, 1)
    with pytest.raises(ValueError, match="unknown network 'resnet'"):
        cls.classifier("resnet")


# ---------------------------------------------------------------------------- metrics and the threshold


def test_binary_metrics_count_by_hand():
    p = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.7, 0.4]
    y = [1, 1, 1, 0, 0, 0, 1, 0]
    m = cls.binary_metrics(p, y, threshold=0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 3)
    assert m["sensitivity"] == 0.75 and m["specificity"] == 0.75 and m["accuracy"] == 0.75
    assert m["precision"] == 0.75 and m["f1"] == pytest.approx(0.75)
    assert m["roc_auc"] == pytest.approx(float(compute_roc_auc(torch.tensor(p), torch.tensor(y))))
    low, high = m["ci95"]["sensitivity"]
    assert 0.2 < low < 0.75 < high < 1.0


def test_roc_curve_area_equals_monai_auc():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).round(2)  # ties included
    fpr, tpr, _ = cls.roc_curve(p, y)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(float(compute_roc_auc(torch.tensor(p), torch.tensor(y))), abs=1e-9)


def test_youden_threshold_separates_separable_scores():
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.62, 0.7, 0.8])
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    threshold = cls.youden_threshold(p, y)
    assert 0.3 < threshold < 0.62
    metrics = cls.binary_metrics(p, y, threshold)
    assert metrics["sensitivity"] == metrics["specificity"] == 1.0


def test_stored_threshold_round_trip_and_errors(tmp_path):
    checkpoint = tmp_path / "model.pt"
    assert cls.stored_threshold(checkpoint) == cls.DEFAULT_THRESHOLD
    cls.threshold_path(checkpoint).write_text(json.dumps({"threshold": 0.37}))
    assert cls.stored_threshold(checkpoint) == 0.37
    cls.threshold_path(checkpoint).write_text(json.dumps({"threshold": 3}))
    with pytest.raises(ValueError, match="outside"):
        cls.stored_threshold(checkpoint)


def test_positive_weight_balances_classes():
    items = [{"label": [1]}] * 10 + [{"label": [0]}] * 30
    assert float(cls.positive_weight(items)) == 3.0
    with pytest.raises(ValueError, match="both classes"):
        cls.positive_weight([{"label": [0]}] * 3)


def test_prediction_table_columns():
    rows = [
        {"file": "a.png", "probability": 0.7, "label": None, "heatmap": "a_gradcam.nii.gz"},
        {"file": "b.png", "probability": 0.2, "label": None, "heatmap": ""},
    ]
    lines = cls.prediction_table(rows, ["normal", "pneumonia"], 0.4).splitlines()
    assert lines[0] == "file,probability,predicted_class,threshold,heatmap"
    assert lines[1] == "a.png,0.700000,pneumonia,0.400000,a_gradcam.nii.gz"
    assert lines[2].startswith("b.png,0.200000,normal,")


# ---------------------------------------------------------------------------- transfer learning


def test_transfer_loads_matching_adapts_rgb_and_reports(tmp_path):
    torch.manual_seed(0)
    source = DenseNet121(spatial_dims=2, in_channels=3, out_channels=14)  # e.g. an RGB, 14-finding model
    path = tmp_path / "pretrained.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = cls.classifier("densenet121", 64)
    report = load_matching_weights(target, path, freeze=["features"], report_path=tmp_path / "report.json")

    first = "features.conv0.weight"
    assert torch.allclose(target.state_dict()[first], source.state_dict()[first].sum(1, keepdim=True))
    assert torch.equal(
        target.state_dict()["features.denseblock4.denselayer16.layers.conv2.weight"],
        source.state_dict()["features.denseblock4.denselayer16.layers.conv2.weight"],
    )
    assert any(first in line for line in report["adapted"])
    assert any(line.startswith("class_layers.out.weight: shape (14, 1024)") for line in report["skipped"])
    assert report["loaded"] == len(source.state_dict()) - 3  # conv0 adapted, out.weight/bias skipped
    trainable = [n for n, p in target.named_parameters() if p.requires_grad]
    assert trainable == ["class_layers.out.weight", "class_layers.out.bias"]
    assert json.loads((tmp_path / "report.json").read_text())["frozen_parameters"] == report["frozen_parameters"]


def test_transfer_refuses_unrelated_and_bad_files(tmp_path):
    unrelated = tmp_path / "unrelated.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), unrelated)
    with pytest.raises(WeightsError, match="no tensor fits"):
        load_matching_weights(cls.classifier("seed_cnn", 64), unrelated)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt: not a PyTorch weight file"):
        read_state_dict(junk)
    with pytest.raises(WeightsError, match="missing.pt: weight file not found"):
        read_state_dict(tmp_path / "missing.pt")


def test_transfer_checks_shipped_hash(tmp_path):
    path = tmp_path / "xray.pt"
    torch.save(cls.classifier("seed_cnn", 64).state_dict(), path)
    with pytest.raises(WeightsError, match="does not match the bundle"):
        load_matching_weights(cls.classifier("seed_cnn", 64), path, known_sha256={"xray.pt": "0" * 64})


# ---------------------------------------------------------------------------- class-folder data lists


def _kermany_like(root: Path, counts: dict[str, dict[str, int]]) -> Path:
    from PIL import Image

    for split, per_class in counts.items():
        for name, n in per_class.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(n):
                stem = f"person{k // 2}_bacteria_{k}" if name == "PNEUMONIA" else f"IM-{k:04d}-0001"
                Image.fromarray(np.full((8, 8), k % 255, np.uint8)).save(folder / f"{stem}.jpeg")
    return root


def test_class_folders_split_by_patient_and_fraction(tmp_path):
    root = _kermany_like(
        tmp_path,
        {
            "train": {"NORMAL": 40, "PNEUMONIA": 60},
            "val": {"NORMAL": 2, "PNEUMONIA": 2},
            "test": {"NORMAL": 5, "PNEUMONIA": 7},
        },
    )
    names = ["normal", "pneumonia"]
    train = class_folder_datalist(root, "training", names, val_fraction=0.2, seed=1)
    val = class_folder_datalist(root, "validation", names, val_fraction=0.2, seed=1)
    test = class_folder_datalist(root, "test", names)
    assert len(test) == 12 and sum(i["label"][0] for i in test) == 7
    # val/ is too small (2 per class): 20% of train/ per class, whole patients at a time
    assert len(train) + len(val) == 100 and not {i["image"] for i in train} & {i["image"] for i in val}
    assert 8 <= sum(i["label"][0] == 0 for i in val) <= 9 and 12 <= sum(i["label"][0] == 1 for i in val) <= 13
    patients = lambda items: {Path(i["image"]).name.split("_")[0] for i in items if i["label"][0] == 1}  # noqa: E731
    assert not patients(train) & patients(val)

    labelled = class_folder_datalist(root, "training", names, 0.2, 1, label_fraction=0.1, label_subset="labelled")
    rest = class_folder_datalist(root, "training", names, 0.2, 1, label_fraction=0.1, label_subset="rest")
    assert sorted(i["image"] for i in labelled + rest) == sorted(i["image"] for i in train)
    assert 6 <= len(labelled) <= 10 and {i["label"][0] for i in labelled} == {0, 1}

    # synthetic images (e.g. GAN samples in <CLASS>/ folders) join the training split only
    synthetic = _kermany_like(tmp_path / "gan", {"samples": {"NORMAL": 3, "PNEUMONIA": 4}}) / "samples"
    augmented = class_folder_datalist(root, "training", names, 0.2, 1, label_fraction=0.1, synthetic_dir=synthetic)
    assert augmented[: len(labelled)] == labelled and len(augmented) == len(labelled) + 7
    assert sum(i["label"][0] for i in augmented[len(labelled) :]) == 4
    assert class_folder_datalist(root, "validation", names, 0.2, 1, synthetic_dir=synthetic) == val


def test_class_folders_use_a_large_enough_val_folder(tmp_path):
    root = _kermany_like(tmp_path, {"train": {"NORMAL": 30, "PNEUMONIA": 30}, "val": {"NORMAL": 20, "PNEUMONIA": 20}})
    assert len(class_folder_datalist(root, "validation", ["normal", "pneumonia"])) == 40
    assert len(class_folder_datalist(root, "training", ["normal", "pneumonia"])) == 60


def test_class_folders_errors(tmp_path):
    with pytest.raises(DatasetError, match="no train/ folder"):
        class_folder_datalist(tmp_path, "training", ["normal", "pneumonia"])
    root = _kermany_like(tmp_path / "one", {"train": {"NORMAL": 4}})
    with pytest.raises(DatasetError, match="no images for class"):
        class_folder_datalist(root, "training", ["normal", "pneumonia"])
