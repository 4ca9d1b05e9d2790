"""Learning-rate schedules: fvcore ``ParamScheduler`` multipliers driven per iteration.

A schedule is a function of training progress ``t = iteration / MAX_ITER`` in [0, 1] giving a
multiplier; every parameter group's LR is its initial LR times that multiplier.
"""

from __future__ import annotations

import logging
from typing import List

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
)
from torch.optim.lr_scheduler import LRScheduler

logger = logging.getLogger(__name__)

LR_SCHEDULER_NAMES = ("WarmupMultiStepLR", "WarmupCosineLR")
WARMUP_METHODS = ("linear", "constant")


class WarmupParamScheduler(CompositeParamScheduler):
    """``scheduler`` preceded by a warmup over the first ``warmup_length`` of training.

    The warmup starts at ``warmup_factor * scheduler(0)``; ``"linear"`` rises to
    ``scheduler(warmup_length)``, where ``scheduler`` then takes over unshifted, and
    ``"constant"`` stays at the start value until then.
    """

    def __init__(
        self,
        scheduler: ParamScheduler,
        warmup_factor: float,
        warmup_length: float,
        warmup_method: str = "linear",
    ):
        if warmup_method not in WARMUP_METHODS:
            raise ValueError(f"warmup method {warmup_method!r}; expected one of {list(WARMUP_METHODS)}")
        if not 0.0 <= warmup_length <= 1.0:
            raise ValueError(f"warmup_length is a fraction of training in [0, 1], got {warmup_length}")
        start = warmup_factor * scheduler(0.0)
        if warmup_method == "linear":
            warmup: ParamScheduler = LinearParamScheduler(start, scheduler(warmup_length))
        else:
            warmup = ConstantParamScheduler(start)
        super().__init__(
            [warmup, scheduler],
            interval_scaling=["rescaled", "fixed"],
            lengths=[warmup_length, 1.0 - warmup_length],
        )


class LRMultiplier(LRScheduler):
    """A torch LR scheduler whose ``step()`` sets every group's LR to its initial LR times
    ``multiplier(last_epoch / max_iter)``; ``last_epoch`` counts iterations.

    Its state is ``{"base_lrs", "last_epoch"}``: the fvcore multiplier is stateless.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, multiplier: ParamScheduler, max_iter: int, last_iter: int = -1
    ):
        if not isinstance(multiplier, ParamScheduler):
            raise TypeError(f"multiplier must be an fvcore ParamScheduler, got {type(multiplier).__name__}")
        if max_iter <= 0:
            raise ValueError(f"max_iter must be positive, got {max_iter}")
        self._multiplier = multiplier
        self._max_iter = max_iter
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self) -> dict:
        return {"base_lrs": self.base_lrs, "last_epoch": self.last_epoch}

    def get_lr(self) -> List[float]:
        factor = self._multiplier(min(self.last_epoch / self._max_iter, 1.0))
        return [base_lr * factor for base_lr in self.base_lrs]


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> LRMultiplier:
    """The schedule named by ``cfg.SOLVER.LR_SCHEDULER_NAME``, with warmup:

    * ``"WarmupMultiStepLR"``: multiplier ``GAMMA ** k`` after the k-th of ``STEPS`` (steps
      beyond ``MAX_ITER`` are ignored, with a warning);
    * ``"WarmupCosineLR"``: half a cosine from 1 to ``BASE_LR_END / BASE_LR`` over ``MAX_ITER``.

    The warmup lasts ``WARMUP_ITERS`` iterations from ``WARMUP_FACTOR`` (``WARMUP_METHOD``).
    """
    solver = cfg.SOLVER
    name, max_iter = solver.LR_SCHEDULER_NAME, solver.MAX_ITER
    if max_iter <= 0:
        raise ValueError(f"SOLVER.MAX_ITER must be positive, got {max_iter}")
    if name == "WarmupMultiStepLR":
        steps = sorted(step for step in solver.STEPS if step < max_iter)
        if len(steps) != len(solver.STEPS):
            logger.warning(
                "SOLVER.STEPS %s has values at or beyond SOLVER.MAX_ITER=%d; they are ignored",
                list(solver.STEPS),
                max_iter,
            )
        schedule: ParamScheduler = MultiStepParamScheduler(
            values=[solver.GAMMA**k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=max_iter,
        )
    elif name == "WarmupCosineLR":
        end = solver.BASE_LR_END / solver.BASE_LR
        if not 0.0 <= end <= 1.0:
            raise ValueError(
                f"SOLVER.BASE_LR_END={solver.BASE_LR_END} must lie between 0 and SOLVER.BASE_LR={solver.BASE_LR}"
            )
        schedule = CosineParamScheduler(1.0, end)
    else:
        raise ValueError(f"SOLVER.LR_SCHEDULER_NAME={name!r}; expected one of {list(LR_SCHEDULER_NAMES)}")
    warmup_length = min(solver.WARMUP_ITERS / max_iter, 1.0)
    multiplier = WarmupParamScheduler(schedule, solver.WARMUP_FACTOR, warmup_length, solver.WARMUP_METHOD)
    return LRMultiplier(optimizer, multiplier, max_iter)
