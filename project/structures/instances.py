"""``Instances``: per-image detections or annotations as named fields of equal length."""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Tuple

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
        if name == "_fields" or name not in self._fields:
            raise AttributeError(f"Cannot find field '{name}' in the given Instances!")
        return self._fields[name]

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

    def to(self, *args: Any, **kwargs: Any) -> Instances:
        """A copy with every field that has ``.to`` moved (device and/or dtype)."""
        out = Instances(self._image_size)
        for k, v in self._fields.items():
            out.set(k, v.to(*args, **kwargs) if hasattr(v, "to") else v)
        return out

    def __getitem__(self, item) -> Instances:
        if isinstance(item, int):
            if item >= len(self) or item < -len(self):
                raise IndexError("Instances index out of range!")
            item = slice(item, None, len(self)) if item == -1 else slice(item, item + 1)
        out = Instances(self._image_size)
        for k, v in self._fields.items():
            if isinstance(v, list):
                if isinstance(item, torch.Tensor) and item.dtype == torch.bool:
                    out.set(k, [x for x, keep in zip(v, item.tolist()) if keep])
                elif isinstance(item, torch.Tensor):
                    out.set(k, [v[i] for i in item.tolist()])
                else:
                    out.set(k, v[item])
            else:
                out.set(k, v[item])
        return out

    def __len__(self) -> int:
        for v in self._fields.values():
            return len(v)
        return 0

    def __iter__(self):
        raise NotImplementedError("`Instances` object is not iterable!")

    @staticmethod
    def cat(instance_lists: List[Instances]) -> Instances:
        """Concatenate instances of the same image size, field by field."""
        if not instance_lists:
            raise ValueError("Instances.cat needs at least one Instances")
        if len(instance_lists) == 1:
            return instance_lists[0]
        image_size = instance_lists[0].image_size
        for i in instance_lists[1:]:
            if i.image_size != image_size:
                raise ValueError(f"cannot cat Instances of sizes {image_size} and {i.image_size}")
        out = Instances(image_size)
        for k in instance_lists[0]._fields:
            values = [i.get(k) for i in instance_lists]
            v0 = values[0]
            if isinstance(v0, torch.Tensor):
                merged = torch.cat(values, dim=0)
            elif isinstance(v0, list):
                merged = list(itertools.chain(*values))
            elif hasattr(type(v0), "cat"):
                merged = type(v0).cat(values)
            else:
                raise ValueError(f"Unsupported type {type(v0)} for concatenation")
            out.set(k, merged)
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}: {v}" for k, v in self._fields.items())
        return (
            f"Instances(num_instances={len(self)}, image_height={self._image_size[0]}, "
            f"image_width={self._image_size[1]}, fields=[{fields}])"
        )
