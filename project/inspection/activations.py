"""Backbone activations, per stage and per output feature (FPN level): statistics, a few
channels to look at, and flags for layers that died or blew up.

Collected with forward hooks while the model runs, so any registered backbone works: the
stages are found from its module tree (``backbone_stages``) and the feature levels from the
dict its ``forward`` returns. Each hook reduces its output to statistics and ``channels``
feature maps at once, so the full activations are not kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..modeling.backbone import Backbone
from .stats import finite_statistics

# A stage whose outputs are zero at least this often is flagged "dead".
DEAD_ZERO_FRACTION = 0.99
# A stage with an output of at least this magnitude is flagged "exploding".
EXPLODING_MAGNITUDE = 1e4

FLAG_NON_FINITE = "non-finite"
FLAG_DEAD = "dead"
FLAG_EXPLODING = "exploding"

Hook = Callable[[nn.Module, Tuple[Any, ...], Dict[str, Any], Any], None]


@dataclass
class ActivationRecord:
    """One stage's (or feature level's) output, reduced.

    ``name``: the module's path under the backbone (``bottom_up.res3``) for a stage, or the key
    of the backbone's output dict (``p3``) for a feature level; ``kind`` is "stage" or "level";
    ``also`` lists other names of the same tensor (a stage that is also an output). ``shape``:
    the output's shape, (N, C, H, W) for feature maps. Statistics are over the finite values of
    the whole batch (NaN when there are none); ``zero_fraction`` and ``dead_channel_fraction``
    (channels all zero in every image) over all values. ``channels``: for a 4-D output, the
    (k, H, W) float32 maps of the first image's ``channel_indices``, its k channels of largest
    spread. ``flags``: some of "non-finite", "dead", "exploding".
    """

    name: str
    kind: str
    order: int
    shape: Tuple[int, ...]
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    dead_channel_fraction: float
    num_nan: int
    num_inf: int
    channels: Optional[np.ndarray]
    channel_indices: List[int]
    flags: List[str] = field(default_factory=list)
    also: List[str] = field(default_factory=list)

    def summary(self) -> Dict[str, Any]:
        """The statistics as JSON-ready values (None for NaN)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "also": list(self.also),
            "shape": list(self.shape),
            "mean": _finite_or_none(self.mean),
            "std": _finite_or_none(self.std),
            "min": _finite_or_none(self.min),
            "max": _finite_or_none(self.max),
            "zero_fraction": round(self.zero_fraction, 6),
            "dead_channel_fraction": round(self.dead_channel_fraction, 6),
            "num_nan": self.num_nan,
            "num_inf": self.num_inf,
            "flags": list(self.flags),
            "montage_channels": list(self.channel_indices),
        }


def _finite_or_none(value: float) -> Optional[float]:
    return float(value) if math.isfinite(value) else None


def backbone_stages(backbone: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The modules whose outputs count as the backbone's stages, as (path under ``backbone``,
    module), in registration order: the direct children of the bottom-up network when the
    backbone wraps one (a child that is itself a ``Backbone``, as FPN's ``bottom_up``), else
    the backbone's own direct children. Containers without a forward of their own
    (``ModuleList``, ``ModuleDict``) are left out."""
    inner = [(name, child) for name, child in backbone.named_children() if isinstance(child, Backbone)]
    parent_name, parent = inner[0] if inner else ("", backbone)
    prefix = f"{parent_name}." if parent_name else ""
    return [
        (prefix + name, child)
        for name, child in parent.named_children()
        if not isinstance(child, (nn.ModuleList, nn.ModuleDict))
    ]


def flag_activation(
    record: ActivationRecord,
    dead_zero_fraction: float = DEAD_ZERO_FRACTION,
    exploding_magnitude: float = EXPLODING_MAGNITUDE,
) -> List[str]:
    """The flags ``record`` earns: "non-finite" with any NaN or infinity, "dead" when at least
    ``dead_zero_fraction`` of its values are zero or its finite values are all equal,
    "exploding" when a finite value reaches ``exploding_magnitude`` in magnitude."""
    flags = []
    if record.num_nan or record.num_inf:
        flags.append(FLAG_NON_FINITE)
    constant = math.isfinite(record.std) and record.std == 0.0
    if record.zero_fraction >= dead_zero_fraction or constant:
        flags.append(FLAG_DEAD)
    if max(abs(record.min), abs(record.max)) >= exploding_magnitude and math.isfinite(record.max):
        flags.append(FLAG_EXPLODING)
    return flags


# Channels are ranked for the montage on a grid of about this many positions.
SPREAD_SAMPLE = 4096


@torch.no_grad()
def reduce_activation(name: str, kind: str, order: int, output: torch.Tensor, channels: int) -> ActivationRecord:
    """Statistics of ``output`` and, for a 4-D output, the ``channels`` maps of its first image
    with the largest spread (standard deviation on a grid of about ``SPREAD_SAMPLE``
    positions, NaN counted as 0); no flags yet."""
    x = output.detach()
    stats = finite_statistics(x)
    dead_channels = 0.0
    maps, indices = None, []
    if x.dim() == 4 and x.shape[0] and x.shape[1] and x.shape[2] and x.shape[3]:
        if stats.zero_fraction > 0:
            dead_channels = float((x.abs().amax(dim=(0, 2, 3)) == 0).float().mean())
        step = max(1, math.ceil(math.sqrt(x.shape[2] * x.shape[3] / SPREAD_SAMPLE)))
        grid = torch.nan_to_num(x[0, :, ::step, ::step].float(), nan=0.0, posinf=0.0, neginf=0.0)
        spread = grid.flatten(1).std(dim=1, correction=0) if grid[0].numel() > 1 else grid.flatten(1).abs()[:, 0]
        chosen = torch.argsort(-spread, stable=True)[: min(channels, x.shape[1])]
        indices = [int(i) for i in chosen]
        maps = x[0, chosen].float().cpu().numpy()
    return ActivationRecord(
        name=name,
        kind=kind,
        order=order,
        shape=tuple(int(s) for s in x.shape),
        mean=stats.mean,
        std=stats.std,
        min=stats.min,
        max=stats.max,
        zero_fraction=stats.zero_fraction,
        dead_channel_fraction=dead_channels,
        num_nan=stats.num_nan,
        num_inf=stats.num_inf,
        channels=maps,
        channel_indices=indices,
    )


class ActivationRecorder:
    """Forward hooks that reduce the backbone's stage outputs and output features to
    ``ActivationRecord``s, in the order they are computed (``records``).

    ``modules`` maps names to further modules to record (any module of the model). A tensor
    seen twice (a stage that is also an output feature) is recorded once, with both names.
    ``channels`` is the number of feature maps kept per record for the montage.
    """

    def __init__(
        self,
        backbone: nn.Module,
        modules: Optional[Mapping[str, nn.Module]] = None,
        channels: int = 16,
        dead_zero_fraction: float = DEAD_ZERO_FRACTION,
        exploding_magnitude: float = EXPLODING_MAGNITUDE,
    ):
        self.backbone = backbone
        self.modules: List[Tuple[str, nn.Module]] = backbone_stages(backbone) + list((modules or {}).items())
        self.channels = channels
        self.dead_zero_fraction = dead_zero_fraction
        self.exploding_magnitude = exploding_magnitude
        self.records: List[ActivationRecord] = []
        self._by_tensor: Dict[int, Tuple[torch.Tensor, ActivationRecord]] = {}

    def hooks(self) -> List[Tuple[nn.Module, Hook]]:
        """(module, forward hook with kwargs) pairs to register: one per stage or extra module,
        and one on the backbone for its output dict."""
        pairs = [(module, self._stage_hook(name)) for name, module in self.modules]
        pairs.append((self.backbone, self._output_hook))
        return pairs

    def _add(self, name: str, kind: str, tensor: torch.Tensor) -> None:
        seen = self._by_tensor.get(id(tensor))
        if seen is not None and seen[0] is tensor:
            seen[1].also.append(name)
            return
        record = reduce_activation(name, kind, len(self.records), tensor, self.channels)
        record.flags = flag_activation(record, self.dead_zero_fraction, self.exploding_magnitude)
        self.records.append(record)
        # Held until the backbone returns, so that the id cannot be reused by another tensor meanwhile.
        self._by_tensor[id(tensor)] = (tensor, record)

    def _stage_hook(self, name: str) -> Hook:
        def hook(module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any], output: Any) -> None:
            for suffix, tensor in _tensors_of(output):
                self._add(name + suffix, "stage", tensor)

        return hook

    def _output_hook(self, module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any], output: Any) -> None:
        for suffix, tensor in _tensors_of(output):
            self._add(suffix.strip("[]") or "output", "level", tensor)
        self._by_tensor.clear()


def _tensors_of(output: Any) -> List[Tuple[str, torch.Tensor]]:
    """The tensors of a module's output with a name suffix each: ``""`` for a tensor,
    ``"[key]"`` for the entries of a dict, ``"[i]"`` for a list or tuple (one level deep)."""
    if isinstance(output, torch.Tensor):
        return [("", output)]
    if isinstance(output, Mapping):
        return [(f"[{k}]", v) for k, v in output.items() if isinstance(v, torch.Tensor)]
    if isinstance(output, (list, tuple)):
        return [(f"[{i}]", v) for i, v in enumerate(output) if isinstance(v, torch.Tensor)]
    return []


def first_non_finite(records: Sequence[ActivationRecord]) -> Optional[ActivationRecord]:
    """The earliest record (in execution order) with NaN or infinite values: where they start."""
    return next((r for r in sorted(records, key=lambda r: r.order) if FLAG_NON_FINITE in r.flags), None)


__all__ = [
    "ActivationRecord",
    "ActivationRecorder",
    "DEAD_ZERO_FRACTION",
    "EXPLODING_MAGNITUDE",
    "backbone_stages",
    "first_non_finite",
    "flag_activation",
    "reduce_activation",
]
