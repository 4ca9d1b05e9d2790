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

from project.layers import FrozenBatchNorm2d
from project.modeling import build_model


@torch.no_grad()
def calibrate_norm_statistics(
    cfg: DictConfig, images: Iterable[torch.Tensor], seed: int = 0, residual_gain: float = 0.25
) -> Dict[str, torch.Tensor]:
    """Build the model of ``cfg`` with BatchNorm in place of FrozenBN (same random init for a
    given ``seed``), set each BatchNorm's statistics to the mean/variance over the given
    (C, H, W) images in ``INPUT.FORMAT``, and return the state dict of the equivalent FrozenBN model.

    The last norm of every residual branch gets the scale ``residual_gain``, as trained ResNets
    have small gains there. With gain 1, each of R-101's 33 blocks adds a full-size random
    branch and the network amplifies float32 rounding about a thousandfold, so two correct
    implementations differing only in summation order disagree by ~1e-4 (as much as either
    differs from float64); with small gains they agree to ~1e-6, like trained networks.
    """
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
    for name, m in model.named_modules():
        if name.endswith(".conv3.norm") and isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(residual_gain)
    inputs = [{"image": image} for image in images]
    if not inputs:
        raise ValueError("calibrate_norm_statistics needs at least one image")
    for x in inputs:
        model.backbone(model.preprocess_image([x]).tensor)
    FrozenBatchNorm2d.convert_frozen_batchnorm(model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def make_predictors_confident(
    state: Dict[str, torch.Tensor],
    seed: int = 0,
    class_weight_std: float = 0.05,
    background_bias: float = 2.0,
    mask_weight_std: float = 0.2,
) -> None:
    """Rewrite the box classifier and the mask predictor in ``state`` so their outputs are as
    decided as a trained model's. Freshly initialised, the classifier scores every class
    ~1/(K+1), under the 0.05 test threshold, and the mask logits are ~0, so every mask pixel
    sits at probability 0.5 and the 0.5 threshold is decided by rounding noise. Larger random
    weights spread class scores (a background bias keeps most RoIs out) and give mask logits a
    spread of several units."""
    g = torch.Generator().manual_seed(seed)
    key = "roi_heads.box_predictor.cls_score"
    weight = state[key + ".weight"]
    state[key + ".weight"] = torch.randn(weight.shape, generator=g) * class_weight_std
    bias = torch.zeros(weight.shape[0])
    bias[-1] = background_bias
    state[key + ".bias"] = bias
    key = "roi_heads.mask_head.predictor.weight"
    if key in state:
        state[key] = torch.randn(state[key].shape, generator=g) * mask_weight_std


def write_calibrated_detectron2_checkpoint(
    cfg: DictConfig, images: Iterable[torch.Tensor], path: str | os.PathLike, seed: int = 0
) -> None:
    """Calibrate (``calibrate_norm_statistics``), make the predictors confident, and write the
    weights as a Detectron2 model-zoo style ``.pkl`` (``{"model": {name: ndarray}}``)."""
    state = calibrate_norm_statistics(cfg, images, seed=seed)
    make_predictors_confident(state, seed=seed)
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "calibrated"}, f)
