"""Names of Detectron2's that this project leaves out of scope (rotated boxes, keypoints,
TorchScript export, LazyConfig): they import, so that code and tests written for Detectron2 load
unchanged, and using one fails at once with the reason, not with a missing name far from the cause."""

from __future__ import annotations

from typing import Callable, NoReturn


def unsupported_component(name: str, reason: str) -> type:
    """A class called ``name`` whose construction raises ``NotImplementedError`` naming ``reason``."""

    def refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
        raise NotImplementedError(f"{name}: {reason}")

    return type(name, (), {"__init__": refuse, "__doc__": f"Not implemented in this project: {reason}"})


def unsupported_function(name: str, reason: str) -> Callable[..., NoReturn]:
    """A function called ``name`` that raises ``NotImplementedError`` naming ``reason`` when called."""

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise NotImplementedError(f"{name}: {reason}")

    refuse.__name__ = refuse.__qualname__ = name
    refuse.__doc__ = f"Not implemented in this project: {reason}"
    return refuse
