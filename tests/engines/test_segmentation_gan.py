"""Adversarial segmentation: the trainer's baseline is exactly SupervisedTrainer, it learns, and the config runs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.nets import PatchDiscriminator, UNet
from monai.networks.utils import one_hot

from monai_bundle.data.phantoms import MRI_PHANTOM_LABELS, write_phantom_dataset
from monai_bundle.engines import SegmentationGANTrainer

from conftest import bundle_run

TINY_3D = {
    "pixdim": "[2.0,2.0,2.0]",
    "roi_size": "[32,32,32]",
    "network_def#channels": "[8,16,32,64,128]",
    "num_workers": 0,
    "max_epochs": 1,
    "train#trainer#epoch_length": 2,
    "val_interval": 1,
    "batch_size": 1,
    "samples_per_image": 2,
    "validate#inferer#inferer#sw_batch_size": 1,
}


def _shapes(n: int, seed: int, size: int = 32) -> list[dict[str, torch.Tensor]]:
    """Noisy 2D images of a disc (label 1) and a square (label 2) at random places: a known answer."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    batches = []
    for _ in range(n):
        images, labels = np.zeros((8, 1, size, size), np.float32), np.zeros((8, 1, size, size), np.uint8)
        for image, label in zip(images, labels):
            cy, cx, r = *rng.integers(8, size - 8, 2), rng.integers(4, 7)
            label[0][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
            sy, sx = rng.integers(2, size - 8, 2)
            label[0][sy : sy + 6, sx : sx + 6] = 2
            image[0] = 0.5 * (label[0] > 0) + 0.25 * (label[0] == 2) + rng.normal(0, 0.15, (size, size))
        batches.append({"image": torch.from_numpy(images), "label": torch.from_numpy(labels)})
    return batches


def _networks(seed: int = 0):
    torch.manual_seed(seed)
    network = UNet(2, 1, 3, (8, 16, 32), (2, 2), num_res_units=1)
    discriminator = PatchDiscriminator(2, 8, 4, num_layers_d=2, norm="INSTANCE")
    return network, discriminator


def _trainer(network, discriminator, data, epochs: int, adversarial_weight: float | None):
    """SegmentationGANTrainer (or, with weight None, MONAI's SupervisedTrainer) with DiceCE and Adam."""
    common = dict(
        device="cpu",
        max_epochs=epochs,
        train_data_loader=data,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), 3e-3),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True, include_background=False),
    )
    if adversarial_weight is None:
        return SupervisedTrainer(**common)
    return SegmentationGANTrainer(
        **common,
        d_network=discriminator,
        adversarial_weight=adversarial_weight,
        d_optimizer=torch.optim.Adam(discriminator.parameters(), 1e-4, betas=(0.5, 0.999)),
        precision="fp32",
    )


def test_adversarial_weight_zero_is_exactly_the_supervised_trainer():
    data = _shapes(3, seed=0)
    network, discriminator = _networks()
    plain = copy.deepcopy(network)
    _trainer(network, discriminator, data, 2, adversarial_weight=0.0).run()
    _trainer(plain, None, data, 2, adversarial_weight=None).run()
    for a, b in zip(network.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)


def test_adversarial_training_learns_to_segment_known_shapes():
    """96 steps with the adversarial term on: held-out Dice of both shapes above 0.8 (0.88 measured at 80)."""
    network, discriminator = _networks()
    d_before = copy.deepcopy(discriminator.state_dict())
    trainer = _trainer(network, discriminator, _shapes(16, seed=1), 6, adversarial_weight=0.1)
    trainer.run()
    assert {"seg_loss", "adv_loss", "d_loss"} <= set(trainer.state.output[0])
    assert np.isfinite(trainer.state.output[0]["d_loss"])
    assert any(not torch.equal(v, discriminator.state_dict()[k]) for k, v in d_before.items())
    network.eval()
    dice = DiceMetric(include_background=False)
    with torch.no_grad():
        for batch in _shapes(4, seed=2):
            prediction = network(batch["image"]).argmax(1, keepdim=True)
            dice(one_hot(prediction, 3), one_hot(batch["label"].long(), 3))
    per_shape = dice.aggregate(reduction="mean_batch")
    assert float(per_shape.min()) > 0.8, per_shape


@pytest.mark.slow
def test_gan_segmentation_config_trains_ct_through_the_bundle_cli(phantom_dataset, tmp_path):
    from helpers import PHANTOM_CLASSES

    bundle_run(
        ["inference.json", "train.json", "adversarial_train.json"],
        dataset_dir=phantom_dataset,
        output_dir=tmp_path,
        class_names=repr(PHANTOM_CLASSES),
        **TINY_3D,
    )
    assert (tmp_path / "models" / "model.pt").is_file()


@pytest.fixture(scope="module")
def mri_phantoms(tmp_path_factory):
    return write_phantom_dataset(tmp_path_factory.mktemp("mri"), n=3, modality="mri", shape=(32, 32, 32), seed=0)


def test_gan_segmentation_config_trains_brain_mri_through_the_bundle_cli(mri_phantoms, tmp_path):
    assert len(MRI_PHANTOM_LABELS) == 4  # the brain task's four classes
    bundle_run(
        ["inference.json", "mri_brain_segmentation.json", "train.json", "adversarial_train.json"],
        dataset_dir=mri_phantoms,
        output_dir=tmp_path,
        val_fraction=0.34,
        **TINY_3D,
    )
    assert (tmp_path / "models" / "model.pt").is_file()
