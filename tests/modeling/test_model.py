"""The whole model: registries, model zoo configs, state-dict names, training and inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from project import model_zoo
from project.config import get_cfg
from project.layers import ShapeSpec
from project.modeling import ROI_MASK_HEAD_REGISTRY, build_model
from project.modeling.roi_heads import mask_rcnn_inference, mask_rcnn_loss
from project.structures import BitMasks, Boxes, CroppedBitMasks, Instances, PolygonMasks
from project.utils.events import EventStorage


@ROI_MASK_HEAD_REGISTRY.register()
class TinyMaskHead(nn.Module):
    """A user's own mask head: one 1x1 conv straight to per-class logits, upsampled 2x."""

    def __init__(self, cfg, input_shape: ShapeSpec):
        super().__init__()
        self.predictor = nn.Conv2d(input_shape.channels, cfg.MODEL.ROI_HEADS.NUM_CLASSES, 1)

    def forward(self, x, instances):
        logits = nn.functional.interpolate(self.predictor(x), scale_factor=2)
        if self.training:
            return {"loss_mask": mask_rcnn_loss(logits, instances)}
        mask_rcnn_inference(logits, instances)
        return instances


def small_cfg(*overrides: str):
    return get_cfg(["model=mask_rcnn_R_50_FPN", "MODEL.DEVICE=cpu", "MODEL.WEIGHTS=", *overrides])


def synthetic_batch(num_images: int = 2, size=(128, 160), polygons: bool = False):
    """Images with bright rectangles and matching ground truth, as the mapper would give."""
    batch = []
    g = torch.Generator().manual_seed(0)
    for i in range(num_images):
        h, w = size
        image = torch.randint(0, 40, (3, h, w), generator=g, dtype=torch.uint8)
        boxes = torch.tensor([[10.0 + 5 * i, 20.0, 60.0 + 5 * i, 90.0], [80.0, 30.0, 150.0, 110.0]])
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
            m[y0:y1, x0:x1] = True
            image[:, y0:y1, x0:x1] = 200
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.tensor([1, 4])
        if polygons:
            inst.gt_masks = PolygonMasks([[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in boxes.tolist()])
        else:
            inst.gt_masks = BitMasks(masks)
        batch.append({"image": image, "instances": inst, "height": h, "width": w})
    return batch


def test_custom_mask_head_is_selected_by_name_in_the_config():
    cfg = small_cfg("MODEL.ROI_MASK_HEAD.NAME=TinyMaskHead", "MODEL.ROI_HEADS.NUM_CLASSES=5")
    model = build_model(cfg)
    assert isinstance(model.roi_heads.mask_head, TinyMaskHead)
    assert "roi_heads.mask_head.predictor.weight" in model.state_dict()
    losses = model(synthetic_batch())
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}
    model.eval()
    with torch.no_grad():
        out = model(synthetic_batch(1))[0]["instances"]
    assert out.pred_masks.shape[1:] == (128, 160)


def test_unknown_component_name_fails_naming_the_registry():
    with pytest.raises(KeyError, match="ROI_MASK_HEAD"):
        build_model(small_cfg("MODEL.ROI_MASK_HEAD.NAME=NoSuchHead"))


@pytest.mark.parametrize(
    "name, depth", [("mask_rcnn_R_101_FPN_3x", 101), ("mask_rcnn_R_50_FPN_3x", 50), ("mask_rcnn_R_50_FPN_1x", 50)]
)
def test_model_zoo_get_config(name, depth):
    cfg = model_zoo.get_config(name)
    assert cfg.MODEL.RESNETS.DEPTH == depth
    assert cfg.MODEL.DEVICE == ("cuda" if torch.cuda.is_available() else "cpu")
    assert cfg.MODEL.MASK_ON and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    assert cfg.DATASETS.TRAIN == ["coco_2017_train"]
    assert cfg.SOLVER.MAX_ITER == (270000 if name.endswith("3x") else 90000)
    assert cfg.MODEL.WEIGHTS == f"detectron2://ImageNetPretrained/MSRA/R-{depth}.pkl"
    assert model_zoo.get_config(f"COCO-InstanceSegmentation/{name}.yaml") == cfg
    trained = model_zoo.get_config(name, trained=True)
    assert trained.MODEL.WEIGHTS.startswith(
        "https://dl.fbaipublicfiles.com/detectron2/COCO-InstanceSegmentation/" + name + "/"
    )
    assert trained.MODEL.WEIGHTS.endswith(".pkl")


def test_model_zoo_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="mask_rcnn_R_101_FPN_3x"):
        model_zoo.get_config("mask_rcnn_R_152_FPN_3x")


def test_r101_fpn_state_dict_keys_are_detectron2s():
    model = build_model(model_zoo.get_config("mask_rcnn_R_101_FPN_3x", overrides=["MODEL.DEVICE=cpu"]))
    keys = set(model.state_dict())
    for key in [
        "backbone.bottom_up.stem.conv1.weight",
        "backbone.bottom_up.res2.0.conv1.weight",
        "backbone.bottom_up.res4.22.conv3.norm.running_var",
        "backbone.fpn_lateral2.weight",
        "backbone.fpn_output5.bias",
        "proposal_generator.rpn_head.conv.weight",
        "proposal_generator.rpn_head.anchor_deltas.bias",
        "roi_heads.box_head.fc1.weight",
        "roi_heads.box_head.fc2.bias",
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.mask_head.mask_fcn4.weight",
        "roi_heads.mask_head.deconv.weight",
        "roi_heads.mask_head.predictor.weight",
    ]:
        assert key in keys, key
    assert not any("pixel_mean" in k or "anchor" in k and "anchor_deltas" not in k for k in keys)
    assert model.state_dict()["roi_heads.box_predictor.cls_score.weight"].shape == (81, 1024)
    assert model.state_dict()["roi_heads.box_predictor.bbox_pred.weight"].shape == (320, 1024)
    assert model.state_dict()["roi_heads.mask_head.predictor.weight"].shape == (80, 256, 1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("polygons", [False, True])
def test_training_reduces_the_loss_on_a_fixed_batch(polygons):
    torch.manual_seed(0)
    cfg = small_cfg("MODEL.ROI_HEADS.NUM_CLASSES=5", "MODEL.RESNETS.NORM=BN", "MODEL.BACKBONE.FREEZE_AT=0")
    model = build_model(cfg)
    batch = synthetic_batch(polygons=polygons)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.002, momentum=0.9)
    totals = []
    for _ in range(12):
        losses = model(batch)
        total = sum(losses.values())
        assert all(torch.isfinite(v) for v in losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert sum(totals[-3:]) / 3 < 0.5 * totals[0]


def test_training_reports_detectron2s_sampling_and_accuracy_statistics():
    torch.manual_seed(0)
    cfg = small_cfg(
        "MODEL.ROI_HEADS.NUM_CLASSES=5",
        "MODEL.RESNETS.NORM=GN",
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE=128",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE=64",
    )
    model = build_model(cfg).train()
    # Every RoI is classified as background, every mask pixel as foreground.
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[-1] = 1e4
        model.roi_heads.mask_head.predictor.bias.fill_(1e4)
    batch = synthetic_batch()
    model(batch)  # user code trains without an EventStorage
    with EventStorage() as storage:
        model(batch)
    stats = {name: value for name, (value, _) in storage.latest().items()}

    assert stats["rpn/num_pos_anchors"] + stats["rpn/num_neg_anchors"] == 128
    assert 0 < stats["rpn/num_pos_anchors"] <= 64
    fg, bg = stats["roi_head/num_fg_samples"], stats["roi_head/num_bg_samples"]
    assert fg + bg == 64 and 2 <= fg <= 16  # the two ground-truth boxes are appended as proposals
    assert stats["fast_rcnn/cls_accuracy"] == pytest.approx(bg / 64)
    assert stats["fast_rcnn/fg_cls_accuracy"] == 0.0 and stats["fast_rcnn/false_negative"] == 1.0
    assert stats["mask_rcnn/false_negative"] == 0.0 and stats["mask_rcnn/false_positive"] == 1.0
    assert 0.0 < stats["mask_rcnn/accuracy"] < 1.0


def test_score_threshold_and_detections_per_image_come_from_the_config():
    # GroupNorm keeps a random network's activations finite (identity FrozenBN would not).
    torch.manual_seed(0)
    cfg = small_cfg("MODEL.RESNETS.NORM=GN", "MODEL.ROI_HEADS.SCORE_THRESH_TEST=0.0", "TEST.DETECTIONS_PER_IMAGE=7")
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(synthetic_batch(1))[0]["instances"]
    assert len(out) == 7
    cfg = small_cfg(
        "MODEL.RESNETS.NORM=GN",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST=0.0",
        "TEST.DETECTIONS_PER_IMAGE=300",
        "MODEL.RPN.POST_NMS_TOPK_TEST=500",
    )
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(synthetic_batch(1))[0]["instances"]
    assert 100 < len(out) <= 300


@pytest.mark.slow
def test_channels_last_layout_changes_no_loss_gradient_or_detection():
    """MODEL.CHANNELS_LAST only changes how the convolutions' tensors are laid out in memory.
    In float64 the losses, gradients and detections are the contiguous model's; float32 sums
    the convolutions in another order, which moves features by ~1e-5 of their scale (and, through
    a random network's near-tied scores, can reorder its detections)."""
    overrides = ("MODEL.ROI_HEADS.NUM_CLASSES=5", "MODEL.RESNETS.NORM=GN", "MODEL.ROI_MASK_HEAD.NORM=GN")
    torch.manual_seed(0)
    contiguous = build_model(small_cfg(*overrides, "MODEL.CHANNELS_LAST=false"))
    channels_last = build_model(small_cfg(*overrides, "MODEL.CHANNELS_LAST=true"))
    channels_last.load_state_dict(contiguous.state_dict())
    batch = synthetic_batch()
    with torch.no_grad():
        images = contiguous.preprocess_image(batch)
        expected, actual = contiguous.backbone(images.tensor), channels_last._backbone_features(images)
    for level, feature in expected.items():
        assert actual[level].is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(actual[level], feature, rtol=0, atol=1e-4 * feature.abs().max().item())

    contiguous.double()
    channels_last.double()
    mask_conv = channels_last.roi_heads.mask_head.mask_fcn1.weight
    assert mask_conv.is_contiguous(memory_format=torch.channels_last) and not mask_conv.is_contiguous()
    losses = {}
    for name, model in (("contiguous", contiguous), ("channels_last", channels_last)):
        torch.manual_seed(1)  # the same RoI sampling in both
        losses[name] = model(batch)
        sum(losses[name].values()).backward()
    for key, value in losses["contiguous"].items():
        torch.testing.assert_close(losses["channels_last"][key], value, rtol=1e-10, atol=1e-12)
    for (name, p), q in zip(contiguous.named_parameters(), channels_last.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(
                q.grad, p.grad, rtol=1e-8, atol=1e-10, msg=lambda m, name=name: f"gradient of {name}: {m}"
            )

    with torch.no_grad():
        expected = contiguous.eval()(batch)
        actual = channels_last.eval()(batch)
    for e, a in zip(expected, actual):
        e, a = e["instances"], a["instances"]
        assert len(e) > 0
        torch.testing.assert_close(a.pred_boxes.tensor, e.pred_boxes.tensor, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(a.scores, e.scores, rtol=1e-8, atol=1e-10)
        assert torch.equal(a.pred_classes, e.pred_classes)
        assert torch.equal(a.pred_masks, e.pred_masks)


def test_pred_mask_format_crop_returns_the_same_masks_as_crops():
    """TEST.PRED_MASK_FORMAT=crop: ``pred_masks`` is a CroppedBitMasks whose dense form is the
    default's (N, H, W) tensor; the default stays Detectron2's tensor."""
    torch.manual_seed(0)
    cfg = get_cfg(
        [
            "model=mask_rcnn_R_18_FPN_demo",
            "MODEL.DEVICE=cpu",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST=0.0",
            "TEST.DETECTIONS_PER_IMAGE=20",
        ]
    )
    model = build_model(cfg).eval()
    assert model.pred_mask_format == "bitmask"
    batch = synthetic_batch(2)
    with torch.no_grad():
        dense = model(batch)
        model.pred_mask_format = "crop"
        cropped = model(batch)
    for d, c in zip(dense, cropped):
        d, c = d["instances"], c["instances"]
        assert isinstance(d.pred_masks, torch.Tensor) and isinstance(c.pred_masks, CroppedBitMasks)
        assert len(d) == 20 and d.pred_masks.any()
        assert torch.equal(c.pred_masks.tensor, d.pred_masks)
        assert torch.equal(c.pred_boxes.tensor, d.pred_boxes.tensor)


def test_unknown_pred_mask_format_fails_when_the_model_is_built():
    with pytest.raises(ValueError, match="TEST.PRED_MASK_FORMAT.*'polygon'"):
        build_model(small_cfg("TEST.PRED_MASK_FORMAT=polygon"))
