"""Hooks for :class:`~.train_loop.TrainerBase`: timing, LR schedule, precise batch-norm
statistics, checkpoints, evaluation, validation loss, weight and gradient statistics and
metric writing."""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import time
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import torch
from fvcore.common.checkpoint import PeriodicCheckpointer as _FvcorePeriodicCheckpointer
from fvcore.nn.precise_bn import get_bn_modules, update_bn_stats
from torch import nn

from ..checkpoint import CheckpointFormatError
from ..utils import comm
from ..utils.ddp import unwrap_model
from ..utils.events import DEFAULT_HISTOGRAM_BINS, EventStorage, EventWriter, get_event_storage
from .reproducibility import capture_rng_state, preserve_rng_state
from .train_loop import HookBase, TrainerBase

logger = logging.getLogger(__name__)


def flatten_results(results: Mapping[str, Any], prefix: str = "") -> Dict[str, float]:
    """``{"segm": {"AP": 41.0}}`` -> ``{"segm/AP": 41.0}``; non-numeric leaves are left out."""
    flat: Dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_results(value, prefix=name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def _after_period_or_last(trainer: TrainerBase, period: int) -> bool:
    """Whether the iteration ``trainer`` just finished completes a multiple of ``period``
    iterations (``period <= 0``: none does) or is the last one."""
    next_iter = trainer.iter + 1
    return next_iter == trainer.max_iter or (period > 0 and next_iter % period == 0)


class IterationTimer(HookBase):
    """Records ``time`` (seconds per iteration, hooks after this one excluded) and logs the
    overall speed at the end, leaving out the first ``warmup_iter`` iterations."""

    def __init__(self, warmup_iter: int = 3):
        self._warmup_iter = warmup_iter
        self._step_start = 0.0
        self._timed_seconds = 0.0
        self._timed_iters = 0
        self._train_start = 0.0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        seconds = time.perf_counter() - self._step_start
        if self.trainer.iter - self.trainer.start_iter >= self._warmup_iter:
            self._timed_seconds += seconds
            self._timed_iters += 1
        self.trainer.storage.put_scalar("time", seconds)

    def after_train(self) -> None:
        total = time.perf_counter() - self._train_start
        if self._timed_iters:
            logger.info(
                "Overall training speed: %d iterations in %s (%.4f s / it)",
                self._timed_iters,
                datetime.timedelta(seconds=int(self._timed_seconds)),
                self._timed_seconds / self._timed_iters,
            )
        logger.info("Total training time: %s", datetime.timedelta(seconds=int(total)))


class LRScheduler(HookBase):
    """Records ``lr`` (of the parameter group with the most parameters) and steps the
    scheduler after every iteration."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler):
        self._optimizer = optimizer
        self._scheduler = scheduler
        self._reported_group = max(
            range(len(optimizer.param_groups)), key=lambda i: len(optimizer.param_groups[i]["params"])
        )

    def after_step(self) -> None:
        lr = self._optimizer.param_groups[self._reported_group]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self._scheduler.step()


class PreciseBN(HookBase):
    """After every ``period`` iterations (``period <= 0``: never) and after the last one,
    replaces the running mean and variance of every batch norm in training mode by their
    average over ``num_iter`` training batches, computed with the current weights (fvcore's
    ``update_bn_stats``; Detectron2's ``TEST.PRECISE_BN``).

    The running statistics are otherwise an exponential average that mostly reflects the last
    few dozen batches; with two images per batch and a varied dataset, evaluation then depends
    on which images came last. Place it before the checkpointer and the evaluation so both see
    the new statistics. Each update draws the first ``num_iter`` batches of a fresh iterator
    over the loader that ``data_loader_factory`` builds once (a seeded loader gives the same
    batches every time, resumed or not); the run's random generators and metrics are left as
    they were, and weights and gradients are not touched.
    """

    def __init__(self, period: int, model: nn.Module, data_loader_factory: Callable[[], Iterable[Any]], num_iter: int):
        if num_iter <= 0:
            raise ValueError(f"PreciseBN num_iter must be positive, got {num_iter}")
        self._model = unwrap_model(model)
        self._period = period
        self._num_iter = num_iter
        self._data_loader_factory = data_loader_factory
        self._data_loader: Optional[Iterable[Any]] = None
        if not get_bn_modules(self._model):
            logger.info("PreciseBN: the model has no batch norm in training mode; nothing to update")

    def update_stats(self) -> None:
        """Recompute the statistics now (on every process: each computes its own)."""
        if not get_bn_modules(self._model):
            return
        with preserve_rng_state():
            if self._data_loader is None:
                self._data_loader = self._data_loader_factory()
            batches = iter(self._data_loader)
            logger.info("PreciseBN: averaging batch-norm statistics over %d batches", self._num_iter)
            # The model's own training statistics on these batches stay out of the run's.
            with torch.no_grad(), EventStorage(self.trainer.iter):
                update_bn_stats(self._model, batches, self._num_iter)
            del batches  # shuts the loader's workers down

    def after_step(self) -> None:
        if _after_period_or_last(self.trainer, self._period):
            self.update_stats()


class PeriodicCheckpointer(_FvcorePeriodicCheckpointer, HookBase):
    """Saves ``model_<iter:07d>.pth`` after every ``period`` iterations and ``model_final.pth``
    after the last, through the (atomic) checkpointer, with ``iteration`` and the RNG states of
    all processes (``rng_states``, one per rank), so that a resumed run continues exactly."""

    def after_step(self) -> None:
        iteration = self.trainer.iter
        if (iteration + 1) % self.period == 0 or iteration >= self.trainer.max_iter - 1:
            self.step(iteration, rng_states=comm.all_gather(capture_rng_state()))


class EvalHook(HookBase):
    """Runs ``eval_function`` after every ``eval_period`` iterations (0: never) and after the
    last one, without disturbing the training's random generators.

    The results (``{task: {metric: value}}``) are recorded as ``task/metric`` scalars on the
    main process and kept in ``latest_results``.
    """

    def __init__(self, eval_period: int, eval_function: Callable[[], Mapping[str, Any]], eval_after_train: bool = True):
        self._period = eval_period
        self._function = eval_function
        self._eval_after_train = eval_after_train
        self.latest_results: Mapping[str, Any] = {}

    def _do_eval(self) -> None:
        with preserve_rng_state():
            results = self._function() or {}
        self.latest_results = results
        flat = flatten_results(results)
        if flat and comm.is_main_process():
            self.trainer.storage.put_scalars(smoothing_hint=False, **flat)
        comm.synchronize()

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if self._period > 0 and next_iter % self._period == 0 and next_iter != self.trainer.max_iter:
            self._do_eval()

    def after_train(self) -> None:
        # Only a completed training is evaluated; after an exception, iter < max_iter.
        if self._eval_after_train and self.trainer.iter >= self.trainer.max_iter:
            self._do_eval()


class BestCheckpointer(HookBase):
    """Saves ``<file_prefix>.pth`` whenever a new value of ``metric`` (e.g. ``"segm/AP"``,
    recorded by :class:`EvalHook`, which must be registered before) beats the best so far
    (``mode`` ``"max"`` or ``"min"``). The best checkpoint is never what resuming picks up:
    ``last_checkpoint`` keeps naming the latest periodic checkpoint."""

    def __init__(self, checkpointer, metric: str, mode: str = "max", file_prefix: str = "model_best"):
        if mode not in ("max", "min"):
            raise ValueError(f"BestCheckpointer mode must be 'max' or 'min', got {mode!r}")
        self._checkpointer = checkpointer
        self._metric = metric
        self._better = (lambda new, old: new > old) if mode == "max" else (lambda new, old: new < old)
        self._file_prefix = file_prefix
        self._best: Optional[float] = None
        self._last_checked_iter = -1
        self._warned_missing = False

    def _check(self) -> None:
        latest = self.trainer.storage.latest()
        if self._metric not in latest:
            evaluated = [name for name in latest if "/" in name]
            if evaluated and not self._warned_missing:
                logger.warning(
                    "BestCheckpointer: no metric '%s' in the evaluation results; available: %s",
                    self._metric,
                    sorted(evaluated),
                )
                self._warned_missing = True
            return
        value, iteration = latest[self._metric]
        if iteration <= self._last_checked_iter:
            return
        self._last_checked_iter = iteration
        if math.isnan(value):
            logger.warning("BestCheckpointer: %s is NaN at iteration %d; not compared", self._metric, iteration)
            return
        if self._best is not None and not self._better(value, self._best):
            logger.info(
                "%s = %.4f at iteration %d does not beat the best, %.4f", self._metric, value, iteration, self._best
            )
            return
        logger.info("New best %s = %.4f at iteration %d (previous: %s)", self._metric, value, iteration, self._best)
        self._best = value
        self._save(iteration, value)

    def _resumable_checkpoint(self) -> Optional[str]:
        """What ``last_checkpoint`` lets a run resume from now; None when nothing (no record, or
        an unusable one with no checkpoint to fall back on)."""
        try:
            return self._checkpointer.get_checkpoint_file() or None
        except CheckpointFormatError:
            return None

    def _save(self, iteration: int, value: float) -> None:
        checkpointer = self._checkpointer
        previous = self._resumable_checkpoint()
        checkpointer.save(self._file_prefix, iteration=iteration, best_metric={self._metric: value})
        if previous:
            checkpointer.tag_last_checkpoint(os.path.basename(previous))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(checkpointer.save_dir, "last_checkpoint"))

    def after_step(self) -> None:
        if comm.is_main_process():
            self._check()

    def after_train(self) -> None:
        if comm.is_main_process():
            self._check()


@contextlib.contextmanager
def _norm_layers_in_eval_mode(model: nn.Module) -> Iterator[None]:
    """Batch norms use (and leave unchanged) their running statistics inside the block."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for module in norms:
        module.eval()
    try:
        yield
    finally:
        for module in norms:
            module.train()


class ValidationLoss(HookBase):
    """Records ``val_<loss>`` and ``val_total_loss``, the training losses averaged over every
    image of ``data_loader`` (batches with ground truth), after every ``period`` iterations and
    after the last one. Nothing is learnt: no gradients, batch-norm statistics untouched, the
    random generators restored afterwards, and the training statistics the model reports are
    kept out of the run's metrics."""

    def __init__(self, data_loader: Iterable[List[dict]], period: int):
        if period <= 0:
            raise ValueError(f"ValidationLoss period must be positive, got {period}")
        self._data_loader = data_loader
        self._period = period

    def _compute(self) -> None:
        model = unwrap_model(self.trainer.model)
        sums: Dict[str, float] = defaultdict(float)
        images = 0
        # The model's own training statistics on these batches go to a storage of their own,
        # not into the training run's.
        with preserve_rng_state(), torch.no_grad(), _norm_layers_in_eval_mode(model), EventStorage(self.trainer.iter):
            for batch in self._data_loader:
                for name, value in model(batch).items():
                    sums[name] += float(value) * len(batch)
                images += len(batch)
        gathered = comm.all_gather((dict(sums), images))
        total_images = sum(count for _, count in gathered)
        if not comm.is_main_process():
            return
        if total_images == 0:
            logger.warning("ValidationLoss: the validation data loader yielded no images")
            return
        names = sorted(set().union(*(partial.keys() for partial, _ in gathered)))
        means = {f"val_{name}": sum(partial.get(name, 0.0) for partial, _ in gathered) / total_images for name in names}
        self.trainer.storage.put_scalars(val_total_loss=sum(means.values()), **means)

    def after_step(self) -> None:
        if _after_period_or_last(self.trainer, self._period):
            self._compute()


def layer_name(parameter_name: str) -> str:
    """The layer a parameter belongs to: its name without the last part
    (``backbone.fpn_lateral2.weight`` -> ``backbone.fpn_lateral2``)."""
    return parameter_name.rsplit(".", 1)[0] if "." in parameter_name else parameter_name


class ParameterStatistics(HookBase):
    """Every ``period`` iterations from iteration 0 (``period <= 0``: never), on the main
    process, records for the trainable parameters of ``model`` (those with a gradient):

    - ``grad_norm/<layer>``: the L2 norm of the gradients of each layer's parameters together
      (see ``layer_name``), and ``grad_norm/total`` over all; exact scalars (no smoothing), so
      they reach ``metrics.jsonl`` as well as TensorBoard;
    - histograms ``weights/<parameter>`` and ``grads/<parameter>`` (``bins`` buckets each),
      which ``TensorboardWriter`` writes.

    It reads the gradients in ``after_backward``: complete, unscaled and not clipped, with the
    weights the iteration's forward pass used. The statistics are computed on the parameters'
    device and copied to the host once per kind. Gradients and weights are not changed.
    """

    def __init__(self, model: nn.Module, period: int, bins: int = DEFAULT_HISTOGRAM_BINS):
        self._model = unwrap_model(model)
        self._period = period
        self._bins = bins

    def after_backward(self) -> None:
        if self._period <= 0 or self.trainer.iter % self._period != 0 or not comm.is_main_process():
            return
        named = [(name, p) for name, p in self._model.named_parameters() if p.requires_grad and p.grad is not None]
        if not named:
            return
        storage = get_event_storage()
        with torch.no_grad():
            self._record_gradient_norms(storage, named)
            storage.put_histograms({f"weights/{name}": p for name, p in named}, self._bins)
            storage.put_histograms({f"grads/{name}": p.grad for name, p in named}, self._bins)

    @staticmethod
    def _record_gradient_norms(storage: EventStorage, named: Sequence[tuple]) -> None:
        squares = torch.stack([p.grad.detach().float().pow(2).sum().to(named[0][1].device) for _, p in named])
        layers: Dict[str, int] = {}
        index = torch.tensor([layers.setdefault(layer_name(name), len(layers)) for name, _ in named])
        per_layer = torch.zeros(len(layers), dtype=squares.dtype, device=squares.device)
        per_layer.index_add_(0, index.to(squares.device), squares)
        norms = torch.cat([per_layer, squares.sum()[None]]).sqrt().cpu().tolist()
        values = {f"grad_norm/{layer}": norm for layer, norm in zip(layers, norms)}
        values["grad_norm/total"] = norms[-1]
        storage.put_scalars(smoothing_hint=False, **values)


class PeriodicWriter(HookBase):
    """Calls every writer after every ``period`` iterations, after the last iteration, and at
    the end of training (then closes them). The storage's images and histograms are cleared
    after each round of writes, also when no writer took them."""

    def __init__(self, writers: Sequence[EventWriter], period: int = 20):
        self._writers = list(writers)
        self._period = period

    def _write(self) -> None:
        for writer in self._writers:
            writer.write()
        storage = get_event_storage()
        storage.clear_images()
        storage.clear_histograms()

    def after_step(self) -> None:
        if _after_period_or_last(self.trainer, self._period):
            self._write()

    def after_train(self) -> None:
        self._write()
        for writer in self._writers:
            writer.close()
