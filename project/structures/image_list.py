"""``ImageList``: a batch of differently sized images padded into one tensor."""

from __future__ import annotations

from typing import List, Tuple

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
    def from_tensors(tensors: List[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0) -> ImageList:
        """Pad (C, H, W) tensors to the largest H and W, rounded up to ``size_divisibility``."""
        if not tensors:
            raise ValueError("ImageList.from_tensors needs at least one image")
        for t in tensors:
            if t.shape[:-2] != tensors[0].shape[:-2]:
                raise ValueError(f"images differ in leading dims: {t.shape} vs {tensors[0].shape}")
        image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(s[0] for s in image_sizes)
        max_w = max(s[1] for s in image_sizes)
        if size_divisibility > 1:
            d = size_divisibility
            max_h = (max_h + d - 1) // d * d
            max_w = (max_w + d - 1) // d * d
        if len(tensors) == 1:
            h, w = image_sizes[0]
            batched = F.pad(tensors[0], (0, max_w - w, 0, max_h - h), value=pad_value).unsqueeze(0)
        else:
            shape = (len(tensors),) + tuple(tensors[0].shape[:-2]) + (max_h, max_w)
            batched = tensors[0].new_full(shape, pad_value)
            for img, pad in zip(tensors, batched):
                pad[..., : img.shape[-2], : img.shape[-1]].copy_(img)
        return ImageList(batched.contiguous(), image_sizes)
