"""Training metrics: ``EventStorage`` collects scalars per iteration; writers send them to
``metrics.jsonl``, TensorBoard and the console.

Inside ``with EventStorage(start_iter) as storage:`` any code can call
``get_event_storage().put_scalar("name", value)``; the value is recorded at ``storage.iter``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from collections import defaultdict
from typing import Dict, List, Optional, TextIO, Tuple

import torch
from fvcore.common.history_buffer import HistoryBuffer

logger = logging.getLogger(__name__)

_STORAGE_STACK: List[EventStorage] = []


def get_event_storage() -> EventStorage:
    """The innermost ``EventStorage`` currently open (raises outside any)."""
    if not _STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage(): no EventStorage is open. Call it within `with EventStorage(start_iter):` "
            "(the trainer opens one around training), or use current_event_storage(), which gives None outside"
        )
    return _STORAGE_STACK[-1]


def current_event_storage() -> Optional[EventStorage]:
    """The innermost open ``EventStorage``, or None outside any: model code reports its
    training statistics through this, so that a model trained by user code needs none."""
    return _STORAGE_STACK[-1] if _STORAGE_STACK else None


def has_event_storage() -> bool:
    """Whether code runs inside an open ``EventStorage`` (so ``get_event_storage()`` succeeds)."""
    return current_event_storage() is not None


class EventStorage:
    """Per-name histories of scalar metrics, each value tagged with the iteration it belongs to.

    ``smoothing_hint`` tells writers whether a metric is noisy (report the median over a
    window, e.g. losses) or exact (report the latest value, e.g. the learning rate or AP).
    """

    def __init__(self, start_iter: int = 0):
        self.start_iter = start_iter
        self.iter = start_iter
        self._history: Dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest: Dict[str, Tuple[float, int]] = {}

    def step(self) -> None:
        """Advance to the next iteration: values recorded from now on are tagged ``iter + 1``.
        (Setting ``storage.iter`` directly does the same for any iteration.)"""
        self.iter += 1

    def put_scalar(self, name: str, value: float, smoothing_hint: bool = True) -> None:
        """Record ``value`` for ``name`` at the current iteration."""
        value = float(value.detach().cpu()) if isinstance(value, torch.Tensor) else float(value)
        self._history[name].update(value, self.iter)
        self._latest[name] = (value, self.iter)
        previous_hint = self._smoothing_hints.setdefault(name, smoothing_hint)
        if previous_hint != smoothing_hint:
            raise ValueError(f"metric '{name}' was recorded with smoothing_hint={previous_hint} before")

    def put_scalars(self, *, smoothing_hint: bool = True, **values: float) -> None:
        for name, value in values.items():
            self.put_scalar(name, value, smoothing_hint)

    def history(self, name: str) -> HistoryBuffer:
        if name not in self._history:
            raise KeyError(f"no metric '{name}' recorded; recorded: {sorted(self._history)}")
        return self._history[name]

    def histories(self) -> Dict[str, HistoryBuffer]:
        return dict(self._history)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """``{name: (latest value, iteration it was recorded at)}``."""
        return dict(self._latest)

    def latest_with_smoothing_hint(self, window_size: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like :meth:`latest`, but smoothed metrics report their median over the last
        ``window_size`` values."""
        return {
            name: (self._history[name].median(window_size) if self._smoothing_hints[name] else value, iteration)
            for name, (value, iteration) in self._latest.items()
        }

    def __enter__(self) -> EventStorage:
        _STORAGE_STACK.append(self)
        return self

    def __exit__(self, *exc) -> None:
        if not _STORAGE_STACK or _STORAGE_STACK[-1] is not self:
            raise RuntimeError("EventStorage contexts were exited out of order")
        _STORAGE_STACK.pop()


class EventWriter:
    """Something that periodically reports the storage's metrics."""

    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _NewScalarsTracker:
    """Remembers the last iteration reported, to write each (metric, iteration) only once."""

    def __init__(self, window_size: int):
        self._window_size = window_size
        self._last_written = -1

    def new_scalars(self) -> Dict[int, Dict[str, float]]:
        """``{iteration: {name: value}}`` of the values recorded since the previous call."""
        storage = get_event_storage()
        by_iteration: Dict[int, Dict[str, float]] = defaultdict(dict)
        for name, (value, iteration) in storage.latest_with_smoothing_hint(self._window_size).items():
            if iteration > self._last_written:
                by_iteration[iteration][name] = value
        if by_iteration:
            self._last_written = max(by_iteration)
        return dict(sorted(by_iteration.items()))


class JSONWriter(EventWriter):
    """Appends one JSON object per iteration to ``json_file`` (``metrics.jsonl``):
    ``{"iteration": i, "<metric>": value, ...}``; smoothed metrics are window medians."""

    def __init__(self, json_file: str, window_size: int = 20):
        os.makedirs(os.path.dirname(os.path.abspath(json_file)), exist_ok=True)
        self._file: TextIO = open(json_file, "a")
        self._tracker = _NewScalarsTracker(window_size)

    def write(self) -> None:
        for iteration, values in self._tracker.new_scalars().items():
            self._file.write(json.dumps({"iteration": iteration, **values}, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorboardWriter(EventWriter):
    """Writes every new scalar as a TensorBoard event under ``log_dir``."""

    def __init__(self, log_dir: str, window_size: int = 20):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir)
        self._tracker = _NewScalarsTracker(window_size)

    def write(self) -> None:
        for iteration, values in self._tracker.new_scalars().items():
            for name, value in values.items():
                self._writer.add_scalar(name, value, iteration)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class CommonMetricPrinter(EventWriter):
    """Reports progress on the console: a tqdm bar with ETA and the main metrics when
    ``progress_bar`` (default: stderr is a terminal), else one log line per call:
    ``eta: 0:12:34  iter: 199  total_loss: 1.234  loss_cls: ...  time: 0.51  data_time: 0.01  lr: 0.02``.
    """

    def __init__(self, max_iter: int, window_size: int = 20, progress_bar: Optional[bool] = None):
        self._max_iter = max_iter
        self._window_size = window_size
        self._progress_bar = sys.stderr.isatty() if progress_bar is None else progress_bar
        self._bar = None

    def _eta_seconds(self, iteration: int) -> Optional[float]:
        storage = get_event_storage()
        if "time" not in storage.histories():
            return None
        return storage.history("time").median(1000) * max(0, self._max_iter - iteration - 1)

    def _metrics(self) -> Dict[str, float]:
        storage = get_event_storage()
        smoothed = storage.latest_with_smoothing_hint(self._window_size)
        return {name: value for name, (value, _) in smoothed.items()}

    def write(self) -> None:
        iteration = get_event_storage().iter
        if iteration >= self._max_iter:
            return  # after training: the last iteration was reported already
        metrics = self._metrics()
        losses = {name: value for name, value in metrics.items() if "loss" in name}
        if self._progress_bar:
            self._update_bar(iteration, losses, metrics)
            return
        eta = self._eta_seconds(iteration)
        parts = [f"eta: {datetime.timedelta(seconds=int(eta))}" if eta is not None else "eta: ?"]
        parts.append(f"iter: {iteration}")
        parts += [f"{name}: {value:.4g}" for name, value in sorted(losses.items())]
        for name in ("time", "data_time"):
            if name in metrics:
                parts.append(f"{name}: {metrics[name]:.4f}")
        if "lr" in metrics:
            parts.append(f"lr: {metrics['lr']:.5g}")
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            parts.append(f"max_mem: {torch.cuda.max_memory_allocated() / 2**20:.0f}M")
        logger.info("  ".join(parts))

    def _update_bar(self, iteration: int, losses: Dict[str, float], metrics: Dict[str, float]) -> None:
        from tqdm import tqdm

        if self._bar is None:
            start = get_event_storage().start_iter
            self._bar = tqdm(total=self._max_iter, initial=start, desc="train", unit="it", dynamic_ncols=True)
        self._bar.update(iteration + 1 - self._bar.n)
        postfix = {"loss": f"{losses['total_loss']:.3f}"} if "total_loss" in losses else {}
        if "lr" in metrics:
            postfix["lr"] = f"{metrics['lr']:.3g}"
        self._bar.set_postfix(postfix, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
