"""GAN trainers on MONAI's engines: pix2pix (conditional image-to-image) and adversarial segmentation.

MONAI's `AdversarialTrainer` shows its discriminator the *inputs* as the real images (an
autoencoder's setting). pix2pix needs a conditional discriminator that sees (input, target) as
real and (input, generated) as fake, so `Pix2PixTrainer` is a MONAI `Trainer` (ignite engine:
MONAI's handlers, checkpoints and logs work as usual) with that iteration.

Adversarial segmentation (SegAN-style): `SegmentationGANTrainer` is MONAI's own `SupervisedTrainer`
with one addition hooked on its LOSS_COMPLETED event: a discriminator step on (image, label map)
pairs, then `adversarial_weight` x the least-squares adversarial loss added to the segmentation
loss. With `adversarial_weight` 0 nothing is hooked: exactly the plain `SupervisedTrainer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from monai.engines import IterationEvents, SupervisedTrainer, Trainer
from monai.engines.utils import default_prepare_batch
from monai.networks.utils import one_hot
from monai.utils import CommonKeys as Keys
from torch import nn

from monai_bundle.engines.precision import autocast_context, autocast_dtype

GAN_KEYS = ("g_loss", "recon_loss", "adv_loss", "d_loss")


def lsgan_loss(logits, target: float) -> torch.Tensor:
    """Least-squares GAN loss; MONAI's PatchDiscriminator returns its features with the logits last."""
    logits = logits[-1] if isinstance(logits, (list, tuple)) else logits
    return torch.mean((logits.float() - target) ** 2)


RELATIVE_FLOOR = 2e-3
"""Added to each sample's input error in `Pix2PixTrainer`'s relative L1 (in the target's units: 4 HU of a
2000 HU window), so a sample whose input already equals its target (e.g. padding) does not divide by 0."""


class Pix2PixTrainer(Trainer):
    """Conditional GAN training: L1 (weighted) + least-squares adversarial loss for G; LSGAN loss for D.

    `adversarial_weight` 0 trains the same generator on L1 alone; the discriminator is then not run.
    Batches are dicts with "image" (input, e.g. low-dose) and "label" (target, e.g. normal dose).
    `precision` autocasts both networks' forward passes ('auto': bf16 where the CPU or GPU runs it fast).
    The engine's output holds the losses as floats, "image", "label" and "pred" (the generated image).

    Args:
        device: the device both networks run on.
        max_epochs: epochs to train.
        train_data_loader: loader of the (input, target) batches.
        g_network: the generator (input -> target).
        d_network: the discriminator; it sees (input, target or generated) stacked as channels.
        g_optimizer: optimiser of the generator.
        d_optimizer: optimiser of the discriminator.
        recon_weight: weight of the L1 reconstruction loss in the generator's loss.
        adversarial_weight: weight of the adversarial loss in the generator's loss (0: no GAN).
        label_smoothing: target of real pairs for the discriminator (below 1: one-sided smoothing).
        relative_recon: divide each sample's L1 error by its input's L1 distance to the target (plus
            `RELATIVE_FLOOR`): the share of the input's error left, so a low-noise sample weighs as much
            as a noisy one (plain L1 is dominated by the noisiest samples when doses vary).
        precision: 'auto', 'bf16', 'fp16' or 'fp32' (see above).
        epoch_length: iterations per epoch (None: the loader's length).
        train_handlers: MONAI/ignite handlers to attach.
        prepare_batch: batch -> (input, target) on the device, as MONAI's `prepare_batch`.
        kwargs: further arguments of MONAI's `Trainer`.
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        g_network: nn.Module,
        d_network: nn.Module,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        recon_weight: float = 100.0,
        adversarial_weight: float = 1.0,
        label_smoothing: float = 0.9,
        relative_recon: bool = False,
        precision: str = "auto",
        epoch_length: int | None = None,
        train_handlers: Sequence | None = None,
        prepare_batch: Callable = default_prepare_batch,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            prepare_batch=prepare_batch,
            handlers=train_handlers,
            decollate=False,
            **kwargs,
        )
        self.g_network, self.d_network = g_network, d_network
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.recon_weight, self.adversarial_weight = float(recon_weight), float(adversarial_weight)
        self.real_label = float(label_smoothing)
        self.relative_recon = bool(relative_recon)
        self.dtype = autocast_dtype(precision, device)

    def _autocast(self):
        return autocast_context(self.dtype, self.state.device)

    def _recon_loss(self, inputs: torch.Tensor, fakes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean L1 to the target; with `relative_recon`, per sample as a share of the input's own L1 error."""
        if not self.relative_recon:
            return torch.mean(torch.abs(fakes - targets))
        per_sample = lambda image: torch.abs(image - targets).flatten(1).mean(1)  # noqa: E731
        return torch.mean(per_sample(fakes) / (per_sample(inputs.float()) + RELATIVE_FLOOR))

    def _discriminator_step(self, inputs: torch.Tensor, targets: torch.Tensor, fakes: torch.Tensor) -> torch.Tensor:
        """One step of the discriminator: (input, target) is real with soft labels, (input, generated) is fake."""
        self.d_network.train()
        self.d_optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            real_logits = self.d_network(torch.cat([inputs, targets], 1))
            fake_logits = self.d_network(torch.cat([inputs, fakes.detach()], 1))
        d_loss = 0.5 * (lsgan_loss(real_logits, self.real_label) + lsgan_loss(fake_logits, 0.0))
        d_loss.backward()
        self.d_optimizer.step()
        return d_loss

    def _iteration(self, engine, batchdata: dict[str, torch.Tensor]) -> dict[str, Any]:
        inputs, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)[:2]
        self.g_network.train()
        with self._autocast():
            fakes = self.g_network(inputs)
        fakes = fakes.float()
        recon_loss = self._recon_loss(inputs, fakes, targets)
        adv_loss = d_loss = torch.zeros(())
        if self.adversarial_weight:
            d_loss = self._discriminator_step(inputs, targets, fakes)
            with self._autocast():
                g_logits = self.d_network(torch.cat([inputs, fakes], 1))
            adv_loss = lsgan_loss(g_logits, 1.0)
        # generator: fool the discriminator (when on) and stay close to the target
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss = self.adversarial_weight * adv_loss + self.recon_weight * recon_loss
        g_loss.backward()
        self.g_optimizer.step()
        return {
            Keys.IMAGE: inputs,
            Keys.LABEL: targets,
            Keys.PRED: fakes.detach(),
            Keys.LOSS: g_loss.item(),
            "g_loss": g_loss.item(),
            "recon_loss": recon_loss.item(),
            "adv_loss": adv_loss.item(),
            "d_loss": d_loss.item(),
        }


class SegmentationGANTrainer(SupervisedTrainer):
    """`SupervisedTrainer` + a conditional discriminator on (image, label map); LSGAN losses, soft real labels.

    `d_network` takes 1 + num_classes channels (image, then class maps); `precision` autocasts its
    forward passes as the segmentation inferer does. The engine's output gains "seg_loss",
    "adv_loss" and "d_loss" (floats) when the adversarial term is on; "loss" is the total.

    Args:
        args: positional arguments of MONAI's `SupervisedTrainer`.
        d_network: the discriminator on (image, label maps).
        d_optimizer: optimiser of the discriminator.
        adversarial_weight: weight of the adversarial term in the segmentation loss (0: plain training).
        label_smoothing: target of real pairs for the discriminator (below 1: one-sided smoothing).
        precision: autocast of the discriminator: 'auto', 'bf16', 'fp16' or 'fp32'.
        kwargs: keyword arguments of MONAI's `SupervisedTrainer` (device, max_epochs, train_data_loader, ...).
    """

    def __init__(
        self,
        *args: Any,
        d_network: nn.Module,
        d_optimizer: torch.optim.Optimizer,
        adversarial_weight: float = 0.1,
        label_smoothing: float = 0.9,
        precision: str = "auto",
        **kwargs: Any,
    ) -> None:
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
        d_loss = 0.5 * (
            lsgan_loss(self._discriminate(image, reference), self.real_label)
            + lsgan_loss(self._discriminate(image, probabilities.detach()), 0.0)
        )
        d_loss.backward()
        self.d_optimizer.step()
        # segmentation network: also make its prediction look like a reference label map
        adv_loss = lsgan_loss(self._discriminate(image, probabilities), 1.0)
        seg_loss = output[Keys.LOSS]
        output[Keys.LOSS] = seg_loss + self.adversarial_weight * adv_loss
        output.update(seg_loss=seg_loss.item(), adv_loss=adv_loss.item(), d_loss=d_loss.item())
