"""Adversarial segmentation (SegAN-style): the segmentation network also learns to fool a discriminator.

The discriminator sees (image, label map) pairs: the image with the one-hot reference is real, the
image with the network's softmax probabilities is fake. `SegmentationGANTrainer` is MONAI's own
`SupervisedTrainer` (same iteration, handlers, validation and checkpoints) with one addition hooked
on its LOSS_COMPLETED event: a discriminator step, then `adversarial_weight` x the least-squares
adversarial loss added to the segmentation loss before the backward pass. With `adversarial_weight`
0 nothing is hooked, so the baseline is exactly the plain `SupervisedTrainer` on the same network,
data and seeds.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import IterationEvents, SupervisedTrainer
from monai.networks.utils import one_hot
from monai.utils import CommonKeys as Keys
from torch import nn

from monai_bundle.engines import autocast_dtype
from monai_bundle.gan import autocast_context, lsgan_loss


class SegmentationGANTrainer(SupervisedTrainer):
    """`SupervisedTrainer` + a conditional discriminator on (image, label map); LSGAN losses, soft real labels.

    `d_network` takes 1 + num_classes channels (image, then class maps); `precision` autocasts its
    forward passes as the segmentation inferer does. The engine's output gains "seg_loss",
    "adv_loss" and "d_loss" (floats) when the adversarial term is on; "loss" is the total.
    """

    def __init__(self, *args: Any, d_network: nn.Module, d_optimizer: torch.optim.Optimizer,
                 adversarial_weight: float = 0.1, label_smoothing: float = 0.9, precision: str = "auto", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.d_network, self.d_optimizer = d_network, d_optimizer
        self.adversarial_weight = float(adversarial_weight)
        self.real_label = float(label_smoothing)
        self.d_dtype = autocast_dtype(precision, self.state.device)
        if self.adversarial_weight > 0:
            self.add_event_handler(IterationEvents.LOSS_COMPLETED, self._add_adversarial_term)

    def _discriminate(self, image: torch.Tensor, label_maps: torch.Tensor):
        with autocast_context(self.d_dtype, self.state.device):
            return self.d_network(torch.cat([image, label_maps], 1))

    def _add_adversarial_term(self, engine) -> None:
        output = engine.state.output
        image = torch.as_tensor(output[Keys.IMAGE])
        logits = torch.as_tensor(output[Keys.PRED]).float()
        probabilities = torch.softmax(logits, 1)
        reference = one_hot(torch.as_tensor(output[Keys.LABEL]).long(), logits.shape[1], dim=1).float()
        # discriminator: (image, reference) is real, (image, prediction) is fake
        self.d_network.train()
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss = 0.5 * (lsgan_loss(self._discriminate(image, reference), self.real_label)
                        + lsgan_loss(self._discriminate(image, probabilities.detach()), 0.0))
        d_loss.backward()
        self.d_optimizer.step()
        # segmentation network: also make its prediction look like a reference label map
        adv_loss = lsgan_loss(self._discriminate(image, probabilities), 1.0)
        seg_loss = output[Keys.LOSS]
        output[Keys.LOSS] = seg_loss + self.adversarial_weight * adv_loss
        output.update(seg_loss=seg_loss.item(), adv_loss=adv_loss.item(), d_loss=d_loss.item())
