"""One construction style for every component: plain keyword arguments, or a config.

A component's ``__init__`` takes plain arguments (Detectron2's parameter names), so it can be
built in a test or a notebook without any config. Its ``from_config`` class method is the one
place that reads the config: it turns a config, and what else the component needs from its
caller (input shapes, ``is_train``), into those arguments. Decorating ``__init__`` with
:func:`configurable` lets the registries, and users, also write ``Component(cfg, ...)``::

    class Head(nn.Module):
        @configurable
        def __init__(self, input_shape: ShapeSpec, *, num_classes: int, conv_dims: List[int]): ...

        @classmethod
        def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict[str, Any]:
            return {"input_shape": input_shape, "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES, ...}

    Head(shape, num_classes=3, conv_dims=[256])    # plain arguments
    Head(cfg, shape)                               # from the config
    Head(cfg, shape, num_classes=5)                # from the config, one argument replaced
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Mapping, Sequence, TypeVar

from omegaconf import DictConfig

Init = TypeVar("Init", bound=Callable[..., None])


def is_config(value: Any) -> bool:
    """Whether ``value`` is a whole config: this project's (an OmegaConf ``DictConfig``) or
    Detectron2's yacs ``CfgNode``, recognised by name so that Detectron2 is never imported."""
    return isinstance(value, DictConfig) or type(value).__name__ == "CfgNode"


def _given_a_config(args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    return bool(args) and is_config(args[0]) or is_config(kwargs.get("cfg"))


def arguments_from_config(from_config: Callable[..., Dict[str, Any]], args: Sequence[Any], kwargs: Dict[str, Any]):
    """The keyword arguments of a constructor called as ``Component(cfg, *rest, **kwargs)``:
    ``from_config`` gets the positional arguments and the keyword arguments it declares; the
    other keyword arguments replace entries of its result."""
    parameters = inspect.signature(from_config).parameters.values()
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    declared = {p.name for p in parameters}
    for_config = {k: v for k, v in kwargs.items() if takes_any or k in declared}
    arguments = from_config(*args, **for_config)
    if not isinstance(arguments, dict):
        raise TypeError(f"{from_config.__qualname__} must return a dict of constructor arguments, got {arguments!r}")
    arguments.update({k: v for k, v in kwargs.items() if k not in for_config})
    return arguments


def configurable(init: Init | None = None, *, from_config: Callable[..., Dict[str, Any]] | None = None) -> Any:
    """Let the decorated ``__init__`` also be called with a config as its first argument (or as
    ``cfg=``): the class's ``from_config`` then supplies the arguments (see the module docstring).

    For a function (a loader builder), give its ``from_config`` by name:
    ``@configurable(from_config=loader_arguments)`` makes ``build(cfg, ...)`` and
    ``build(dataset, mapper=...)`` both work."""
    if init is None:
        if from_config is None:
            raise TypeError("@configurable() without a function to decorate needs from_config=")
        return functools.partial(_configurable_function, from_config=from_config)
    if init.__name__ != "__init__":
        raise TypeError(
            f"@configurable decorates a class's __init__; for the function {init.__qualname__} "
            "use @configurable(from_config=...)"
        )

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        if not _given_a_config(args, kwargs):
            init(self, *args, **kwargs)
            return
        from_config = getattr(type(self), "from_config", None)
        if from_config is None:
            raise TypeError(
                f"{type(self).__name__} was given a config but has no from_config class method; "
                "pass its arguments by name instead"
            )
        init(self, **arguments_from_config(from_config, args, kwargs))

    return wrapper


def _configurable_function(function: Callable, *, from_config: Callable[..., Dict[str, Any]]) -> Callable:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _given_a_config(args, kwargs):
            return function(**arguments_from_config(from_config, args, kwargs))
        return function(*args, **kwargs)

    return wrapper
