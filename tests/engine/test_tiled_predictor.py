"""TiledPredictor on a real model and real images: one tile reproduces DefaultPredictor exactly,
at scale 1 and 2; file and array inputs agree; 16-bit images get one 8-bit mapping for the whole
image; tiles larger than the test input get proportionally more proposals. (Merging across
seams: tests/tiling/test_tiled_seams.py; accuracy of a trained model on a mosaic:
benchmarks/tiled_mosaic_ap.py.)"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import tifffile
import torch
from conftest import require_dataset

from benchmarks.calibration import write_calibrated_detectron2_checkpoint
from project.config import get_cfg
from project.engine import DefaultPredictor
from project.engine.tiled_predictor import TiledPredictor
from project.structures import mask_iou


@pytest.fixture(scope="module")
def calibrated(data_root, tmp_path_factory):
    """The R18 demo model with weights calibrated on pedestrian photos (it detects things), at
    the photos' own size (no test-time resize)."""
    pennfudan = require_dataset(data_root, "pennfudan")
    paths = sorted((pennfudan / "PNGImages").glob("*.png"))[:3]
    cfg = get_cfg(["MODEL.DEVICE=cpu", "MODEL.WEIGHTS=", "INPUT.MIN_SIZE_TEST=0", "INPUT.MAX_SIZE_TEST=4000"])
    images = [cv2.imread(str(p)) for p in paths]
    tensors = [torch.from_numpy(im.transpose(2, 0, 1).copy()) for im in images]
    weights = tmp_path_factory.mktemp("tiled") / "calibrated_R18.pkl"
    write_calibrated_detectron2_checkpoint(cfg, tensors, weights, seed=0)
    cfg.MODEL.WEIGHTS = str(weights)
    cfg.TEST.PRED_MASK_FORMAT = "crop"
    return cfg, images


def assert_same_detections(a, b):
    assert len(a) == len(b) > 0
    assert torch.equal(a.pred_classes, b.pred_classes)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=0, atol=1e-3)
    for crop_a, crop_b in zip(a.pred_masks.crops, b.pred_masks.crops):
        assert mask_iou(crop_a, crop_b) > 0.999


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_one_tile_equals_the_default_predictor(calibrated, scale):
    cfg, images = calibrated
    image = images[0]
    reference_cfg = cfg.copy()
    if scale != 1.0:
        reference_cfg.INPUT.MIN_SIZE_TEST = int(min(image.shape[:2]) * scale)
    expected = DefaultPredictor(reference_cfg)(image)["instances"]
    tiled = TiledPredictor(cfg, tile_size=int(max(image.shape[:2]) * scale) + 64, overlap=32, scale=scale)
    assert len(tiled.grid(image.shape[:2])) == 1
    assert_same_detections(tiled(image)["instances"], expected)


def test_file_and_array_inputs_agree_and_16_bit_maps_once(calibrated, tmp_path):
    cfg, images = calibrated
    image = images[1]
    rgb = image[:, :, ::-1]
    path = tmp_path / "photo.tif"
    tifffile.imwrite(path, rgb, tile=(128, 128), photometric="rgb", compression="zlib")
    tiled = TiledPredictor(cfg, tile_size=256, overlap=64)
    from_array = tiled(image)["instances"]
    from_file = tiled(str(path))["instances"]
    assert_same_detections(from_file, from_array)
    # The same photo as 16-bit values (x 257, so the stretch maps it back exactly): one mapping
    # for the whole image gives the 8-bit result; stretching each tile alone would not.
    wide = tmp_path / "photo16.tif"
    tifffile.imwrite(wide, rgb.astype(np.uint16) * 257, tile=(128, 128), photometric="rgb")
    lo, hi = np.percentile(rgb, (0.1, 99.9))
    expected = np.clip((rgb.astype(np.float64) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
    stretched = TiledPredictor(cfg, tile_size=256, overlap=64)(np.ascontiguousarray(expected[:, :, ::-1]))
    assert_same_detections(tiled(str(wide))["instances"], stretched["instances"])


def test_tiles_larger_than_the_test_input_get_proportionally_more_proposals():
    """The RPN's proposal budgets are meant for one test-size image: a tile of twice the test
    side covers four times its area and gets four times the proposals (a 1024 tile of a model
    tested at 512 otherwise lost 2 segm AP on the DSB2018 mosaic); smaller tiles keep the
    config's budgets, and so does the caller's config."""
    cfg = get_cfg(["MODEL.DEVICE=cpu", "MODEL.WEIGHTS=", "INPUT.MIN_SIZE_TEST=512"])
    pre, post = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST, cfg.MODEL.RPN.POST_NMS_TOPK_TEST
    for tile_size, factor in ((1024, 4.0), (768, 2.25), (512, 1.0), (256, 1.0)):
        tiled = TiledPredictor(cfg, tile_size=tile_size, overlap=64)
        rpn = tiled.model.proposal_generator
        assert tiled.proposal_scale == factor
        assert rpn.pre_nms_topk[False] == math.ceil(pre * factor)
        assert rpn.post_nms_topk[False] == math.ceil(post * factor)
        assert tiled.model.roi_heads.box_predictor.test_topk_per_image == cfg.TEST.DETECTIONS_PER_IMAGE
    assert (cfg.MODEL.RPN.PRE_NMS_TOPK_TEST, cfg.MODEL.RPN.POST_NMS_TOPK_TEST) == (pre, post)
