"""Shared setup for the benchmarks: real images, calibrated weights, Detectron2 if importable."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

from benchmarks.calibration import write_calibrated_detectron2_checkpoint
from project.model_zoo import get_config

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``$PROJECT_DATA_ROOT``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("PROJECT_DATA_ROOT", REPO.parent / "shared" / "data"))


def real_images(count: int) -> List[np.ndarray]:
    """``count`` real BGR uint8 images (COCO and Penn-Fudan samples), cycling if needed."""
    root = data_root()
    paths = sorted((root / "coco_mini" / "images").rglob("*.jpg")) + sorted(
        (root / "pennfudan" / "PNGImages").glob("*.png")
    )
    if not paths:
        raise FileNotFoundError(f"no images under {root}; set PROJECT_DATA_ROOT to the shared data folder")
    return [cv2.imread(str(paths[i % len(paths)]), cv2.IMREAD_COLOR) for i in range(count)]


def to_tensor(image: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Resize a BGR image to exactly (height, width) and return it as a (3, H, W) uint8 tensor."""
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))


def calibrated_detectron2_pkl(path: Path, model_name: str = "mask_rcnn_R_101_FPN_3x", seed: int = 0) -> Path:
    """Write (once) a Detectron2-format ``.pkl`` calibrated on real images (see
    ``project.modeling.calibration``), so the model makes realistic numbers of detections."""
    if not path.exists():
        cfg = get_config(model_name, overrides=["MODEL.DEVICE=cpu"])
        path.parent.mkdir(parents=True, exist_ok=True)
        images = [to_tensor(img, 800, 1088) for img in real_images(4)]
        write_calibrated_detectron2_checkpoint(cfg, images, path, seed=seed)
    return path


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def detectron2_available() -> bool:
    try:
        import detectron2  # noqa: F401
    except ImportError:
        return False
    return True


def build_detectron2_model(
    weights: Path, device: str, config_name: str = "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml"
):
    """Detectron2's own model with the same weights, or ``None`` when it is not importable."""
    if not detectron2_available():
        return None
    from detectron2 import model_zoo
    from detectron2.checkpoint import DetectionCheckpointer as D2Checkpointer
    from detectron2.modeling import build_model as d2_build_model

    cfg = model_zoo.get_config(config_name)
    cfg.MODEL.DEVICE = device
    model = d2_build_model(cfg)
    D2Checkpointer(model).load(str(weights))
    return model.eval()


def maybe_synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cuda_peak_mb(device: str) -> Optional[float]:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def as_detectron2_batch(batch: List[dict]) -> List[dict]:
    """The same model inputs with Detectron2's ``Instances``, ``Boxes`` and ``BitMasks``."""
    from detectron2.structures import BitMasks, Boxes, Instances

    converted = []
    for item in batch:
        ours = item["instances"]
        inst = Instances(ours.image_size)
        inst.gt_boxes = Boxes(ours.gt_boxes.tensor.clone())
        inst.gt_classes = ours.gt_classes.clone()
        inst.gt_masks = BitMasks(ours.gt_masks.tensor.clone())
        converted.append({**item, "instances": inst})
    return converted


def detectron2_recipe(cfg) -> List[str]:
    """Detectron2 ``merge_from_list`` options that make its mask_rcnn_R_101_FPN_3x config the
    recipe ``cfg`` (model and solver options that differ from that config), on CPU."""
    anchors = cfg.MODEL.ANCHOR_GENERATOR
    clip = cfg.SOLVER.CLIP_GRADIENTS
    return [
        "MODEL.DEVICE",
        "cpu",
        "MODEL.WEIGHTS",
        "",
        "MODEL.RESNETS.NORM",
        cfg.MODEL.RESNETS.NORM,
        "MODEL.BACKBONE.FREEZE_AT",
        str(cfg.MODEL.BACKBONE.FREEZE_AT),
        "MODEL.FPN.NORM",
        cfg.MODEL.FPN.NORM,
        "MODEL.ROI_BOX_HEAD.NORM",
        cfg.MODEL.ROI_BOX_HEAD.NORM,
        "MODEL.ROI_MASK_HEAD.NORM",
        cfg.MODEL.ROI_MASK_HEAD.NORM,
        "MODEL.ANCHOR_GENERATOR.SIZES",
        str(OmegaConf.to_container(anchors.SIZES)),
        "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
        str(OmegaConf.to_container(anchors.ASPECT_RATIOS)),
        "MODEL.ROI_HEADS.NUM_CLASSES",
        str(cfg.MODEL.ROI_HEADS.NUM_CLASSES),
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
        str(cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE),
        "SOLVER.IMS_PER_BATCH",
        str(cfg.SOLVER.IMS_PER_BATCH),
        "SOLVER.BASE_LR",
        str(cfg.SOLVER.BASE_LR),
        "SOLVER.CLIP_GRADIENTS.ENABLED",
        str(clip.ENABLED),
        "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
        clip.CLIP_TYPE,
        "SOLVER.CLIP_GRADIENTS.CLIP_VALUE",
        str(clip.CLIP_VALUE),
    ]
