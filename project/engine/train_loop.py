"""The training loop: ``TrainerBase`` runs iterations between hooks; ``SimpleTrainer`` makes
one iteration of data -> losses -> backward -> optimizer step, with AMP, gradient accumulation
and gradient clipping."""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
import weakref
from typing import Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..utils import comm
from ..utils.events import EventStorage, get_event_storage

logger = logging.getLogger(__name__)


class HookBase:
    """Extends a :class:`TrainerBase` at five points: ``before_train`` once, then in each
    iteration ``before_step``, ``after_backward`` and ``after_step``, then ``after_train`` once
    (also when training fails). Hooks are called in the order they were registered.

    Registration sets ``self.trainer``, a weak proxy to the trainer. Put periodic work
    (checkpoints, evaluation, logging) in ``after_step``: iteration timers measure from
    ``before_step``, which should return at once.
    """

    trainer: TrainerBase

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_backward(self) -> None:
        """Called once per iteration when the step's gradients are complete and final: every
        backward pass (and accumulated batch) done, averaged over processes, unscaled from AMP,
        not yet clipped, and the weights not yet updated (:class:`SimpleTrainer` calls it; a
        trainer with another ``run_step`` may not). Hooks must not change the gradients."""

    def after_step(self) -> None:
        pass


class TrainerBase:
    """An iteration loop with hooks and an :class:`EventStorage` open during training.

    ``iter`` is the current iteration (0-based), ``start_iter`` the first one run (> 0 after
    resuming), ``max_iter`` one past the last.
    """

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage: Optional[EventStorage] = None

    def register_hooks(self, hooks: Sequence[Optional[HookBase]]) -> None:
        """Append ``hooks`` (None entries are skipped); they run in the order given."""
        for hook in hooks:
            if hook is None:
                continue
            if not isinstance(hook, HookBase):
                raise TypeError(f"expected a HookBase, got {type(hook).__name__}")
            hook.trainer = weakref.proxy(self)
            self._hooks.append(hook)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter, ..., max_iter - 1``. ``after_train`` hooks run even
        when an iteration raises; the exception is logged (where it happened, and its message)
        and re-raised for the caller to report (``train_net.py`` prints a user error's message
        alone, anything else with its traceback)."""
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                self._run_iterations()
            except Exception as error:
                logger.error("Training stopped in iteration %d by %s: %s", self.iter, type(error).__name__, error)
                raise
            finally:
                self.after_train()

    def _run_iterations(self) -> None:
        """Iterations ``iter`` to ``max_iter - 1``; afterwards ``iter == max_iter`` (also when a
        resumed run starts past it), which hooks that run after training read."""
        while self.iter < self.max_iter:
            self.before_step()
            self.run_step()
            self.after_step()
            self.iter += 1
        self.iter = self.max_iter

    def before_train(self) -> None:
        for hook in self._hooks:
            hook.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.after_train()

    def before_step(self) -> None:
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.before_step()

    def after_backward(self) -> None:
        for hook in self._hooks:
            hook.after_backward()

    def after_step(self) -> None:
        for hook in self._hooks:
            hook.after_step()

    def run_step(self) -> None:
        raise NotImplementedError


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (CPU for an empty model)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


class SimpleTrainer(TrainerBase):
    """One optimizer step per iteration, over ``accumulation_steps`` batches of
    ``data_loader`` (each a list of model inputs) whose loss dicts are summed. The loader may
    be given (or replaced) later, by assigning ``data_loader`` before training.

    The loss of each batch is divided by ``accumulation_steps``, so the gradient is the mean
    over the batches; with ``DistributedDataParallel``, gradients are averaged across
    processes once per step (``no_sync`` on the other batches). With ``amp``, the forward pass
    runs under float16 autocast and the backward through a ``GradScaler``; AMP needs CUDA, and
    on other devices it is turned off with a warning (CPU float16 autocast is slow and its
    half-precision losses would need a scaler CPUs do not have). ``grad_clipper`` (see
    ``project.solver.build_gradient_clipper``) sees unscaled gradients; so do the hooks'
    ``after_backward``, called before clipping.

    Metrics recorded each iteration (averaged over processes): every loss, ``total_loss``
    and ``data_time`` (seconds spent waiting for data).
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Optional[Iterable[List[dict]]],
        optimizer: torch.optim.Optimizer,
        *,
        amp: bool = False,
        accumulation_steps: int = 1,
        grad_clipper=None,
    ):
        super().__init__()
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        model.train()
        self.model = model
        self.data_loader = data_loader
        self.optimizer = optimizer
        self.accumulation_steps = accumulation_steps
        self.grad_clipper = grad_clipper
        self._device_type = model_device(model).type
        if amp and self._device_type != "cuda":
            logger.warning(
                "SOLVER.AMP.ENABLED is set but the model is on %s; AMP needs CUDA, training in float32",
                self._device_type,
            )
            amp = False
        self.amp = amp
        self.grad_scaler: Optional[torch.amp.GradScaler] = torch.amp.GradScaler("cuda") if amp else None

    @property
    def data_loader(self) -> Optional[Iterable[List[dict]]]:
        return self._data_loader

    @data_loader.setter
    def data_loader(self, data_loader: Optional[Iterable[List[dict]]]) -> None:
        """A new loader is read from its start at the next step."""
        self._data_loader = data_loader
        self._data_iter = None

    def _next_batch(self) -> List[dict]:
        if self._data_iter is None:
            if self._data_loader is None:
                raise RuntimeError("SimpleTrainer has no data_loader; assign one before training")
            # Starting the loader draws a base seed from torch's generator; keeping that draw out
            # of the training stream lets a resumed run's stream match an uninterrupted one's.
            with torch.random.fork_rng(devices=[]):
                self._data_iter = iter(self._data_loader)
                return next(self._data_iter)
        return next(self._data_iter)

    def run_step(self) -> None:
        if not self.model.training:
            raise RuntimeError("SimpleTrainer.run_step: the model was put in eval mode; call model.train()")
        self.optimizer.zero_grad(set_to_none=True)
        loss_sums: Dict[str, torch.Tensor] = {}
        data_time = 0.0
        for micro_step in range(self.accumulation_steps):
            start = time.perf_counter()
            data = self._next_batch()
            data_time += time.perf_counter() - start
            defer_sync = isinstance(self.model, DistributedDataParallel) and micro_step < self.accumulation_steps - 1
            with self.model.no_sync() if defer_sync else contextlib.nullcontext():
                with torch.autocast(self._device_type, dtype=torch.float16, enabled=self.amp):
                    loss_dict = self.model(data)
                if not isinstance(loss_dict, dict) or not loss_dict:
                    raise TypeError(f"in training the model must return a non-empty dict of losses, got {loss_dict!r}")
                loss = sum(value.float() for value in loss_dict.values()) / self.accumulation_steps
                if self.grad_scaler is not None:
                    self.grad_scaler.scale(loss).backward()
                else:
                    loss.backward()
            for name, value in loss_dict.items():
                loss_sums[name] = loss_sums.get(name, 0.0) + value.detach().float() / self.accumulation_steps
        self._write_metrics(loss_sums, data_time)
        self._apply_gradients()

    def _apply_gradients(self) -> None:
        if self.grad_scaler is not None:
            # In place, once: the scaler's step then skips its own unscaling.
            self.grad_scaler.unscale_(self.optimizer)
        self.after_backward()
        if self.grad_clipper is not None:
            self.grad_clipper(self.model.parameters())
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()

    def _write_metrics(self, loss_dict: Dict[str, torch.Tensor], data_time: float) -> None:
        total = sum(loss_dict.values())
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"training diverged at iteration {self.iter}: the total loss is not finite ("
                + ", ".join(f"{name}={float(value):.4g}" for name, value in sorted(loss_dict.items()))
                + "); try a lower SOLVER.BASE_LR, a longer SOLVER.WARMUP_ITERS or SOLVER.CLIP_GRADIENTS"
            )
        device = total.device
        metrics = {name: value.to(device) for name, value in loss_dict.items()}
        metrics["data_time"] = torch.tensor(data_time, device=device)
        metrics = comm.reduce_dict(metrics, average=True)
        if comm.is_main_process():
            storage = get_event_storage()
            storage.put_scalar("data_time", metrics.pop("data_time"))
            storage.put_scalar("total_loss", sum(metrics.values()))
            storage.put_scalars(**metrics)
