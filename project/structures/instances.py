"""``Instances``: per-image detections or annotations as named fields of equal length."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Dict, List, Tuple

import torch


class Instances:
    """A set of N instances in one image of ``image_size = (height, width)``.

    Every field (``gt_boxes``, ``pred_masks``, ...) is a tensor, a ``Boxes``-like object or a
    list, of length N. Fields are set and read as attributes; indexing selects instances.
    """

    def __init__(self, image_size: Tuple[int, int], **kwargs: Any):
        self._image_size = (int(image_size[0]), int(image_size[1]))
        self._fields: Dict[str, Any] = {}
        for k, v in kwargs.items():
            self.set(k, v)

    @property
    def image_size(self) -> Tuple[int, int]:
        return self._image_size

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
        else:
            self.set(name, value)

    def __getattr__(self, name: str) -> Any:
        # Python calls this only when normal lookup fails, which is how fields (kept in _fields, not
        # in __dict__) are read. Before __init__ has run (unpickling, copy) _fields does not exist.
        fields = self.__dict__.get("_fields", {})
        if name == "_fields" or name not in fields:
            raise AttributeError(
                f"Instances has no field '{name}' (its fields: {sorted(fields) or 'none'}); "
                f"set it first, e.g. `instances.{name} = ...`, or test with `instances.has('{name}')`"
            )
        return fields[name]

    def set(self, name: str, value: Any) -> None:
        n = len(value)
        if self._fields and n != len(self):
            raise ValueError(f"field '{name}' has length {n}, but the Instances have length {len(self)}")
        self._fields[name] = value

    def has(self, name: str) -> bool:
        return name in self._fields

    def remove(self, name: str) -> None:
        del self._fields[name]

    def get(self, name: str) -> Any:
        return self._fields[name]

    def get_fields(self) -> Dict[str, Any]:
        return self._fields

    def _map_fields(self, fn: Callable[[Any], Any]) -> Instances:
        """A new ``Instances`` of the same image size holding ``fn(value)`` for every field, in order."""
        out = Instances(self._image_size)
        for name, value in self._fields.items():
            out.set(name, fn(value))
        return out

    def to(self, *args: Any, **kwargs: Any) -> Instances:
        """A copy with every field that has ``.to`` moved (device and/or dtype)."""
        return self._map_fields(lambda value: value.to(*args, **kwargs) if hasattr(value, "to") else value)

    def _one_row(self, index: int) -> slice:
        """The length-1 slice that selects row ``index`` (negative counts from the end)."""
        n = len(self)
        if not -n <= index < n:
            valid = f", so an int index must satisfy {-n} <= index < {n}" if n else ""
            raise IndexError(f"Instances index {index} is out of range: these Instances hold {n} instances{valid}")
        row = index % n
        return slice(row, row + 1)

    def __getitem__(self, item) -> Instances:
        """Select instances in every field: an int (kept as a length-1 ``Instances``), a slice,
        a bool mask or an index tensor. List fields are indexed element by element."""
        if isinstance(item, int):
            item = self._one_row(item)
        return self._map_fields(lambda value: _select(value, item))

    def __len__(self) -> int:
        for v in self._fields.values():
            return len(v)
        return 0

    def __iter__(self):
        raise NotImplementedError(
            "Instances cannot be iterated over; select rows with instances[i] or instances[mask], "
            "or loop over one field, e.g. `for box in instances.pred_boxes`"
        )

    @staticmethod
    def cat(instance_lists: List[Instances]) -> Instances:
        """Concatenate ``Instances`` of one image size, field by field, in list order.

        The fields of the first element are used. A list of one is returned as is (not copied).
        """
        if not instance_lists:
            raise ValueError("Instances.cat got an empty list; pass at least one Instances")
        first, *others = instance_lists
        if not others:
            return first
        sizes = {i.image_size for i in instance_lists}
        if len(sizes) > 1:
            raise ValueError(
                f"Instances.cat needs one image size, got {sorted(sizes)}; "
                "concatenate the instances of each image separately"
            )
        out = Instances(first.image_size)
        for name in first.get_fields():
            out.set(name, _concat(name, [i.get(name) for i in instance_lists]))
        return out

    def __repr__(self) -> str:
        height, width = self._image_size
        lines = [f"Instances: {len(self)} in a {height}x{width} (height x width) image"]
        lines += [f"  {name} = {value}" for name, value in self._fields.items()]
        return "\n".join(lines)


def _select(value: Any, item: Any) -> Any:
    """``value[item]``, except that a list indexed by a tensor is gathered element by element
    (a bool tensor keeps the entries where it is True)."""
    if not (isinstance(value, list) and isinstance(item, torch.Tensor)):
        return value[item]
    if item.dtype == torch.bool:
        return list(itertools.compress(value, item.tolist()))
    return [value[i] for i in item.tolist()]


def _concat(name: str, values: List[Any]) -> Any:
    """Join one field's values from several ``Instances``: tensors along dim 0, lists end to end,
    other types with their class's ``cat``."""
    if isinstance(values[0], torch.Tensor):
        return torch.cat(values, dim=0)
    if isinstance(values[0], list):
        return [x for part in values for x in part]
    kind = type(values[0])
    if not hasattr(kind, "cat"):
        raise ValueError(
            f"Instances.cat cannot join field '{name}' of type {kind.__name__}: store it as a tensor, "
            "a list, or a type with a classmethod `cat(list)`"
        )
    return kind.cat(values)
