"""``ShapeSpec``: what a module tells its consumers about one of its outputs."""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ShapeSpec:
    """Channels, height, width and stride (input pixels per output pixel) of a feature map.

    Fields left ``None`` are unknown or vary with the input.
    """

    channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    stride: Optional[int] = None
