"""Printing evaluation results: small metric tables and Detectron2's ``copypaste`` CSV lines."""

from __future__ import annotations

import itertools
import logging
from typing import Dict, Mapping, Sequence, Tuple

from tabulate import tabulate

logger = logging.getLogger(__name__)


def create_small_table(metrics: Mapping[str, float]) -> str:
    """One-row table: metric names as headers, values with 3 decimals."""
    return tabulate(
        [list(metrics.values())], headers=list(metrics.keys()), tablefmt="pipe", floatfmt=".3f", numalign="left"
    )


def create_per_category_table(per_category: Sequence[Tuple[str, float]], value_name: str = "AP") -> str:
    """``(category, value)`` pairs laid out in up to three column pairs, to keep long lists short."""
    num_columns = min(6, 2 * len(per_category))
    flat = list(itertools.chain.from_iterable(per_category))
    rows = itertools.zip_longest(*[flat[i::num_columns] for i in range(num_columns)])
    return tabulate(
        rows, headers=["category", value_name] * (num_columns // 2), tablefmt="pipe", floatfmt=".3f", numalign="left"
    )


def print_csv_format(results: Mapping[str, Mapping[str, float]]) -> None:
    """Log each task's summary metrics (per-category ``AP-<class>`` entries left out) as two
    comma-separated lines, names then values, prefixed ``copypaste:`` like Detectron2."""
    for task, metrics in results.items():
        if not isinstance(metrics, Mapping):
            raise TypeError(
                f"results['{task}'] should be a mapping of metric name to value, got {type(metrics).__name__}"
            )
        summary: Dict[str, float] = {name: value for name, value in metrics.items() if "-" not in name}
        logger.info("copypaste: Task: %s", task)
        logger.info("copypaste: %s", ",".join(summary.keys()))
        logger.info("copypaste: %s", ",".join(f"{value:.4f}" for value in summary.values()))
