"""RoIAlign: torchvision's kernel, with the CPU passes spread over channel groups, as a function
(``roi_align``) and as a module (``ROIAlign``).

torchvision's CPU RoIAlign kernels (forward and backward) run on one thread. Every output
channel reads, and every input-gradient channel receives, only its own channel, so running
the kernel on disjoint channel groups in parallel threads gives bit-identical results: each
group's accumulation order is the one the single call would use. On CUDA, under CPU autocast,
and with one thread, ``roi_align`` is torchvision's op unchanged.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn.modules.utils import _pair
from torchvision.ops import roi_align as torchvision_roi_align  # also registers torch.ops.torchvision


@functools.cache
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="roi_align")


# A forked child (a data-loader worker) inherits the pools but not their threads.
os.register_at_fork(after_in_child=_thread_pool.cache_clear)


def _channel_groups(channels: int, groups: int) -> List[slice]:
    bounds = torch.linspace(0, channels, groups + 1).round().long().tolist()
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def _over_channel_groups(fn: Callable[[slice], torch.Tensor], groups: List[slice]) -> torch.Tensor:
    """``fn`` on each channel group in parallel threads, results concatenated along dim 1."""
    return torch.cat(list(_thread_pool(len(groups)).map(fn, groups)), dim=1)


class _ChannelParallelROIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_size: Tuple[int, int], spatial_scale, sampling_ratio, aligned, groups):
        ctx.save_for_backward(rois)
        ctx.groups = _channel_groups(features.shape[1], groups)
        ctx.params = (output_size, spatial_scale, sampling_ratio, aligned, features.shape)

        def pool(channels: slice) -> torch.Tensor:
            return torch.ops.torchvision.roi_align(
                features[:, channels], rois, spatial_scale, output_size[0], output_size[1], sampling_ratio, aligned
            )

        return _over_channel_groups(pool, ctx.groups)

    @staticmethod
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        output_size, spatial_scale, sampling_ratio, aligned, (n, _, h, w) = ctx.params

        def scatter(channels: slice) -> torch.Tensor:
            grad = grad_output[:, channels]
            return torch.ops.torchvision._roi_align_backward(
                grad,
                rois,
                spatial_scale,
                output_size[0],
                output_size[1],
                n,
                grad.shape[1],
                h,
                w,
                sampling_ratio,
                aligned,
            )

        return _over_channel_groups(scatter, ctx.groups), None, None, None, None, None, None


def roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: Tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    groups: Optional[int] = None,
) -> torch.Tensor:
    """``torchvision.ops.roi_align`` on (N, C, H, W) ``features`` and (K, 5) ``rois``.

    ``rois`` rows are ``(batch_index, x0, y0, x1, y1)`` in input-image pixels; ``spatial_scale``
    maps them to feature cells. Returns (K, C, *output_size). On CPU the work is split into
    ``groups`` channel groups (default: ``torch.get_num_threads()``) run in parallel threads.
    """
    groups = torch.get_num_threads() if groups is None else groups
    if (
        groups < 2
        or features.device.type != "cpu"
        or features.is_quantized
        or torch.is_autocast_enabled("cpu")
        or features.dtype != rois.dtype
        or features.shape[1] < 2
        or rois.shape[0] == 0
    ):
        return torchvision_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return _ChannelParallelROIAlign.apply(
        features, rois, tuple(output_size), float(spatial_scale), int(sampling_ratio), bool(aligned), int(groups)
    )


class ROIAlign(nn.Module):
    """:func:`roi_align` as a module with fixed parameters (no weights).

    ``output_size`` is an int or ``(height, width)``; ``spatial_scale`` maps box coordinates to
    feature cells (1 / stride); ``sampling_ratio`` is the number of bilinear samples per bin
    along each side (0: adaptive, ``ceil(bin size)``); ``aligned`` shifts boxes by -0.5 cell so
    that pixel centres sit at half-integer coordinates (``False`` gives the original,
    half-pixel-offset RoIAlign).
    """

    def __init__(
        self, output_size: Union[int, Tuple[int, int]], spatial_scale: float, sampling_ratio: int, aligned: bool = True
    ):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) ``input`` pooled over (K, 5) ``rois`` rows ``(batch_index, x0, y0, x1, y1)``
        -> (K, C, *output_size). A quantized input is dequantized first; ``rois`` are cast to
        its dtype."""
        if rois.dim() != 2 or rois.shape[1] != 5:
            raise ValueError(f"ROIAlign needs (K, 5) rois (batch index, x0, y0, x1, y1), got {tuple(rois.shape)}")
        features = input.dequantize() if input.is_quantized else input
        return roi_align(
            features,
            rois.to(features.dtype),
            _pair(self.output_size),
            self.spatial_scale,
            self.sampling_ratio,
            self.aligned,
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
