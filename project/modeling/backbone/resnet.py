"""ResNet (He et al., 2016) with Detectron2's module names and state-dict keys.

The network is a stem (``stem.conv1``) followed by the stages ``res2`` ... ``res5``, each an
``nn.Sequential`` of residual blocks (``res4.22.conv3.norm.running_var``). Bottleneck blocks
serve depths 50, 101 and 152; basic blocks serve depths 18 and 34.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

import torch
from fvcore.nn.weight_init import c2_msra_fill
from torch import nn
from torch.nn import functional as F

from project.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec, get_norm
from project.layers.batch_norm import NormSpec

from ..registry import BACKBONE_REGISTRY
from .backbone import Backbone

# Residual blocks per stage (res2, res3, res4, res5) for each supported depth.
BLOCKS_PER_STAGE: Dict[int, List[int]] = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}
STAGE_NAMES = ("res2", "res3", "res4", "res5")


class CNNBlockBase(nn.Module):
    """A block that knows its input and output channels and its stride, and can be frozen."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def freeze(self) -> CNNBlockBase:
        """Stop training this block: its parameters get ``requires_grad=False`` and its batch
        norms become ``FrozenBatchNorm2d`` (so their statistics stop updating too)."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self

    @staticmethod
    def _init_conv_weights(*convs: Optional[nn.Conv2d]) -> None:
        """Caffe2 "MSRA" (He normal, fan-out) weights and zero biases for ``convs``, in order
        (Detectron2's order, so that one seed gives both the same weights); skips ``None``."""
        for conv in convs:
            if conv is not None:
                c2_msra_fill(conv)


def _conv_norm(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    norm: NormSpec,
    *,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    relu: bool = False,
) -> Conv2d:
    """A bias-free square convolution, then ``norm`` and (with ``relu``) an in-place ReLU.

    The padding is ``dilation * (kernel_size // 2)``, so with stride 1 an odd kernel keeps
    the spatial size and with stride ``s`` the output is ``ceil(size / s)``.
    """
    return Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=dilation * (kernel_size // 2),
        dilation=dilation,
        groups=groups,
        bias=False,
        norm=get_norm(norm, out_channels),
        activation=F.relu_ if relu else None,
    )


def _projection_shortcut(in_channels: int, out_channels: int, stride: int, norm: NormSpec) -> Optional[Conv2d]:
    """The strided 1x1 convolution matching a block's input to its output, or ``None`` when
    the channel counts already agree (the input is then added unchanged)."""
    if in_channels == out_channels:
        return None
    return _conv_norm(in_channels, out_channels, 1, norm, stride=stride)


def _add_shortcut_and_relu(residual: torch.Tensor, x: torch.Tensor, shortcut: Optional[nn.Module]) -> torch.Tensor:
    residual += x if shortcut is None else shortcut(x)
    return F.relu_(residual)


class BasicStem(CNNBlockBase):
    """7x7 stride-2 convolution, norm, ReLU, then 3x3 stride-2 max pooling: stride 4 overall."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: NormSpec = "BN"):
        super().__init__(in_channels, out_channels, stride=4)
        self.conv1 = _conv_norm(in_channels, out_channels, 7, norm, stride=2, relu=True)
        self._init_conv_weights(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class BasicBlock(CNNBlockBase):
    """Two 3x3 convolutions plus a shortcut (ResNet-18/34). The stride sits on ``conv1``."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: NormSpec = "BN"):
        super().__init__(in_channels, out_channels, stride)
        # Registration order (shortcut first) fixes both the state-dict order and which
        # random draws each layer's default initialisation consumes.
        self.shortcut = _projection_shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = _conv_norm(in_channels, out_channels, 3, norm, stride=stride, relu=True)
        self.conv2 = _conv_norm(out_channels, out_channels, 3, norm)
        self._init_conv_weights(self.conv1, self.conv2, self.shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _add_shortcut_and_relu(self.conv2(self.conv1(x)), x, self.shortcut)


class BottleneckBlock(CNNBlockBase):
    """1x1 reduce, 3x3 (grouped, optionally dilated), 1x1 expand, plus a shortcut.

    ``stride_in_1x1`` puts the block's stride on the first 1x1 convolution (the MSRA / Caffe2
    variant) instead of on the 3x3 one (the torchvision variant).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        stride: int = 1,
        num_groups: int = 1,
        norm: NormSpec = "BN",
        stride_in_1x1: bool = False,
        dilation: int = 1,
    ):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = _projection_shortcut(in_channels, out_channels, stride, norm)
        reduce_stride, spatial_stride = (stride, 1) if stride_in_1x1 else (1, stride)
        width = bottleneck_channels
        self.conv1 = _conv_norm(in_channels, width, 1, norm, stride=reduce_stride, relu=True)
        self.conv2 = _conv_norm(
            width, width, 3, norm, stride=spatial_stride, dilation=dilation, groups=num_groups, relu=True
        )
        self.conv3 = _conv_norm(width, out_channels, 1, norm)
        self._init_conv_weights(self.conv1, self.conv2, self.conv3, self.shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _add_shortcut_and_relu(self.conv3(self.conv2(self.conv1(x))), x, self.shortcut)


def _checked_out_features(
    requested: Optional[Sequence[str]], stage_names: Sequence[str], classifies: bool
) -> List[str]:
    """``requested`` as a list, after checking that it is a non-empty selection among "stem",
    ``stage_names`` and, for a classifier, "linear". Default: "linear" for a classifier, else
    the last stage alone."""
    if requested is None:
        return ["linear"] if classifies else list(stage_names[-1:])
    names = list(requested)
    available = ["stem", *stage_names] + (["linear"] if classifies else [])
    if not names or any(name not in available for name in names):
        raise ValueError(f"ResNet out_features {names} must be a non-empty subset of {available}")
    return names


def _stages_needed(out_features: Sequence[str], stage_names: Sequence[str]) -> int:
    """How many of ``stage_names`` must be built to produce ``out_features``: those after the
    deepest requested one would never run ("stem" alone needs none, "linear" needs them all)."""
    depth_of = {name: depth for depth, name in enumerate(["stem", *stage_names, "linear"])}
    return min(max(depth_of[name] for name in out_features), len(stage_names))


def _feature_geometry(
    block_groups: Sequence[Tuple[str, Sequence[CNNBlockBase]]],
) -> Tuple[Dict[str, int], Dict[str, int]]:
    """``(strides, channels)`` by group name: the stride is the running product of every block's
    stride up to the group's end, the channels are the group's last block's ``out_channels``."""
    strides, channels = {}, {}
    stride = 1
    for name, blocks in block_groups:
        for block in blocks:
            stride *= block.stride
        strides[name] = stride
        channels[name] = blocks[-1].out_channels
    return strides, channels


def _stage_layouts(
    depth: int, in_channels: int, res2_out_channels: int, res5_dilation: int = 1
) -> List[Dict[str, Any]]:
    """For each stage res2 ... res5 of a ResNet-``depth``, the ``ResNet.make_stage`` arguments that
    fix its shape: ``num_blocks``, ``in_channels``, ``out_channels`` (``res2_out_channels``, doubling
    per stage) and ``stride_per_block``. Only the first block of a stage strides, by 2, except in
    res2 (it follows the stride-4 stem at full resolution) and in a dilated res5 (it keeps res4's
    resolution)."""
    if depth not in BLOCKS_PER_STAGE:
        raise ValueError(f"ResNet depth {depth} is not one of {sorted(BLOCKS_PER_STAGE)}")
    layouts = []
    for index, num_blocks in enumerate(BLOCKS_PER_STAGE[depth]):
        first_stride = 1 if index == 0 or (index == 3 and res5_dilation > 1) else 2
        out_channels = res2_out_channels * 2**index
        layouts.append(
            {
                "num_blocks": num_blocks,
                "in_channels": in_channels,
                "out_channels": out_channels,
                "stride_per_block": [first_stride] + [1] * (num_blocks - 1),
            }
        )
        in_channels = out_channels
    return layouts


class ResNet(Backbone):
    """A stem followed by residual stages named ``res2``, ``res3``, ..., and optionally a classifier.

    Returns the outputs named in ``out_features`` (``"stem"``, stage names, ``"linear"``). Stages
    after the last requested one are not built. ``ResNet(BasicStem(), ResNet.make_default_stages(50))``
    is a ResNet-50 from plain arguments.
    """

    def __init__(
        self,
        stem: CNNBlockBase,
        stages: Sequence[Sequence[CNNBlockBase]],
        num_classes: Optional[int] = None,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
    ):
        """
        Args:
            stem: the first layers, with ``out_channels`` and ``stride`` attributes.
            stages: for each stage, its blocks; each block has ``out_channels`` and ``stride``.
            num_classes: if given, the last stage is followed by global average pooling
                (``avgpool``) and a fully connected layer (``linear``) giving ``num_classes``
                logits, the output named "linear".
            out_features: names of the returned outputs; default: "linear" with a classifier,
                else the last stage.
            freeze_at: see :meth:`freeze`.
        """
        super().__init__()
        stage_names = [f"res{number}" for number in range(2, 2 + len(stages))]
        self.num_classes = num_classes
        self._out_features = _checked_out_features(out_features, stage_names, num_classes is not None)
        self.stem = stem
        self.stage_names = tuple(stage_names[: _stages_needed(self._out_features, stage_names)])
        for name, blocks in zip(self.stage_names, stages):
            if not blocks:
                raise ValueError(f"ResNet stage {name} got no blocks; every built stage needs at least one")
            self.add_module(name, nn.Sequential(*blocks))
        self._out_feature_strides, self._out_feature_channels = _feature_geometry(self._block_groups())
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            last_stage = ("stem", *self.stage_names)[-1]
            self.linear = nn.Linear(self._out_feature_channels[last_stage], num_classes)
            # Zero-mean Gaussian weights of std 0.01, as for the ImageNet classifiers of Goyal et al. (2017).
            nn.init.normal_(self.linear.weight, std=0.01)
            self._out_feature_channels["linear"] = num_classes
        self.freeze(freeze_at)

    @property
    def stages(self) -> List[nn.Sequential]:
        """The built stages, from ``res2`` on."""
        return [getattr(self, name) for name in self.stage_names]

    def _block_groups(self) -> List[Tuple[str, Sequence[CNNBlockBase]]]:
        """``("stem", [stem])`` then ``(stage name, its blocks)`` for each built stage, input first."""
        return [("stem", [self.stem])] + [(name, getattr(self, name)) for name in self.stage_names]

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``x``: ``(N, C, H, W)`` with ``C`` the stem's input channels. Returns the requested
        feature maps by name, shallowest first; the one of stride ``s`` is ``ceil(H / s)`` by
        ``ceil(W / s)``; "linear" is ``(N, num_classes)``."""
        if x.dim() != 4 or x.shape[1] != self.stem.in_channels:
            raise ValueError(f"ResNet expects an (N, {self.stem.in_channels}, H, W) tensor, got shape {tuple(x.shape)}")
        requested = self._out_features
        features = {}
        for name, module in zip(("stem", *self.stage_names), (self.stem, *self.stages)):
            x = module(x)
            if name in requested:
                features[name] = x
        if self.num_classes is not None and "linear" in requested:
            features["linear"] = self.linear(torch.flatten(self.avgpool(x), 1))
        return features

    def freeze(self, freeze_at: int = 0) -> ResNet:
        """Freeze the first ``freeze_at`` stages, counting the stem as stage 1: 0 freezes
        nothing, 1 the stem, 2 the stem and ``res2``, and so on (a count beyond the built
        stages freezes everything). Each block is frozen by its own ``freeze``."""
        if freeze_at < 0:
            raise ValueError(f"ResNet.freeze: freeze_at must be >= 0 (0 freezes nothing), got {freeze_at}")
        for _, blocks in self._block_groups()[:freeze_at]:
            for block in blocks:
                block.freeze()
        return self

    @staticmethod
    def make_stage(
        block_class: Type[CNNBlockBase],
        num_blocks: int,
        *,
        in_channels: int,
        out_channels: int,
        **kwargs,
    ) -> List[CNNBlockBase]:
        """Build ``num_blocks`` blocks of ``block_class``; the first takes ``in_channels``, all
        output ``out_channels``. A keyword ending in ``_per_block`` (``stride_per_block=[2, 1]``)
        gives one value per block; any other keyword is passed to every block."""
        per_block = {}
        for key in [key for key in kwargs if key.endswith("_per_block")]:
            values = kwargs.pop(key)
            name = key[: -len("_per_block")]
            if len(values) != num_blocks:
                raise ValueError(f"make_stage: {key} has {len(values)} values for {num_blocks} blocks")
            if name in kwargs:
                raise ValueError(f"make_stage: got both {key} and {name}")
            per_block[name] = values
        blocks = []
        for index in range(num_blocks):
            block_kwargs = {**kwargs, **{name: values[index] for name, values in per_block.items()}}
            blocks.append(block_class(in_channels=in_channels, out_channels=out_channels, **block_kwargs))
            in_channels = out_channels
        return blocks

    @staticmethod
    def make_default_stages(
        depth: int, block_class: Optional[Type[CNNBlockBase]] = None, **kwargs: Any
    ) -> List[List[CNNBlockBase]]:
        """The four stages of the standard ResNet-``depth`` (18, 34, 50, 101 or 152) after a
        64-channel stem: basic blocks of 64 ... 512 channels below depth 50, else bottleneck
        blocks of 256 ... 2048 channels (a quarter of that inside). ``block_class`` replaces the
        block (from depth 50 it must take ``bottleneck_channels``); other keywords (``norm``,
        ``stride_in_1x1``, ...) go to every block through :meth:`make_stage`."""
        bottleneck = depth >= 50
        block_class = block_class or (BottleneckBlock if bottleneck else BasicBlock)
        stages = []
        for layout in _stage_layouts(depth, in_channels=64, res2_out_channels=256 if bottleneck else 64):
            inner = {"bottleneck_channels": layout["out_channels"] // 4} if bottleneck else {}
            stages.append(ResNet.make_stage(block_class, **layout, **inner, **kwargs))
        return stages


ResNetBlockBase = CNNBlockBase  # Detectron2's older name for the block base class


def make_stage(*args: Any, **kwargs: Any) -> List[CNNBlockBase]:
    """:meth:`ResNet.make_stage` under Detectron2's module-level name."""
    return ResNet.make_stage(*args, **kwargs)


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """The ResNet described by ``cfg.MODEL.RESNETS`` and ``cfg.MODEL.BACKBONE.FREEZE_AT``, for
    inputs with ``input_shape.channels`` channels."""
    resnets = cfg.MODEL.RESNETS
    depth = resnets.DEPTH
    if depth not in BLOCKS_PER_STAGE:
        raise ValueError(f"MODEL.RESNETS.DEPTH={depth}; expected one of {sorted(BLOCKS_PER_STAGE)}")
    if resnets.RES5_DILATION not in (1, 2):
        raise ValueError(f"MODEL.RESNETS.RES5_DILATION={resnets.RES5_DILATION}; expected 1 or 2")
    uses_basic_blocks = depth < 50
    if uses_basic_blocks:
        expected = {"RES2_OUT_CHANNELS": 64, "NUM_GROUPS": 1, "RES5_DILATION": 1}
        for key, value in expected.items():
            if getattr(resnets, key) != value:
                raise ValueError(f"MODEL.RESNETS.{key}={getattr(resnets, key)}; ResNet-{depth} requires {value}")

    norm = resnets.NORM
    stem = BasicStem(in_channels=input_shape.channels, out_channels=resnets.STEM_OUT_CHANNELS, norm=norm)
    layouts = _stage_layouts(depth, resnets.STEM_OUT_CHANNELS, resnets.RES2_OUT_CHANNELS, resnets.RES5_DILATION)
    stages = []
    for index, layout in enumerate(layouts):
        if uses_basic_blocks:
            stages.append(ResNet.make_stage(BasicBlock, norm=norm, **layout))
            continue
        stages.append(
            ResNet.make_stage(
                BottleneckBlock,
                bottleneck_channels=resnets.NUM_GROUPS * resnets.WIDTH_PER_GROUP * 2**index,
                num_groups=resnets.NUM_GROUPS,
                norm=norm,
                stride_in_1x1=resnets.STRIDE_IN_1X1,
                dilation=resnets.RES5_DILATION if index == 3 else 1,
                **layout,
            )
        )
    return ResNet(
        stem,
        stages,
        out_features=list(resnets.OUT_FEATURES),
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )
