"""Detectron2's helpers that prepare ``Instances`` and modules for TorchScript, not implemented yet
(see ``project.export``)."""

from ..utils.unsupported import unsupported_function

_REASON = "TorchScript scripting and export are not implemented yet; run the model in eager mode"

patch_instances = unsupported_function("patch_instances", _REASON)
freeze_training_mode = unsupported_function("freeze_training_mode", _REASON)
patch_builtin_len = unsupported_function("patch_builtin_len", _REASON)

__all__ = ["freeze_training_mode", "patch_builtin_len", "patch_instances"]
