"""``ImageList``: a batch of differently sized images padded into one tensor."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch.nn import functional as F


class ImageList:
    """Images padded to a common size: ``tensor`` is (N, C, H, W); ``image_sizes[i]`` is the
    (height, width) of image i before padding (padding is at the bottom and right)."""

    def __init__(self, tensor: torch.Tensor, image_sizes: List[Tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> torch.Tensor:
        """Image ``idx`` without its padding, shape (C, h, w)."""
        h, w = self.image_sizes[idx]
        return self.tensor[idx, ..., :h, :w]

    def to(self, *args, **kwargs) -> ImageList:
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @staticmethod
    def from_tensors(
        tensors: List[torch.Tensor],
        size_divisibility: int = 0,
        pad_value: float = 0.0,
        padding_constraints: Optional[Dict[str, int]] = None,
    ) -> ImageList:
        """Pad (..., H, W) tensors (all with the same leading dims) at the bottom and right with
        ``pad_value`` to one size and stack them.

        The size is the largest H and W, or ``padding_constraints["square_size"]`` on both sides
        when that is given and positive, then rounded up to a multiple of ``size_divisibility``
        (``padding_constraints["size_divisibility"]`` takes precedence when present). While
        tracing, sizes are computed with tensor operations and ``image_sizes`` holds (2,) tensors,
        so that a trace follows the sizes of its inputs.
        """
        if not tensors:
            raise ValueError("ImageList.from_tensors needs at least one image")
        for t in tensors:
            if t.shape[:-2] != tensors[0].shape[:-2]:
                raise ValueError(f"images differ in leading dims: {t.shape} vs {tensors[0].shape}")
        constraints = padding_constraints or {}
        divisor = constraints.get("size_divisibility", size_divisibility)
        sizes = _image_sizes_tensor(tensors)
        padded = _padded_size(sizes, divisor, constraints.get("square_size", 0))
        if torch.jit.is_tracing():
            return ImageList(_pad_and_stack(tensors, padded.unbind(), pad_value), list(sizes.unbind()))
        image_sizes: List[Tuple[int, int]] = [(h, w) for h, w in sizes.tolist()]
        return ImageList(_pad_and_stack(tensors, padded.tolist(), pad_value), image_sizes)


def _image_sizes_tensor(tensors: List[torch.Tensor]) -> torch.Tensor:
    """(N, 2) int64 (height, width) of each image; built from traced sizes while tracing."""
    if torch.jit.is_tracing():
        return torch.stack([torch.stack([torch.as_tensor(t.shape[-2]), torch.as_tensor(t.shape[-1])]) for t in tensors])
    return torch.tensor([(t.shape[-2], t.shape[-1]) for t in tensors], dtype=torch.int64)


def _padded_size(sizes: torch.Tensor, size_divisibility: int, square_size: int) -> torch.Tensor:
    """(2,) padded (height, width) for images of (N, 2) ``sizes`` (see ``ImageList.from_tensors``)."""
    padded = sizes.max(dim=0).values
    if square_size > 0:
        padded = torch.full_like(padded, square_size)
    if size_divisibility > 1:
        padded = (padded + (size_divisibility - 1)).div(size_divisibility, rounding_mode="floor") * size_divisibility
    return padded


def _pad_and_stack(tensors: List[torch.Tensor], padded: Sequence[Any], pad_value: float) -> torch.Tensor:
    """The images padded at the bottom and right to ``padded = (height, width)``, stacked,
    contiguous."""
    height, width = padded
    if len(tensors) == 1:
        image = tensors[0]
        margins = (0, width - image.shape[-1], 0, height - image.shape[-2])
        return F.pad(image, margins, value=pad_value).unsqueeze(0).contiguous()
    batched = tensors[0].new_full((len(tensors), *tensors[0].shape[:-2], height, width), pad_value)
    for image, slot in zip(tensors, batched):
        slot[..., : image.shape[-2], : image.shape[-1]].copy_(image)
    return batched.contiguous()
