"""Detectron2's TorchScript entry points, not implemented yet (see ``project.export``)."""

from ..utils.unsupported import unsupported_function
from .torchscript_patch import patch_instances

_REASON = "TorchScript scripting and export are not implemented yet; run the model in eager mode"

scripting_with_instances = unsupported_function("scripting_with_instances", _REASON)

__all__ = ["patch_instances", "scripting_with_instances"]
