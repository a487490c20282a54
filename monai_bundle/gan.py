"""pix2pix for image-to-image GANs (low-dose CT denoising): a residual UNet generator and a trainer.

MONAI's `AdversarialTrainer` shows its discriminator the *inputs* as the real images (an
autoencoder's setting). pix2pix needs a conditional discriminator that sees (input, target) as
real and (input, generated) as fake, so `Pix2PixTrainer` is a MONAI `Trainer` (ignite engine:
MONAI's handlers, checkpoints and logs work as usual) with that iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from monai.engines import Trainer
from monai.engines.utils import default_prepare_batch
from monai.networks.nets import UNet
from monai.utils import CommonKeys as Keys
from torch import nn

from monai_bundle.engines import autocast_dtype


class ResidualUNet(nn.Module):
    """A MONAI UNet that predicts a correction added to its input: output = input + UNet(input).

    Denoising then starts from the identity, and the network only has to learn the noise. Batch
    norm (not instance norm): at inference its statistics do not depend on the slice or window
    size, so patches in training and whole slices in inference give the same answer.
    """

    def __init__(self, spatial_dims: int = 2, channels: tuple[int, ...] = (32, 64, 128, 256),
                 strides: tuple[int, ...] = (2, 2, 2), num_res_units: int = 2, norm: str = "batch"):
        super().__init__()
        self.unet = UNet(spatial_dims, 1, 1, channels, strides, num_res_units=num_res_units, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.unet(x)


GAN_KEYS = ("g_loss", "recon_loss", "adv_loss", "d_loss")


def lsgan_loss(logits, target: float) -> torch.Tensor:
    """Least-squares GAN loss; MONAI's PatchDiscriminator returns its features with the logits last."""
    logits = logits[-1] if isinstance(logits, (list, tuple)) else logits
    return torch.mean((logits.float() - target) ** 2)


def autocast_context(dtype: torch.dtype | None, device: torch.device | str):
    """`torch.autocast` to `dtype` on `device`'s type, or nothing for fp32 (dtype None)."""
    return nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype)


class Pix2PixTrainer(Trainer):
    """Conditional GAN training: L1 (weighted) + least-squares adversarial loss for G; LSGAN loss for D.

    `adversarial_weight` 0 trains the same generator without the GAN (for comparison).
    Batches are dicts with "image" (input, e.g. low-dose) and "label" (target, e.g. normal dose).
    `precision` autocasts both networks' forward passes ('auto': bf16 where the CPU or GPU runs it fast).
    The engine's output holds the losses as floats, "image", "label" and "pred" (the generated image).
    """

    def __init__(self, device: torch.device | str, max_epochs: int, train_data_loader, g_network: nn.Module,
                 d_network: nn.Module, g_optimizer: torch.optim.Optimizer, d_optimizer: torch.optim.Optimizer,
                 recon_weight: float = 100.0, adversarial_weight: float = 1.0, label_smoothing: float = 0.9,
                 precision: str = "auto",
                 epoch_length: int | None = None, train_handlers=None, prepare_batch: Callable = default_prepare_batch,
                 **kwargs: Any):
        super().__init__(device=device, max_epochs=max_epochs, data_loader=train_data_loader, epoch_length=epoch_length,
                         prepare_batch=prepare_batch, handlers=train_handlers, decollate=False, **kwargs)
        self.g_network, self.d_network = g_network, d_network
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.recon_weight, self.adversarial_weight = float(recon_weight), float(adversarial_weight)
        self.real_label = float(label_smoothing)
        self.dtype = autocast_dtype(precision, device)

    def _autocast(self):
        return autocast_context(self.dtype, self.state.device)

    def _iteration(self, engine, batchdata: dict[str, torch.Tensor]) -> dict[str, Any]:
        inputs, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)[:2]
        self.g_network.train()
        self.d_network.train()
        with self._autocast():
            fakes = self.g_network(inputs)
        fakes = fakes.float()
        # discriminator: (input, target) is real, (input, generated) is fake; soft real labels
        self.d_optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            real_logits = self.d_network(torch.cat([inputs, targets], 1))
            fake_logits = self.d_network(torch.cat([inputs, fakes.detach()], 1))
        d_loss = 0.5 * (lsgan_loss(real_logits, self.real_label) + lsgan_loss(fake_logits, 0.0))
        d_loss.backward()
        self.d_optimizer.step()
        # generator: fool the discriminator and stay close to the target
        self.g_optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            g_logits = self.d_network(torch.cat([inputs, fakes], 1))
        adv_loss = lsgan_loss(g_logits, 1.0)
        recon_loss = torch.mean(torch.abs(fakes - targets))
        g_loss = self.adversarial_weight * adv_loss + self.recon_weight * recon_loss
        g_loss.backward()
        self.g_optimizer.step()
        return {Keys.IMAGE: inputs, Keys.LABEL: targets, Keys.PRED: fakes.detach(), Keys.LOSS: g_loss.item(),
                "g_loss": g_loss.item(), "recon_loss": recon_loss.item(), "adv_loss": adv_loss.item(),
                "d_loss": d_loss.item()}
