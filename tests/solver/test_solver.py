"""Optimizer parameter groups, gradient clipping and LR schedules, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from project.config import default_cfg
from project.solver import build_gradient_clipper, build_lr_scheduler, build_optimizer


class NormNet(nn.Module):
    """A conv with bias, a batch norm, a group norm and a linear layer sharing nothing."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def _cfg(**solver):
    """The default config with ``SOLVER.<key>`` set for each keyword (``CLIP_GRADIENTS__X``
    stands for ``CLIP_GRADIENTS.X``)."""
    cfg = default_cfg()
    for key, value in solver.items():
        OmegaConf.update(cfg, "SOLVER." + key.replace("__", "."), value, merge=False)
    return cfg


def _group_of(optimizer, param):
    return next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))


def test_norm_and_bias_groups_get_their_weight_decay_and_lr():
    model = NormNet()
    cfg = _cfg(BASE_LR=0.1, WEIGHT_DECAY=1e-4, WEIGHT_DECAY_NORM=0.0, WEIGHT_DECAY_BIAS=0.0, BIAS_LR_FACTOR=2.0)
    optimizer = build_optimizer(cfg, model)

    assert _group_of(optimizer, model.conv.weight)["weight_decay"] == 1e-4
    assert _group_of(optimizer, model.fc.weight)["lr"] == 0.1
    for norm in (model.bn, model.gn):
        assert _group_of(optimizer, norm.weight)["weight_decay"] == 0.0
    for bias in (model.conv.bias, model.fc.bias, model.bn.bias):
        group = _group_of(optimizer, bias)
        assert group["weight_decay"] == 0.0 and group["lr"] == pytest.approx(0.2)
    # Frozen parameters are left out; every trainable one appears exactly once.
    listed = [p for g in optimizer.param_groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(listed) == len(trainable) and {id(p) for p in listed} == {id(p) for p in trainable}
    # Equal hyper-parameters share a group: weights, norm weights, biases.
    assert len(optimizer.param_groups) == 3


def test_norm_weight_decay_applies_when_no_bias_override():
    model = NormNet()
    optimizer = build_optimizer(_cfg(WEIGHT_DECAY=1e-4, WEIGHT_DECAY_NORM=5e-5, WEIGHT_DECAY_BIAS=None), model)
    assert _group_of(optimizer, model.bn.bias)["weight_decay"] == 5e-5
    assert _group_of(optimizer, model.conv.bias)["weight_decay"] == 1e-4


def test_sgd_step_matches_momentum_nesterov_and_decoupled_groups():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    cfg = _cfg(BASE_LR=0.5, MOMENTUM=0.9, NESTEROV=True, WEIGHT_DECAY=0.1, WEIGHT_DECAY_BIAS=0.0)
    optimizer = build_optimizer(cfg, model)
    w0 = model.weight.detach().clone()
    grad = torch.tensor([[1.0, -2.0, 0.5]])
    model.weight.grad = grad.clone()
    model.bias.grad = torch.tensor([1.0])
    optimizer.step()
    # First nesterov step: buf = g + wd*w; update = g_wd + momentum * buf = 1.9 * g_wd.
    g_wd = grad + 0.1 * w0
    assert torch.allclose(model.weight, w0 - 0.5 * 1.9 * g_wd)


def _grads(*values):
    params = [nn.Parameter(torch.zeros(len(v))) for v in values]
    for p, v in zip(params, values):
        p.grad = torch.tensor(v, dtype=torch.float32)
    return params


def test_clip_by_value():
    params = _grads([3.0, -0.5], [-4.0])
    build_gradient_clipper(
        _cfg(CLIP_GRADIENTS__ENABLED=True, CLIP_GRADIENTS__CLIP_TYPE="value", CLIP_GRADIENTS__CLIP_VALUE=1.0)
    )(params)
    assert params[0].grad.tolist() == [1.0, -0.5] and params[1].grad.tolist() == [-1.0]


def test_clip_norm_is_per_parameter_and_full_model_is_joint():
    params = _grads([3.0, 4.0], [0.3, 0.4])
    build_gradient_clipper(
        _cfg(CLIP_GRADIENTS__ENABLED=True, CLIP_GRADIENTS__CLIP_TYPE="norm", CLIP_GRADIENTS__CLIP_VALUE=1.0)
    )(params)
    assert torch.allclose(params[0].grad, torch.tensor([0.6, 0.8]), atol=1e-6)
    assert torch.allclose(params[1].grad, torch.tensor([0.3, 0.4]))  # norm 0.5 < 1: untouched

    params = _grads([3.0, 4.0], [0.0, 0.0])
    build_gradient_clipper(
        _cfg(CLIP_GRADIENTS__ENABLED=True, CLIP_GRADIENTS__CLIP_TYPE="full_model", CLIP_GRADIENTS__CLIP_VALUE=2.5)
    )(params)
    assert torch.allclose(params[0].grad, torch.tensor([1.5, 2.0]), atol=1e-5)


def test_clipping_disabled_and_bad_type():
    assert build_gradient_clipper(_cfg()) is None
    with pytest.raises(ValueError, match="CLIP_TYPE.*'value', 'norm', 'full_model'"):
        build_gradient_clipper(_cfg(CLIP_GRADIENTS__ENABLED=True, CLIP_GRADIENTS__CLIP_TYPE="l2"))


def _lrs(cfg, iterations):
    model = nn.Linear(1, 1)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    values = []
    for _ in range(iterations):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_warmup_multistep_values():
    cfg = _cfg(
        BASE_LR=0.1, MAX_ITER=20, STEPS=[10, 15], GAMMA=0.1, WARMUP_ITERS=5, WARMUP_FACTOR=0.01, WARMUP_METHOD="linear"
    )
    lrs = _lrs(cfg, 20)
    for it in range(5):  # linear from 0.001 to 0.1 over 5 iterations
        assert lrs[it] == pytest.approx(0.1 * (0.01 + (1 - 0.01) * it / 5))
    assert lrs[5:10] == pytest.approx([0.1] * 5)
    assert lrs[10:15] == pytest.approx([0.01] * 5)
    assert lrs[15:] == pytest.approx([0.001] * 5)


def test_constant_warmup_and_steps_beyond_max_iter_ignored():
    cfg = _cfg(BASE_LR=1.0, MAX_ITER=10, STEPS=[4, 10, 30], WARMUP_ITERS=2, WARMUP_FACTOR=0.5, WARMUP_METHOD="constant")
    assert _lrs(cfg, 10) == pytest.approx([0.5, 0.5, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])


def test_warmup_cosine_values():
    cfg = _cfg(
        LR_SCHEDULER_NAME="WarmupCosineLR",
        BASE_LR=0.2,
        BASE_LR_END=0.02,
        MAX_ITER=100,
        WARMUP_ITERS=10,
        WARMUP_FACTOR=0.001,
    )
    lrs = _lrs(cfg, 100)

    def cosine(it):
        return 0.02 + 0.5 * (0.2 - 0.02) * (1 + math.cos(math.pi * it / 100))

    # Warmup ends on the cosine curve, which then continues unshifted.
    assert lrs[0] == pytest.approx(0.001 * 0.2)
    assert lrs[5] == pytest.approx(0.001 * 0.2 + (cosine(10) - 0.001 * 0.2) * 0.5)
    for it in (10, 37, 50, 99):
        assert lrs[it] == pytest.approx(cosine(it))


def test_scheduler_state_round_trip_continues_the_schedule():
    cfg = _cfg(BASE_LR=0.1, MAX_ITER=20, STEPS=[10], WARMUP_ITERS=4)
    model = nn.Linear(1, 1)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    state, optimizer_state = scheduler.state_dict(), optimizer.state_dict()
    expected = _lrs(cfg, 20)[7:]

    other_optimizer = build_optimizer(cfg, nn.Linear(1, 1))
    other = build_lr_scheduler(cfg, other_optimizer)
    other.load_state_dict(state)
    other_optimizer.load_state_dict(optimizer_state)
    resumed = []
    for _ in range(13):
        resumed.append(other_optimizer.param_groups[0]["lr"])
        other_optimizer.step()
        other.step()
    assert resumed == pytest.approx(expected)


def test_unknown_scheduler_name_lists_choices():
    with pytest.raises(ValueError, match="WarmupMultiStepLR.*WarmupCosineLR"):
        build_lr_scheduler(_cfg(LR_SCHEDULER_NAME="Poly"), build_optimizer(_cfg(), nn.Linear(1, 1)))
