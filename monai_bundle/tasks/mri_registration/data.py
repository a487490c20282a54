"""Synthetic-from-real registration pairs with a known warp, and the data lists of training and inference.

Axial 2 mm slices of the real ICBM 2009a T1 template (skull-stripped) and its grey/white-matter
maps. Each sample is a pair on the same anatomy:
- moving: the real T1 slice, unwarped;
- fixed: a T2-like image (CSF 1.0 > grey matter 0.55 > white matter 0.35, background 0) made from
  the tissue maps *after* a random smooth warp `d`, times a smooth bias field (exp of +-0.15) plus
  Gaussian noise (std 0.02); each image scaled by its 0-99.5th percentiles to [0, 1]. The warp:
  Gaussian random displacements on control points every 32 mm, bicubic in between, largest
  displacement drawn from 4-8 mm.
So the ground truth is exactly `d`: the displacement (MONAI `Warp` convention, in voxels) that
brings the moving image onto the fixed one, fixed(x) ~ moving(x + d(x)).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Warp
from monai.transforms import ScaleIntensityRangePercentiles
from monai.utils import convert_to_tensor

from monai_bundle.data.phantoms import smooth_field
from monai_bundle.io import ImageReadError, read_header

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
    Blocks of neighbouring slices are held out, not single slices, so a test slice's neighbours (nearly
    the same anatomy) are not in training.

    Args:
        out_dir: folder of `slices.npz`; nothing is done when it exists.
        test_every: every this-th block of slices is held out.
        block: slices per block.
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
    maps = [
        label_on_image_grid(t1, read_image(sample_data.fetch(f"icbm_{k}"), ndim=3), k).astype(np.float32) / 255
        for k in ("gm", "wm")
    ]
    brain = (brain_tissue_labels(*maps) > 0).astype(np.float32)
    volumes = np.stack([np.asarray(t1.array, np.float32) * brain, *maps, brain])
    pooled = F.avg_pool3d(torch.from_numpy(volumes), 2).numpy()[:, 1:97, 2:114]  # 98x116 -> 96x112
    t1_2mm, grey, white, brain_2mm = pooled
    keep = [k for k in range(pooled.shape[-1]) if brain_2mm[..., k].mean() > 0.15]
    slices = {
        name: np.moveaxis(v[..., keep], -1, 0)
        for name, v in (("t1", t1_2mm), ("grey_matter", grey), ("white_matter", white), ("brain", brain_2mm))
    }
    test = np.array([(i // block) % test_every == test_every - 1 for i in range(len(keep))])
    save_slices(target, **slices, test=test)
    return out_dir


def save_slices(path: str | Path, t1, grey_matter, white_matter, brain, test) -> None:
    """Write a slice set: arrays (n, H, W) of T1 and tissue fractions, and which slices are held out."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, t1=t1, grey_matter=grey_matter, white_matter=white_matter, brain=brain, test=np.asarray(test, bool)
    )


def load_slices(dataset_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    """The 'train' or 'test' slices of a slice set: T1 (n, H, W) and tissue fractions (n, 3, H, W) GM, WM, CSF.

    Args:
        dataset_dir: folder of `slices.npz` (`write_icbm_slices`).
        split: "test" for the held-out slices; anything else gives the training slices.
    """
    with np.load(Path(dataset_dir) / "slices.npz") as data:
        chosen = data["test"] if split == "test" else ~data["test"]
        grey, white, brain = (data[k][chosen].astype(np.float32) for k in ("grey_matter", "white_matter", "brain"))
        csf = np.clip(brain - grey - white, 0.0, 1.0)
        return {"t1": data["t1"][chosen].astype(np.float32), "tissues": np.stack([grey, white, csf], 1)}


def random_smooth_ddf(
    shape: tuple[int, int],
    rng: np.random.Generator,
    max_mm: float,
    control_mm: float = 32.0,
    spacing: float = SPACING_MM,
) -> torch.Tensor:
    """A smooth random displacement field (2, H, W) in voxels: Gaussian control points every `control_mm`,
    bicubic in between, scaled to a largest displacement drawn from [max_mm / 2, max_mm]."""
    coarse = [int(np.ceil(n * spacing / control_mm)) + 1 for n in shape]
    field = F.interpolate(
        torch.from_numpy(rng.normal(size=(1, 2, *coarse)).astype(np.float32)),
        size=shape,
        mode="bicubic",
        align_corners=True,
    )[0]
    peak = float(torch.linalg.vector_norm(field, dim=0).max())
    return field * (rng.uniform(0.5, 1.0) * max_mm / spacing / max(peak, 1e-6))


def t2_like(tissues: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The synthetic second contrast (1, H, W) of tissue fractions (3, H, W): see the module docstring."""
    image = sum(T2_LIKE[name] * tissues[i] for i, name in enumerate(TISSUES))
    bias = np.exp(0.15 * smooth_field(image.shape, rng))
    image = image * torch.from_numpy(bias.astype(np.float32)) + torch.from_numpy(
        rng.normal(0.0, 0.02, image.shape).astype(np.float32)
    )
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

    Args:
        slices: a slice set (`load_slices`).
        length: number of items; up to 10 x the slices they go round the slices, beyond that each item
            draws its slice at random.
        seed: with the index, seeds each item's warp, bias and noise.
        max_displacement_mm: the largest displacement of a warp is drawn from [half of this, this].
    """

    def __init__(
        self, slices: Mapping[str, np.ndarray], length: int, seed: int = 0, max_displacement_mm: float = 8.0
    ) -> None:
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
        return {
            "pair": torch.cat([t1, fixed]),
            "ddf": ddf,
            "t1": t1,
            "t2_aligned": t2_like(tissues, rng),
            "moving_label": tissue_labels(tissues),
            "fixed_label": tissue_labels(warped),
        }


def keyed_batch(image_key: str, label_key: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """A MONAI `prepare_batch` that takes (input, target) from the batch's `image_key` and `label_key`.

    Args:
        image_key: key of the network input.
        label_key: key of the target (or of what the loss compares with).
    """

    def prepare(
        batchdata: Mapping[str, torch.Tensor],
        device: torch.device | str | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(batchdata[key].to(device=device, non_blocking=non_blocking) for key in (image_key, label_key))

    return prepare


def pair_datalist(moving: str, fixed: str) -> list[dict[str, str]]:
    """[{"moving", "fixed"}] after checking both are readable 2D images; else exit with one line naming the file.

    Args:
        moving: the image to warp.
        fixed: the image it is warped onto; the results are written on its grid.

    Raises:
        SystemExit: an image is unreadable or not 2D (the message names the file).
    """
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
