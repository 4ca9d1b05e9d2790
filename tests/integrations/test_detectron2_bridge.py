"""``project.integrations.detectron2``: this project's model, datasets and mapper inside
Detectron2's own ``build_model``, ``DefaultPredictor``, ``DefaultTrainer`` and ``COCOEvaluator``.

Runs only where Detectron2 is importable (a reference build beside the project, e.g.
``/path/to/d2env/bin/python -m pytest tests/integrations``). The checkpoint is written by the
tests: random R101-FPN weights calibrated on real Penn-Fudan images so the model detects things.
"""

from __future__ import annotations

import json
import logging
import math

import cv2
import numpy as np
import pytest
import torch
from conftest import require_dataset
from detection_matching import match_detections
from omegaconf import OmegaConf

from benchmarks.calibration import write_calibrated_detectron2_checkpoint
from project import modeling as project_modeling
from project.model_zoo import get_config as project_zoo_config

pytest.importorskip("detectron2", reason="Detectron2 is not importable; bridge tests skipped")

from detectron2 import model_zoo as d2_zoo
from detectron2 import structures as d2s
from detectron2.config import get_cfg as d2_get_cfg
from detectron2.data import DatasetCatalog as D2DatasetCatalog
from detectron2.data import MetadataCatalog as D2MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY as D2_META_ARCH_REGISTRY
from detectron2.modeling import build_model as d2_build_model

from project.integrations.detectron2 import (
    ProjectDatasetMapper,
    add_project_config,
    from_detectron2_cfg,
    register_datasets_with_detectron2,
    register_with_detectron2,
    to_detectron2_cfg,
    to_detectron2_instances,
    to_project_instances,
)

ZOO_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml"
TEST_SIZE = 320  # shorter side at test time: small, so R101 runs quickly on a CPU
MAX_TEST_SIZE = 1000


@pytest.fixture(scope="module", autouse=True)
def registered():
    torch.set_num_threads(1)
    return register_with_detectron2()


def _zoo_cfg(meta_architecture: str = "ProjectGeneralizedRCNN"):
    cfg = d2_get_cfg()
    cfg.merge_from_file(d2_zoo.get_config_file(ZOO_CONFIG))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = meta_architecture
    cfg.INPUT.MIN_SIZE_TEST = TEST_SIZE
    cfg.INPUT.MAX_SIZE_TEST = MAX_TEST_SIZE
    return cfg


def _shapes(model) -> dict:
    return {name: tuple(value.shape) for name, value in model.state_dict().items()}


def _at_test_size(image: np.ndarray) -> np.ndarray:
    """``image`` resized so its shorter side is TEST_SIZE (both predictors then leave it as it
    is: their resizing code differs, Detectron2's through PIL and this project's through OpenCV)."""
    h, w = image.shape[:2]
    scale = TEST_SIZE / min(h, w)
    size = (round(w * scale), round(h * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def pennfudan_images(data_root):
    """Seven Penn-Fudan photos (BGR), shorter side TEST_SIZE: four calibrate, three are tested."""
    pennfudan = require_dataset(data_root, "pennfudan")
    paths = sorted((pennfudan / "PNGImages").glob("*.png"))[:7]
    return [_at_test_size(cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in paths]


@pytest.fixture(scope="module")
def checkpoint(pennfudan_images, tmp_path_factory):
    """A Detectron2-format R101-FPN checkpoint calibrated on real images (see the module docstring)."""
    cfg = project_zoo_config("mask_rcnn_R_101_FPN_3x", overrides=["MODEL.DEVICE=cpu"])
    calibration = [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))) for im in pennfudan_images[:4]]
    path = tmp_path_factory.mktemp("bridge") / "calibrated_R101_FPN.pkl"
    write_calibrated_detectron2_checkpoint(cfg, calibration, path, seed=0)
    return path


def test_registers_every_part_under_prefixed_names_idempotently(registered):
    assert registered == {
        "META_ARCH": ["ProjectGeneralizedRCNN"],
        "BACKBONE": ["project_build_resnet_backbone", "project_build_resnet_fpn_backbone"],
        "PROPOSAL_GENERATOR": ["ProjectRPN"],
        "ROI_HEADS": ["ProjectStandardROIHeads"],
    }
    assert register_with_detectron2() == registered
    # Detectron2's own names still mean Detectron2's classes, and this project's registries
    # hold exactly their own components.
    assert D2_META_ARCH_REGISTRY.get("GeneralizedRCNN").__module__.startswith("detectron2.")
    assert [n for n, _ in project_modeling.META_ARCH_REGISTRY] == ["GeneralizedRCNN"]
    assert [n for n, _ in project_modeling.ROI_HEADS_REGISTRY] == ["StandardROIHeads"]
    assert project_modeling.META_ARCH_REGISTRY.get("GeneralizedRCNN") is project_modeling.GeneralizedRCNN


@pytest.mark.slow
def test_detectron2_build_model_builds_ours_with_detectron2_state_dict():
    ours = d2_build_model(_zoo_cfg())
    theirs = d2_build_model(_zoo_cfg("GeneralizedRCNN"))
    assert isinstance(ours, project_modeling.GeneralizedRCNN)
    assert not isinstance(theirs, project_modeling.GeneralizedRCNN)
    assert _shapes(ours) == _shapes(theirs)
    assert len(_shapes(ours)) > 500
    # The same network as this project builds from its own model zoo config.
    project_model = project_modeling.build_model(
        project_zoo_config("mask_rcnn_R_101_FPN_3x", overrides=["MODEL.DEVICE=cpu"])
    )
    assert type(project_model) is project_modeling.GeneralizedRCNN
    assert _shapes(project_model) == _shapes(ours)


@pytest.mark.slow
def test_detectron2_default_predictor_gives_project_predictor_detections(pennfudan_images, checkpoint):
    from detectron2.engine import DefaultPredictor as D2DefaultPredictor

    from project.engine import DefaultPredictor

    d2_cfg = _zoo_cfg()
    d2_cfg.MODEL.WEIGHTS = str(checkpoint)
    theirs = D2DefaultPredictor(d2_cfg)
    assert isinstance(theirs.model, project_modeling.GeneralizedRCNN)
    # Detectron2's DetectionCheckpointer loaded every weight of the Detectron2-format file.
    with open(checkpoint, "rb") as f:
        stored = __import__("pickle").load(f)["model"]
    state = theirs.model.state_dict()
    assert set(stored) == set(state)
    assert all(torch.equal(state[k], torch.from_numpy(v)) for k, v in stored.items())

    cfg = project_zoo_config(
        "mask_rcnn_R_101_FPN_3x",
        overrides=[
            "MODEL.DEVICE=cpu",
            f"MODEL.WEIGHTS={checkpoint}",
            f"INPUT.MIN_SIZE_TEST={TEST_SIZE}",
            f"INPUT.MAX_SIZE_TEST={MAX_TEST_SIZE}",
        ],
    )
    ours = DefaultPredictor(cfg)
    pairs, total = [], 0
    for image in pennfudan_images[4:]:
        reference = ours(image)["instances"]
        result = theirs(image)["instances"]
        assert isinstance(result, d2s.Instances) and isinstance(result.pred_boxes, d2s.Boxes)
        assert isinstance(result.pred_masks, torch.Tensor) and result.pred_masks.dtype == torch.bool
        assert tuple(result.pred_masks.shape[1:]) == image.shape[:2]
        assert len(reference) > 0, "the calibrated model should detect something"
        pairs += match_detections(reference, result)
        total += len(reference)
    box, score, mask = min(p[0] for p in pairs), max(p[1] for p in pairs), min(p[2] for p in pairs)
    print(f"\n{total} detections matched; worst box IoU {box:.4f}, |score diff| {score:.2e}, mask IoU {mask:.4f}")
    assert box >= 0.99 and score <= 1e-4 and mask >= 0.98


@pytest.mark.slow
def test_project_parts_inside_detectron2_generalized_rcnn(pennfudan_images, checkpoint):
    """Detectron2's own GeneralizedRCNN built with this project's backbone, RPN and ROI heads
    (by their registered names) has Detectron2's state dict and finds what this project's model finds."""
    from detectron2.checkpoint import DetectionCheckpointer as D2Checkpointer

    from project.checkpoint import DetectionCheckpointer

    cfg = _zoo_cfg("GeneralizedRCNN")
    cfg.MODEL.BACKBONE.NAME = "project_build_resnet_fpn_backbone"
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "ProjectRPN"
    cfg.MODEL.ROI_HEADS.NAME = "ProjectStandardROIHeads"
    mixed = d2_build_model(cfg)
    assert type(mixed).__module__.startswith("detectron2.")
    assert isinstance(mixed.backbone, project_modeling.FPN) and isinstance(
        mixed.roi_heads, project_modeling.StandardROIHeads
    )
    D2Checkpointer(mixed).load(str(checkpoint))
    project_cfg, _ = from_detectron2_cfg(_zoo_cfg())
    ours = project_modeling.build_model(project_cfg)
    DetectionCheckpointer(ours).load(str(checkpoint))
    image = torch.from_numpy(np.ascontiguousarray(pennfudan_images[5].transpose(2, 0, 1)))
    with torch.inference_mode():
        reference = ours.eval()([{"image": image}])[0]["instances"]
        result = mixed.eval()([{"image": image}])[0]["instances"]
    assert isinstance(result, d2s.Instances) and len(reference) > 0
    pairs = match_detections(reference, result)
    assert min(p[0] for p in pairs) >= 0.99 and max(p[1] for p in pairs) <= 1e-4 and min(p[2] for p in pairs) >= 0.98


@pytest.mark.slow
@pytest.mark.parametrize("rpn, roi_heads", [("ProjectRPN", "StandardROIHeads"), ("RPN", "ProjectStandardROIHeads")])
def test_project_parts_train_beside_detectron2_parts(rpn, roi_heads):
    """Each boundary in training: this project's RPN feeding Detectron2's ROI heads, and
    Detectron2's RPN feeding this project's (R50, random weights, one small image)."""
    from detectron2.utils.events import EventStorage

    cfg = d2_get_cfg()
    cfg.merge_from_file(d2_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "project_build_resnet_fpn_backbone"
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = rpn
    cfg.MODEL.ROI_HEADS.NAME = roi_heads
    model = d2_build_model(cfg).train()
    targets = d2s.Instances((160, 192), gt_boxes=d2s.Boxes(torch.tensor([[10.0, 20.0, 80.0, 90.0]])))
    targets.gt_classes = torch.tensor([5])
    targets.gt_masks = d2s.PolygonMasks([[np.array([10.0, 20.0, 80.0, 20.0, 80.0, 90.0, 10.0, 90.0])]])
    image = torch.randint(0, 256, (3, 160, 192), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with EventStorage(0) as storage:
        losses = model([{"image": image, "instances": targets}])
        sum(losses.values()).backward()
    assert sorted(losses) == ["loss_box_reg", "loss_cls", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"]
    assert all(torch.isfinite(v) for v in losses.values())
    assert "fast_rcnn/cls_accuracy" in storage.histories() and "rpn/num_pos_anchors" in storage.histories()
    with torch.inference_mode():
        result = model.eval()([{"image": image}])[0]["instances"]
    assert isinstance(result, d2s.Instances) and isinstance(result.pred_masks, torch.Tensor)


def test_config_converts_both_ways(caplog):
    cfg = _zoo_cfg()
    cfg.MODEL.KEYPOINT_ON = True  # no equivalent here, and away from Detectron2's default
    with caplog.at_level(logging.WARNING):
        converted, ignored = from_detectron2_cfg(cfg)
    assert ignored == ["MODEL.KEYPOINT_ON"]
    assert [r for r in caplog.records if "MODEL.KEYPOINT_ON" in r.getMessage()]
    assert converted.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"  # the prefix is dropped
    assert converted.MODEL.RESNETS.DEPTH == 101 and list(converted.SOLVER.STEPS) == [210000, 250000]
    assert list(converted.INPUT.MIN_SIZE_TRAIN) == [640, 672, 704, 736, 768, 800]
    assert converted.DATALOADER.NUM_WORKERS == 4 and converted.TEST.PRED_MASK_FORMAT == "bitmask"

    back = to_detectron2_cfg(converted)
    assert back.MODEL.META_ARCHITECTURE == "ProjectGeneralizedRCNN"
    assert back.SOLVER.STEPS == (210000, 250000) and back.TEST.TILE.OVERLAP == 128
    again, _ = from_detectron2_cfg(back)
    assert OmegaConf.to_container(again) == OmegaConf.to_container(converted)
    assert to_detectron2_cfg(converted, project_model=False).MODEL.META_ARCHITECTURE == "GeneralizedRCNN"

    # A project recipe registering its datasets from the config survives Detectron2's YAML dump.
    from detectron2.config import CfgNode

    from project.config import get_cfg

    recipe = get_cfg(["+experiment=finetune_pennfudan", "MODEL.DEVICE=cpu"])
    dumped = CfgNode.load_cfg(to_detectron2_cfg(recipe).dump())
    assert dumped.DATASETS.REGISTER[0]["FORMAT"] == "instance_id_png"
    reloaded, ignored = from_detectron2_cfg(dumped)
    assert ignored == [] and OmegaConf.to_container(reloaded) == OmegaConf.to_container(recipe)

    plain = d2_get_cfg()
    plain.freeze()
    add_project_config(plain)
    assert plain.is_frozen()
    assert plain.TEST.PRED_MASK_FORMAT == "bitmask" and plain.MODEL.CHANNELS_LAST is True
    assert plain.INPUT.LARGE_SCALE_JITTER.ENABLED is False and plain.DATASETS.REGISTER == []
    assert "eval_only" not in plain and plain.MODEL.DEVICE == "cuda"  # Detectron2's own keys kept
    assert add_project_config(plain.clone()) == plain


def test_structures_move_tensors_across():
    from project import structures as ours

    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]])
    masks = torch.zeros(2, 48, 64, dtype=torch.bool)
    instances = ours.Instances((48, 64), gt_boxes=ours.Boxes(boxes), gt_classes=torch.tensor([0, 3]))
    instances.gt_masks = ours.BitMasks(masks)
    converted = to_detectron2_instances(instances)
    assert isinstance(converted.gt_boxes, d2s.Boxes) and isinstance(converted.gt_masks, d2s.BitMasks)
    assert converted.gt_boxes.tensor is boxes and converted.gt_masks.tensor is masks
    back = to_project_instances(converted)
    assert isinstance(back.gt_boxes, ours.Boxes) and back.gt_boxes.tensor is boxes and back.gt_masks.tensor is masks
    assert to_project_instances(back) is back

    polygons = [[np.array([1.0, 1.0, 10.0, 1.0, 10.0, 10.0])]]
    as_d2 = to_detectron2_instances(ours.Instances((48, 64), gt_masks=ours.PolygonMasks(polygons)))
    assert isinstance(as_d2.gt_masks, d2s.PolygonMasks)
    np.testing.assert_array_equal(as_d2.gt_masks.polygons[0][0], polygons[0][0])

    crops = ours.CroppedBitMasks([ours.MaskCrop.from_array(np.eye(48, 64, dtype=bool))], (48, 64))
    predicted = to_detectron2_instances(ours.Instances((48, 64), pred_masks=crops))
    assert isinstance(predicted.pred_masks, torch.Tensor) and torch.equal(predicted.pred_masks, crops.tensor)


def test_datasets_and_mapper_reach_detectron2_loaders():
    from detectron2.data import build_detection_train_loader

    names = register_datasets_with_detectron2(["cells_demo_train", "cells_demo_val"])
    assert names == ["cells_demo_train", "cells_demo_val"]
    assert register_datasets_with_detectron2(["cells_demo_train"]) == ["cells_demo_train"]
    meta = D2MetadataCatalog.get("cells_demo_train")
    assert meta.thing_classes == ["nucleus"] and meta.evaluator_type == "coco" and meta.json_file.endswith(".json")
    # Detectron2's own COCO registration is kept.
    assert "coco_2017_train" not in register_datasets_with_detectron2()
    with pytest.raises(KeyError, match="no dataset 'not_a_dataset'"):
        register_datasets_with_detectron2(["not_a_dataset"])

    records = D2DatasetCatalog.get("cells_demo_train")
    assert len(records) == 64 and records[0]["annotations"]
    assert D2MetadataCatalog.get("cells_demo_train").thing_dataset_id_to_contiguous_id == {1: 0}

    cfg = _zoo_cfg()
    cfg.DATASETS.TRAIN = ("cells_demo_train",)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (128,)
    batch = next(iter(build_detection_train_loader(cfg, mapper=ProjectDatasetMapper(cfg, True))))
    assert len(batch) == 2
    for item in batch:
        instances = item["instances"]
        assert isinstance(instances, d2s.Instances) and isinstance(instances.gt_masks, d2s.PolygonMasks)
        assert min(item["image"].shape[1:]) == 128 and len(instances) > 0


def _subset_json(source: str, count: int, path) -> None:
    """The first ``count`` images of COCO file ``source``, with their annotations, at ``path``."""
    with open(source) as f:
        coco = json.load(f)
    images = coco["images"][:count]
    ids = {image["id"] for image in images}
    coco.update(images=images, annotations=[a for a in coco["annotations"] if a["image_id"] in ids])
    coco.setdefault("info", {"description": "subset"})
    with open(path, "w") as f:
        json.dump(coco, f)


@pytest.mark.slow
def test_detectron2_default_trainer_trains_and_coco_evaluator_scores(checkpoint, tmp_path):
    from detectron2.engine import DefaultTrainer
    from detectron2.evaluation import COCOEvaluator

    from project.data import DatasetCatalog, MetadataCatalog, register_coco_instances
    from project.integrations.detectron2 import project_train_loader

    # A test set registered through this project's own register function, then bridged.
    DatasetCatalog.get("cells_demo_val")  # drawn on first use
    val = MetadataCatalog.get("cells_demo_val")
    if "bridge_cells_val3" not in DatasetCatalog:
        _subset_json(val.json_file, 3, tmp_path / "val3.json")
        register_coco_instances("bridge_cells_val3", {}, str(tmp_path / "val3.json"), val.image_root)
    register_datasets_with_detectron2(["cells_demo_train", "bridge_cells_val3"])

    cfg = _zoo_cfg()
    add_project_config(cfg)
    cfg.MODEL.WEIGHTS = str(checkpoint)  # class-specific layers (80 classes) are skipped
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 1
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.DATASETS.TRAIN = ("cells_demo_train",)
    cfg.DATASETS.TEST = ()  # evaluated below, by Trainer.test as for eval-only runs
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (192,)
    cfg.INPUT.MAX_SIZE_TRAIN = 256
    cfg.INPUT.MIN_SIZE_TEST = 192
    cfg.INPUT.MAX_SIZE_TEST = 256
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.BASE_LR = 0.001
    cfg.SOLVER.MAX_ITER = 3
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.WARMUP_ITERS = 1
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.OUTPUT_DIR = str(tmp_path / "output")

    class Trainer(DefaultTrainer):
        @classmethod
        def build_train_loader(cls, cfg):
            return project_train_loader(cfg)

        @classmethod
        def build_evaluator(cls, cfg, dataset_name):
            return COCOEvaluator(dataset_name, output_dir=cfg.OUTPUT_DIR)

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    cfg.DATASETS.TEST = ("bridge_cells_val3",)
    results = Trainer.test(cfg, trainer.model)
    losses = [value for value, _ in trainer.storage.history("total_loss").values()]
    print(f"\ntotal_loss per iteration: {', '.join(f'{v:.4f}' for v in losses)}; segm: {dict(results['segm'])}")
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert "fast_rcnn/cls_accuracy" in trainer.storage.histories()  # the model's own statistics arrive
    assert "segm" in results and "AP" in results["segm"]
    # Detectron2's checkpointer saved the project model's (= Detectron2's) keys.
    final = tmp_path / "output" / "model_final.pth"
    assert set(torch.load(final, map_location="cpu", weights_only=False)["model"]) == set(trainer.model.state_dict())
    final.unlink()  # 500 MB with the optimizer state
