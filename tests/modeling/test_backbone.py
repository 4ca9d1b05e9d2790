"""ResNet / FPN backbones: Detectron2 state-dict names, shapes, freezing, norms and arithmetic."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from project.config import default_cfg, get_cfg
from project.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec
from project.modeling.backbone import FPN, Backbone, LastLevelMaxPool, ResNet, build_backbone

STAGES = ("res2", "res3", "res4", "res5")
BLOCKS = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
FROZEN_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def resnet_cfg(depth: int = 50, freeze_at: int = 2, **resnets):
    """Default config for a ResNet-``depth`` FPN, with ``MODEL.RESNETS`` fields overridden."""
    cfg = default_cfg()
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    cfg.MODEL.RESNETS.DEPTH = depth
    if depth < 50:
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    for key, value in resnets.items():
        setattr(cfg.MODEL.RESNETS, key, value)
    return cfg


def build_resnet(depth: int = 50, freeze_at: int = 2, **resnets) -> ResNet:
    """The ResNet alone (``build_resnet_backbone``) for ``resnet_cfg(depth, freeze_at, **resnets)``."""
    cfg = resnet_cfg(depth, freeze_at, **resnets)
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    return build_backbone(cfg)


# A narrow ResNet-50 (GroupNorm-compatible widths) for tests that run forward and backward.
SLIM = dict(STEM_OUT_CHANNELS=32, RES2_OUT_CHANNELS=64, WIDTH_PER_GROUP=32)


def bottleneck_conv_shapes(depth: int):
    """``(name, out, in, kernel)`` of every conv of a bottleneck ResNet, from the paper's rules:
    stage ``i`` (0-based) has width ``64 * 2**i`` and outputs ``4x`` that."""
    shapes = [("stem.conv1", 64, 3, 7)]
    in_channels = 64
    for index, (stage, num_blocks) in enumerate(zip(STAGES, BLOCKS[depth])):
        width, out_channels = 64 * 2**index, 256 * 2**index
        for block in range(num_blocks):
            prefix = f"{stage}.{block}"
            if block == 0:
                shapes.append((f"{prefix}.shortcut", out_channels, in_channels, 1))
            shapes += [
                (f"{prefix}.conv1", width, in_channels, 1),
                (f"{prefix}.conv2", width, width, 3),
                (f"{prefix}.conv3", out_channels, width, 1),
            ]
            in_channels = out_channels
    return shapes


def expected_fpn_state_dict_shapes(depth: int):
    """Every key of a FrozenBN ResNet-``depth``-FPN state dict, with its shape."""
    expected = {}
    for level, in_channels in zip(range(2, 6), (256, 512, 1024, 2048)):
        expected[f"fpn_lateral{level}.weight"] = (256, in_channels, 1, 1)
        expected[f"fpn_lateral{level}.bias"] = (256,)
        expected[f"fpn_output{level}.weight"] = (256, 256, 3, 3)
        expected[f"fpn_output{level}.bias"] = (256,)
    for name, out_channels, in_channels, kernel in bottleneck_conv_shapes(depth):
        expected[f"bottom_up.{name}.weight"] = (out_channels, in_channels, kernel, kernel)
        for key in FROZEN_BN_KEYS:
            expected[f"bottom_up.{name}.norm.{key}"] = (out_channels,)
    return expected


@pytest.fixture(scope="module")
def r101_fpn():
    """The backbone of the composed R-101-FPN model config: FrozenBN, FREEZE_AT=2."""
    cfg = get_cfg(["model=mask_rcnn_R_101_FPN"])
    assert cfg.MODEL.RESNETS.DEPTH == 101
    return build_backbone(cfg)


def test_r101_fpn_state_dict_matches_detectron2_names_and_shapes(r101_fpn):
    state = r101_fpn.state_dict()
    assert {key: tuple(value.shape) for key, value in state.items()} == (expected_fpn_state_dict_shapes(101))
    for key in (
        "bottom_up.stem.conv1.weight",
        "bottom_up.stem.conv1.norm.running_mean",
        "bottom_up.res2.0.shortcut.norm.weight",
        "bottom_up.res2.0.conv1.weight",
        "bottom_up.res4.22.conv3.norm.running_var",
        "bottom_up.res5.2.conv3.norm.bias",
        "fpn_lateral2.weight",
        "fpn_output5.bias",
    ):
        assert key in state
    assert not any(key.startswith("bottom_up.res4.23.") for key in state)
    assert not any(key.startswith("bottom_up.res2.1.shortcut") for key in state)
    assert not any("num_batches_tracked" in key or "top_block" in key for key in state)
    assert {k: (v.channels, v.stride) for k, v in r101_fpn.output_shape().items()} == {
        f"p{level}": (256, 2**level) for level in range(2, 7)
    }


def test_parameter_counts_follow_the_architecture(r101_fpn):
    def conv_weights(depth):
        return sum(out * inp * k * k for _, out, inp, k in bottleneck_conv_shapes(depth))

    fpn = sum(256 * c + 256 + 256 * 256 * 9 + 256 for c in (256, 512, 1024, 2048))
    assert sum(p.numel() for p in r101_fpn.parameters()) == conv_weights(101) + fpn
    r50_fpn = build_backbone(resnet_cfg(50))
    assert sum(p.numel() for p in r50_fpn.parameters()) == conv_weights(50) + fpn
    # ResNet-101 adds 17 res4 bottlenecks (1024 -> 256 -> 256 -> 1024) to ResNet-50.
    extra_block = 1024 * 256 + 256 * 256 * 9 + 256 * 1024
    assert conv_weights(101) - conv_weights(50) == 17 * extra_block
    # torchvision's independent implementation has the same convolutions.
    for depth, model in ((50, torchvision.models.resnet50()), (101, torchvision.models.resnet101())):
        tv_convs = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
        assert tv_convs == conv_weights(depth)


def test_r101_fpn_freezes_stem_and_res2_only(r101_fpn):
    frozen = {name for name, p in r101_fpn.named_parameters() if not p.requires_grad}
    expected = {
        name for name, _ in r101_fpn.named_parameters() if name.startswith(("bottom_up.stem.", "bottom_up.res2."))
    }
    assert frozen == expected and len(expected) == 1 + 3 * 3 + 1


def test_fpn_outputs_for_224x320_input():
    cfg = resnet_cfg(50, **SLIM)
    cfg.MODEL.FPN.OUT_CHANNELS = 48
    backbone = build_backbone(cfg).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 224, 320))
    strides = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert list(features) == list(strides)
    for name, stride in strides.items():
        assert features[name].shape == (1, 48, -(-224 // stride), -(-320 // stride))
        assert backbone.output_shape()[name] == ShapeSpec(channels=48, stride=stride)
    assert features["p6"].shape[-2:] == (4, 5)
    assert backbone.size_divisibility == 32
    assert backbone.padding_constraints == {"size_divisibility": 32}
    resnet = backbone.bottom_up
    assert resnet.size_divisibility == 0 and resnet.padding_constraints == {}
    # SLIM's res2 outputs 64 channels; each later stage doubles channels and stride.
    assert {k: (v.channels, v.stride) for k, v in resnet.output_shape().items()} == {
        "res2": (64, 4),
        "res3": (128, 8),
        "res4": (256, 16),
        "res5": (512, 32),
    }


def test_fpn_rejects_input_not_padded_to_size_divisibility():
    backbone = build_backbone(resnet_cfg(18)).eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        backbone(torch.randn(1, 3, 100, 96))


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3, 5])
def test_freeze_at_freezes_leading_stages_and_their_norms(freeze_at):
    resnet = build_resnet(50, freeze_at=freeze_at, NORM="BN")
    frozen_parts = ("stem", *STAGES)[:freeze_at]
    for name, parameter in resnet.named_parameters():
        assert parameter.requires_grad == (name.split(".")[0] not in frozen_parts), name
    for name, module in resnet.named_modules():
        if name.endswith(".norm"):
            expected = FrozenBatchNorm2d if name.split(".")[0] in frozen_parts else nn.BatchNorm2d
            assert type(module) is expected, name


def randomize_norm_statistics(module: nn.Module, generator: torch.Generator) -> None:
    """Give every batch norm random affine parameters and running statistics."""
    for norm in module.modules():
        if isinstance(norm, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            channels = norm.num_features
            with torch.no_grad():
                norm.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                norm.bias.copy_(torch.randn(channels, generator=generator) * 0.1)
                norm.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
                norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)


def test_freezing_a_batchnorm_resnet_keeps_its_function():
    generator = torch.Generator().manual_seed(0)
    resnet = build_resnet(50, freeze_at=0, NORM="BN", OUT_FEATURES=["res3"], **SLIM).eval()
    randomize_norm_statistics(resnet, generator)
    x = torch.randn(2, 3, 64, 64, generator=generator)
    with torch.no_grad():
        before = resnet(x)["res3"]
        after = resnet.freeze(3)(x)["res3"]
    assert isinstance(resnet.res3[0].conv1.norm, FrozenBatchNorm2d)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5 * before.abs().max().item())


def torchvision_to_detectron2_key(key: str) -> str:
    """Rename a torchvision ResNet state-dict key to this backbone's naming."""
    parts = key.split(".")
    if parts[0] in ("conv1", "bn1"):
        return "stem.conv1" + (".norm." if parts[0] == "bn1" else ".") + parts[-1]
    stage = f"res{int(parts[0][len('layer') :]) + 1}"
    block, layer = parts[1], parts[2]
    if layer == "downsample":
        conv = "shortcut" + (".norm" if parts[3] == "1" else "")
    else:
        conv = layer.replace("bn", "conv") + (".norm" if layer.startswith("bn") else "")
    return f"{stage}.{block}.{conv}.{parts[-1]}"


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_computes_what_torchvision_computes(depth):
    """With the stride on the 3x3 conv (torchvision's choice) and torchvision's weights, every
    stage output equals torchvision's, through FrozenBN folding."""
    generator = torch.Generator().manual_seed(depth)
    reference = getattr(torchvision.models, f"resnet{depth}")().eval()
    randomize_norm_statistics(reference, generator)
    resnet = build_resnet(depth, STRIDE_IN_1X1=False).eval()
    state = {
        torchvision_to_detectron2_key(k): v
        for k, v in reference.state_dict().items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    resnet.load_state_dict(state, strict=True)

    x = torch.randn(1, 3, 64, 96, generator=generator)
    with torch.no_grad():
        features = resnet(x)
        y = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        for stage, layer in zip(STAGES, (reference.layer1, reference.layer2, reference.layer3, reference.layer4)):
            y = layer(y)
            torch.testing.assert_close(features[stage], y, rtol=1e-4, atol=1e-4 * y.abs().max().item())


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_stride_in_1x1_moves_the_first_blocks_stride(stride_in_1x1):
    resnet = build_resnet(50, STRIDE_IN_1X1=stride_in_1x1, **SLIM)
    for stage in STAGES:
        first, second = getattr(resnet, stage)[0], getattr(resnet, stage)[1]
        stride = 1 if stage == "res2" else 2
        assert first.shortcut.stride == (stride, stride)
        expected_1x1 = stride if stride_in_1x1 else 1
        expected_3x3 = 1 if stride_in_1x1 else stride
        assert first.conv1.stride == (expected_1x1, expected_1x1)
        assert first.conv2.stride == (expected_3x3, expected_3x3)
        assert second.conv1.stride == second.conv2.stride == (1, 1)
    with torch.no_grad():
        assert resnet.eval()(torch.randn(1, 3, 64, 64))["res5"].shape == (1, 512, 2, 2)


def test_res5_dilation_keeps_res5_at_stride_16():
    resnet = build_resnet(50, RES5_DILATION=2, OUT_FEATURES=["res4", "res5"], **SLIM)
    assert resnet.output_shape()["res5"].stride == 16
    assert all(block.conv2.dilation == (2, 2) and block.conv2.padding == (2, 2) for block in resnet.res5)
    with torch.no_grad():
        features = resnet.eval()(torch.randn(1, 3, 64, 64))
    assert features["res5"].shape[-2:] == features["res4"].shape[-2:] == (4, 4)


def test_out_features_truncate_stages_and_groups_set_width():
    resnet = build_resnet(50, OUT_FEATURES=["res3"], NUM_GROUPS=32, WIDTH_PER_GROUP=4)
    assert resnet.stage_names == ("res2", "res3") and not hasattr(resnet, "res4")
    assert resnet.res3[0].conv2.groups == 32 and resnet.res3[0].conv2.out_channels == 256
    with torch.no_grad():
        assert list(resnet.eval()(torch.randn(1, 3, 32, 32))) == ["res3"]


@pytest.mark.parametrize(
    "norm, norm_type",
    [
        ("FrozenBN", FrozenBatchNorm2d),
        ("BN", nn.BatchNorm2d),
        ("GN", nn.GroupNorm),
        ("", type(None)),
    ],
)
def test_each_norm_builds_and_runs(norm, norm_type):
    cfg = resnet_cfg(50, freeze_at=0, NORM=norm, **SLIM)
    cfg.MODEL.FPN.NORM = norm
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    backbone = build_backbone(cfg).train()
    for conv in (backbone.bottom_up.res3[0].conv1, backbone.fpn_lateral2, backbone.fpn_output3):
        assert type(conv.norm) is norm_type
    # As in Detectron2, ResNet convs never have a bias; FPN convs have one only without a norm.
    assert backbone.bottom_up.res3[0].conv1.bias is None
    assert (backbone.fpn_lateral2.bias is None) == (norm != "")
    features = backbone(torch.randn(2, 3, 64, 64))
    assert all(torch.isfinite(f).all() for f in features.values())
    loss = sum(f.square().mean() for f in features.values())
    loss.backward()
    assert backbone.bottom_up.stem.conv1.weight.grad.abs().sum() > 0


def test_syncbn_builds_with_its_norm_keys():
    cfg = resnet_cfg(50, NORM="SyncBN", **SLIM)
    cfg.MODEL.FPN.NORM = "SyncBN"
    backbone = build_backbone(cfg)
    assert type(backbone.bottom_up.res3[0].conv2.norm) is nn.SyncBatchNorm
    # FREEZE_AT=2 turned the stem's and res2's SyncBN into FrozenBN.
    assert type(backbone.bottom_up.res2[0].conv2.norm) is FrozenBatchNorm2d
    state = backbone.state_dict()
    assert "fpn_lateral2.norm.running_var" in state and "fpn_lateral2.bias" not in state


@pytest.mark.parametrize("bias", [False, True])
def test_frozen_bn_folding_equals_norm_after_conv(bias):
    generator = torch.Generator().manual_seed(1)
    norm = FrozenBatchNorm2d(8)
    randomize_norm_statistics(norm, generator)
    conv = Conv2d(4, 8, kernel_size=3, stride=2, padding=1, bias=bias, norm=norm)
    x = torch.randn(2, 4, 9, 11, generator=generator)
    unfolded = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    expected = (unfolded - norm.running_mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1)
    expected = expected + norm.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


class ConstantFeatures(Backbone):
    """A bottom-up stub returning fixed feature maps ``res2``..``res5`` (strides 4..32)."""

    def __init__(self, features):
        super().__init__()
        self.features = features
        self._out_features = list(features)
        self._out_feature_channels = {name: f.shape[1] for name, f in features.items()}
        self._out_feature_strides = {name: 2 ** (index + 2) for index, name in enumerate(features)}

    def forward(self, x):
        return dict(self.features)


def scaled_identity_(conv: nn.Conv2d, scale: float) -> None:
    """Make ``conv`` multiply each channel by ``scale`` (centre tap only, zero bias)."""
    with torch.no_grad():
        conv.weight.zero_()
        centre = conv.kernel_size[0] // 2
        conv.weight[:, :, centre, centre] = scale * torch.eye(conv.out_channels)
        conv.bias.zero_()


def upsample_2x(x: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


@pytest.mark.parametrize("fuse_type", ["sum", "avg"])
def test_fpn_top_down_fusion_arithmetic(fuse_type):
    generator = torch.Generator().manual_seed(2)
    channels = 3
    features = {
        name: torch.randn(1, channels, 16 >> index, 24 >> index, generator=generator)
        for index, name in enumerate(STAGES)
    }
    fpn = FPN(ConstantFeatures(features), list(STAGES), channels, top_block=LastLevelMaxPool(), fuse_type=fuse_type)
    # Level k's lateral multiplies by k and its output conv by 10, so a level mix-up shows.
    for level in range(2, 6):
        scaled_identity_(getattr(fpn, f"fpn_lateral{level}"), float(level))
        scaled_identity_(getattr(fpn, f"fpn_output{level}"), 10.0)
    with torch.no_grad():
        pyramid = fpn(torch.zeros(1, 3, 64, 96))

    pathway = 5 * features["res5"]
    expected = {"p5": 10 * pathway}
    for level, name in ((4, "res4"), (3, "res3"), (2, "res2")):
        pathway = level * features[name] + upsample_2x(pathway)
        if fuse_type == "avg":
            pathway = pathway / 2
        expected[f"p{level}"] = 10 * pathway
    expected["p6"] = expected["p5"][:, :, ::2, ::2]
    assert list(pyramid) == ["p2", "p3", "p4", "p5", "p6"]
    for name, value in expected.items():
        torch.testing.assert_close(pyramid[name], value)


def test_build_backbone_reports_unknown_names_and_reads_input_channels():
    cfg = resnet_cfg(18)
    cfg.MODEL.BACKBONE.NAME = "build_missing_backbone"
    with pytest.raises(KeyError, match="build_resnet_fpn_backbone"):
        build_backbone(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.PIXEL_MEAN = [128.0]
    cfg.MODEL.PIXEL_STD = [1.0]
    resnet = build_backbone(cfg)
    assert resnet.stem.conv1.in_channels == 1
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        resnet(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("DEPTH", 42, "MODEL.RESNETS.DEPTH=42"),
        ("RES5_DILATION", 3, "MODEL.RESNETS.RES5_DILATION=3"),
        ("OUT_FEATURES", ["res6"], "res6"),
    ],
)
def test_bad_resnet_config_names_the_field(key, value, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(resnet_cfg(50, **{key: value}))
