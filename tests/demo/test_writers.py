"""Demo outputs: a video that plays back, and the per-object files, on a real image."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import require_dataset
from pycocotools import mask as mask_util

from project.demo.sources import DemoInputError
from project.demo.writers import InstanceWriter, VideoWriter
from project.evaluation import COCOEvaluator
from project.structures import Boxes, CroppedBitMasks, Instances
from project.structures.rle import decode_crop


def test_mp4v_video_plays_back_with_every_frame_at_its_size(tmp_path):
    writer = VideoWriter(tmp_path / "out.mp4", fps=25.0)
    for value in range(0, 240, 16):
        writer.write(np.full((72, 96, 3), value, dtype=np.uint8))
    writer.close()
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    count = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (72, 96, 3)
        count += 1
    assert count == writer.frames == 15


def test_h264_without_pyav_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(DemoInputError, match="pip install av"):
        VideoWriter(tmp_path / "out.mp4", fps=25.0, codec="h264")


@pytest.fixture(scope="module")
def dsb_image_and_truth(data_root):
    """A real DSB2018 validation image (BGR) and its nuclei as predictions (score 1, class 0),
    with the ground truth's COCO dict."""
    dsb = require_dataset(data_root, "dsb2018")
    coco = json.loads((dsb / "annotations_val.json").read_text())
    image_info = coco["images"][0]
    annos = [a for a in coco["annotations"] if a["image_id"] == image_info["id"]]
    image = cv2.imread(str(dsb / "val" / image_info["file_name"]))
    height, width = image.shape[:2]
    crops = [decode_crop(a["segmentation"]) for a in annos]
    boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in annos]
    instances = Instances((height, width))
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    instances.scores = torch.ones(len(annos))
    instances.pred_classes = torch.zeros(len(annos), dtype=torch.int64)
    instances.pred_masks = CroppedBitMasks(crops, (height, width))
    return dsb, image_info, annos, image, instances


def test_instance_files_hold_each_object_and_a_label_image_equal_to_the_masks(tmp_path, dsb_image_and_truth):
    _, _, annos, image, instances = dsb_image_and_truth
    writer = InstanceWriter(tmp_path, ["nucleus"])
    writer.write("sub/cell.png", image, instances, image_index=0)
    dense = instances.pred_masks.tensor.numpy()
    labels = cv2.imread(str(tmp_path / "sub" / "cell_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint16 and labels.shape == image.shape[:2]
    assert sorted(np.unique(labels[labels > 0]).tolist()) == list(range(1, len(annos) + 1))
    overlap = dense.sum(axis=0) > 1
    for k, mask in enumerate(dense):
        assert np.array_equal(labels[~overlap] == k + 1, mask[~overlap])
    assert writer.objects == len(annos)
    for k, (mask, box) in enumerate(zip(dense, instances.pred_boxes.tensor.tolist())):
        rgba = cv2.imread(str(tmp_path / "sub" / "cell_instances" / f"{k:03d}_nucleus.png"), cv2.IMREAD_UNCHANGED)
        x0, y0, x1, y1 = int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3]))
        window = mask[y0:y1, x0:x1]
        assert rgba.shape == (y1 - y0, x1 - x0, 4)
        assert np.array_equal(rgba[..., 3] == 255, window) and not rgba[..., 3][~window].any()
        assert np.array_equal(rgba[..., :3][window], image[y0:y1, x0:x1][window])
        saved_mask = cv2.imread(str(tmp_path / "sub" / "cell_instances" / f"{k:03d}_nucleus_mask.png"), 0)
        assert np.array_equal(saved_mask > 0, window)


def test_results_json_scores_with_coco_evaluator(tmp_path, dsb_image_and_truth):
    dsb, image_info, annos, image, instances = dsb_image_and_truth
    InstanceWriter(tmp_path, ["nucleus"]).write("cell.png", image, instances, image_index=7)
    results = json.loads((tmp_path / "cell_results.json").read_text())
    assert len(results) == len(annos) and {r["file_name"] for r in results} == {"cell.png"}
    # Rebuild the predictions from the file alone and score them against the real ground truth.
    height, width = image.shape[:2]
    read_back = Instances((height, width))
    read_back.pred_boxes = Boxes(
        torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in results)], dtype=torch.float32)
    )
    read_back.scores = torch.tensor([r["score"] for r in results])
    read_back.pred_classes = torch.tensor([r["category_id"] for r in results])
    read_back.pred_masks = torch.from_numpy(
        np.stack([mask_util.decode(r["segmentation"]) for r in results]).astype(bool)
    )
    truth = {
        "images": [image_info],
        "annotations": annos,
        "categories": [{"id": 1, "name": "nucleus"}],
    }
    gt_file = tmp_path / "truth.json"
    gt_file.write_text(json.dumps(truth))
    from project.data import MetadataCatalog

    name = "demo_results_truth"
    MetadataCatalog.get(name).set(
        json_file=str(gt_file), thing_classes=["nucleus"], thing_dataset_id_to_contiguous_id={1: 0}
    )
    evaluator = COCOEvaluator(name, output_dir=str(tmp_path))
    evaluator.reset()
    evaluator.process([{"image_id": image_info["id"]}], [{"instances": read_back}])
    metrics = evaluator.evaluate()
    assert metrics["segm"]["AP"] == pytest.approx(100.0) and metrics["bbox"]["AP"] == pytest.approx(100.0)
