"""A model's predictions on a few fixed validation images, drawn beside their ground truth and
recorded as TensorBoard images (``DefaultTrainer`` does it at each evaluation, see
``TENSORBOARD.EVAL_IMAGES``)."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from ..data import MetadataCatalog, build_mapper, get_detection_dataset_dicts
from ..data.class_alignment import with_aligned_datasets
from ..data.detection_utils import read_image
from ..evaluation.evaluator import inference_context, pred_mask_format
from ..utils.events import get_event_storage
from ..visualization.training_pictures import as_chw, predictions_beside_ground_truth

logger = logging.getLogger(__name__)

IMAGE_NAME_PREFIX = "eval_predictions"


class PredictionImages:
    """Calling it with a model records, in the open ``EventStorage`` at its current iteration,
    one picture per fixed image: the model's predictions with a score of at least
    ``score_threshold`` on the left, the ground truth on the right, the longer side at most
    ``max_size`` pixels. Picture ``i`` is named ``eval_predictions/<i>_<file name>``.

    ``dataset_dicts`` are the images' dataset dicts (with annotations; the pictures are read
    from their ``file_name`` now, once) and ``inputs`` the matching model inputs (the inference
    mapper's output). The model runs in eval mode without gradients, masks as crops; its training
    flag is restored afterwards.
    """

    def __init__(
        self,
        dataset_dicts: Sequence[Dict[str, Any]],
        inputs: Sequence[Dict[str, Any]],
        metadata: Optional[Any] = None,
        score_threshold: float = 0.5,
        max_size: Optional[int] = 800,
    ):
        if len(dataset_dicts) != len(inputs):
            raise ValueError(f"{len(dataset_dicts)} dataset dicts for {len(inputs)} model inputs")
        self.dataset_dicts = list(dataset_dicts)
        self.inputs = list(inputs)
        self.pictures: List[np.ndarray] = [read_image(d["file_name"], "RGB") for d in self.dataset_dicts]
        self.names = [
            f"{IMAGE_NAME_PREFIX}/{i}_{os.path.basename(str(d.get('file_name', '')))}"
            for i, d in enumerate(self.dataset_dicts)
        ]
        self.metadata = metadata
        self.score_threshold = score_threshold
        self.max_size = max_size

    @classmethod
    def from_config(cls, cfg: DictConfig, count: int) -> Optional[PredictionImages]:
        """The first ``count`` images of ``DATASETS.TEST[0]`` (numbered like the training set,
        see ``project.data.class_alignment``), mapped by the config's inference mapper; None
        without a test set or with ``count <= 0``."""
        if count <= 0 or not cfg.DATASETS.TEST:
            return None
        aligned = with_aligned_datasets(cfg)
        name = aligned.DATASETS.TEST[0]
        policy = cfg.DATALOADER.ON_BAD_ANNOTATION
        dicts = get_detection_dataset_dicts(name, filter_empty=False, on_bad_annotation=policy)
        if not isinstance(dicts, list):
            logger.warning("TENSORBOARD.EVAL_IMAGES: %s is a torch dataset, not dataset dicts; no pictures drawn", name)
            return None
        mapper = build_mapper(aligned, False)
        chosen = dicts[:count]
        return cls(chosen, [mapper(d) for d in chosen], MetadataCatalog.get(name))

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> None:
        storage = get_event_storage()
        with inference_context(model), pred_mask_format(model, "crop"):
            for name, dic, model_input, picture in zip(self.names, self.dataset_dicts, self.inputs, self.pictures):
                instances = model([model_input])[0]["instances"].to("cpu")
                drawn = predictions_beside_ground_truth(
                    picture, instances, dic, self.metadata, self.score_threshold, self.max_size
                )
                storage.put_image(name, as_chw(drawn))
