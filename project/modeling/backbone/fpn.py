"""Feature Pyramid Network (Lin et al., 2017) with Detectron2's module names and keys.

For each input level ``k`` (stride ``2**k``) the FPN owns a 1x1 ``fpn_lateral<k>`` and a 3x3
``fpn_output<k>`` convolution; the bottom-up network is its child ``bottom_up``. Outputs are
named ``p<k>``.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
from fvcore.nn.weight_init import c2_xavier_fill
from torch import nn
from torch.nn import functional as F

from project.layers import Conv2d, ShapeSpec, get_norm
from project.layers.batch_norm import NormSpec

from ..registry import BACKBONE_REGISTRY
from .backbone import Backbone
from .resnet import build_resnet_backbone

FUSE_TYPES = ("sum", "avg")


class LastLevelMaxPool(nn.Module):
    """Adds one coarser level: ``p6`` is ``p5`` subsampled by 2 (max pooling, kernel 1)."""

    num_levels = 1
    in_feature = "p5"

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


class FPN(Backbone):
    """A pyramid of same-width feature maps built on a bottom-up backbone's outputs.

    Top-down: the coarsest input's lateral projection starts the pathway; each finer level adds
    its lateral projection to the 2x nearest-upsampled pathway ("sum", or their mean for
    "avg"). Each level's pathway value then passes its 3x3 output convolution. An optional
    ``top_block`` appends coarser levels from one named feature (bottom-up or pyramid).
    """

    def __init__(
        self,
        bottom_up: Backbone,
        in_features: Sequence[str],
        out_channels: int,
        norm: NormSpec = "",
        top_block: Optional[nn.Module] = None,
        fuse_type: str = "sum",
        square_pad: int = 0,
    ):
        """
        Args:
            bottom_up: the backbone whose ``in_features`` feed the pyramid.
            in_features: bottom-up feature names, finest first, each of twice the previous
                stride (e.g. ``["res2", "res3", "res4", "res5"]``).
            out_channels: channels of every pyramid level.
            norm: norm after each lateral and output convolution (see ``get_norm``); the
                convolutions have a bias only when there is no norm.
            top_block: a module with ``num_levels`` and ``in_feature`` attributes, mapping that
                feature to a list of ``num_levels`` coarser maps, each of half the previous size.
            fuse_type: "sum" or "avg".
            square_pad: if positive, inputs are to be padded to this square size; the FPN only
                reports it (``padding_constraints["square_size"]``) to whoever batches the images.
        """
        super().__init__()
        if not isinstance(bottom_up, Backbone):
            raise TypeError(f"FPN bottom_up must be a Backbone, got {type(bottom_up).__name__}")
        if fuse_type not in FUSE_TYPES:
            raise ValueError(f"FPN fuse_type={fuse_type!r}; expected one of {FUSE_TYPES}")
        input_shapes = bottom_up.output_shape()
        missing = [name for name in in_features if name not in input_shapes]
        if missing or not in_features:
            raise ValueError(
                f"FPN in_features {list(in_features)} must be a non-empty subset of the "
                f"bottom-up outputs {list(input_shapes)}"
            )
        strides = [input_shapes[name].stride for name in in_features]
        _check_strides_double(in_features, strides)

        self.in_features = tuple(in_features)
        self._levels = [int(math.log2(stride)) for stride in strides]
        use_bias = norm == ""
        for level, name in zip(self._levels, in_features):
            lateral = Conv2d(
                input_shapes[name].channels,
                out_channels,
                kernel_size=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
            )
            output = Conv2d(
                out_channels,
                out_channels,
                kernel_size=3,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
            )
            c2_xavier_fill(lateral)
            c2_xavier_fill(output)
            self.add_module(f"fpn_lateral{level}", lateral)
            self.add_module(f"fpn_output{level}", output)
        self.top_block = top_block
        # Registered after the convolutions so the state dict lists keys in Detectron2's order.
        self.bottom_up = bottom_up
        self._fuse_type = fuse_type

        self._out_feature_strides = {f"p{level}": 2**level for level in self._levels}
        if top_block is not None:
            last = self._levels[-1]
            for level in range(last + 1, last + 1 + top_block.num_levels):
                self._out_feature_strides[f"p{level}"] = 2**level
        self._out_features = list(self._out_feature_strides)
        self._out_feature_channels = {name: out_channels for name in self._out_features}
        self._size_divisibility = strides[-1]
        self._square_pad = square_pad

    @property
    def size_divisibility(self) -> int:
        """The coarsest input stride: the input sizes that make every 2x upsampling line up."""
        return self._size_divisibility

    @property
    def padding_constraints(self) -> Dict[str, int]:
        """``size_divisibility``, and ``square_size`` when ``square_pad`` is positive."""
        constraints = dict(super().padding_constraints)
        if self._square_pad > 0:
            constraints["square_size"] = self._square_pad
        return constraints

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``x``: ``(N, C, H, W)``, H and W multiples of ``size_divisibility``. Returns
        ``{"p<k>": (N, out_channels, ceil(H / 2**k), ceil(W / 2**k))}``, finest level first."""
        bottom_up_features = self.bottom_up(x)
        pyramid: Dict[str, torch.Tensor] = {}
        top_down = None
        for level, name in reversed(list(zip(self._levels, self.in_features))):
            lateral = getattr(self, f"fpn_lateral{level}")(bottom_up_features[name])
            if top_down is not None:
                upsampled = F.interpolate(top_down, scale_factor=2.0, mode="nearest")
                if upsampled.shape[-2:] != lateral.shape[-2:]:
                    raise ValueError(
                        f"FPN: the upsampled p{level + 1} pathway is {tuple(upsampled.shape[-2:])} "
                        f"but {name} is {tuple(lateral.shape[-2:])}; pad the input "
                        f"{tuple(x.shape[-2:])} to multiples of {self.size_divisibility}"
                    )
                lateral = lateral + upsampled
                if self._fuse_type == "avg":
                    lateral = lateral / 2
            top_down = lateral
            pyramid[f"p{level}"] = getattr(self, f"fpn_output{level}")(top_down)

        if self.top_block is not None:
            source = self.top_block.in_feature
            top_input = bottom_up_features[source] if source in bottom_up_features else pyramid[source]
            extra_names = self._out_features[len(self._levels) :]
            pyramid.update(zip(extra_names, self.top_block(top_input)))
        return {name: pyramid[name] for name in self._out_features}


def _check_strides_double(names: Sequence[str], strides: Sequence[int]) -> None:
    """Raise unless each stride is a power of two and twice the one before."""
    for index, stride in enumerate(strides):
        is_power_of_two = stride > 0 and stride & (stride - 1) == 0
        if not is_power_of_two or (index > 0 and stride != 2 * strides[index - 1]):
            raise ValueError(
                f"FPN inputs {list(names)} have strides {list(strides)}; expected powers of two, "
                "each twice the previous"
            )


@BACKBONE_REGISTRY.register()
def build_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """A ResNet (``cfg.MODEL.RESNETS``) under an FPN (``cfg.MODEL.FPN``) with a max-pooled
    ``p6``: outputs ``p2`` ... ``p6`` at strides 4 ... 64 for the default config."""
    fpn = cfg.MODEL.FPN
    return FPN(
        bottom_up=build_resnet_backbone(cfg, input_shape),
        in_features=list(fpn.IN_FEATURES),
        out_channels=fpn.OUT_CHANNELS,
        norm=fpn.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=fpn.FUSE_TYPE,
    )
