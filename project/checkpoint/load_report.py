"""What loading a checkpoint did to each model tensor, as data and as a compact table."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from tabulate import tabulate

Shape = Tuple[int, ...]

# Keys are grouped by their first few dotted components, e.g. "backbone.bottom_up.res4".
GROUP_DEPTH = 3


def group_name(key: str, depth: int = GROUP_DEPTH) -> str:
    """The first ``depth`` components of ``key``, never including its last (tensor) name."""
    parts = key.split(".")
    return ".".join(parts[: max(1, min(depth, len(parts) - 1))])


@dataclass
class LoadReport:
    """Outcome of loading ``source`` into a model.

    Attributes:
        loaded: model keys that received a checkpoint value.
        missing: model keys absent from the checkpoint (they keep their initialisation).
        unexpected: checkpoint keys the model has no use for (skipped).
        incorrect_shapes: ``(model key, checkpoint shape, model shape)`` for keys present in
            both whose shapes differ; the model keeps its initialisation for them.
    """

    source: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    incorrect_shapes: List[Tuple[str, Shape, Shape]] = field(default_factory=list)

    def rows(self) -> List[Tuple[str, str, int, str]]:
        """``(status, module group, number of tensors, tensor names)`` per status and group."""
        statuses = {
            "loaded": self.loaded,
            "shape mismatch (kept init)": [key for key, _, _ in self.incorrect_shapes],
            "missing (kept init)": self.missing,
            "skipped (not in model)": self.unexpected,
        }
        rows = []
        for status, keys in statuses.items():
            groups: Dict[str, List[str]] = defaultdict(list)
            for key in keys:
                groups[group_name(key)].append(key.rsplit(".", 1)[-1])
            for group, names in sorted(groups.items()):
                rows.append((status, group, len(names), ", ".join(sorted(set(names)))))
        return rows

    def format_table(self) -> str:
        """The rows as a plain-text table headed by the checkpoint's name."""
        table = tabulate(self.rows(), headers=["status", "module", "tensors", "names"])
        return f"Loaded {self.source}:\n{table}"
