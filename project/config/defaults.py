"""Typed schema of the whole configuration.

The key names and defaults are Detectron2's (``cfg.MODEL.ROI_HEADS.NUM_CLASSES`` means what it
means there), so a Detectron2 user's code and muscle memory carry over. The schema is an
OmegaConf structured config: an unknown key or a value of the wrong type fails when the config is
composed, naming the key. Only options this project implements exist here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


def _list(*values):
    return field(default_factory=lambda: list(values))


@dataclass
class BackboneConfig:
    NAME: str = "build_resnet_fpn_backbone"
    # Stages frozen from the input: 0 none, 1 the stem, 2 the stem and res2, ... up to 5.
    FREEZE_AT: int = 2


@dataclass
class ResNetsConfig:
    DEPTH: int = 50
    OUT_FEATURES: List[str] = _list("res2", "res3", "res4", "res5")
    NUM_GROUPS: int = 1
    # "FrozenBN", "BN", "SyncBN", "GN" or "" (no norm).
    NORM: str = "FrozenBN"
    WIDTH_PER_GROUP: int = 64
    # True for MSRA/caffe2-trained weights, False for torchvision-trained ones.
    STRIDE_IN_1X1: bool = True
    RES5_DILATION: int = 1
    RES2_OUT_CHANNELS: int = 256
    STEM_OUT_CHANNELS: int = 64


@dataclass
class FPNConfig:
    IN_FEATURES: List[str] = _list("res2", "res3", "res4", "res5")
    OUT_CHANNELS: int = 256
    NORM: str = ""
    FUSE_TYPE: str = "sum"


@dataclass
class ProposalGeneratorConfig:
    NAME: str = "RPN"
    MIN_SIZE: int = 0


@dataclass
class AnchorGeneratorConfig:
    NAME: str = "DefaultAnchorGenerator"
    # One list of sizes (absolute pixels) per feature map, or one list shared by all. Typed
    # loosely because OmegaConf rejects ints in nested float lists; checked by the generator.
    SIZES: List[Any] = field(default_factory=lambda: [[32], [64], [128], [256], [512]])
    # Height / width ratios: one list per feature map, or one list shared by all.
    ASPECT_RATIOS: List[Any] = field(default_factory=lambda: [[0.5, 1.0, 2.0]])
    OFFSET: float = 0.0


@dataclass
class RPNConfig:
    HEAD_NAME: str = "StandardRPNHead"
    IN_FEATURES: List[str] = _list("p2", "p3", "p4", "p5", "p6")
    BOUNDARY_THRESH: int = -1
    IOU_THRESHOLDS: List[float] = _list(0.3, 0.7)
    IOU_LABELS: List[int] = _list(0, -1, 1)
    BATCH_SIZE_PER_IMAGE: int = 256
    POSITIVE_FRACTION: float = 0.5
    BBOX_REG_LOSS_TYPE: str = "smooth_l1"
    BBOX_REG_LOSS_WEIGHT: float = 1.0
    BBOX_REG_WEIGHTS: List[float] = _list(1.0, 1.0, 1.0, 1.0)
    SMOOTH_L1_BETA: float = 0.0
    LOSS_WEIGHT: float = 1.0
    PRE_NMS_TOPK_TRAIN: int = 2000
    PRE_NMS_TOPK_TEST: int = 1000
    POST_NMS_TOPK_TRAIN: int = 1000
    POST_NMS_TOPK_TEST: int = 1000
    NMS_THRESH: float = 0.7
    CONV_DIMS: List[int] = _list(-1)


@dataclass
class ROIHeadsConfig:
    NAME: str = "StandardROIHeads"
    NUM_CLASSES: int = 80
    IN_FEATURES: List[str] = _list("p2", "p3", "p4", "p5")
    IOU_THRESHOLDS: List[float] = _list(0.5)
    IOU_LABELS: List[int] = _list(0, 1)
    BATCH_SIZE_PER_IMAGE: int = 512
    POSITIVE_FRACTION: float = 0.25
    SCORE_THRESH_TEST: float = 0.05
    NMS_THRESH_TEST: float = 0.5
    PROPOSAL_APPEND_GT: bool = True


@dataclass
class ROIBoxHeadConfig:
    NAME: str = "FastRCNNConvFCHead"
    BBOX_REG_LOSS_TYPE: str = "smooth_l1"
    BBOX_REG_LOSS_WEIGHT: float = 1.0
    BBOX_REG_WEIGHTS: List[float] = _list(10.0, 10.0, 5.0, 5.0)
    SMOOTH_L1_BETA: float = 0.0
    POOLER_RESOLUTION: int = 7
    POOLER_SAMPLING_RATIO: int = 0
    POOLER_TYPE: str = "ROIAlignV2"
    NUM_FC: int = 2
    FC_DIM: int = 1024
    NUM_CONV: int = 0
    CONV_DIM: int = 256
    NORM: str = ""
    CLS_AGNOSTIC_BBOX_REG: bool = False


@dataclass
class ROIMaskHeadConfig:
    NAME: str = "MaskRCNNConvUpsampleHead"
    POOLER_RESOLUTION: int = 14
    POOLER_SAMPLING_RATIO: int = 0
    POOLER_TYPE: str = "ROIAlignV2"
    NUM_CONV: int = 4
    CONV_DIM: int = 256
    NORM: str = ""
    CLS_AGNOSTIC_MASK: bool = False


@dataclass
class ModelConfig:
    # "auto" resolves to "cuda" where a GPU is available and "cpu" otherwise.
    DEVICE: str = "auto"
    META_ARCHITECTURE: str = "GeneralizedRCNN"
    # Run the convolutions (backbone, RPN head, mask head) in channels-last memory layout: the
    # same numbers, faster with oneDNN on CPU and tensor cores on GPU. RoIAlign reads contiguous maps.
    CHANNELS_LAST: bool = True
    # A local path, an http(s) URL, or a "detectron2://..." model-zoo name.
    WEIGHTS: str = ""
    MASK_ON: bool = True
    # Per-channel mean and std in the order of INPUT.FORMAT, on the 0-255 scale.
    PIXEL_MEAN: List[float] = _list(103.530, 116.280, 123.675)
    PIXEL_STD: List[float] = _list(1.0, 1.0, 1.0)
    BACKBONE: BackboneConfig = field(default_factory=BackboneConfig)
    RESNETS: ResNetsConfig = field(default_factory=ResNetsConfig)
    FPN: FPNConfig = field(default_factory=FPNConfig)
    PROPOSAL_GENERATOR: ProposalGeneratorConfig = field(default_factory=ProposalGeneratorConfig)
    ANCHOR_GENERATOR: AnchorGeneratorConfig = field(default_factory=AnchorGeneratorConfig)
    RPN: RPNConfig = field(default_factory=RPNConfig)
    ROI_HEADS: ROIHeadsConfig = field(default_factory=ROIHeadsConfig)
    ROI_BOX_HEAD: ROIBoxHeadConfig = field(default_factory=ROIBoxHeadConfig)
    ROI_MASK_HEAD: ROIMaskHeadConfig = field(default_factory=ROIMaskHeadConfig)


@dataclass
class CropConfig:
    ENABLED: bool = False
    # "relative_range", "relative", "absolute" or "absolute_range", as in Detectron2.
    TYPE: str = "relative_range"
    SIZE: List[float] = _list(0.9, 0.9)


@dataclass
class LargeScaleJitterConfig:
    # Training only, replacing ResizeShortestEdge: scale a square IMAGE_SIZE target by a
    # factor in [MIN_SCALE, MAX_SCALE], fit the image in it, then crop/pad to IMAGE_SIZE.
    ENABLED: bool = False
    IMAGE_SIZE: int = 1024
    MIN_SCALE: float = 0.1
    MAX_SCALE: float = 2.0


@dataclass
class InputConfig:
    MIN_SIZE_TRAIN: List[int] = _list(800)
    # "choice" picks one of MIN_SIZE_TRAIN; "range" samples between its two values.
    MIN_SIZE_TRAIN_SAMPLING: str = "choice"
    MAX_SIZE_TRAIN: int = 1333
    MIN_SIZE_TEST: int = 800
    MAX_SIZE_TEST: int = 1333
    # "horizontal", "vertical", "both" or "none".
    RANDOM_FLIP: str = "horizontal"
    CROP: CropConfig = field(default_factory=CropConfig)
    # "BGR" (Detectron2 and MSRA weights), "RGB" (torchvision weights) or "L".
    FORMAT: str = "BGR"
    # "polygon" or "bitmask": how the mapper hands instance masks to the model.
    MASK_FORMAT: str = "polygon"
    # Name in project.data.MAPPER_REGISTRY of the mapper turning dataset dicts into model inputs.
    MAPPER_NAME: str = "DatasetMapper"
    LARGE_SCALE_JITTER: LargeScaleJitterConfig = field(default_factory=LargeScaleJitterConfig)
    # Training only: pixel values scaled by a factor drawn from [min, max] ([1, 1]: off).
    BRIGHTNESS: List[float] = _list(1.0, 1.0)
    # Training only: distance to the image mean scaled by a factor from [min, max] ([1, 1]: off).
    CONTRAST: List[float] = _list(1.0, 1.0)


@dataclass
class DatasetSplitConfig:
    """Which part of a dataset given as one folder to keep (project.data.datasets.split)."""

    # "all" (every image), "train" or "val": an image is in "val" when a hash of its file name
    # falls below VAL_FRACTION, so the split is stable when images are added or removed.
    PART: str = "all"
    VAL_FRACTION: float = 0.2


@dataclass
class DatasetRegistrationConfig:
    """One dataset registered from the config (see project.data.datasets.registration)."""

    NAME: str = MISSING
    # "coco", "mask_folder", "instance_id_png", "labelme" or "via".
    FORMAT: str = "coco"
    # Keyword arguments of the format's register function: paths and options.
    ARGS: Dict[str, Any] = field(default_factory=dict)
    # Metadata, e.g. thing_classes.
    METADATA: Dict[str, Any] = field(default_factory=dict)
    # Train / val from one folder: register the same ARGS twice with PART train and val.
    SPLIT: DatasetSplitConfig = field(default_factory=DatasetSplitConfig)


@dataclass
class DatasetsConfig:
    TRAIN: List[str] = field(default_factory=list)
    TEST: List[str] = field(default_factory=list)
    # Datasets to register before TRAIN/TEST are looked up.
    REGISTER: List[DatasetRegistrationConfig] = field(default_factory=list)


@dataclass
class DataLoaderConfig:
    NUM_WORKERS: int = 2
    ASPECT_RATIO_GROUPING: bool = True
    SAMPLER_TRAIN: str = "TrainingSampler"
    REPEAT_THRESHOLD: float = 0.0
    FILTER_EMPTY_ANNOTATIONS: bool = True
    # Bad input (malformed annotation, polygon with < 3 points, box outside the image, missing
    # or corrupt image, mask size differing from its image): "skip" it (counted and logged)
    # or "error" (raise, naming the file and the annotation).
    ON_BAD_ANNOTATION: str = "skip"


@dataclass
class ClipGradientsConfig:
    ENABLED: bool = False
    # "value" (each element), "norm" (each parameter's gradient) or "full_model" (all jointly).
    CLIP_TYPE: str = "value"
    CLIP_VALUE: float = 1.0
    NORM_TYPE: float = 2.0


@dataclass
class AMPConfig:
    # float16 autocast and a gradient scaler; CUDA only (ignored with a warning on CPU).
    ENABLED: bool = False


@dataclass
class SolverConfig:
    # "WarmupMultiStepLR" or "WarmupCosineLR".
    LR_SCHEDULER_NAME: str = "WarmupMultiStepLR"
    MAX_ITER: int = 90000
    BASE_LR: float = 0.02
    # Final LR of WarmupCosineLR.
    BASE_LR_END: float = 0.0
    MOMENTUM: float = 0.9
    NESTEROV: bool = False
    WEIGHT_DECAY: float = 0.0001
    WEIGHT_DECAY_NORM: float = 0.0
    WEIGHT_DECAY_BIAS: Optional[float] = None
    BIAS_LR_FACTOR: float = 1.0
    GAMMA: float = 0.1
    STEPS: List[int] = _list(60000, 80000)
    WARMUP_FACTOR: float = 0.001
    WARMUP_ITERS: int = 1000
    WARMUP_METHOD: str = "linear"
    CHECKPOINT_PERIOD: int = 5000
    # Images per optimizer step, over all processes and accumulated batches.
    IMS_PER_BATCH: int = 16
    # Gradient accumulation: each step sums ACCUM_ITER batches of IMS_PER_BATCH / ACCUM_ITER images.
    ACCUM_ITER: int = 1
    # Evaluation metric whose best value is kept as model_best.pth ("" disables), and whether
    # higher ("max") or lower ("min") is better.
    BEST_CHECKPOINT_METRIC: str = "segm/AP"
    BEST_CHECKPOINT_MODE: str = "max"
    CLIP_GRADIENTS: ClipGradientsConfig = field(default_factory=ClipGradientsConfig)
    AMP: AMPConfig = field(default_factory=AMPConfig)


@dataclass
class PreciseBNConfig:
    # Before each evaluation and after the last iteration, set the batch-norm running
    # statistics to their average over NUM_ITER training batches (models with NORM: BN).
    ENABLED: bool = False
    NUM_ITER: int = 200


@dataclass
class TileConfig:
    """Tiled inference (project.engine.TiledPredictor) on images larger than the model input."""

    # Tile side and overlap in model-input pixels (after SCALE). SIZE 0: INPUT.MIN_SIZE_TEST (or
    # MAX_SIZE_TEST when that is 0), the scale the model is tested at. Objects no wider and no
    # taller than OVERLAP are never cut: the tile owning their centre sees them whole.
    SIZE: int = 0
    OVERLAP: int = 128
    # Resize factor applied before tiling, e.g. 2.0 when the model was trained on images shown
    # twice as large (a model tested at 512 on 256-pixel images).
    SCALE: float = 1.0
    # Tiles per model call.
    BATCH_SIZE: int = 2
    # Fragments of one object cut by tile borders are joined when their masks cover the same
    # pixels where their tiles overlap (IoU of their parts there at least this).
    JOIN_THRESHOLD: float = 0.5
    # Mask NMS between objects of different tiles (mask IoU above this, same class).
    NMS_THRESHOLD: float = 0.5


@dataclass
class TestConfig:
    EVAL_PERIOD: int = 0
    # Maximum detections kept per image, by the model and by the COCO evaluator.
    DETECTIONS_PER_IMAGE: int = 100
    # Also record the training losses on DATASETS.TEST every EVAL_PERIOD iterations.
    VAL_LOSS: bool = False
    # Form of the predicted masks: "bitmask", (N, H, W) booleans as Detectron2 returns them;
    # "crop", a CroppedBitMasks keeping each mask around its box (little memory on large
    # images). Evaluation with COCOEvaluator always uses "crop".
    PRED_MASK_FORMAT: str = "bitmask"
    TILE: TileConfig = field(default_factory=TileConfig)
    PRECISE_BN: PreciseBNConfig = field(default_factory=PreciseBNConfig)


@dataclass
class TensorboardConfig:
    # Every HISTOGRAM_PERIOD iterations from iteration 0 (0: never): histograms of the trainable
    # weights and their gradients (weights/<parameter>, grads/<parameter>) in the TensorBoard
    # events, and the gradient norm of each layer and in total (grad_norm/<layer>,
    # grad_norm/total) as scalars, also in metrics.jsonl. Gradients are read before clipping.
    HISTOGRAM_PERIOD: int = 0
    # At each evaluation during training, the predictions on the first EVAL_IMAGES images of
    # DATASETS.TEST[0] beside their ground truth, as TensorBoard images (0: none).
    EVAL_IMAGES: int = 4


@dataclass
class ProjectConfig:
    MODEL: ModelConfig = field(default_factory=ModelConfig)
    INPUT: InputConfig = field(default_factory=InputConfig)
    DATASETS: DatasetsConfig = field(default_factory=DatasetsConfig)
    DATALOADER: DataLoaderConfig = field(default_factory=DataLoaderConfig)
    SOLVER: SolverConfig = field(default_factory=SolverConfig)
    TEST: TestConfig = field(default_factory=TestConfig)
    OUTPUT_DIR: str = "./output"
    # Negative: a different seed every run.
    SEED: int = -1
    # Reproducible kernels (torch.use_deterministic_algorithms, warning where none exists).
    DETERMINISTIC: bool = False
    CUDNN_BENCHMARK: bool = False
    # Iterations between two writes of metrics.jsonl, TensorBoard events and the console.
    LOG_PERIOD: int = 20
    # Every VIS_PERIOD iterations from iteration 0 (0: never), TensorBoard images of one training
    # image: its ground-truth boxes beside the RPN's 20 best proposals, and the mask head's
    # predictions beside their targets (Detectron2's key).
    VIS_PERIOD: int = 0
    TENSORBOARD: TensorboardConfig = field(default_factory=TensorboardConfig)
    # How train_net.py runs (lower case: about the launch, not the model).
    eval_only: bool = False
    # Continue from OUTPUT_DIR/last_checkpoint: weights, optimizer, scheduler, iteration, RNG.
    resume: bool = False
    # Processes per machine (one per GPU; on CPU, gloo processes), machines, this machine's
    # rank, and where processes meet ("auto": a free port on localhost).
    num_gpus: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    dist_url: str = "auto"
