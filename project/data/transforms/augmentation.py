"""Augmentations: random policies that look at the input and return a deterministic fvcore
``Transform``, with Detectron2's interface (``Augmentation``, ``AugInput``,
``AugmentationList``, ``apply_augmentations``).

Randomness comes from NumPy's global generator, as in Detectron2; the data loader seeds it in
each worker.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from fvcore.transforms.transform import Transform, TransformList


def _apply_unless_none(apply: Callable[[np.ndarray], np.ndarray], value: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if value is None else apply(value)


class AugInput:
    """The data an augmentation looks at and the transform is applied to: an (H, W, C) or
    (H, W) image, optionally (N, 4) XYXY ``boxes`` and an (H, W) ``sem_seg`` label map."""

    def __init__(self, image: np.ndarray, *, boxes: Optional[np.ndarray] = None, sem_seg: Optional[np.ndarray] = None):
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            got = f"shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"AugInput needs an (H, W) or (H, W, C) numpy image, got {got}")
        self.image = image
        self.boxes = boxes
        self.sem_seg = sem_seg

    def transform(self, tfm: Transform) -> None:
        """Replace the image, then the boxes and the label map where present, by their
        images under ``tfm``."""
        self.image = tfm.apply_image(self.image)
        self.boxes = _apply_unless_none(tfm.apply_box, self.boxes)
        self.sem_seg = _apply_unless_none(tfm.apply_segmentation, self.sem_seg)

    def apply_augmentations(self, augmentations: Sequence[Augmentation]) -> TransformList:
        """Apply the augmentations in order, in place; returns the transforms they chose."""
        return AugmentationList(augmentations)(self)


class Augmentation:
    """A random transform policy. Subclasses implement ``get_transform`` taking the ``AugInput``
    attributes named in ``input_args`` (by default the image) and returning a ``Transform``."""

    input_args: Tuple[str, ...] = ("image",)

    def get_transform(self, *args: Any) -> Transform:
        raise NotImplementedError

    def __call__(self, aug_input: AugInput) -> Transform:
        """Choose a transform for ``aug_input``, apply it in place and return it."""
        tfm = self.get_transform(*[getattr(aug_input, name) for name in self.input_args])
        if not isinstance(tfm, Transform):
            raise TypeError(f"{type(self).__name__}.get_transform must return a Transform, got {type(tfm).__name__}")
        aug_input.transform(tfm)
        return tfm

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class AugmentationList(Augmentation):
    """Several augmentations applied in sequence, as one."""

    def __init__(self, augmentations: Sequence[Augmentation]):
        self.augmentations: List[Augmentation] = list(augmentations)

    def __call__(self, aug_input: AugInput) -> TransformList:
        return TransformList([aug(aug_input) for aug in self.augmentations])


def apply_augmentations(
    augmentations: Sequence[Augmentation], inputs: Union[np.ndarray, AugInput]
) -> Tuple[Union[np.ndarray, AugInput], TransformList]:
    """Apply ``augmentations`` to an image or an ``AugInput``; returns the transformed input (a
    new array for an image, the same ``AugInput`` updated in place) and the transforms."""
    aug_input = AugInput(inputs) if isinstance(inputs, np.ndarray) else inputs
    transforms = aug_input.apply_augmentations(augmentations)
    return (aug_input.image if isinstance(inputs, np.ndarray) else aug_input), transforms
