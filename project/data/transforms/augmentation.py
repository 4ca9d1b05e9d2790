"""Augmentations: random policies that look at the input and return a deterministic fvcore
``Transform``, with Detectron2's interface (``Augmentation``, ``AugInput``,
``AugmentationList``, ``apply_augmentations``).

Randomness comes from NumPy's global generator, as in Detectron2; the data loader seeds it in
each worker.
"""

from __future__ import annotations

import inspect
import pprint
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

    def apply_augmentations(self, augmentations: Sequence[Union[Augmentation, Transform]]) -> TransformList:
        """Apply the augmentations (or fixed transforms) in order, in place; returns the
        transforms they chose."""
        return AugmentationList(augmentations)(self)


def _parameter_names(get_transform: Callable[..., Any]) -> Tuple[str, ...]:
    """The ``AugInput`` attributes a ``get_transform`` asks for: "image" when it takes one
    argument (whatever its name), else its parameters' names."""
    parameters = list(inspect.signature(get_transform).parameters.values())
    if len(parameters) == 1:
        return ("image",)
    variadic = [p.name for p in parameters if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if variadic:
        raise TypeError(
            f"cannot tell which inputs {get_transform.__qualname__} takes from *{variadic[0]}; "
            "set the augmentation's input_args to the AugInput attribute names"
        )
    return tuple(p.name for p in parameters)


class Augmentation:
    """A random transform policy. Subclasses implement ``get_transform``, whose parameters
    name the ``AugInput`` attributes it looks at (``image``, ``boxes``, ``sem_seg``, ...; a
    single parameter is the image), and return a ``Transform``. ``input_args`` may list those
    attribute names instead."""

    input_args: Optional[Tuple[str, ...]] = None

    def get_transform(self, *args: Any) -> Transform:
        raise NotImplementedError

    def _inputs(self, aug_input: AugInput) -> List[Any]:
        """The arguments of ``get_transform`` taken from ``aug_input``; ``AttributeError``
        naming the attribute it lacks."""
        names = self.input_args if self.input_args is not None else _parameter_names(self.get_transform)
        missing = [name for name in names if not hasattr(aug_input, name)]
        if missing:
            raise AttributeError(
                f"{type(self).__name__}.get_transform needs {list(names)}, but {type(aug_input).__name__} has no "
                f"{missing[0]!r}"
            )
        return [getattr(aug_input, name) for name in names]

    def __call__(self, aug_input: AugInput) -> Transform:
        """Choose a transform for ``aug_input``, apply it in place and return it."""
        tfm = self.get_transform(*self._inputs(aug_input))
        if not isinstance(tfm, Transform):
            raise TypeError(f"{type(self).__name__}.get_transform must return a Transform, got {type(tfm).__name__}")
        aug_input.transform(tfm)
        return tfm

    def _rand_range(self, low: float = 1.0, high: Optional[float] = None, size: Any = None) -> Any:
        """One uniform draw (or an array of ``size``) from NumPy's global generator, in
        ``[low, high)``, or ``[0, low)`` when ``high`` is not given."""
        if high is None:
            low, high = 0.0, low
        return np.random.uniform(low, high, size)

    def __repr__(self) -> str:
        """The class name and the constructor arguments that differ from their defaults (those
        stored under the parameter's name and not the default object itself)."""
        shown = []
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if not hasattr(self, name) or getattr(self, name) is parameter.default:
                continue
            text = pprint.pformat(getattr(self, name))
            shown.append(f"{name}={'...' if chr(10) in text else text}")
        return f"{type(self).__name__}({', '.join(shown)})"

    __str__ = __repr__


class _FixedTransform(Augmentation):
    """A given transform as an augmentation that always chooses it."""

    def __init__(self, tfm: Transform):
        self.tfm = tfm

    def get_transform(self, image: np.ndarray) -> Transform:
        return self.tfm


def as_augmentation(item: Union[Augmentation, Transform]) -> Augmentation:
    """``item`` itself if it is an ``Augmentation``; a ``Transform`` as one that always applies it."""
    if isinstance(item, Augmentation):
        return item
    if isinstance(item, Transform):
        return _FixedTransform(item)
    raise TypeError(f"expected an Augmentation or a Transform, got {type(item).__name__}")


class AugmentationList(Augmentation):
    """Several augmentations (or fixed transforms) applied in sequence, as one."""

    def __init__(self, augs: Sequence[Union[Augmentation, Transform]]):
        self.augs: List[Augmentation] = [as_augmentation(a) for a in augs]

    def __call__(self, aug_input: AugInput) -> TransformList:
        return TransformList([aug(aug_input) for aug in self.augs])

    def __repr__(self) -> str:
        return f"{type(self).__name__}[{', '.join(str(a) for a in self.augs)}]"

    __str__ = __repr__


def apply_augmentations(
    augmentations: Sequence[Union[Augmentation, Transform]], inputs: Union[np.ndarray, AugInput]
) -> Tuple[Union[np.ndarray, AugInput], TransformList]:
    """Apply ``augmentations`` to an image or an ``AugInput``; returns the transformed input (a
    new array for an image, the same ``AugInput`` updated in place) and the transforms."""
    aug_input = AugInput(inputs) if isinstance(inputs, np.ndarray) else inputs
    transforms = aug_input.apply_augmentations(augmentations)
    return (aug_input.image if isinstance(inputs, np.ndarray) else aug_input), transforms


# Detectron2's earlier names, kept so that older scripts port unchanged.
TransformGen = Augmentation
StandardAugInput = AugInput
apply_transform_gens = apply_augmentations
