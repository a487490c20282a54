"""The registration network around a GAN translator, and its unsupervised loss.

A translator (MONAI UNet) trained as pix2pix (`engines.Pix2PixTrainer`: L1 + adversarial loss
against a PatchDiscriminator) maps the fixed contrast to T1 on aligned pairs; a MONAI `LocalNet`
then learns, unsupervised, the displacement that makes the warped T1 match the translated fixed
image under a mono-modal similarity (LNCC) plus bending energy. Without the translator the same
LocalNet learns from mutual information between T1 and the T2-like image instead. At inference
the network's field can be refined per pair by a few optimiser steps on the same loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import BendingEnergyLoss
from monai.networks.blocks import Warp
from torch import nn


class TranslateAndRegister(nn.Module):
    """(moving, fixed) channels in, displacement (voxels, MONAI `Warp` convention) out.

    With a `translator`, the fixed image is first translated to the moving contrast (the translator
    is trained separately and stays frozen here, in eval mode). Inputs of any size are zero-padded
    to a multiple of `multiple` for the registration network and the field is cropped back.
    With a `similarity` and `refine_steps` > 0, evaluation (not training) refines the network's
    field per pair: `refine_steps` Adam steps on the field itself against the `RegistrationLoss` of
    that similarity and `bending_weight` (instance optimisation, in float32).

    Args:
        registration: network from (moving, fixed in the moving contrast) to a displacement field.
        translator: network from the fixed contrast to the moving one (frozen); None: no translation.
        multiple: input sizes are padded to a multiple of this (the registration network's downsampling).
        refine_steps: Adam steps of per-pair refinement at evaluation; 0: none.
        refine_lr: learning rate of the refinement.
        similarity: similarity loss of the refinement (None: no refinement).
        bending_weight: weight of the bending energy in the refinement's loss.
    """

    def __init__(
        self,
        registration: nn.Module,
        translator: nn.Module | None = None,
        multiple: int = 8,
        refine_steps: int = 0,
        refine_lr: float = 0.1,
        similarity: nn.Module | None = None,
        bending_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.registration, self.translator, self.multiple = registration, translator, int(multiple)
        self.refine_steps, self.refine_lr = int(refine_steps), float(refine_lr)
        loss = None if similarity is None else RegistrationLoss(self, similarity, bending_weight)
        self.__dict__["loss"] = loss  # not a submodule: no cycle, no weights

    def train(self, mode: bool = True) -> TranslateAndRegister:
        super().train(mode)
        if self.translator is not None:
            self.translator.eval()
        return self

    def translate(self, fixed: torch.Tensor) -> torch.Tensor:
        """The fixed image in the moving image's contrast (itself without a translator)."""
        if self.translator is None:
            return fixed
        with torch.no_grad():
            return self.translator(fixed).float()

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        moving, fixed = pair[:, :1], pair[:, 1:]
        size = pair.shape[2:]
        pad = [p for n in reversed(size) for p in (0, -n % self.multiple)]
        inputs = F.pad(torch.cat([moving, self.translate(fixed).to(moving.dtype)], 1), pad)
        ddf = self.registration(inputs)[(..., *[slice(0, n) for n in size])]
        if self.training or not self.refine_steps or self.loss is None:
            return ddf
        return self.refine(ddf, pair)

    def refine(self, ddf: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """`refine_steps` Adam steps on the field itself, minimising `self.loss` for this pair."""
        with torch.enable_grad(), torch.autocast(pair.device.type, enabled=False):
            field = ddf.detach().float().clone().requires_grad_(True)
            optimizer = torch.optim.Adam([field], lr=self.refine_lr)
            pair = pair.detach().float()
            for _ in range(self.refine_steps):
                optimizer.zero_grad(set_to_none=True)
                self.loss(field, pair).backward()
                optimizer.step()
        return field.detach()


class RegistrationLoss(nn.Module):
    """similarity(warped moving, translated fixed) + `bending_weight` x bending energy of the field.

    Called by MONAI's `SupervisedTrainer` as loss(pred=displacement, target=pair).

    Args:
        network: the network being trained; its `translate` gives the target contrast.
        similarity: mono- or multi-modal similarity loss (e.g. LNCC, or mutual information without a translator).
        bending_weight: weight of the bending energy, which keeps the field smooth.
    """

    def __init__(self, network: TranslateAndRegister, similarity: nn.Module, bending_weight: float = 1.0) -> None:
        super().__init__()
        self.network, self.similarity, self.bending_weight = network, similarity, float(bending_weight)
        self.warp, self.bending = Warp(mode="bilinear", padding_mode="zeros"), BendingEnergyLoss()

    def forward(self, ddf: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        ddf = ddf.float()
        warped = self.warp(pair[:, :1], ddf)
        target = self.network.translate(pair[:, 1:])
        return self.similarity(warped, target) + self.bending_weight * self.bending(ddf)
