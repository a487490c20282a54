"""Cross-modality (T1 -> T2-like) deformable registration helped by a GAN, with known synthetic warps.

Data (synthetic-from-real): axial 2 mm slices of the real ICBM 2009a T1 template (skull-stripped)
and its grey/white-matter maps. Each sample is a pair on the same anatomy:
- moving: the real T1 slice, unwarped;
- fixed: a T2-like image (CSF 1.0 > grey matter 0.55 > white matter 0.35, background 0) made from
  the tissue maps *after* a random smooth warp `d`, times a smooth bias field (exp of +-0.15) plus
  Gaussian noise (std 0.02); each image scaled by its 0-99.5th percentiles to [0, 1]. The warp:
  Gaussian random displacements on control points every 32 mm, bicubic in between, largest
  displacement drawn from 4-8 mm.
So the ground truth is exactly `d`: the displacement (MONAI `Warp` convention, in voxels) that
brings the moving image onto the fixed one, fixed(x) ~ moving(x + d(x)).

Method: a translator (MONAI UNet) trained as pix2pix (`gan.Pix2PixTrainer`: L1 + adversarial loss
against a PatchDiscriminator) maps the fixed contrast to T1 on aligned pairs; a MONAI `LocalNet`
then learns, unsupervised, the displacement that makes the warped T1 match the translated fixed
image under a mono-modal similarity (LNCC) plus bending energy. Without the translator the same
LocalNet learns from mutual information between T1 and the T2-like image instead. At inference
the network's field can be refined per pair by a few optimiser steps on the same loss.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import BendingEnergyLoss
from monai.metrics import compute_dice
from monai.networks.blocks import Warp
from monai.networks.utils import one_hot
from monai.transforms import MapTransform, ScaleIntensityRangePercentiles
from monai.utils import convert_to_tensor
from torch import nn

from monai_bundle.data.phantoms import smooth_field
from monai_bundle.io import (
    ImageReadError,
    check_same_grid,
    image_suffix,
    output_path,
    read_header,
    write_displacement_field,
    write_image,
)

logger = logging.getLogger(__name__)


SPACING_MM = 2.0


T2_LIKE = {"grey_matter": 0.55, "white_matter": 0.35, "csf": 1.0}
"""Intensity of each tissue in the synthetic second contrast (T2-like: fluid bright, grey above white)."""


TISSUES = ("grey_matter", "white_matter", "csf")


_PERCENTILES = ScaleIntensityRangePercentiles(0.0, 99.5, 0.0, 1.0, clip=True)


def _normalise(image: torch.Tensor) -> torch.Tensor:
    """0th-99.5th percentiles to [0, 1], clipped, as a plain float32 tensor (inference's preprocessing)."""
    return convert_to_tensor(_PERCENTILES(image), dtype=torch.float32, track_meta=False)


def write_icbm_slices(out_dir: str | Path, test_every: int = 4, block: int = 6) -> Path:
    """Axial 2 mm slices of the ICBM 2009a T1 and its tissue maps as `slices.npz` (cached); return the folder.

    The volume is averaged over 2x2x2 voxels, cropped to 96x112 in-plane; slices with brain on at
    least 15 % of their area are kept. Held out: every `test_every`-th block of `block` slices (12 mm).
    """
    out_dir = Path(out_dir)
    target = out_dir / "slices.npz"
    if target.is_file():
        return out_dir
    from monai_bundle.data import sample_data
    from monai_bundle.io import read_image
    from monai_bundle.tasks.mri_brain_segmentation import brain_tissue_labels
    from monai_bundle.tasks.segmentation import label_on_image_grid

    t1 = read_image(sample_data.fetch("icbm_t1"), ndim=3)
    maps = [label_on_image_grid(t1, read_image(sample_data.fetch(f"icbm_{k}"), ndim=3), k).astype(np.float32) / 255
            for k in ("gm", "wm")]
    brain = (brain_tissue_labels(*maps) > 0).astype(np.float32)
    volumes = np.stack([np.asarray(t1.array, np.float32) * brain, *maps, brain])
    pooled = F.avg_pool3d(torch.from_numpy(volumes), 2).numpy()[:, 1:97, 2:114]  # 98x116 -> 96x112
    t1_2mm, grey, white, brain_2mm = pooled
    keep = [k for k in range(pooled.shape[-1]) if brain_2mm[..., k].mean() > 0.15]
    slices = {name: np.moveaxis(v[..., keep], -1, 0) for name, v in
              (("t1", t1_2mm), ("grey_matter", grey), ("white_matter", white), ("brain", brain_2mm))}
    test = np.array([(i // block) % test_every == test_every - 1 for i in range(len(keep))])
    save_slices(target, **slices, test=test)
    return out_dir


def save_slices(path: str | Path, t1, grey_matter, white_matter, brain, test) -> None:
    """Write a slice set: arrays (n, H, W) of T1 and tissue fractions, and which slices are held out."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, t1=t1, grey_matter=grey_matter, white_matter=white_matter, brain=brain,
                        test=np.asarray(test, bool))


def load_slices(dataset_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    """The 'train' or 'test' slices of a slice set: T1 (n, H, W) and tissue fractions (n, 3, H, W) GM, WM, CSF."""
    with np.load(Path(dataset_dir) / "slices.npz") as data:
        chosen = data["test"] if split == "test" else ~data["test"]
        grey, white, brain = (data[k][chosen].astype(np.float32) for k in ("grey_matter", "white_matter", "brain"))
        csf = np.clip(brain - grey - white, 0.0, 1.0)
        return {"t1": data["t1"][chosen].astype(np.float32), "tissues": np.stack([grey, white, csf], 1)}


def random_smooth_ddf(shape: tuple[int, int], rng: np.random.Generator, max_mm: float,
                      control_mm: float = 32.0, spacing: float = SPACING_MM) -> torch.Tensor:
    """A smooth random displacement field (2, H, W) in voxels: Gaussian control points every `control_mm`,
    bicubic in between, scaled to a largest displacement drawn from [max_mm / 2, max_mm]."""
    coarse = [int(np.ceil(n * spacing / control_mm)) + 1 for n in shape]
    field = F.interpolate(torch.from_numpy(rng.normal(size=(1, 2, *coarse)).astype(np.float32)), size=shape,
                          mode="bicubic", align_corners=True)[0]
    peak = float(torch.linalg.vector_norm(field, dim=0).max())
    return field * (rng.uniform(0.5, 1.0) * max_mm / spacing / max(peak, 1e-6))


def t2_like(tissues: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The synthetic second contrast (1, H, W) of tissue fractions (3, H, W): see the module docstring."""
    image = sum(T2_LIKE[name] * tissues[i] for i, name in enumerate(TISSUES))
    bias = np.exp(0.15 * smooth_field(image.shape, rng))
    image = image * torch.from_numpy(bias.astype(np.float32)) + torch.from_numpy(
        rng.normal(0.0, 0.02, image.shape).astype(np.float32))
    return _normalise(image.clamp(min=0)[None])


def tissue_labels(tissues: torch.Tensor) -> torch.Tensor:
    """Label map (1, H, W): 0 background, 1 GM, 2 WM, 3 CSF, the largest fraction (background = 1 - brain)."""
    background = (1.0 - tissues.sum(0, keepdim=True)).clamp(min=0)
    return torch.cat([background, tissues]).argmax(0, keepdim=True)


class SyntheticWarpDataset(torch.utils.data.Dataset):
    """Pairs made on the fly from a slice set, reproducible per index: item i uses rng([seed, i]).

    Each item: "pair" (2, H, W) = moving T1, fixed T2-like; "ddf" the true displacement (voxels);
    "moving_label" / "fixed_label" tissue labels; "t1" and "t2_aligned" (the T2-like image of the
    unwarped slice: an aligned pair for the translator). `length` sets how many distinct items exist.
    """

    def __init__(self, slices: dict[str, np.ndarray], length: int, seed: int = 0, max_displacement_mm: float = 8.0):
        self.t1 = torch.stack([_normalise(torch.from_numpy(s)[None]) for s in slices["t1"]])
        self.tissues = torch.from_numpy(slices["tissues"])
        self.length, self.seed, self.max_mm = int(length), int(seed), float(max_displacement_mm)
        self.warp = Warp(mode="bilinear", padding_mode="zeros")
        self.warp_labels = Warp(mode="nearest", padding_mode="zeros")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        which = index % len(self.t1) if self.length <= 10 * len(self.t1) else int(rng.integers(len(self.t1)))
        tissues, t1 = self.tissues[which], self.t1[which]
        ddf = random_smooth_ddf(tuple(t1.shape[1:]), rng, self.max_mm)
        warped = self.warp(tissues[None], ddf[None])[0]
        fixed = t2_like(warped, rng)
        return {"pair": torch.cat([t1, fixed]), "ddf": ddf, "t1": t1, "t2_aligned": t2_like(tissues, rng),
                "moving_label": tissue_labels(tissues), "fixed_label": tissue_labels(warped)}


def keyed_batch(image_key: str, label_key: str):
    """A MONAI `prepare_batch` that takes (input, target) from the batch's `image_key` and `label_key`."""

    def prepare(batchdata, device=None, non_blocking: bool = False, **kwargs):
        return tuple(batchdata[key].to(device=device, non_blocking=non_blocking) for key in (image_key, label_key))

    return prepare


class TranslateAndRegister(nn.Module):
    """(moving, fixed) channels in, displacement (voxels, MONAI `Warp` convention) out.

    With a `translator`, the fixed image is first translated to the moving contrast (the translator
    is trained separately and stays frozen here, in eval mode). Inputs of any size are zero-padded
    to a multiple of `multiple` for the registration network and the field is cropped back.
    With a `similarity` and `refine_steps` > 0, evaluation (not training) refines the network's
    field per pair: `refine_steps` Adam steps on the field itself against the `RegistrationLoss` of
    that similarity and `bending_weight` (instance optimisation, in float32).
    """

    def __init__(self, registration: nn.Module, translator: nn.Module | None = None, multiple: int = 8,
                 refine_steps: int = 0, refine_lr: float = 0.1, similarity: nn.Module | None = None,
                 bending_weight: float = 1.0):
        super().__init__()
        self.registration, self.translator, self.multiple = registration, translator, int(multiple)
        self.refine_steps, self.refine_lr = int(refine_steps), float(refine_lr)
        loss = None if similarity is None else RegistrationLoss(self, similarity, bending_weight)
        self.__dict__["loss"] = loss  # not a submodule: no cycle, no weights

    def train(self, mode: bool = True):
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
    """

    def __init__(self, network: TranslateAndRegister, similarity: nn.Module, bending_weight: float = 1.0):
        super().__init__()
        self.network, self.similarity, self.bending_weight = network, similarity, float(bending_weight)
        self.warp, self.bending = Warp(mode="bilinear", padding_mode="zeros"), BendingEnergyLoss()

    def forward(self, ddf: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        ddf = ddf.float()
        warped = self.warp(pair[:, :1], ddf)
        target = self.network.translate(pair[:, 1:])
        return self.similarity(warped, target) + self.bending_weight * self.bending(ddf)


def folding_fraction(ddf: np.ndarray) -> float:
    """Fraction of pixels where the Jacobian determinant of x -> x + ddf(x) is <= 0 (ddf (2, H, W), voxels)."""
    (d00, d01), (d10, d11) = (np.gradient(component) for component in ddf)
    return float(np.mean((1 + d00) * (1 + d11) - d01 * d10 <= 0))


def score(predicted: np.ndarray, item: dict[str, torch.Tensor], spacing: float = SPACING_MM) -> dict[str, float]:
    """Dense displacement error (mm, inside the fixed brain), Dice of warped GM/WM labels, folding fraction."""
    truth = item["ddf"].numpy()
    brain = item["fixed_label"][0].numpy() > 0
    error = np.linalg.norm(predicted - truth, axis=0)[brain] * spacing
    warped = Warp(mode="nearest", padding_mode="zeros")(item["moving_label"][None].float(),
                                                        torch.from_numpy(predicted)[None].float())
    dice = compute_dice(one_hot(warped.long(), 4), one_hot(item["fixed_label"][None].long(), 4), include_background=False)[0]
    return {"error_mm": float(error.mean()), "error_p95_mm": float(np.percentile(error, 95)),
            "dice_grey_matter": float(dice[0]), "dice_white_matter": float(dice[1]),
            "folding_fraction": folding_fraction(predicted)}


def sitk_bspline(moving: np.ndarray, fixed: np.ndarray, spacing: float = SPACING_MM, mesh: int = 8,
                 iterations: int = 100) -> np.ndarray:
    """Classical baseline: SimpleITK B-spline registration with Mattes mutual information (LBFGSB, 2 levels).

    Arrays (H, W) on the same grid; returns the displacement (2, H, W) in voxels along the array axes,
    MONAI `Warp` convention (the ITK transform maps fixed points to moving points, the same).
    """
    import SimpleITK as sitk

    def image(array):
        result = sitk.GetImageFromArray(np.ascontiguousarray(array, np.float64))
        result.SetSpacing((spacing, spacing))
        return result

    fixed_image, moving_image = image(fixed), image(moving)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(sitk.BSplineTransformInitializer(fixed_image, [mesh, mesh]), inPlace=True)
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1, 0])
    transform = method.Execute(fixed_image, moving_image)
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, fixed_image.GetSize(),
                                              fixed_image.GetOrigin(), fixed_image.GetSpacing(),
                                              fixed_image.GetDirection())
    vectors = sitk.GetArrayFromImage(field)  # (H, W, 2): x along the last array axis, y along the first
    return np.stack([vectors[..., 1], vectors[..., 0]]) / spacing


def pair_datalist(moving: str, fixed: str) -> list[dict[str, str]]:
    """[{"moving", "fixed"}] after checking both are readable 2D images; else exit with one line naming the file."""
    for path in (moving, fixed):
        try:
            shape = read_header(path)[0]
            if len(shape) != 2:
                raise ImageReadError(path, f"is {len(shape)}D (shape {tuple(shape)}); registration takes 2D images")
        except ImageReadError as error:
            raise SystemExit(str(error)) from None
        except OSError as error:
            raise SystemExit(f"{path}: {error.strerror or error}") from None
    return [{"moving": str(moving), "fixed": str(fixed)}]


class SaveRegistrationd(MapTransform):
    """Write the warped moving image and the displacement field, both on the fixed image's grid.

    `keys`: the displacement (channel-first, voxels of the fixed grid, MONAI `Warp` convention).
    The warped image is `<moving>_warped.<fixed's format>` with the fixed file's header; the field is
    `<moving>_ddf.nii.gz`: a NIfTI vector image, per fixed-grid point x the displacement u(x) in LPS mm
    with moving(x + u(x)) ~ fixed(x) (see image_io.write_displacement_field).
    """

    def __init__(self, keys, moving_key: str, fixed_key: str, output_dir: str, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.moving_key, self.fixed_key, self.output_dir = moving_key, fixed_key, output_dir
        self.warp = Warp(mode="bilinear", padding_mode="zeros")

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            moving, fixed, ddf = d[self.moving_key], d[self.fixed_key], d[key].float()
            fixed_path, moving_path = str(fixed.meta["filename_or_obj"]), str(moving.meta["filename_or_obj"])
            affine = np.asarray(fixed.meta["affine"], np.float64)
            warped = self.warp(torch.as_tensor(moving)[None].float(), torch.as_tensor(ddf)[None])[0, 0].numpy()
            check_same_grid(fixed_path, warped.shape, affine)
            warped_path = output_path(moving_path, self.output_dir, "warped", image_suffix(fixed_path))
            write_image(warped.astype(np.float32), affine, warped_path,
                        reference=fixed_path if Path(fixed_path).is_file() else None)
            displacement_ras = np.einsum("wc,c...->...w", affine[:3, : ddf.shape[0]], ddf.numpy())
            ddf_path = output_path(moving_path, self.output_dir, "ddf", ".nii.gz")
            write_displacement_field(displacement_ras, affine, ddf_path)
            d.update({f"{key}_warped_path": str(warped_path), f"{key}_ddf_path": str(ddf_path)})
            logger.info("wrote %s and %s", warped_path, ddf_path)
        return d
