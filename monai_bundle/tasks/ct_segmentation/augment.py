"""Training augmentation for CT: the contrast phase an organ is scanned in."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform


class RandEnhancementd(RandomizableTransform, MapTransform):
    """Blood-filled organs (heart, aorta, kidneys) at a random contrast phase: their mean moved to a random HU.

    A contrast-enhanced training CT teaches the network that the aorta is bright (about 300 HU); in a CT
    without contrast it is about 40 HU, like muscle. Each listed class is shifted so that its mean is drawn
    from `hu_target` (its texture, the deviations from its mean, is kept), so one training CT shows the
    organs from unenhanced to arterial. Needs the labels on the
    image grid and the intensity window the image was scaled with; does nothing without a window (MRI).

    Args:
        keys: the image key (scaled from `hu_range` to [0, 1]).
        label_key: key of the label map on the image's grid.
        class_names: class names by label value, background first.
        classes: the class names to re-enhance (those absent from `class_names` are ignored).
        hu_range: the (a_min, a_max) HU window the intensity transform mapped to [0, 1]; None: do nothing.
        hu_target: the range of mean HU drawn for each class (unenhanced blood ~40, arterial aorta ~300).
        prob: probability of re-enhancing an image (each listed class gets its own draw).
    """

    backend = [torch.Tensor.__name__]

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str,
        class_names: Sequence[str],
        classes: Sequence[str] = ("heart", "aorta", "kidneys"),
        hu_range: Sequence[float] | None = (-1000.0, 1000.0),
        hu_target: Sequence[float] = (30.0, 300.0),
        prob: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key = label_key
        self.labels = [value for value, name in enumerate(class_names) if name in set(classes)]
        self.hu_range = None if hu_range is None else tuple(float(v) for v in hu_range)
        self.hu_target = tuple(float(v) for v in hu_target)
        self._targets: list[float] = []

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._targets = [float(self.R.uniform(*self.hu_target)) for _ in self.labels]

    def __call__(self, data):
        d = dict(data)
        self.randomize()
        if not self._do_transform or self.hu_range is None or not self.labels:
            return d
        low, high = self.hu_range
        labels = torch.as_tensor(d[self.label_key])
        for key in self.key_iterator(d):
            image = d[key].clone()
            for label, target_hu in zip(self.labels, self._targets, strict=True):
                inside = labels == label
                if int(inside.sum()) < 2:
                    continue
                values = image[inside]
                target = (np.clip(target_hu, low, high) - low) / (high - low)
                image[inside] = torch.clamp(values - values.mean() + target, 0.0, 1.0)
            d[key] = image
        return d
