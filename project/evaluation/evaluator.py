"""The evaluator protocol (``reset`` / ``process`` / ``evaluate``) and ``inference_on_dataset``,
which runs a model over a data loader and feeds an evaluator, with Detectron2's semantics."""

from __future__ import annotations

import datetime
import logging
import time
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import torch
from torch import nn

from ..utils.comm import get_world_size, is_main_process

logger = logging.getLogger(__name__)

# Seconds between two progress lines of ``inference_on_dataset``.
_PROGRESS_LOG_PERIOD_S = 10.0


class DatasetEvaluator:
    """Accumulates model inputs/outputs over a dataset and turns them into metrics.

    ``reset()`` starts a new round, ``process(inputs, outputs)`` is called once per batch (lists
    of the same length: one input dict and one output dict per image), and ``evaluate()``
    returns ``{task: {metric: value}}``, e.g. ``{"bbox": {"AP": 40.1, ...}}``.

    ``accepts_cropped_masks``: whether ``process`` also takes ``pred_masks`` as a
    ``CroppedBitMasks`` (each mask kept around its box) instead of an (N, H, W) tensor. When
    every evaluator does, ``inference_on_dataset`` asks the model for that form, which keeps
    large images' masks small.
    """

    accepts_cropped_masks: bool = False

    def reset(self) -> None:
        """Forget everything processed so far."""

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Record one batch: ``inputs[i]`` is the model input of image i, ``outputs[i]`` its output."""

    def evaluate(self) -> Optional[Dict[str, Any]]:
        """Metrics over everything processed since the last ``reset()``."""
        return None


class DatasetEvaluators(DatasetEvaluator):
    """Several evaluators behind one: each call goes to all of them; results are merged."""

    def __init__(self, evaluators: Sequence[DatasetEvaluator]):
        super().__init__()
        self._evaluators = list(evaluators)
        self.accepts_cropped_masks = all(getattr(e, "accepts_cropped_masks", False) for e in self._evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> OrderedDict[str, Any]:
        """Union of the evaluators' results (on the main process); two evaluators reporting the
        same task is an error."""
        results: OrderedDict[str, Any] = OrderedDict()
        for evaluator in self._evaluators:
            result = evaluator.evaluate()
            if not is_main_process() or result is None:
                continue
            for task, metrics in result.items():
                if task in results:
                    raise ValueError(
                        f"two evaluators both report results for '{task}' "
                        f"(the second is {type(evaluator).__name__}); task names must be unique"
                    )
                results[task] = metrics
        return results


@contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the duration of the block, then restore its training flag."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def pred_mask_format(model: Any, mask_format: str) -> Iterator[None]:
    """Have ``model`` return ``pred_masks`` in ``mask_format`` (see ``TEST.PRED_MASK_FORMAT``)
    for the duration of the block, then restore its own; a model without a
    ``pred_mask_format`` attribute is left as it is."""
    if not hasattr(model, "pred_mask_format"):
        yield
        return
    own = model.pred_mask_format
    model.pred_mask_format = mask_format
    try:
        yield
    finally:
        model.pred_mask_format = own


def _as_evaluator(evaluator: Union[DatasetEvaluator, Sequence[DatasetEvaluator], None]) -> DatasetEvaluator:
    if evaluator is None:
        return DatasetEvaluators([])
    if isinstance(evaluator, DatasetEvaluator):
        return evaluator
    return DatasetEvaluators(evaluator)


def inference_on_dataset(
    model: Any,
    data_loader: Iterable[List[Dict[str, Any]]],
    evaluator: Union[DatasetEvaluator, Sequence[DatasetEvaluator], None],
) -> Dict[str, Any]:
    """Run ``model`` on every batch of ``data_loader`` and return ``evaluator.evaluate()``.

    An ``nn.Module`` runs in eval mode (its training flag is restored afterwards), always under
    ``torch.no_grad()``. Each batch is a list of input dicts and the model returns one output
    dict per input. Timing is logged per image, leaving out the first batches as warm-up
    (``min(5, number of batches - 1)``). ``evaluator`` may be None (timing only) or a list.
    When every evaluator accepts cropped masks (``COCOEvaluator`` does; with no evaluator
    nothing reads them), a model with a ``pred_mask_format`` attribute returns its masks as
    crops meanwhile, so that no full-image mask is allocated.
    Returns ``{}`` on processes other than the main one, or when the evaluator returns None.
    """
    evaluator = _as_evaluator(evaluator)
    evaluator.reset()
    total_batches = len(data_loader) if hasattr(data_loader, "__len__") else None  # type: ignore[arg-type]
    logger.info(
        "Start inference on %s batches on %d process(es)",
        total_batches if total_batches is not None else "an unknown number of",
        get_world_size(),
    )
    num_warmup = min(5, total_batches - 1) if total_batches else 5

    start_time = time.perf_counter()
    compute_time = 0.0
    timed_images = 0
    num_batches = 0
    num_images = 0
    last_log = time.perf_counter()
    with ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        if evaluator.accepts_cropped_masks:
            stack.enter_context(pred_mask_format(model, "crop"))
        stack.enter_context(torch.no_grad())
        for batch_index, inputs in enumerate(data_loader):
            if batch_index == num_warmup:
                start_time = time.perf_counter()
                compute_time = 0.0
                timed_images = 0
            compute_start = time.perf_counter()
            outputs = model(inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            compute_time += time.perf_counter() - compute_start
            evaluator.process(inputs, outputs)

            num_batches += 1
            num_images += len(inputs)
            timed_images += len(inputs)
            now = time.perf_counter()
            if batch_index >= num_warmup and now - last_log > _PROGRESS_LOG_PERIOD_S:
                last_log = now
                seconds_per_image = (now - start_time) / timed_images
                eta = ""
                if total_batches:
                    remaining_s = seconds_per_image * len(inputs) * (total_batches - num_batches)
                    eta = f", ETA {datetime.timedelta(seconds=int(remaining_s))}"
                logger.info(
                    "Inference done %d/%s batches: %.4f s/img (model %.4f s/img)%s",
                    num_batches,
                    total_batches if total_batches is not None else "?",
                    seconds_per_image,
                    compute_time / timed_images,
                    eta,
                )

    total_time = time.perf_counter() - start_time
    if num_batches > num_warmup and timed_images > 0:
        logger.info(
            "Total inference time: %s for %d images after %d warm-up batches "
            "(%.6f s/img per process, model alone %.6f s/img, on %d process(es))",
            datetime.timedelta(seconds=int(total_time)),
            timed_images,
            num_warmup,
            total_time / timed_images,
            compute_time / timed_images,
            get_world_size(),
        )
    else:
        logger.info("Inference on %d images finished (too few batches to time after warm-up)", num_images)

    results = evaluator.evaluate()
    return results if results is not None else {}
