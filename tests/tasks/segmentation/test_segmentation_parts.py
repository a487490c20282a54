"""Unit tests of the segmentation task's building blocks (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_bundle import engines
from monai_bundle.data import datalists as datasets
from monai_bundle.io import (
    SaveOnInputGridd,
    Volume,
    output_path,
    read_header,
    sha256_of,
    write_image,
)
from monai_bundle.tasks.ct_segmentation import CT_CLASSES, CT_GROUPS, merge_classes
from monai_bundle.tasks.mri_brain_segmentation import MRI_CLASSES, brain_tissue_labels
from monai_bundle.tasks.segmentation import (
    KeepLargestComponentPerLabeld,
    label_on_image_grid,
)


def _write_pairs(root, names, image_dir="imagesTr", label_dir="labelsTr", label_tag=""):
    for name in names:
        write_image(np.zeros((4, 4, 4), np.float32), np.eye(4), root / image_dir / f"{name}.nii.gz")
        write_image(np.zeros((4, 4, 4), np.uint8), np.eye(4), root / label_dir / f"{name}{label_tag}.nii.gz")


def test_folder_dataset_pairs_by_name_and_splits_deterministically(tmp_path):
    _write_pairs(tmp_path, [f"case{i}" for i in range(10)], "images", "labels", label_tag="_seg")
    train = datasets.segmentation_datalist(tmp_path, "training", val_fraction=0.2, seed=3)
    val = datasets.segmentation_datalist(tmp_path, "validation", val_fraction=0.2, seed=3)
    assert len(train) == 8 and len(val) == 2
    assert not {d["image"] for d in train} & {d["image"] for d in val}
    assert val == datasets.segmentation_datalist(tmp_path, "validation", val_fraction=0.2, seed=3)
    assert all(d["label"].endswith(d["image"].rsplit("/", 1)[1].replace(".nii.gz", "_seg.nii.gz")) for d in train)


def test_msd_dataset_json_lists_are_used(tmp_path):
    _write_pairs(tmp_path, ["a", "b", "c"])
    spec = {
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in "ab"],
        "validation": [{"image": "./imagesTr/c.nii.gz", "label": "./labelsTr/c.nii.gz"}],
        "test": ["./imagesTr/c.nii.gz"],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(spec))
    assert [d["image"].rsplit("/", 1)[1] for d in datasets.segmentation_datalist(tmp_path, "training")] == [
        "a.nii.gz",
        "b.nii.gz",
    ]
    assert [d["image"].rsplit("/", 1)[1] for d in datasets.segmentation_datalist(tmp_path, "validation")] == [
        "c.nii.gz"
    ]
    assert datasets.segmentation_datalist(tmp_path, "test") == []  # unlabelled test entries are not evaluation data


@pytest.mark.parametrize(
    "layout, message", [("missing", "not found"), ("empty", "expected dataset.json"), ("unmatched", "no label")]
)
def test_dataset_errors_name_the_folder(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout != "missing":
        root.mkdir()
    if layout == "unmatched":
        _write_pairs(root, ["a"])
        write_image(np.zeros((4, 4, 4), np.float32), np.eye(4), root / "imagesTr" / "orphan.nii.gz")
    with pytest.raises(datasets.DatasetError, match=message):
        datasets.segmentation_datalist(root)


def test_image_datalist_accepts_a_file_or_a_folder(tmp_path):
    write_image(np.zeros((4, 4, 4), np.float32), np.eye(4), tmp_path / "x.nii.gz")
    assert datasets.image_datalist(tmp_path / "x.nii.gz") == [{"image": str(tmp_path / "x.nii.gz")}]
    assert datasets.image_datalist(tmp_path) == [{"image": str(tmp_path / "x.nii.gz")}]
    write_image(np.zeros((4, 4), np.float32), np.eye(4), tmp_path / "flat.nii.gz")
    three_d = datasets.image_datalist(tmp_path, ndim=3)
    assert [d["image"] for d in three_d] == [str(tmp_path / "x.nii.gz")]
    assert len(three_d.skipped) == 1 and "flat.nii.gz" in three_d.skipped[0] and "2D" in three_d.skipped[0]
    (tmp_path / "flat.nii.gz").unlink()
    (tmp_path / "empty").mkdir()
    with pytest.raises(datasets.DatasetError, match="no NIfTI"):
        datasets.image_datalist(tmp_path / "empty")


def test_precision_choice(monkeypatch):
    assert engines.autocast_dtype("fp32", "cpu") is None
    assert engines.autocast_dtype("bf16", "cpu") is torch.bfloat16
    monkeypatch.setattr(engines.precision, "cpu_flags", lambda: {"avx2"})
    assert engines.autocast_dtype("auto", "cpu") is None
    monkeypatch.setattr(engines.precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert engines.autocast_dtype("auto", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        engines.autocast_dtype("int8", "cpu")


def test_autocast_inferer_returns_float32_close_to_fp32():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 1)).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    from monai.inferers import SimpleInferer

    with torch.inference_mode():
        fp32 = engines.AutocastInferer(SimpleInferer(), "fp32", "cpu")(x, net)
        bf16 = engines.AutocastInferer(SimpleInferer(), "bf16", "cpu")(x, net)
    assert fp32.dtype == bf16.dtype == torch.float32
    assert torch.allclose(fp32, bf16, atol=0.05 * fp32.abs().max().item())


def test_flip_ensemble_inferer_averages_flipped_passes():
    """A position-dependent network x * gain: the ensemble gives x * (gain averaged over its 4 flips), per slice."""
    from monai.inferers import SimpleInferer, SliceInferer

    gain = torch.arange(1.0, 13.0).reshape(1, 1, 3, 4)
    network = lambda batch: batch * gain  # noqa: E731 - not flip-equivariant
    x = torch.randn(2, 1, 3, 4)
    symmetric = (gain + gain.flip(2) + gain.flip(3) + gain.flip((2, 3))) / 4
    assert torch.allclose(engines.FlipEnsembleInferer(SimpleInferer(), [0, 1])(x, network), x * symmetric)
    assert torch.equal(engines.FlipEnsembleInferer(SimpleInferer(), [])(x, network), x * gain)
    assert torch.allclose(engines.FlipEnsembleInferer(SimpleInferer(), [1])(x, network), x * (gain + gain.flip(3)) / 2)

    volume = torch.randn(1, 1, 3, 4, 5)  # axial slices along the last axis, as the denoiser sees them
    slices = engines.FlipEnsembleInferer(SliceInferer(roi_size=(3, 4), spatial_dim=2, sw_batch_size=2), [0, 1])
    assert torch.allclose(slices(volume, network), volume * symmetric[..., None], atol=1e-6)


def test_non_finite_steps_are_skipped_and_training_goes_on():
    """A batch whose loss is NaN leaves the weights as they were; the finite batches around it still train."""
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    torch.manual_seed(0)
    network = torch.nn.Linear(2, 1)
    batches = [{"image": torch.randn(4, 2), "label": torch.randn(4, 1)} for _ in range(3)]
    batches[1]["image"][0, 0] = float("nan")
    guard = engines.SkipNonFiniteSteps()
    trainer = SupervisedTrainer(
        "cpu",
        1,
        batches,
        network,
        torch.optim.AdamW(network.parameters(), 0.1),
        torch.nn.MSELoss(),
        train_handlers=[guard],
    )
    weights = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: weights.append(network.weight.detach().clone()))
    trainer.run()
    assert guard.skipped == 1
    assert torch.equal(weights[1], weights[0]) and not torch.equal(weights[2], weights[1])
    assert all(torch.isfinite(p).all() for p in network.parameters())


def test_load_weights_checks_shipped_hashes(tmp_path):
    net = torch.nn.Linear(2, 2)
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    engines.load_weights(torch.nn.Linear(2, 2), path, {"model.pt": sha256_of(path)})
    engines.load_weights(torch.nn.Linear(2, 2), path, {})  # a user's own checkpoint: loads, hash logged
    with pytest.raises(engines.WeightsError, match="does not match"):
        engines.load_weights(torch.nn.Linear(2, 2), path, {"model.pt": "0" * 64})
    with pytest.raises(engines.WeightsError, match="does not fit"):
        engines.load_weights(torch.nn.Linear(3, 2), path, {})
    with pytest.raises(engines.WeightsError, match="not found"):
        engines.load_weights(net, tmp_path / "absent.pt", {})


def _prediction(array, affine, source):
    from monai.data import MetaTensor

    return MetaTensor(
        torch.as_tensor(array[None]), affine=torch.as_tensor(affine), meta={"filename_or_obj": str(source)}
    )


def test_save_on_input_grid_refuses_a_shifted_result(tmp_path):
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    source = tmp_path / "ct.nrrd"
    write_image(np.zeros((6, 5, 4), np.int16), affine, source)
    saver = SaveOnInputGridd("pred", output_dir=str(tmp_path / "out"))
    labels = np.arange(120, dtype=np.uint8).reshape(6, 5, 4) % 3
    written = saver({"pred": _prediction(labels, affine, source)})["pred_path"]
    assert written == str(output_path(str(source), str(tmp_path / "out"), "seg", None)) and written.endswith(
        "ct_seg.nrrd"
    )
    shape, out_affine, _ = read_header(written)
    assert shape == (6, 5, 4) and np.array_equal(out_affine, read_header(source)[1])
    shifted = affine.copy()
    shifted[0, 3] += 1.0
    with pytest.raises(ValueError, match="affine differs"):
        saver({"pred": _prediction(labels, shifted, source)})


def test_keep_largest_component_only_for_listed_labels():
    labels = np.zeros((1, 12, 4, 4), np.uint8)
    labels[0, 0:3], labels[0, 5], labels[0, 8:10], labels[0, 11] = 1, 1, 2, 2
    kept = np.asarray(KeepLargestComponentPerLabeld("pred", labels=[1])({"pred": torch.as_tensor(labels)})["pred"])
    assert (kept[0, 5] == 0).all() and (kept[0, 0:3] == 1).all()  # the small piece of label 1 is gone
    assert (kept[0, 11] == 2).all()  # label 2 was not listed: both pieces stay
    unchanged = KeepLargestComponentPerLabeld("pred", labels=[])({"pred": torch.as_tensor(labels)})["pred"]
    assert np.array_equal(np.asarray(unchanged), labels)


def test_merge_classes_by_name():
    names = {
        1: "spleen",
        5: "liver",
        10: "lung_upper_lobe_left",
        14: "lung_lower_lobe_right",
        26: "vertebrae_S1",
        117: "costal_cartilages",
    }
    fine = np.array([0, 1, 5, 10, 14, 26, 117], dtype=np.uint8)
    coarse = merge_classes(fine, names, CT_GROUPS, CT_CLASSES)
    expected = [0, "spleen", "liver", "lungs", "lungs", "bone", 0]
    assert list(coarse) == [e if e == 0 else CT_CLASSES.index(e) for e in expected]


def test_label_on_image_grid_undoes_a_flipped_axis_exactly():
    image = Volume(np.zeros((5, 4, 3), np.float32), np.diag([-1.0, -1.0, 2.0, 1.0]), "img", "nifti")
    label_array = np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    flip_j = np.eye(4)
    flip_j[1, 1], flip_j[1, 3] = -1, 3
    label = Volume(label_array[:, ::-1, :].copy(), image.affine @ flip_j, "lab", "nifti")
    assert np.array_equal(label_on_image_grid(image, label, "case"), label_array)
    half_shift = Volume(
        label_array, image.affine @ np.array([[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "lab", "nifti"
    )
    with pytest.raises(ValueError, match="voxel centres"):
        label_on_image_grid(image, half_shift, "case")


def test_brain_tissue_labels_from_probability_maps():
    grey = np.zeros((20, 20, 20), np.float32)
    white = np.zeros_like(grey)
    grey[4:16, 4:16, 4:16] = 200
    white[6:14, 6:14, 6:14], grey[6:14, 6:14, 6:14] = 220, 30
    white[9:11, 9:11, 9:11] = grey[9:11, 9:11, 9:11] = 0  # a "ventricle" enclosed by tissue
    labels = brain_tissue_labels(grey, white)
    names = MRI_CLASSES
    assert labels[5, 5, 5] == names.index("grey_matter")
    assert labels[7, 7, 7] == names.index("white_matter")
    assert labels[10, 10, 10] == names.index("csf_and_other_brain")
    assert labels[0, 0, 0] == 0


def test_overlay_png_is_written(tmp_path):
    from PIL import Image

    from monai_bundle.io import save_overlay_png

    image = np.full((30, 30, 20), -1000, np.int16)
    image[5:25, 5:25, :] = 40
    labels = np.zeros(image.shape, np.uint8)
    labels[10:15, 10:15, 5:15], labels[16:22, 16:22, 5:15] = 1, 4
    write_image(image, np.diag([1.0, 1.0, 2.0, 1.0]), tmp_path / "ct.nii.gz")
    write_image(labels, np.diag([1.0, 1.0, 2.0, 1.0]), tmp_path / "seg.nii.gz")
    png = save_overlay_png(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz", tmp_path / "o.png", CT_CLASSES)
    picture = np.asarray(Image.open(png).convert("RGB"))
    assert picture.shape[1] > picture.shape[0] > 100
    assert (np.abs(picture[..., 0].astype(int) - picture[..., 1]) > 60).any()  # coloured label pixels are present


def test_leave_one_out_folds_hold_out_each_labelled_case_once(tmp_path):
    """Three labelled cases (two training, one test) and an unlabelled one: three folds, each read by the configs'
    datalist as its case for test and the other two for training and validation, the files found through links."""
    from pathlib import Path
    from types import SimpleNamespace

    from monai_bundle.tasks.segmentation.data import write_case, write_dataset_json, write_leave_one_out_folds

    volume = SimpleNamespace(array=np.zeros((4, 4, 4), np.float32), affine=np.eye(4))
    labels = np.zeros((4, 4, 4), np.uint8)
    entries = {name: write_case(tmp_path, name, volume, labels) for name in ("a", "b", "c")}
    unlabelled = write_case(tmp_path, "d", volume, None)
    lists = {"training": [entries["a"], entries["b"]], "test": [entries["c"], unlabelled]}
    write_dataset_json(tmp_path, "set", "", ["background", "organ"], "CT", lists)
    folds = write_leave_one_out_folds(tmp_path)
    assert sorted(folds) == ["a", "b", "c"]
    for held_out, fold in folds.items():
        others = sorted({"a", "b", "c"} - {held_out})
        names = {
            split: sorted(
                Path(item["image"]).name.split(".")[0] for item in datasets.segmentation_datalist(fold, split)
            )
            for split in ("test", "training", "validation")
        }
        assert names == {"test": [held_out], "training": others, "validation": others}
        for item in datasets.segmentation_datalist(fold, "all"):
            assert all(Path(item[key]).is_file() for key in ("image", "label"))
        assert json.loads((fold / "dataset.json").read_text())["labels"] == {"0": "background", "1": "organ"}
    write_dataset_json(tmp_path, "set", "", ["background"], "CT", {"training": [entries["a"]]})
    with pytest.raises(ValueError, match="2 or more labelled cases"):
        write_leave_one_out_folds(tmp_path)
