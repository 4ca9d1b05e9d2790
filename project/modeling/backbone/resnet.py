"""ResNet (He et al., 2016) with Detectron2's module names and state-dict keys.

The network is a stem (``stem.conv1``) followed by the stages ``res2`` ... ``res5``, each an
``nn.Sequential`` of residual blocks (``res4.22.conv3.norm.running_var``). Bottleneck blocks
serve depths 50, 101 and 152; basic blocks serve depths 18 and 34.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Type

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


def _projection_shortcut(in_channels: int, out_channels: int, stride: int, norm: NormSpec) -> Optional[Conv2d]:
    """The strided 1x1 convolution matching a block's input to its output, or ``None`` when
    the channel counts already agree (the input is then added unchanged)."""
    if in_channels == out_channels:
        return None
    return Conv2d(
        in_channels,
        out_channels,
        kernel_size=1,
        stride=stride,
        bias=False,
        norm=get_norm(norm, out_channels),
    )


def _add_shortcut_and_relu(residual: torch.Tensor, x: torch.Tensor, shortcut: Optional[nn.Module]) -> torch.Tensor:
    residual += x if shortcut is None else shortcut(x)
    return F.relu_(residual)


class BasicStem(CNNBlockBase):
    """7x7 stride-2 convolution, norm, ReLU, then 3x3 stride-2 max pooling: stride 4 overall."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: NormSpec = "BN"):
        super().__init__(in_channels, out_channels, stride=4)
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=7,
            stride=2,
            padding=3,
            bias=False,
            norm=get_norm(norm, out_channels),
            activation=F.relu_,
        )
        self._init_conv_weights(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class BasicBlock(CNNBlockBase):
    """Two 3x3 convolutions plus a shortcut (ResNet-18/34). The stride sits on ``conv1``."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: NormSpec = "BN"):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = _projection_shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=stride,
            padding=1,
            bias=False,
            norm=get_norm(norm, out_channels),
            activation=F.relu_,
        )
        self.conv2 = Conv2d(
            out_channels,
            out_channels,
            kernel_size=3,
            padding=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
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
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(
            in_channels,
            bottleneck_channels,
            kernel_size=1,
            stride=stride_1x1,
            bias=False,
            norm=get_norm(norm, bottleneck_channels),
            activation=F.relu_,
        )
        self.conv2 = Conv2d(
            bottleneck_channels,
            bottleneck_channels,
            kernel_size=3,
            stride=stride_3x3,
            padding=dilation,
            dilation=dilation,
            groups=num_groups,
            bias=False,
            norm=get_norm(norm, bottleneck_channels),
            activation=F.relu_,
        )
        self.conv3 = Conv2d(
            bottleneck_channels,
            out_channels,
            kernel_size=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        self._init_conv_weights(self.conv1, self.conv2, self.conv3, self.shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _add_shortcut_and_relu(self.conv3(self.conv2(self.conv1(x))), x, self.shortcut)


class ResNet(Backbone):
    """A stem followed by residual stages named ``res2``, ``res3``, ...

    Returns the feature maps named in ``out_features`` (``"stem"`` or stage names). Stages
    after the last requested one are not built.
    """

    def __init__(
        self,
        stem: CNNBlockBase,
        stages: Sequence[Sequence[CNNBlockBase]],
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
    ):
        """
        Args:
            stem: the first layers, with ``out_channels`` and ``stride`` attributes.
            stages: for each stage, its blocks; each block has ``out_channels`` and ``stride``.
            out_features: names of the returned feature maps; default: the last stage.
            freeze_at: see :meth:`freeze`.
        """
        super().__init__()
        stage_names = [f"res{index + 2}" for index in range(len(stages))]
        if out_features is None:
            out_features = stage_names[-1:]
        known = ["stem", *stage_names]
        unknown = [name for name in out_features if name not in known]
        if unknown or not out_features:
            raise ValueError(f"ResNet out_features {list(out_features)} must be a non-empty subset of {known}")
        num_stages = max(known.index(name) for name in out_features)

        self.stem = stem
        stride = stem.stride
        self._out_feature_strides = {"stem": stride}
        self._out_feature_channels = {"stem": stem.out_channels}
        self.stage_names = tuple(stage_names[:num_stages])
        for name, blocks in zip(self.stage_names, stages):
            if not blocks:
                raise ValueError(f"ResNet stage {name} has no blocks")
            for block in blocks:
                stride *= block.stride
            self.add_module(name, nn.Sequential(*blocks))
            self._out_feature_strides[name] = stride
            self._out_feature_channels[name] = blocks[-1].out_channels
        self._out_features = list(out_features)
        self.freeze(freeze_at)

    @property
    def stages(self) -> List[nn.Sequential]:
        """The built stages, from ``res2`` on."""
        return [getattr(self, name) for name in self.stage_names]

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``x``: ``(N, C, H, W)`` with ``C`` the stem's input channels. Returns the requested
        feature maps by name; the one of stride ``s`` is ``ceil(H / s)`` by ``ceil(W / s)``."""
        if x.dim() != 4 or x.shape[1] != self.stem.in_channels:
            raise ValueError(f"ResNet expects an (N, {self.stem.in_channels}, H, W) tensor, got shape {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def freeze(self, freeze_at: int = 0) -> ResNet:
        """Freeze the first ``freeze_at`` stages, counting the stem as stage 1: 0 freezes
        nothing, 1 the stem, 2 the stem and ``res2``, and so on. See ``CNNBlockBase.freeze``."""
        if freeze_at < 0:
            raise ValueError(f"freeze_at must be >= 0, got {freeze_at}")
        if freeze_at >= 1:
            self.stem.freeze()
        for stage_number, stage in enumerate(self.stages, start=2):
            if freeze_at >= stage_number:
                for block in stage:
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
    in_channels = resnets.STEM_OUT_CHANNELS
    out_channels = resnets.RES2_OUT_CHANNELS
    bottleneck_channels = resnets.NUM_GROUPS * resnets.WIDTH_PER_GROUP
    stages = []
    for name, num_blocks in zip(STAGE_NAMES, BLOCKS_PER_STAGE[depth]):
        dilation = resnets.RES5_DILATION if name == "res5" else 1
        # res2 follows the stride-4 stem at full resolution; a dilated res5 keeps its resolution.
        first_stride = 1 if name == "res2" or dilation > 1 else 2
        block_kwargs = dict(
            num_blocks=num_blocks,
            in_channels=in_channels,
            out_channels=out_channels,
            stride_per_block=[first_stride] + [1] * (num_blocks - 1),
            norm=norm,
        )
        if uses_basic_blocks:
            stage = ResNet.make_stage(BasicBlock, **block_kwargs)
        else:
            stage = ResNet.make_stage(
                BottleneckBlock,
                bottleneck_channels=bottleneck_channels,
                num_groups=resnets.NUM_GROUPS,
                stride_in_1x1=resnets.STRIDE_IN_1X1,
                dilation=dilation,
                **block_kwargs,
            )
        stages.append(stage)
        in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return ResNet(
        stem,
        stages,
        out_features=list(resnets.OUT_FEATURES),
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )
