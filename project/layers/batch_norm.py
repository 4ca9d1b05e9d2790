"""Normalisation layers and ``get_norm``, which builds one from a config string."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine parameters are fixed buffers.

    Computes ``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` per channel. The
    state-dict keys (``weight``, ``bias``, ``running_mean``, ``running_var``) are those of
    ``nn.BatchNorm2d`` and of Detectron2's FrozenBatchNorm2d.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        # Start as the identity: scale = 1 / sqrt((1 - eps) + eps) = 1 and shift = 0. The order of
        # registration is the order of the state-dict keys.
        identity = {
            "weight": torch.ones(num_features),
            "bias": torch.zeros(num_features),
            "running_mean": torch.zeros(num_features),
            "running_var": torch.ones(num_features) - eps,
        }
        for name, value in identity.items():
            self.register_buffer(name, value)

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(scale, shift)``, shape (C,) each, such that the layer computes ``x * scale + shift``."""
        inv_std = torch.rsqrt(self.running_var + self.eps)
        scale = self.weight * inv_std
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape (N, C, H, W), any float dtype; the result has the dtype of ``x``."""
        scale, shift = (t.to(x.dtype).view(1, -1, 1, 1) for t in self.scale_and_shift())
        return x * scale + shift

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # BatchNorm checkpoints carry a "num_batches_tracked" counter that is meaningless here.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Return ``module`` with every BatchNorm / SyncBatchNorm replaced by a frozen copy."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = cls(module.num_features, eps=module.eps)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new_child = cls.convert_frozen_batchnorm(child)
            if new_child is not child:
                setattr(module, name, new_child)
        return module


NormSpec = Union[str, Callable[[int], nn.Module], None]


def get_norm(norm: NormSpec, out_channels: int) -> Optional[nn.Module]:
    """Build a normalisation layer for ``out_channels`` channels.

    ``norm`` is one of ``"BN"``, ``"SyncBN"``, ``"FrozenBN"``, ``"GN"`` (32 groups), ``""`` or
    ``None`` (no layer), or a callable taking the channel count.
    """
    if norm is None or norm == "":
        return None
    if callable(norm):
        return norm(out_channels)
    builders = {
        "BN": nn.BatchNorm2d,
        "SyncBN": nn.SyncBatchNorm,
        "FrozenBN": FrozenBatchNorm2d,
        "GN": lambda channels: nn.GroupNorm(32, channels),
    }
    if norm not in builders:
        raise ValueError(f"unknown norm {norm!r}; expected one of {sorted(builders)} or ''")
    return builders[norm](out_channels)
