"""Detectron2's LazyConfig objects: not supported here (configs are this project's Hydra tree;
a later issue reads Detectron2's config files). ``instantiate`` imports and says so when called."""

from ..utils.unsupported import unsupported_function

instantiate = unsupported_function(
    "instantiate",
    "LazyConfig objects are not supported; build components from keyword arguments or from get_cfg()",
)

__all__ = ["instantiate"]
