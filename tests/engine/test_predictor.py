"""DefaultPredictor and the model's input/output contract, on a small model and real images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import require_dataset

from benchmarks.calibration import write_calibrated_detectron2_checkpoint
from project.checkpoint import DetectionCheckpointer
from project.config import get_cfg
from project.data.detection_utils import UINT16_PERCENTILES, scale_to_uint8
from project.engine import DefaultPredictor
from project.modeling import build_model


@pytest.fixture(scope="module")
def small_cfg():
    """R-50-FPN at a small test size, so each forward pass takes well under a second."""
    return get_cfg(
        [
            "model=mask_rcnn_R_50_FPN",
            "MODEL.DEVICE=cpu",
            "MODEL.WEIGHTS=",
            "INPUT.MIN_SIZE_TEST=256",
            "INPUT.MAX_SIZE_TEST=384",
        ]
    )


@pytest.fixture(scope="module")
def calibrated(small_cfg, data_root, tmp_path_factory):
    """A config whose weights are calibrated on real pedestrian images, so it detects things."""
    pennfudan = require_dataset(data_root, "pennfudan")
    paths = sorted((pennfudan / "PNGImages").glob("*.png"))[:3]
    images = [torch.from_numpy(cv2.resize(cv2.imread(str(p)), (384, 256)).transpose(2, 0, 1).copy()) for p in paths]
    weights = tmp_path_factory.mktemp("predictor") / "calibrated_R50.pkl"
    write_calibrated_detectron2_checkpoint(small_cfg, images, weights, seed=0)
    cfg = small_cfg.copy()
    cfg.MODEL.WEIGHTS = str(weights)
    return cfg, paths


def test_predictor_returns_instances_in_original_coordinates(calibrated):
    cfg, paths = calibrated
    predictor = DefaultPredictor(cfg)
    image = cv2.imread(str(paths[0]))
    out = predictor(image)["instances"]
    height, width = image.shape[:2]
    assert out.image_size == (height, width)
    assert len(out) > 0
    assert out.pred_masks.dtype == torch.bool and out.pred_masks.shape[1:] == (height, width)
    boxes = out.pred_boxes.tensor
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
    assert torch.all(out.scores[:-1] >= out.scores[1:])
    assert out.pred_classes.max() < cfg.MODEL.ROI_HEADS.NUM_CLASSES
    # Each mask lies inside its (slightly grown) box.
    for mask, box in zip(out.pred_masks, boxes):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(xs):
            assert xs.min() >= box[0].floor() - 1 and xs.max() <= box[2].ceil() + 1
            assert ys.min() >= box[1].floor() - 1 and ys.max() <= box[3].ceil() + 1


def test_predictor_resizes_as_the_config_says_and_reports_the_original_size(calibrated, monkeypatch):
    cfg, paths = calibrated
    predictor = DefaultPredictor(cfg)
    seen = []
    forward = predictor.model.forward
    monkeypatch.setattr(predictor.model, "forward", lambda inputs: seen.extend(inputs) or forward(inputs))
    image = cv2.imread(str(paths[1]))
    tall = np.ascontiguousarray(np.concatenate([image, image], axis=0))  # taller than MAX_SIZE_TEST allows
    predictor(image)
    predictor(tall)
    short = seen[0]["image"]
    assert short.dtype == torch.uint8 and short.shape[0] == 3
    assert min(short.shape[1:]) == cfg.INPUT.MIN_SIZE_TEST
    assert (seen[0]["height"], seen[0]["width"]) == image.shape[:2]
    capped = seen[1]["image"]
    assert max(capped.shape[1:]) == cfg.INPUT.MAX_SIZE_TEST
    assert (seen[1]["height"], seen[1]["width"]) == tall.shape[:2]
    # The resized image is the original, resampled: same mean colour within a few levels.
    torch.testing.assert_close(
        short.float().mean(dim=(1, 2)), torch.from_numpy(image).float().mean(dim=(0, 1)), atol=2.0, rtol=0.0
    )


def test_batch_of_images_equals_images_one_by_one(calibrated):
    cfg, paths = calibrated
    predictor = DefaultPredictor(cfg)
    images = [cv2.imread(str(p)) for p in paths[:2]]
    batched = predictor(images)
    assert isinstance(batched, list) and len(batched) == 2
    for image, out in zip(images, batched):
        single = predictor(image)["instances"]
        out = out["instances"]
        assert out.image_size == image.shape[:2]
        assert len(out) == len(single)
        torch.testing.assert_close(out.pred_boxes.tensor, single.pred_boxes.tensor, atol=1e-2, rtol=1e-4)
        torch.testing.assert_close(out.scores, single.scores, atol=1e-4, rtol=1e-4)


def test_grayscale_and_16bit_images_are_converted(calibrated):
    cfg, paths = calibrated
    predictor = DefaultPredictor(cfg)
    grey = cv2.cvtColor(cv2.imread(str(paths[0])), cv2.COLOR_BGR2GRAY)
    out = predictor(grey)["instances"]
    assert out.image_size == grey.shape
    # A 16-bit image using a narrow band of levels, as microscopes write them, is stretched to
    # 8 bits by the data pipeline's rule: predictions equal those on the stretched 8-bit image.
    deep = grey.astype(np.uint16) * 16 + 1000
    stretched = scale_to_uint8(deep)
    assert stretched.dtype == np.uint8 and stretched.max() == 255 and stretched.min() == 0
    out16 = predictor(deep)["instances"]
    out8 = predictor(stretched)["instances"]
    assert len(out16) == len(out8) > 0
    torch.testing.assert_close(out16.scores, out8.scores)
    torch.testing.assert_close(out16.pred_boxes.tensor, out8.pred_boxes.tensor)


@pytest.mark.slow
def test_integer_and_float_copies_of_an_image_give_the_same_detections(calibrated):
    """Depth contract (see ``convert_image_to_model_format``): a float or wider-integer copy of an
    8-bit photograph, on the 0-255 or the 0-1 scale, is that photograph, not a contrast-stretched one."""
    cfg, paths = calibrated
    predictor = DefaultPredictor(cfg)
    image = cv2.imread(str(paths[0].parent / "FudanPed00007.png"))
    # Its darkest levels are rare, so the percentile stretch of 16-bit images would brighten it.
    assert np.percentile(image, UINT16_PERCENTILES)[0] > 0
    expected = predictor(image)["instances"]
    assert len(expected) > 0
    copies = {
        "float32": image.astype(np.float32),
        "float64": image.astype(np.float64),
        "int64": image.astype(np.int64),
        "float32 on 0-1": image.astype(np.float32) / np.float32(255),
        "float64 on 0-1": image / 255.0,
    }
    for name, copy in copies.items():
        out = predictor(copy)["instances"]
        assert len(out) == len(expected), name
        for field in ("scores", "pred_classes", "pred_masks"):
            assert torch.equal(out.get(field), expected.get(field)), (name, field)
        assert torch.equal(out.pred_boxes.tensor, expected.pred_boxes.tensor), name


@pytest.fixture(scope="module")
def untrained_predictor(small_cfg):
    return DefaultPredictor(small_cfg)


def _with_nan(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    image[3, 7, 0] = np.nan
    return image


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.zeros((32, 32, 2), dtype=np.uint8), ValueError, "got shape (32, 32, 2)"),
        (np.zeros((2, 32, 32, 3), dtype=np.uint8), ValueError, "got shape (2, 32, 32, 3)"),
        ("image.png", TypeError, "expected an (H, W, C) numpy array, got str; read the file first"),
        (None, TypeError, "got None instead of an image"),
        (np.zeros((0, 0, 3), dtype=np.uint8), ValueError, "has no pixels (shape (0, 0, 3))"),
        (_with_nan(np.zeros((32, 32, 3))), ValueError, "1 of 1024 pixels have a NaN or infinite value"),
    ],
)
def test_bad_images_are_rejected_with_the_problem_named(untrained_predictor, bad, error, message):
    with pytest.raises(error) as info:
        untrained_predictor(bad)
    assert message in str(info.value)
    assert str(info.value).startswith("image 0: ")


def test_none_from_cv2_imread_is_explained_and_placed_in_its_batch(untrained_predictor, tmp_path):
    missing = cv2.imread(str(tmp_path / "no_such_file.png"))
    assert missing is None
    with pytest.raises(TypeError) as info:
        untrained_predictor([np.zeros((32, 32, 3), np.uint8), missing])
    message = str(info.value)
    assert message.startswith("image 1: got None instead of an image")
    assert "cv2.imread returns None" in message and "check the path" in message
    with pytest.raises(ValueError, match=r"^image 2: 1 of 1024 pixels .* row 3, column 7"):
        untrained_predictor([np.zeros((32, 32, 3))] * 2 + [_with_nan(np.zeros((32, 32, 3)))])


def test_model_rejects_wrong_channel_count_and_dtype(small_cfg):
    model = build_model(small_cfg).eval()
    with pytest.raises(
        ValueError, match=r"input 0: 'image' must be a \(3, H, W\) tensor in BGR order, got \(1, 64, 64\)"
    ):
        model([{"image": torch.zeros(1, 64, 64)}])
    with pytest.raises(ValueError, match="uint8 or floating point"):
        model([{"image": torch.zeros(3, 64, 64, dtype=torch.int32)}])
    with pytest.raises(ValueError, match="has no 'image' key"):
        model([{"file_name": "a.png"}])
    with pytest.raises(ValueError, match=r"input 1: 'image' has no pixels \(shape \(3, 0, 10\)\)"):
        model([{"image": torch.zeros(3, 64, 64)}, {"image": torch.zeros(3, 0, 10)}])
    image = torch.full((3, 64, 64), 100.0)
    image[0, 3, 4] = float("nan")
    image[2, 5, 5] = float("inf")
    with pytest.raises(ValueError, match=r"input 0: 'image' has 2 NaN or infinite values \(of 12288\)"):
        model([{"image": image}])


def test_model_contract_preprocess_backbone_inference(small_cfg):
    model = build_model(small_cfg).eval()
    image = torch.randint(0, 255, (3, 200, 300), dtype=torch.uint8)
    inputs = [{"image": image, "height": 400, "width": 600}]
    images = model.preprocess_image(inputs)
    assert images.tensor.shape[-2] % 32 == 0 and images.tensor.shape[-1] % 32 == 0
    assert images.image_sizes == [(200, 300)]
    expected = image.float() - torch.tensor([103.530, 116.280, 123.675]).view(3, 1, 1)
    torch.testing.assert_close(images.tensor[0, :, :200, :300], expected)
    features = model.backbone(images.tensor)
    assert sorted(features) == ["p2", "p3", "p4", "p5", "p6"]
    with torch.no_grad():
        raw = model.inference(inputs, do_postprocess=False)
        assert raw[0].image_size == (200, 300)
        # Given boxes, only the mask head runs, on exactly those boxes.
        given = raw[0][:0]
        given = type(given)((200, 300))
        from project.structures import Boxes

        given.pred_boxes = Boxes(torch.tensor([[10.0, 20.0, 110.0, 120.0], [50.0, 50.0, 250.0, 180.0]]))
        given.pred_classes = torch.tensor([0, 3])
        out = model.inference(inputs, detected_instances=[given])[0]["instances"]
    assert len(out) == 2
    assert out.pred_masks.shape == (2, 400, 600)
    torch.testing.assert_close(out.pred_boxes.tensor, given.pred_boxes.tensor * 2)


def test_checkpoint_roundtrip_through_detection_checkpointer(small_cfg, tmp_path):
    model = build_model(small_cfg)
    checkpointer = DetectionCheckpointer(model, save_dir=str(tmp_path))
    checkpointer.save("model_test")
    other = build_model(small_cfg)
    DetectionCheckpointer(other).load(str(tmp_path / "model_test.pth"))
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_outputs_read_by_tools_made_for_detectron2(calibrated):
    """supervision's ``Detections.from_detectron2`` (0.31) reads exactly these attributes of
    ``outputs["instances"]``; the same chain of calls on our output gives arrays of its shapes
    (supervision itself needs matplotlib, scipy and PyAV, too heavy for the test extra)."""
    cfg, paths = calibrated
    image = cv2.imread(str(paths[1]))
    instances = DefaultPredictor(cfg)(image)["instances"]
    xyxy = instances.pred_boxes.tensor.cpu().numpy()
    confidence = instances.scores.cpu().numpy()
    mask = instances.pred_masks.cpu().numpy() if hasattr(instances, "pred_masks") else None
    class_id = instances.pred_classes.cpu().numpy().astype(int)
    count = len(instances)
    assert count > 0
    assert xyxy.shape == (count, 4) and xyxy.dtype == np.float32
    assert confidence.shape == (count,) and class_id.shape == (count,)
    assert mask.shape == (count,) + image.shape[:2] and mask.dtype == bool
    instances.remove("pred_masks")
    assert not hasattr(instances, "pred_masks")
