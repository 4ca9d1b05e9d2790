"""Training metrics: ``EventStorage`` collects scalars per iteration, and images and
histograms until they are written; writers send them to ``metrics.jsonl``, TensorBoard and the
console.

Inside ``with EventStorage(start_iter) as storage:`` any code can call
``get_event_storage().put_scalar("name", value)`` (or ``put_image``, ``put_histogram``); the
value is recorded at ``storage.iter``.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Mapping, NamedTuple, Optional, TextIO, Tuple

import torch
from fvcore.common.history_buffer import HistoryBuffer

from . import comm

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


# Buckets of the histograms recorded by EventStorage.put_histogram(s) unless told otherwise:
# TensorBoard draws about 30, and every bucket is two numbers per histogram in the event file.
DEFAULT_HISTOGRAM_BINS = 64


class TrainingImage(NamedTuple):
    """A picture recorded by ``EventStorage.put_image``: ``image`` is (3, H, W) RGB uint8 on the CPU."""

    name: str
    image: torch.Tensor
    iteration: int


@dataclass(frozen=True)
class HistogramRecord:
    """The histogram of a tensor's finite values, recorded at ``iteration``, in TensorBoard's raw
    form: ``bucket_counts[i]`` values fall in bucket ``i``, whose right edge is
    ``bucket_limits[i]`` (the first bucket starts at ``min``)."""

    name: str
    iteration: int
    min: float
    max: float
    num: int
    sum: float
    sum_squares: float
    bucket_limits: List[float]
    bucket_counts: List[float]


_HISTOGRAM_STATS = 5  # min, max, count, sum, sum of squares; then the bucket counts


def _histogram_row(values: torch.Tensor, bins: int) -> torch.Tensor:
    """``[min, max, count, sum, sum of squares, count of each of `bins` equal buckets]`` of the
    finite values of ``values``, as one float64 tensor on their device, computed without waiting
    for the device (the caller copies all rows to the host at once)."""
    x = values.detach().reshape(-1).float()
    if x.numel() == 0:
        return torch.zeros(_HISTOGRAM_STATS + bins, dtype=torch.float64, device=x.device)
    finite = torch.isfinite(x)
    kept = x.masked_fill(~finite, 0.0)
    any_finite = finite.any()
    low = torch.where(any_finite, x.masked_fill(~finite, math.inf).amin(), 0.0)
    high = torch.where(any_finite, x.masked_fill(~finite, -math.inf).amax(), 0.0)
    span = high - low
    scale = torch.where(span > 0, bins / span.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
    position = ((kept - low) * scale).nan_to_num_(0.0, posinf=bins - 1, neginf=0.0)  # a span near 0: inf * 0
    index = position.floor_().clamp_(0, bins - 1).long()
    index = index.masked_fill_(~finite, bins)  # non-finite values go to a bucket dropped below
    counts = torch.bincount(index, minlength=bins + 1)[:bins]
    stats = [low, high, finite.sum(), kept.sum(), (kept * kept).sum()]
    return torch.cat([torch.stack([value.double() for value in stats]), counts.double()])


def _histogram_record(name: str, iteration: int, row: List[float], bins: int) -> Optional[HistogramRecord]:
    """The record of one row of ``_histogram_row``; None when it counted no finite value."""
    low, high, num, total, squares = row[:_HISTOGRAM_STATS]
    if num == 0:
        return None
    if high > low:
        limits = [low + (high - low) * (i + 1) / bins for i in range(bins)]
        counts = row[_HISTOGRAM_STATS:]
    else:  # one value throughout: a single bucket
        limits, counts = [high], [num]
    return HistogramRecord(name, iteration, low, high, int(num), total, squares, limits, counts)


def _as_image_tensor(name: str, image) -> torch.Tensor:
    """``image`` as a (3, H, W) uint8 CPU tensor: it may be a tensor or array, (3, H, W),
    (1, H, W) or (H, W), with floats in [0, 1] or uint8 values."""
    tensor = torch.as_tensor(image).detach().cpu()
    if tensor.dim() == 2:
        tensor = tensor[None]
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3) or tensor.shape[1] == 0 or tensor.shape[2] == 0:
        shape = tuple(tensor.shape)
        raise ValueError(f"put_image('{name}'): expected a (3, H, W) or (1, H, W) image, got shape {shape}")
    if tensor.is_floating_point():
        tensor = (tensor.float().clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8)
    elif tensor.dtype != torch.uint8:
        raise ValueError(f"put_image('{name}'): expected floats in [0, 1] or uint8, got {tensor.dtype}")
    return tensor.expand(3, -1, -1).contiguous()


class EventStorage:
    """Per-name histories of scalar metrics, each value tagged with the iteration it belongs to;
    and the images and histograms recorded since the last write (a writer that sends them on,
    ``TensorboardWriter``, clears them).

    ``smoothing_hint`` tells writers whether a metric is noisy (report the median over a
    window, e.g. losses) or exact (report the latest value, e.g. the learning rate or AP).
    """

    def __init__(self, start_iter: int = 0):
        self.start_iter = start_iter
        self.iter = start_iter
        self._history: Dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest: Dict[str, Tuple[float, int]] = {}
        self._images: List[TrainingImage] = []
        self._histograms: List[HistogramRecord] = []

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

    def put_image(self, name: str, image) -> None:
        """Record a picture named ``name`` at the current iteration, for the next write:
        (3, H, W) RGB or (1, H, W) / (H, W) grey, floats in [0, 1] or uint8 (a tensor or an
        array, on any device). Kept as a uint8 copy on the CPU until cleared."""
        self._images.append(TrainingImage(name, _as_image_tensor(name, image), self.iter))

    def has_image(self, name: str) -> bool:
        """Whether a picture named ``name`` was recorded at the current iteration and not yet cleared."""
        return any(image.name == name and image.iteration == self.iter for image in self._images)

    def images(self) -> List[TrainingImage]:
        """The pictures recorded since the last ``clear_images``, in order."""
        return list(self._images)

    def clear_images(self) -> None:
        self._images = []

    def put_histogram(self, name: str, values: torch.Tensor, bins: int = DEFAULT_HISTOGRAM_BINS) -> None:
        """Record the histogram of the finite values of ``values`` (any shape and device) in
        ``bins`` equal buckets between their minimum and maximum, at the current iteration.
        The histogram is computed now; ``values`` is not kept. Nothing is recorded when no value
        is finite."""
        self.put_histograms({name: values}, bins)

    def put_histograms(self, tensors: Mapping[str, torch.Tensor], bins: int = DEFAULT_HISTOGRAM_BINS) -> None:
        """``put_histogram`` for each ``{name: values}``, waiting for the device once for all."""
        if bins < 1:
            raise ValueError(f"a histogram needs at least one bin, got bins={bins}")
        if not tensors:
            return
        rows = [_histogram_row(values, bins) for values in tensors.values()]
        device = rows[0].device
        table = torch.stack([row.to(device) for row in rows]).cpu().tolist()
        for name, row in zip(tensors, table):
            record = _histogram_record(name, self.iter, row, bins)
            if record is not None:
                self._histograms.append(record)

    def histograms(self) -> List[HistogramRecord]:
        """The histograms recorded since the last ``clear_histograms``, in order."""
        return list(self._histograms)

    def clear_histograms(self) -> None:
        self._histograms = []

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


def storage_for_training_image(name: str, period: int) -> Optional[EventStorage]:
    """The open storage when the training picture ``name`` is due now, else None.

    It is due every ``period`` iterations (``period <= 0``: never), counted from iteration 0
    (Detectron2's ``VIS_PERIOD``), in training passes only: inside an ``EventStorage``, with
    gradients enabled (not the validation loss or the batch-norm statistics passes, which run
    under ``torch.no_grad()``), on the main process (the only one that writes), and once per
    iteration (gradient accumulation runs several forward passes per iteration).
    """
    if period <= 0:
        return None
    storage = current_event_storage()
    if storage is None or storage.iter % period != 0 or not torch.is_grad_enabled() or not comm.is_main_process():
        return None
    return None if storage.has_image(name) else storage


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
    """Writes every new scalar, and the images and histograms the storage holds, as TensorBoard
    events under ``log_dir``, each at the iteration it was recorded at; then clears the
    storage's images and histograms (each is written once)."""

    def __init__(self, log_dir: str, window_size: int = 20):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir)
        self._tracker = _NewScalarsTracker(window_size)

    def write(self) -> None:
        storage = get_event_storage()
        for iteration, values in self._tracker.new_scalars().items():
            for name, value in values.items():
                self._writer.add_scalar(name, value, iteration)
        for image in storage.images():
            self._writer.add_image(image.name, image.image, image.iteration, dataformats="CHW")
        storage.clear_images()
        for h in storage.histograms():
            self._writer.add_histogram_raw(
                h.name, h.min, h.max, h.num, h.sum, h.sum_squares, h.bucket_limits, h.bucket_counts, h.iteration
            )
        storage.clear_histograms()
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
