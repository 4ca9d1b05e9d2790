"""Calibrating normalisation statistics on real images.

A ResNet with FrozenBN and random weights has identity statistics, and its activations grow
by orders of magnitude through 100 layers. Running a few real images through a BatchNorm copy
in train mode gives statistics that keep activations well scaled; folding them into FrozenBN
gives a deterministic model with realistic feature maps, usable where no trained checkpoint
can be downloaded (parity checks, benchmarks).
"""
from __future__ import annotations

import copy
import os
import pickle
from typing import Dict, Iterable

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..layers import FrozenBatchNorm2d


@torch.no_grad()
def calibrate_norm_statistics(cfg: DictConfig, images: Iterable[torch.Tensor], seed: int = 0) -> Dict[str, torch.Tensor]:
    """Build the model of ``cfg`` with BatchNorm in place of FrozenBN (same random init for a
    given ``seed``), set each BatchNorm's statistics to the exact mean/variance over the given
    (C, H, W) images in ``INPUT.FORMAT``, and return the state dict of the equivalent FrozenBN model.
    """
    from .meta_arch import build_model

    bn_cfg = copy.deepcopy(cfg)
    OmegaConf.set_struct(bn_cfg, False)
    bn_cfg.MODEL.RESNETS.NORM = "BN"
    bn_cfg.MODEL.BACKBONE.FREEZE_AT = 0
    bn_cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(seed)
    model = build_model(bn_cfg)
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    inputs = [{"image": image} for image in images]
    if not inputs:
        raise ValueError("calibrate_norm_statistics needs at least one image")
    for x in inputs:
        model.backbone(model.preprocess_image([x]).tensor)
    FrozenBatchNorm2d.convert_frozen_batchnorm(model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def make_classifier_confident(state: Dict[str, torch.Tensor], seed: int = 0, weight_std: float = 0.05, background_bias: float = 2.0) -> None:
    """Rewrite the box classifier in ``state`` so its softmax is peaked. A fresh classifier
    scores every class ~1/(K+1), under the 0.05 test threshold, so nothing would be detected;
    larger random weights spread the class scores, and a background bias keeps most RoIs out."""
    g = torch.Generator().manual_seed(seed)
    key = "roi_heads.box_predictor.cls_score"
    weight = state[key + ".weight"]
    state[key + ".weight"] = torch.randn(weight.shape, generator=g) * weight_std
    bias = torch.zeros(weight.shape[0])
    bias[-1] = background_bias
    state[key + ".bias"] = bias


def write_calibrated_detectron2_checkpoint(
    cfg: DictConfig, images: Iterable[torch.Tensor], path: str | os.PathLike, seed: int = 0
) -> None:
    """Calibrate (``calibrate_norm_statistics``), make the classifier confident, and write the
    weights as a Detectron2 model-zoo style ``.pkl`` (``{"model": {name: ndarray}}``)."""
    state = calibrate_norm_statistics(cfg, images, seed=seed)
    make_classifier_confident(state, seed=seed)
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "calibrated"}, f)
