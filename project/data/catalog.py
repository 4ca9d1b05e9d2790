"""``DatasetCatalog`` and ``MetadataCatalog``: global name -> dataset and name -> metadata maps,
with Detectron2's semantics."""

from __future__ import annotations

from collections import UserDict
from typing import Any, Callable, Dict, List


class _DatasetCatalog(UserDict):
    """Maps a dataset name to a function returning its list of dataset dicts.

    Each dict is in Detectron2's standard format: ``file_name``, ``height``, ``width``,
    ``image_id`` and ``annotations`` (each with ``bbox``, ``bbox_mode``, ``category_id``,
    ``segmentation``, ``iscrowd``).
    """

    def register(self, name: str, func: Callable[[], List[Dict[str, Any]]]) -> None:
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register('{name}', ...) needs a callable, got {type(func).__name__}")
        if name in self:
            raise ValueError(f"dataset '{name}' is already registered")
        self[name] = func

    def get(self, name: str) -> List[Dict[str, Any]]:  # type: ignore[override]
        """Call the registered function and return its dataset dicts."""
        try:
            func = self[name]
        except KeyError as e:
            raise KeyError(
                f"dataset '{name}' is not registered. Registered datasets: {', '.join(sorted(self)) or 'none'}"
            ) from e
        return func()

    def list(self) -> List[str]:
        return list(self.keys())

    def remove(self, name: str) -> None:
        self.pop(name)


class Metadata:
    """Attributes shared by a dataset (``thing_classes``, ``thing_colors``, ``evaluator_type``,
    ``json_file``, ...). A key, once set, cannot be changed to a different value."""

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        raise AttributeError(
            f"metadata of dataset '{self.name}' has no attribute '{key}'; available: {sorted(self.__dict__)}"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        if key in self.__dict__ and self.__dict__[key] != value:
            raise ValueError(
                f"metadata '{key}' of dataset '{self.name}' is already {self.__dict__[key]!r}; "
                f"refusing to change it to {value!r}"
            )
        object.__setattr__(self, key, value)

    def set(self, **kwargs: Any) -> Metadata:
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


class _MetadataCatalog(UserDict):
    """Maps a dataset name to its ``Metadata``, created empty on first access."""

    def get(self, name: str) -> Metadata:  # type: ignore[override]
        if name not in self:
            self[name] = Metadata(name)
        return self[name]

    def list(self) -> List[str]:
        return list(self.keys())

    def remove(self, name: str) -> None:
        self.pop(name)


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
