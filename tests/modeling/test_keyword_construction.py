"""Every component of the R101-FPN Mask R-CNN builds from plain keyword arguments, without a config.

Each test builds one component twice under the same seed: from keyword arguments with Detectron2's
parameter names (its sub-components built from keywords too), and from a config through the
registries as the model does. The two must have the same state dict (same keys in the same order,
bit-identical tensors, the same parameters frozen), the same settings (public attributes) and give
bit-identical outputs on the same seeded input: in eval mode, and in training mode where the component
has losses.

The config is the R101-FPN model at an eighth of the usual widths (``TINY_OVERRIDES``), so that the
whole module runs in seconds on a CPU; only ``test_resnet`` builds a full-width network (ResNet-50).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, TypeVar

import pytest
import torch
from torch import nn

from project.config import get_cfg
from project.layers import ShapeSpec
from project.modeling import (
    FPN,
    RPN,
    DefaultAnchorGenerator,
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    GeneralizedRCNN,
    MaskRCNNConvUpsampleHead,
    ResNet,
    StandardROIHeads,
    StandardRPNHead,
    build_anchor_generator,
    build_backbone,
    build_box_head,
    build_mask_head,
    build_model,
    build_proposal_generator,
    build_roi_heads,
    build_rpn_head,
)
from project.modeling.backbone import BasicStem, BottleneckBlock, CNNBlockBase, LastLevelMaxPool
from project.modeling.box_regression import Box2BoxTransform
from project.modeling.matcher import Matcher
from project.modeling.poolers import ROIPooler
from project.structures import BitMasks, Boxes, ImageList, Instances

SEED = 2024
IMAGE_SIZE = 64
IMAGE_SHAPE = ShapeSpec(channels=3)

# The tiny R101-FPN: the R101 layout (3, 4, 23, 3 bottleneck blocks, FrozenBN, stride in the 1x1
# convolution, stem and res2 frozen) at an eighth of the widths, and narrow heads.
R101_BLOCKS = (3, 4, 23, 3)
STEM_CHANNELS, RES2_CHANNELS, WIDTH_PER_GROUP = 8, 32, 8
FPN_CHANNELS, BOX_FC_DIM, MASK_CONV_DIM, NUM_CLASSES = 16, 32, 16, 3
TINY_OVERRIDES = [
    "model=mask_rcnn_R_101_FPN",
    "MODEL.DEVICE=cpu",
    "MODEL.WEIGHTS=",
    f"MODEL.RESNETS.STEM_OUT_CHANNELS={STEM_CHANNELS}",
    f"MODEL.RESNETS.RES2_OUT_CHANNELS={RES2_CHANNELS}",
    f"MODEL.RESNETS.WIDTH_PER_GROUP={WIDTH_PER_GROUP}",
    f"MODEL.FPN.OUT_CHANNELS={FPN_CHANNELS}",
    f"MODEL.ROI_BOX_HEAD.FC_DIM={BOX_FC_DIM}",
    f"MODEL.ROI_MASK_HEAD.CONV_DIM={MASK_CONV_DIM}",
    f"MODEL.ROI_HEADS.NUM_CLASSES={NUM_CLASSES}",
]
PIXEL_MEAN = [103.530, 116.280, 123.675]
RESNET_FEATURES = ["res2", "res3", "res4", "res5"]
RPN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
ROI_FEATURES = ["p2", "p3", "p4", "p5"]
# Strides 4 ... 64 of the pyramid levels, and their pooling scales.
FPN_SHAPES = {f"p{level}": ShapeSpec(channels=FPN_CHANNELS, stride=2**level) for level in range(2, 7)}
ROI_SCALES = [1.0 / FPN_SHAPES[name].stride for name in ROI_FEATURES]

Built = TypeVar("Built")


def seeded(build: Callable[[], Built]) -> Built:
    """What ``build`` returns when run right after ``torch.manual_seed(SEED)``."""
    torch.manual_seed(SEED)
    return build()


def assert_same_weights(expected: nn.Module, actual: nn.Module) -> None:
    """Same state-dict keys in the same order, bit-identical values, the same parameters frozen."""
    expected_state, actual_state = expected.state_dict(), actual.state_dict()
    assert list(actual_state) == list(expected_state)
    for key, value in expected_state.items():
        assert torch.equal(actual_state[key], value), key
    frozen = {name: p.requires_grad for name, p in expected.named_parameters()}
    assert {name: p.requires_grad for name, p in actual.named_parameters()} == frozen


def assert_identical(expected: Any, actual: Any, where: str = "output") -> None:
    """``actual`` equals ``expected`` exactly: tensors bit for bit; Boxes, BitMasks, Instances,
    containers and plain objects without ``==`` field by field; sub-modules not at all (their
    weights and outputs are compared instead); anything else with ``==``."""
    assert type(actual) is type(expected), where
    if isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected), where
    elif isinstance(expected, (Boxes, BitMasks)):
        assert_identical(expected.tensor, actual.tensor, where)
    elif isinstance(expected, Instances):
        assert actual.image_size == expected.image_size, where
        assert_identical(expected.get_fields(), actual.get_fields(), where)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), where
        for key in expected:
            assert_identical(expected[key], actual[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for index, (e, a) in enumerate(zip(expected, actual)):
            assert_identical(e, a, f"{where}[{index}]")
    elif isinstance(expected, nn.Module):
        pass  # compared by assert_same_weights and through the outputs
    elif type(expected).__eq__ is object.__eq__ and hasattr(expected, "__dict__"):
        assert_identical(vars(expected), vars(actual), where)  # a Matcher, a Box2BoxTransform, ...
    else:
        assert actual == expected, where


def settings(module: nn.Module) -> Dict[str, Any]:
    """A module's own settings: its attributes but the private ones and the train/eval mode."""
    return {name: value for name, value in vars(module).items() if not name.startswith("_") and name != "training"}


def run(module: nn.Module, training: bool, inputs: tuple) -> Any:
    """``module`` in training or eval mode on a copy of ``inputs`` (some heads write into their
    input Instances), right after seeding (training samples at random)."""
    module.train(training)
    inputs = copy.deepcopy(inputs)
    with torch.set_grad_enabled(training):
        return seeded(lambda: module(*inputs))


def assert_same_module(expected: nn.Module, actual: nn.Module, *inputs: Any) -> Any:
    """``assert_same_weights`` and ``settings``, then the same output in eval mode on ``inputs``;
    returns it."""
    assert_same_weights(expected, actual)
    assert_identical(settings(expected), settings(actual), "settings")
    output = run(expected, False, inputs)
    assert_identical(output, run(actual, False, inputs))
    return output


def assert_same_losses(expected: nn.Module, actual: nn.Module, *inputs: Any) -> None:
    """The same output in training mode on ``inputs``: the losses (finite, at least one) and, for
    the proposal generator and ROI heads, the proposals that go with them."""
    output = run(expected, True, inputs)
    losses = output[1] if isinstance(output, tuple) else output
    assert losses and all(torch.isfinite(loss) for loss in losses.values())
    assert_identical(output, run(actual, True, inputs), "training output")


# Plain-keyword builders, named and valued as in Detectron2 for the tiny R101-FPN config.


def r101_stages() -> List[List[CNNBlockBase]]:
    """The four bottleneck stages res2 ... res5 of the tiny ResNet-101, written out stage by stage."""
    stages, in_channels = [], STEM_CHANNELS
    for index, num_blocks in enumerate(R101_BLOCKS):
        out_channels = RES2_CHANNELS * 2**index
        first_stride = 1 if index == 0 else 2
        stage = ResNet.make_stage(
            BottleneckBlock,
            num_blocks,
            in_channels=in_channels,
            out_channels=out_channels,
            bottleneck_channels=WIDTH_PER_GROUP * 2**index,
            stride_per_block=[first_stride] + [1] * (num_blocks - 1),
            norm="FrozenBN",
            stride_in_1x1=True,
        )
        stages.append(stage)
        in_channels = out_channels
    return stages


def r101_fpn() -> FPN:
    bottom_up = ResNet(
        stem=BasicStem(in_channels=3, out_channels=STEM_CHANNELS, norm="FrozenBN"),
        stages=r101_stages(),
        out_features=RESNET_FEATURES,
        freeze_at=2,
    )
    return FPN(
        bottom_up=bottom_up,
        in_features=RESNET_FEATURES,
        out_channels=FPN_CHANNELS,
        norm="",
        top_block=LastLevelMaxPool(),
        fuse_type="sum",
    )


def anchor_generator() -> DefaultAnchorGenerator:
    return DefaultAnchorGenerator(
        sizes=[[32], [64], [128], [256], [512]], aspect_ratios=[[0.5, 1.0, 2.0]], strides=[4, 8, 16, 32, 64], offset=0.0
    )


def rpn_head() -> StandardRPNHead:
    return StandardRPNHead(in_channels=FPN_CHANNELS, num_anchors=3, box_dim=4, conv_dims=[-1])


def rpn() -> RPN:
    return RPN(
        in_features=RPN_FEATURES,
        head=rpn_head(),
        anchor_generator=anchor_generator(),
        anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 1000),
        post_nms_topk=(1000, 1000),
        nms_thresh=0.7,
        min_box_size=0.0,
        anchor_boundary_thresh=-1,
        loss_weight={"loss_rpn_cls": 1.0, "loss_rpn_loc": 1.0},
        box_reg_loss_type="smooth_l1",
        smooth_l1_beta=0.0,
    )


def box_pooler() -> ROIPooler:
    return ROIPooler(output_size=7, scales=ROI_SCALES, sampling_ratio=0, pooler_type="ROIAlignV2")


def mask_pooler() -> ROIPooler:
    return ROIPooler(output_size=14, scales=ROI_SCALES, sampling_ratio=0, pooler_type="ROIAlignV2")


def box_head() -> FastRCNNConvFCHead:
    pooled = ShapeSpec(channels=FPN_CHANNELS, height=7, width=7)
    return FastRCNNConvFCHead(pooled, conv_dims=[], fc_dims=[BOX_FC_DIM, BOX_FC_DIM], conv_norm="")


def box_predictor() -> FastRCNNOutputLayers:
    return FastRCNNOutputLayers(
        ShapeSpec(channels=BOX_FC_DIM),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        num_classes=NUM_CLASSES,
        test_score_thresh=0.05,
        test_nms_thresh=0.5,
        test_topk_per_image=100,
        cls_agnostic_bbox_reg=False,
        smooth_l1_beta=0.0,
        box_reg_loss_type="smooth_l1",
        loss_weight={"loss_box_reg": 1.0},
    )


def mask_head() -> MaskRCNNConvUpsampleHead:
    pooled = ShapeSpec(channels=FPN_CHANNELS, height=14, width=14)
    return MaskRCNNConvUpsampleHead(pooled, num_classes=NUM_CLASSES, conv_dims=[MASK_CONV_DIM] * 5, conv_norm="")


def roi_heads() -> StandardROIHeads:
    return StandardROIHeads(
        num_classes=NUM_CLASSES,
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False),
        proposal_append_gt=True,
        box_in_features=ROI_FEATURES,
        box_pooler=box_pooler(),
        box_head=box_head(),
        box_predictor=box_predictor(),
        mask_in_features=ROI_FEATURES,
        mask_pooler=mask_pooler(),
        mask_head=mask_head(),
    )


def mask_rcnn() -> GeneralizedRCNN:
    # In the registries' order: backbone, proposal generator, ROI heads.
    return GeneralizedRCNN(
        backbone=r101_fpn(),
        proposal_generator=rpn(),
        roi_heads=roi_heads(),
        pixel_mean=PIXEL_MEAN,
        pixel_std=[1.0, 1.0, 1.0],
        input_format="BGR",
        pred_mask_format="bitmask",
        channels_last=True,
    )


# Fixtures: the config and seeded inputs.


@pytest.fixture(scope="module")
def cfg():
    return get_cfg(TINY_OVERRIDES)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(7)


@pytest.fixture
def features(generator) -> Dict[str, torch.Tensor]:
    """Random pyramid features p2 ... p6 of one 64 x 64 image."""
    return {
        name: torch.randn(1, FPN_CHANNELS, IMAGE_SIZE // shape.stride, IMAGE_SIZE // shape.stride, generator=generator)
        for name, shape in FPN_SHAPES.items()
    }


@pytest.fixture
def images() -> ImageList:
    return ImageList(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE), [(IMAGE_SIZE, IMAGE_SIZE)])


@pytest.fixture
def targets() -> List[Instances]:
    """Two ground-truth objects with box masks in the 64 x 64 image."""
    boxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [28.0, 20.0, 60.0, 52.0]])
    masks = torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
        mask[y0:y1, x0:x1] = True
    size = (IMAGE_SIZE, IMAGE_SIZE)
    return [Instances(size, gt_boxes=Boxes(boxes), gt_classes=torch.tensor([0, 2]), gt_masks=BitMasks(masks))]


@pytest.fixture
def proposals(generator) -> List[Instances]:
    """Twenty random proposals inside the 64 x 64 image."""
    corners = torch.rand(20, 2, 2, generator=generator) * IMAGE_SIZE
    boxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values + 1.0], dim=1).clamp(max=IMAGE_SIZE)
    logits = torch.randn(20, generator=generator)
    return [Instances((IMAGE_SIZE, IMAGE_SIZE), proposal_boxes=Boxes(boxes), objectness_logits=logits)]


@pytest.fixture
def pixels(generator) -> torch.Tensor:
    """A batch of one 64 x 64 BGR image on the 0-255 scale: the mean colour plus a faint random
    pattern. The untrained network (FrozenBN at identity) amplifies its input about 1e5-fold over
    its 101 layers; a faint input keeps features, proposals and detections in a sensible range."""
    pattern = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) * 1e-3
    return pattern + torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)


# One test per component.


def test_basic_stem(cfg, pixels):
    """BasicStem(in_channels, out_channels, norm) equals the stem of the config's backbone."""
    from_keywords = seeded(lambda: BasicStem(in_channels=3, out_channels=STEM_CHANNELS, norm="FrozenBN"))
    from_config = seeded(lambda: build_backbone(cfg, IMAGE_SHAPE).bottom_up.stem)
    from_keywords.freeze()  # as FREEZE_AT=2 freezes the config's stem (the ResNet's job, see test_resnet)
    assert_same_module(from_config, from_keywords, pixels)


def test_bottleneck_block(cfg, generator):
    """BottleneckBlock from keywords equals the config backbone's first block ``res2.0``
    (built, as there, right after the stem, whose initialisation draws from the same seed)."""

    def stem_then_block() -> BottleneckBlock:
        BasicStem(in_channels=3, out_channels=STEM_CHANNELS, norm="FrozenBN")
        return BottleneckBlock(
            in_channels=STEM_CHANNELS,
            out_channels=RES2_CHANNELS,
            bottleneck_channels=WIDTH_PER_GROUP,
            stride=1,
            num_groups=1,
            norm="FrozenBN",
            stride_in_1x1=True,
            dilation=1,
        )

    from_keywords = seeded(stem_then_block)
    from_config = seeded(lambda: build_backbone(cfg, IMAGE_SHAPE).bottom_up.res2[0])
    # The config's block is frozen (FREEZE_AT=2 covers res2); freezing is the ResNet's job.
    from_keywords.freeze()
    x = torch.randn(1, STEM_CHANNELS, 16, 16, generator=generator)
    assert_same_module(from_config, from_keywords, x)


def test_resnet(pixels):
    """ResNet(stem, stages=ResNet.make_default_stages(50, ...), out_features, freeze_at) equals
    ``build_resnet_backbone`` chosen by MODEL.BACKBONE.NAME (full-width ResNet-50, frozen up to res2)."""

    def resnet50() -> ResNet:
        return ResNet(
            stem=BasicStem(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=ResNet.make_default_stages(50, norm="FrozenBN", stride_in_1x1=True),
            out_features=RESNET_FEATURES,
            freeze_at=2,
        )

    r50_cfg = get_cfg(
        ["model=mask_rcnn_R_50_FPN", "MODEL.DEVICE=cpu", "MODEL.WEIGHTS=", "MODEL.BACKBONE.NAME=build_resnet_backbone"]
    )
    from_keywords = seeded(resnet50)
    from_config = seeded(lambda: build_backbone(r50_cfg, IMAGE_SHAPE))
    assert type(from_config) is ResNet
    assert_same_module(from_config, from_keywords, pixels)
    assert from_keywords.output_shape() == from_config.output_shape()


def test_fpn_with_last_level_max_pool(cfg, pixels):
    """FPN(bottom_up=ResNet(...), in_features, out_channels, norm, top_block=LastLevelMaxPool(),
    fuse_type) equals ``build_resnet_fpn_backbone`` for the tiny R101-FPN config."""
    from_keywords = seeded(r101_fpn)
    from_config = seeded(lambda: build_backbone(cfg, IMAGE_SHAPE))
    output = assert_same_module(from_config, from_keywords, pixels)
    assert list(output) == RPN_FEATURES
    assert from_keywords.output_shape() == from_config.output_shape() == FPN_SHAPES
    assert from_keywords.size_divisibility == from_config.size_divisibility == 32


def test_default_anchor_generator(cfg, features):
    """DefaultAnchorGenerator(sizes, aspect_ratios, strides, offset) gives the config's anchors,
    built directly or through the registry."""
    shapes = [FPN_SHAPES[name] for name in RPN_FEATURES]
    levels = [features[name] for name in RPN_FEATURES]
    from_keywords = anchor_generator()
    for from_config in (DefaultAnchorGenerator(cfg, shapes), build_anchor_generator(cfg, shapes)):
        assert_same_module(from_config, from_keywords, levels)
        assert_identical(from_config.cell_anchors, from_keywords.cell_anchors, "cell_anchors")


def test_standard_rpn_head(cfg, features):
    """StandardRPNHead(in_channels, num_anchors, box_dim, conv_dims) equals the config's head,
    built directly or through the registry."""
    shapes = [FPN_SHAPES[name] for name in RPN_FEATURES]
    levels = [features[name] for name in RPN_FEATURES]
    from_keywords = seeded(rpn_head)
    for build in (lambda: StandardRPNHead(cfg, shapes), lambda: build_rpn_head(cfg, shapes)):
        assert_same_module(seeded(build), from_keywords, levels)


def test_rpn(cfg, images, features, targets):
    """RPN from keywords (head, anchor generator, matcher, box transform and the MODEL.RPN values)
    gives the config's proposals in eval mode and its losses in training."""
    from_keywords = seeded(rpn)
    from_config = seeded(lambda: build_proposal_generator(cfg, FPN_SHAPES))
    proposals, losses = assert_same_module(from_config, from_keywords, images, features)
    assert len(proposals[0]) > 0 and losses == {}
    assert_same_losses(from_config, from_keywords, images, features, targets)


def test_roi_pooler(cfg, features, proposals):
    """ROIPooler(output_size, scales, sampling_ratio, pooler_type) equals the box and mask poolers
    of the config's ROI heads."""
    levels = [features[name] for name in ROI_FEATURES]
    boxes = [p.proposal_boxes for p in proposals]
    heads = build_roi_heads(cfg, FPN_SHAPES)
    for from_keywords, from_config in ((box_pooler(), heads.box_pooler), (mask_pooler(), heads.mask_pooler)):
        assert_same_module(from_config, from_keywords, levels, boxes)


def test_fast_rcnn_conv_fc_head(cfg, generator):
    """FastRCNNConvFCHead(input_shape, conv_dims, fc_dims, conv_norm) equals the config's box head,
    built directly or through the registry."""
    pooled = ShapeSpec(channels=FPN_CHANNELS, height=7, width=7)
    x = torch.randn(5, FPN_CHANNELS, 7, 7, generator=generator)
    from_keywords = seeded(box_head)
    for build in (lambda: FastRCNNConvFCHead(cfg, pooled), lambda: build_box_head(cfg, pooled)):
        assert_same_module(seeded(build), from_keywords, x)
    assert from_keywords.output_shape == ShapeSpec(channels=BOX_FC_DIM)


def test_fast_rcnn_output_layers(cfg, generator, proposals, targets):
    """FastRCNNOutputLayers from keywords equals ``FastRCNNOutputLayers(cfg, input_shape)``: the
    same scores and deltas, detections (test thresholds and top-k) and losses."""
    x = torch.randn(len(proposals[0]), BOX_FC_DIM, generator=generator)
    from_keywords = seeded(box_predictor)
    from_config = seeded(lambda: FastRCNNOutputLayers(cfg, ShapeSpec(channels=BOX_FC_DIM)))
    predictions = assert_same_module(from_config, from_keywords, x)
    detections = from_config.inference(predictions, proposals)
    assert len(detections[0][0]) > 0
    assert_identical(detections, from_keywords.inference(predictions, proposals), "detections")
    proposals[0].gt_classes = torch.tensor([0, 2, 3] * 6 + [1, 3])
    proposals[0].gt_boxes = Boxes(targets[0].gt_boxes.tensor.repeat(10, 1))
    assert_identical(from_config.losses(predictions, proposals), from_keywords.losses(predictions, proposals))


def test_mask_rcnn_conv_upsample_head(cfg, generator, targets):
    """MaskRCNNConvUpsampleHead(input_shape, num_classes, conv_dims, conv_norm) equals the config's
    mask head, built directly or through the registry: the same masks in eval, the same loss."""
    pooled = ShapeSpec(channels=FPN_CHANNELS, height=14, width=14)
    x = torch.randn(2, FPN_CHANNELS, 14, 14, generator=generator)
    detections = Instances(targets[0].image_size, pred_boxes=targets[0].gt_boxes, pred_classes=targets[0].gt_classes)
    training = Instances(targets[0].image_size, proposal_boxes=targets[0].gt_boxes, **targets[0].get_fields())
    from_keywords = seeded(mask_head)
    for build in (lambda: MaskRCNNConvUpsampleHead(cfg, pooled), lambda: build_mask_head(cfg, pooled)):
        from_config = seeded(build)
        assert_same_module(from_config, from_keywords, x, [detections])
        assert_same_losses(from_config, from_keywords, x, [training])


def test_standard_roi_heads(cfg, images, features, proposals, targets):
    """StandardROIHeads from keywords (matcher, sampling, poolers, box head, predictor, mask head)
    gives the config's detections with masks in eval mode and its losses in training."""
    from_keywords = seeded(roi_heads)
    from_config = seeded(lambda: build_roi_heads(cfg, FPN_SHAPES))
    detections, _ = assert_same_module(from_config, from_keywords, images, features, proposals)
    assert len(detections[0]) > 0 and detections[0].has("pred_masks")
    assert_same_losses(from_config, from_keywords, images, features, proposals, targets)


def test_generalized_rcnn(cfg, pixels, targets):
    """GeneralizedRCNN(backbone, proposal_generator, roi_heads, pixel_mean, pixel_std, ...) built
    from keywords all the way down equals ``build_model(cfg)``: the whole tiny R101-FPN Mask R-CNN,
    its detections in eval mode and its losses in training."""
    from_keywords = seeded(mask_rcnn)
    from_config = seeded(lambda: build_model(cfg))
    assert type(from_config) is GeneralizedRCNN
    batch = [{"image": pixels[0], "height": IMAGE_SIZE, "width": IMAGE_SIZE, "instances": targets[0]}]
    (output,) = assert_same_module(from_config, from_keywords, batch)
    assert len(output["instances"]) > 0
    assert_same_losses(from_config, from_keywords, batch)
