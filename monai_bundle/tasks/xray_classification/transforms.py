"""Grad-CAM heat maps: where the network looked, computed and drawn over the radiograph."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.visualize import GradCAM
from torch import nn

from monai_bundle.io import source_path
from monai_bundle.tasks.xray_classification.networks import GRADCAM_LAYERS


class GradCAMd(MapTransform):
    """Add a Grad-CAM heat map (values in [0, 1], same grid as the network input) of the positive logit.

    Runs the network once more with gradients (the evaluator's own pass has none) in fp32.

    Args:
        keys: key of the network input (one image, channel-first MetaTensor).
        network: the classifier (the evaluator's network).
        network_name: its name in `GRADCAM_LAYERS`, which says the layer whose activations are weighed.
        output_key: key of the heat map.
    """

    def __init__(self, keys: KeysCollection, network: nn.Module, network_name: str, output_key: str = "cam") -> None:
        super().__init__(keys)
        self.network, self.layer, self.output_key = network, GRADCAM_LAYERS[network_name], output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            training = self.network.training
            self.network.eval()
            try:
                with torch.enable_grad(), torch.autocast(image.device.type, enabled=False):
                    cam = GradCAM(nn_module=self.network, target_layers=self.layer)(
                        image.as_tensor()[None].float().detach().clone(), class_idx=0
                    )
            finally:
                self.network.train(training)
            heat = image.clone()
            heat.array = cam[0].detach().to(image.device)
            d[self.output_key] = heat
        return d


class SaveHeatmapPNGd(MapTransform):
    """Write `<case>_gradcam.png`: the radiograph as read with the heat map (already on its grid) over it.

    The title gives the probability, the verdict and the threshold, so the picture reads on its own.
    The path goes to `<key>_png_path`.

    Args:
        keys: key of the heat map (`GradCAMd`'s output_key); its metadata names the source file.
        output_dir: folder of the PNGs.
        class_names: class names (negative, positive).
        threshold: decision threshold of the verdict in the title.
        output_postfix: `<case>_<output_postfix>.png`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        class_names: Sequence[str],
        threshold: float,
        output_postfix: str = "gradcam",
    ) -> None:
        super().__init__(keys)
        self.output_dir, self.class_names, self.threshold = output_dir, list(class_names), float(threshold)
        self.output_postfix = output_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai_bundle.io import output_path, read_radiograph, save_heatmap_png

        d = dict(data)
        for key in self.key_iterator(d):
            source = source_path(d[key])
            probability = float(torch.as_tensor(d["pred"]).float().reshape(-1)[0])
            verdict = self.class_names[int(probability >= self.threshold)]
            title = (
                f"{Path(source).name}: p({self.class_names[1]}) = {probability:.3f} -> {verdict} "
                f"(threshold {self.threshold:.3f})"
            )
            target = output_path(source, self.output_dir, self.output_postfix, ".png")
            heat = np.asarray(d[key].detach().cpu())[0]
            d[f"{key}_png_path"] = str(save_heatmap_png(read_radiograph(source).array, heat, target, title))
        return d
