"""Evaluation keeps predicted masks as crops (``TEST.PRED_MASK_FORMAT`` "crop"): on real images
the RLE and AP are those of the full-image masks, and on a large image nothing of the image's
size per detection reaches the evaluator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from conftest import require_dataset
from PIL import Image

from project.config import get_cfg
from project.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader, register_coco_instances
from project.evaluation import COCOEvaluator, DatasetEvaluator, inference_on_dataset
from project.modeling import build_model
from project.structures import CroppedBitMasks

NUM_DETECTIONS = 100


def forced_model(*overrides: str) -> torch.nn.Module:
    """The small demo Mask R-CNN (random seeded weights) whose box classifier calls every
    proposal a nucleus, so each image gets ``NUM_DETECTIONS`` detections, and whose mask
    logits spread over several units, so that masks have real edges to threshold."""
    cfg = get_cfg(
        [
            "model=mask_rcnn_R_18_FPN_demo",
            "MODEL.DEVICE=cpu",
            "MODEL.ROI_HEADS.NUM_CLASSES=1",
            f"TEST.DETECTIONS_PER_IMAGE={NUM_DETECTIONS}",
            "DATALOADER.NUM_WORKERS=0",
            *overrides,
        ]
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        cls_score = model.roi_heads.box_predictor.cls_score
        cls_score.weight.zero_()
        cls_score.bias.copy_(torch.tensor([4.0, 0.0]))  # nucleus, background
        predictor = model.roi_heads.mask_head.predictor
        predictor.weight.normal_(0, 0.2, generator=torch.Generator().manual_seed(1))
    return model, cfg


class MaskRecorder(DatasetEvaluator):
    """Records the type and the bytes of the ``pred_masks`` it is given; reports nothing."""

    def __init__(self, accepts_cropped_masks: bool):
        self.accepts_cropped_masks = accepts_cropped_masks
        self.seen: List[Dict[str, Any]] = []

    def process(self, inputs, outputs):
        for x, out in zip(inputs, outputs):
            masks = out["instances"].pred_masks
            if isinstance(masks, CroppedBitMasks):
                nbytes = sum(c.mask.nbytes for c in masks.crops)
            else:
                nbytes = masks.numel() * masks.element_size()
            self.seen.append({"type": type(masks), "nbytes": nbytes, "instances": out["instances"], "input": x})

    def evaluate(self):
        return {}


def register_subset(name: str, dsb2018: Path, tmp_path: Path, num_images: int) -> None:
    """The first ``num_images`` DSB2018 val images with their annotations, as a COCO dataset."""
    with open(dsb2018 / "annotations_val.json") as f:
        full = json.load(f)
    images = full["images"][:num_images]
    keep = {im["id"] for im in images}
    subset = dict(full, images=images, annotations=[a for a in full["annotations"] if a["image_id"] in keep])
    json_file = tmp_path / f"{name}.json"
    json_file.write_text(json.dumps(subset))
    register_coco_instances(name, {}, str(json_file), str(dsb2018 / "val"))


@pytest.fixture
def dsb2018_subset(data_root, tmp_path):
    name = "cropped_masks_dsb2018_val3"
    register_subset(name, require_dataset(data_root, "dsb2018"), tmp_path, 3)
    yield name
    DatasetCatalog.pop(name, None)
    MetadataCatalog.pop(name, None)


def test_cropped_masks_give_the_rle_and_ap_of_full_masks_on_real_images(dsb2018_subset, tmp_path):
    model, cfg = forced_model("INPUT.MIN_SIZE_TEST=0")
    loader = build_detection_test_loader(cfg, dsb2018_subset)

    # With an evaluator that wants Detectron2's full-image masks, the model gives them.
    dense_recorder = MaskRecorder(accepts_cropped_masks=False)
    dense = inference_on_dataset(
        model, loader, [COCOEvaluator(dsb2018_subset, output_dir=str(tmp_path / "dense")), dense_recorder]
    )
    # COCOEvaluator alone takes crops.
    cropped_recorder = MaskRecorder(accepts_cropped_masks=True)
    cropped = inference_on_dataset(
        model, loader, [COCOEvaluator(dsb2018_subset, output_dir=str(tmp_path / "cropped")), cropped_recorder]
    )
    assert model.pred_mask_format == "bitmask"  # restored

    assert [s["type"] for s in dense_recorder.seen] == [torch.Tensor] * 3
    assert [s["type"] for s in cropped_recorder.seen] == [CroppedBitMasks] * 3
    for d, c in zip(dense_recorder.seen, cropped_recorder.seen):
        assert len(d["instances"]) == NUM_DETECTIONS
        assert torch.equal(c["instances"].pred_masks.tensor, d["instances"].pred_masks)
        assert torch.equal(c["instances"].pred_boxes.tensor, d["instances"].pred_boxes.tensor)
        assert d["instances"].pred_masks.any(dim=(1, 2)).float().mean() > 0.5  # masks are not empty
    results = [json.loads((tmp_path / k / "coco_instances_results.json").read_text()) for k in ("dense", "cropped")]
    assert len(results[0]) == 3 * NUM_DETECTIONS
    assert results[0] == results[1]  # same RLE strings, boxes and scores
    assert json.dumps(dense, sort_keys=True) == json.dumps(cropped, sort_keys=True)  # NaN-safe equality
    assert set(dense) == {"bbox", "segm"}


def test_evaluation_of_a_large_image_holds_no_full_size_masks(tmp_path):
    """A 2000 x 2000 image with 100 detections: COCOEvaluator is handed crops around the boxes,
    together a small fraction of 100 full-image masks."""
    height = width = 2000
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    image[500:700, 800:1000] = 220
    Image.fromarray(image).save(tmp_path / "large.png")
    coco = {
        "images": [{"id": 1, "file_name": "large.png", "height": height, "width": width}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [800, 500, 200, 200],
                "segmentation": [[800, 500, 1000, 500, 1000, 700, 800, 700]],
                "area": 40000,
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1, "name": "nucleus"}],
    }
    (tmp_path / "large.json").write_text(json.dumps(coco))
    name = "cropped_masks_large_image"
    register_coco_instances(name, {}, str(tmp_path / "large.json"), str(tmp_path))
    try:
        model, cfg = forced_model("INPUT.MIN_SIZE_TEST=800", "INPUT.MAX_SIZE_TEST=1333")
        recorder = MaskRecorder(accepts_cropped_masks=True)
        evaluator = COCOEvaluator(name, output_dir=str(tmp_path / "out"), tasks=("segm",))
        results = inference_on_dataset(model, build_detection_test_loader(cfg, name), [evaluator, recorder])
    finally:
        DatasetCatalog.pop(name, None)
        MetadataCatalog.pop(name, None)
    (seen,) = recorder.seen
    instances = seen["instances"]
    assert len(instances) == NUM_DETECTIONS and seen["type"] is CroppedBitMasks
    assert seen["nbytes"] < 0.1 * NUM_DETECTIONS * height * width
    boxes = instances.pred_boxes.tensor
    for crop, (x0, y0, x1, y1) in zip(instances.pred_masks.crops, boxes.tolist()):
        h, w = crop.mask.shape
        assert h < y1 - y0 + 4 and w < x1 - x0 + 4  # the box rounded out, and a pixel of margin
    assert "AP" in results["segm"]
