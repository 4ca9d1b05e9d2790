"""TorchScript scripting and model export: not implemented yet (a later issue). The names that
Detectron2's code imports from here exist, and calling one says so."""

from .torchscript import scripting_with_instances

__all__ = ["scripting_with_instances"]
