"""Anchor generator, RPN head, proposal selection and RPN losses, on random feature maps."""

import math
from statistics import fmean

import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from project.config.compose import default_cfg
from project.layers import ShapeSpec
from project.modeling.anchor_generator import DefaultAnchorGenerator, build_anchor_generator
from project.modeling.proposal_generator import (
    RPN,
    StandardRPNHead,
    build_proposal_generator,
    find_top_rpn_proposals,
)
from project.structures import Boxes, ImageList, Instances

CHANNELS = 8
LEVELS = {f"p{i}": 2**i for i in range(2, 7)}  # name -> stride


def fpn_shapes(channels: int = CHANNELS):
    return {name: ShapeSpec(channels=channels, stride=stride) for name, stride in LEVELS.items()}


def fpn_features(num_images: int, height: int, width: int, channels: int = CHANNELS):
    """Random p2..p6 maps of a padded batch of ``height`` x ``width`` images."""
    return {
        name: torch.randn(num_images, channels, math.ceil(height / s), math.ceil(width / s))
        for name, s in LEVELS.items()
    }


def anchor_cfg(sizes, ratios, offset=0.0):
    cfg = default_cfg()
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = sizes
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = ratios
    cfg.MODEL.ANCHOR_GENERATOR.OFFSET = offset
    return cfg


def gt(image_size, boxes):
    return Instances(image_size, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)))


# ---------------------------------------------------------------- anchors


def test_anchor_grid_matches_hand_computed_values():
    gen = DefaultAnchorGenerator(anchor_cfg([[32]], [[1.0]]), [ShapeSpec(channels=1, stride=4)])
    (anchors,) = gen([torch.zeros(1, 1, 2, 3)])
    expected = torch.tensor(
        [[-16.0, -16, 16, 16], [-12, -16, 20, 16], [-8, -16, 24, 16],
         [-16, -12, 16, 20], [-12, -12, 20, 20], [-8, -12, 24, 20]]
    )  # fmt: skip
    assert torch.equal(anchors.tensor, expected)


def test_cell_anchors_have_size_squared_area_and_height_over_width_ratio():
    gen = DefaultAnchorGenerator(anchor_cfg([[32, 64]], [[0.5, 2.0]], offset=0.5), [ShapeSpec(stride=8)])
    (anchors,) = gen([torch.zeros(1, 1, 1, 2)])
    boxes = anchors.tensor.double()
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    # Size-major, then ratio; one location after another; centre (x + 0.5) * stride.
    expected_sizes = torch.tensor([32.0, 32, 64, 64] * 2, dtype=torch.float64)
    expected_ratios = torch.tensor([0.5, 2.0] * 4, dtype=torch.float64)
    assert torch.allclose(widths * heights, expected_sizes**2, rtol=1e-6)
    assert torch.allclose(heights / widths, expected_ratios, rtol=1e-6)
    centres_x = (boxes[:, 0] + boxes[:, 2]) / 2
    assert torch.allclose(centres_x, torch.tensor([4.0] * 4 + [12.0] * 4, dtype=torch.float64))
    assert torch.allclose((boxes[:, 1] + boxes[:, 3]) / 2, torch.full((8,), 4.0, dtype=torch.float64))
    assert torch.allclose(widths[:2], torch.tensor([math.sqrt(32**2 / 0.5), math.sqrt(32**2 / 2.0)]).double())


def test_default_anchor_counts_per_level():
    gen = build_anchor_generator(default_cfg(), list(fpn_shapes().values()))
    features = list(fpn_features(1, 64, 96).values())
    anchors = gen(features)
    assert gen.num_anchors == gen.num_cell_anchors == [3] * 5
    assert [len(a) for a in anchors] == [f.shape[2] * f.shape[3] * 3 for f in features]
    # The per-level sizes 32..512 are assigned to p2..p6 in order.
    widths = [float(a.tensor[1, 2] - a.tensor[1, 0]) for a in anchors]  # ratio 1.0 anchor
    assert widths == pytest.approx([32, 64, 128, 256, 512])


def test_shared_flat_size_list_applies_to_every_level():
    gen = DefaultAnchorGenerator(anchor_cfg([16, 24], [1.0, 2.0, 3.0]), [ShapeSpec(stride=4), ShapeSpec(stride=8)])
    assert gen.num_anchors == [6, 6]


@pytest.mark.parametrize(
    "sizes, ratios, offset, message",
    [
        ([[32], [64], [128]], [[1.0]], 0.0, r"SIZES in a config\) has 3 lists"),
        ([["a"]], [[1.0]], 0.0, "SIZES"),
        ([[32]], [[0.0]], 0.0, "ASPECT_RATIOS"),
        ([[32], 64], [[1.0]], 0.0, "SIZES"),
        ([], [[1.0]], 0.0, "SIZES"),
        ([[32]], [[1.0]], 1.0, "OFFSET"),
    ],
)
def test_bad_anchor_config_fails_with_the_field_name(sizes, ratios, offset, message):
    shapes = [ShapeSpec(stride=s) for s in LEVELS.values()]
    with pytest.raises(ValueError, match=message):
        DefaultAnchorGenerator(anchor_cfg(sizes, ratios, offset), shapes)


def test_cell_anchors_are_buffers_but_not_checkpointed():
    gen = build_anchor_generator(default_cfg(), list(fpn_shapes().values()))
    assert gen.state_dict() == {}
    moved = gen.to("meta")
    assert all(cell.device.type == "meta" for cell in moved.cell_anchors)
    anchors = moved([torch.empty(1, 1, 4, 4, device="meta")] * 5)
    assert anchors[0].tensor.device.type == "meta"


# ---------------------------------------------------------------- head


def test_rpn_state_dict_keys_are_detectron2s():
    rpn = build_proposal_generator(default_cfg(), fpn_shapes())
    assert isinstance(rpn, RPN) and isinstance(rpn.rpn_head, StandardRPNHead)
    assert set(rpn.state_dict()) == {
        "rpn_head.conv.weight",
        "rpn_head.conv.bias",
        "rpn_head.objectness_logits.weight",
        "rpn_head.objectness_logits.bias",
        "rpn_head.anchor_deltas.weight",
        "rpn_head.anchor_deltas.bias",
    }
    head = rpn.rpn_head
    assert head.conv.weight.shape == (CHANNELS, CHANNELS, 3, 3)
    assert head.objectness_logits.weight.shape == (3, CHANNELS, 1, 1)
    assert head.anchor_deltas.weight.shape == (12, CHANNELS, 1, 1)
    for conv in (head.conv, head.objectness_logits, head.anchor_deltas):
        assert torch.count_nonzero(conv.bias) == 0
        assert 0.005 < float(conv.weight.detach().std()) < 0.02


def test_several_hidden_convs_use_numbered_keys():
    cfg = default_cfg()
    cfg.MODEL.RPN.CONV_DIMS = [16, -1]
    head = build_proposal_generator(cfg, fpn_shapes()).rpn_head
    assert head.conv.conv0.weight.shape == (16, CHANNELS, 3, 3)
    assert head.conv.conv1.weight.shape == (16, 16, 3, 3)
    assert head.objectness_logits.in_channels == 16
    cfg.MODEL.RPN.CONV_DIMS = [0]
    with pytest.raises(ValueError, match="CONV_DIMS"):
        build_proposal_generator(cfg, fpn_shapes())


def test_bad_rpn_config_fails_clearly():
    cfg = default_cfg()
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p7"]
    with pytest.raises(ValueError, match="p7"):
        build_proposal_generator(cfg, fpn_shapes())
    cfg = default_cfg()
    cfg.MODEL.RPN.BBOX_REG_LOSS_TYPE = "l2"
    with pytest.raises(ValueError, match="BBOX_REG_LOSS_TYPE"):
        build_proposal_generator(cfg, fpn_shapes())
    shapes = fpn_shapes()
    shapes["p6"] = ShapeSpec(channels=CHANNELS + 1, stride=64)
    with pytest.raises(ValueError, match="channel"):
        build_proposal_generator(default_cfg(), shapes)


# ---------------------------------------------------------------- proposals


def test_inference_proposals_are_few_clipped_sorted_and_constant():
    torch.manual_seed(0)
    cfg = default_cfg()
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    rpn = build_proposal_generator(cfg, fpn_shapes()).eval()
    nn.init.normal_(rpn.rpn_head.anchor_deltas.weight, std=0.3)  # spread the boxes out
    nn.init.normal_(rpn.rpn_head.objectness_logits.weight, std=1.0)
    image_sizes = [(100, 130), (128, 96)]
    images = ImageList(torch.zeros(2, 3, 128, 130), image_sizes)
    proposals, losses = rpn(images, fpn_features(2, 128, 130))
    assert losses == {}
    assert len(proposals) == 2
    for result, (h, w) in zip(proposals, image_sizes):
        boxes, logits = result.proposal_boxes.tensor, result.objectness_logits
        assert result.image_size == (h, w)
        assert len(result) == 50
        assert not boxes.requires_grad and not logits.requires_grad
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all()
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) > 0).all()
        assert torch.all(logits[:-1] >= logits[1:])


def test_head_outputs_are_paired_with_the_right_anchors():
    """Make only the ratio-1 cell anchor score high and double in width: every proposal must
    show that pairing, which needs logits, deltas and anchors laid out in the same order."""
    cfg = anchor_cfg([[16]], [[0.5, 1.0, 2.0]], offset=0.5)
    cfg.MODEL.RPN.IN_FEATURES = ["p4"]
    cfg.MODEL.RPN.NMS_THRESH = 1.0  # suppress nothing
    rpn = build_proposal_generator(cfg, fpn_shapes()).eval()
    head = rpn.rpn_head
    for conv in (head.objectness_logits, head.anchor_deltas):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    with torch.no_grad():
        head.objectness_logits.bias.copy_(torch.tensor([-5.0, 5.0, -5.0]))
        head.anchor_deltas.bias[1 * 4 + 2] = math.log(2.0)  # anchor 1: dw
    (result,) = rpn(ImageList(torch.zeros(1, 3, 128, 128), [(128, 128)]), {"p4": torch.randn(1, CHANNELS, 8, 8)})[0]
    boxes, logits = result.proposal_boxes.tensor, result.objectness_logits
    interior = (boxes[:, 0] > 0) & (boxes[:, 2] < 128) & (boxes[:, 1] > 0) & (boxes[:, 3] < 128)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    high = logits == 5.0
    assert int(high.sum()) == 64 and int((logits == -5.0).sum()) == 128
    assert torch.allclose(widths[high & interior], torch.tensor(32.0))
    assert torch.allclose(heights[high & interior], torch.tensor(16.0))
    assert torch.allclose((widths * heights)[~high & interior], torch.tensor(256.0))


def greedy_nms_per_level(boxes, scores, levels, thresh):
    """Independent reference: greedy NMS on Python lists, separately per level, best first."""
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: -float(scores[i])):
        if all(levels[j] != levels[i] or float(box_iou(boxes[i : i + 1], boxes[j : j + 1])) <= thresh for j in kept):
            kept.append(i)
    return kept


def test_find_top_rpn_proposals_matches_a_reference_selection():
    torch.manual_seed(1)
    image_size = (60, 80)
    level_sizes = [40, 12]
    centres = [torch.rand(1, n, 2) * torch.tensor([90.0, 70.0]) - 5 for n in level_sizes]
    half = [torch.rand(1, n, 2) * 15 + 0.2 for n in level_sizes]
    proposals = [torch.cat([c - s, c + s], dim=2) for c, s in zip(centres, half)]
    proposals[0][0, 3] = torch.tensor([10.0, 10, 13, 30])  # 3 px wide: under min size 3.5 after clip
    logits = [torch.randn(1, n) for n in level_sizes]
    pre_nms_topk, post_nms_topk, min_size, thresh = 30, 25, 3.5, 0.5

    (result,) = find_top_rpn_proposals(
        proposals, logits, [image_size], thresh, pre_nms_topk, post_nms_topk, min_size, training=False
    )

    cand_boxes, cand_scores, cand_levels = [], [], []
    for level, (b, s) in enumerate(zip(proposals, logits)):
        order = torch.argsort(s[0], descending=True)[:pre_nms_topk]
        cand_boxes.append(b[0, order])
        cand_scores.append(s[0, order])
        cand_levels += [level] * len(order)
    boxes = torch.cat(cand_boxes)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image_size[1])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image_size[0])
    scores = torch.cat(cand_scores)
    big = [i for i in range(len(boxes)) if min(boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1]) > min_size]
    kept = [big[i] for i in greedy_nms_per_level(boxes[big], scores[big], [cand_levels[i] for i in big], thresh)]
    kept = kept[:post_nms_topk]
    assert len(kept) < 12 + pre_nms_topk  # the filters did remove something
    assert torch.equal(result.objectness_logits, scores[kept])
    assert torch.equal(result.proposal_boxes.tensor, boxes[kept])


def test_nms_suppresses_only_within_a_level():
    box = torch.tensor([[10.0, 10, 50, 50]])
    shifted = box + torch.tensor([2.0, 0, 2, 0])  # IoU 0.905 with box
    proposals = [torch.cat([box, shifted])[None], torch.cat([shifted, box])[None]]
    logits = [torch.tensor([[2.0, 1.0]]), torch.tensor([[0.5, 0.0]])]
    (strict,) = find_top_rpn_proposals(proposals, logits, [(100, 100)], 0.7, 10, 10, 0.0, False)
    assert strict.objectness_logits.tolist() == [2.0, 0.5]
    (loose,) = find_top_rpn_proposals(proposals, logits, [(100, 100)], 0.95, 10, 10, 0.0, False)
    assert loose.objectness_logits.tolist() == [2.0, 1.0, 0.5, 0.0]


def test_non_finite_proposals_are_dropped_in_eval_and_fatal_in_training():
    proposals = [torch.tensor([[[0.0, 0, 10, 10], [float("nan"), 0, 5, 5], [20, 20, 30, 30]]])]
    logits = [torch.tensor([[1.0, 3.0, float("inf")]])]
    (result,) = find_top_rpn_proposals(proposals, logits, [(40, 40)], 0.7, 10, 10, 0.0, False)
    assert result.objectness_logits.tolist() == [1.0]
    with pytest.raises(FloatingPointError, match="diverged"):
        find_top_rpn_proposals(proposals, logits, [(40, 40)], 0.7, 10, 10, 0.0, True)


# ---------------------------------------------------------------- training


def silenced_rpn(cfg, shapes):
    """An RPN whose head predicts logit 0 and deltas 0 for every anchor."""
    rpn = build_proposal_generator(cfg, shapes).train()
    for conv in (rpn.rpn_head.objectness_logits, rpn.rpn_head.anchor_deltas):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return rpn


@pytest.mark.parametrize("boundary_thresh", [-1, 0])
def test_losses_match_an_independent_count_of_labelled_anchors(boundary_thresh):
    cfg = default_cfg()
    cfg.MODEL.RPN.IN_FEATURES = ["p4"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[40, 80]]
    cfg.MODEL.RPN.BOUNDARY_THRESH = boundary_thresh
    cfg.MODEL.RPN.LOSS_WEIGHT = 2.0
    cfg.MODEL.RPN.BBOX_REG_LOSS_WEIGHT = 3.0
    rpn = silenced_rpn(cfg, fpn_shapes())
    image_size, gt_box = (96, 112), [20.0, 30.0, 70.0, 90.0]
    features = {"p4": torch.randn(1, CHANNELS, 6, 7)}  # 6 * 7 * 6 = 252 anchors < 256: all labelled ones sampled
    _, losses = rpn(ImageList(torch.zeros(1, 3, 96, 112), [image_size]), features, [gt(image_size, [gt_box])])

    anchors = rpn.anchor_generator([features["p4"]])[0].tensor
    iou = box_iou(torch.tensor([gt_box]), anchors)[0]
    foreground = (iou >= 0.7) | (iou == iou.max())
    labelled = foreground | (iou < 0.3)
    if boundary_thresh == 0:
        inside = (anchors[:, :2] >= 0).all(dim=1) & (anchors[:, 2] < 112) & (anchors[:, 3] < 96)
        foreground, labelled = foreground & inside, labelled & inside
    num_labelled = int(labelled.sum())
    assert 0 < int(foreground.sum()) < num_labelled < len(anchors)
    assert float(losses["loss_rpn_cls"]) == pytest.approx(2.0 * math.log(2) * num_labelled / 256, rel=1e-5)

    # Zero predicted deltas: the L1 loss is the sum of |target deltas| over foreground anchors.
    fg = anchors[foreground]
    aw, ah = fg[:, 2] - fg[:, 0], fg[:, 3] - fg[:, 1]
    gx, gy, gw, gh = 45.0, 60.0, 50.0, 60.0
    targets = torch.stack(
        [
            (gx - (fg[:, 0] + aw / 2)) / aw,
            (gy - (fg[:, 1] + ah / 2)) / ah,
            torch.log(gw / aw),
            torch.log(gh / ah),
        ]
    )
    assert float(losses["loss_rpn_loc"]) == pytest.approx(6.0 * float(targets.abs().sum()) / 256, rel=1e-5)


def test_images_without_ground_truth_are_all_background():
    torch.manual_seed(2)
    rpn = silenced_rpn(default_cfg(), fpn_shapes())
    image_sizes = [(64, 64), (50, 60)]
    proposals, losses = rpn(
        ImageList(torch.zeros(2, 3, 64, 64), image_sizes),
        fpn_features(2, 64, 64),
        [gt(image_sizes[0], [[5.0, 5, 40, 30]]), gt(image_sizes[1], [])],
    )
    labels, _ = rpn.label_and_sample_anchors(
        rpn.anchor_generator(list(fpn_features(2, 64, 64).values())),
        [gt(image_sizes[0], [[5.0, 5, 40, 30]]), gt(image_sizes[1], [])],
    )
    assert int((labels[1] == 1).sum()) == 0 and int((labels[1] == 0).sum()) == 256
    assert int((labels[0] == 1).sum()) > 0 and int((labels[0] >= 0).sum()) == 256
    assert float(losses["loss_rpn_cls"]) == pytest.approx(math.log(2), rel=1e-5)
    assert torch.isfinite(losses["loss_rpn_loc"]) and float(losses["loss_rpn_loc"]) > 0
    assert len(proposals) == 2 and all(len(p) > 0 for p in proposals)

    _, only_empty = rpn(
        ImageList(torch.zeros(1, 3, 50, 60), image_sizes[1:]),
        fpn_features(1, 50, 60),
        [gt(image_sizes[1], [])],
    )
    assert float(only_empty["loss_rpn_loc"]) == 0.0
    assert float(only_empty["loss_rpn_cls"]) == pytest.approx(math.log(2), rel=1e-5)


def test_training_requires_ground_truth_and_proposals_carry_no_gradient():
    rpn = build_proposal_generator(default_cfg(), fpn_shapes()).train()
    images = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    with pytest.raises(ValueError, match="gt_instances"):
        rpn(images, fpn_features(1, 64, 64))
    proposals, losses = rpn(images, fpn_features(1, 64, 64), [gt((64, 64), [[8.0, 8, 40, 48]])])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    assert all(v.requires_grad for v in losses.values())
    assert not proposals[0].proposal_boxes.tensor.requires_grad
    assert not proposals[0].objectness_logits.requires_grad


@pytest.mark.parametrize("loss_type", ["smooth_l1", "giou"])
def test_short_optimisation_decreases_the_loss(loss_type):
    torch.manual_seed(3)
    cfg = default_cfg()
    cfg.MODEL.RPN.BBOX_REG_LOSS_TYPE = loss_type
    rpn = build_proposal_generator(cfg, fpn_shapes()).train()
    image_sizes = [(64, 80)]
    images = ImageList(torch.zeros(1, 3, 64, 80), image_sizes)
    features = fpn_features(1, 64, 80)
    targets = [gt(image_sizes[0], [[12.0, 8, 52, 56]])]
    optimizer = torch.optim.SGD(rpn.parameters(), lr=0.2, momentum=0.9)
    cls_history, loc_history = [], []
    for _ in range(30):
        _, losses = rpn(images, features, targets)
        optimizer.zero_grad()
        (losses["loss_rpn_cls"] + losses["loss_rpn_loc"]).backward()
        optimizer.step()
        cls_history.append(float(losses["loss_rpn_cls"]))
        loc_history.append(float(losses["loss_rpn_loc"]))
    assert fmean(cls_history[-5:]) < 0.5 * fmean(cls_history[:5])
    assert fmean(loc_history[-5:]) < 0.75 * fmean(loc_history[:5])
