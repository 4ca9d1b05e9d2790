"""Holding out part of a dataset that comes as one folder: each image goes to "train" or "val" by
a hash of its file name, so the split does not depend on the order images are listed in and an
image keeps its side when others are added or removed."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List

SPLIT_PARTS = ("all", "train", "val")


def file_name_fraction(file_name: str) -> float:
    """A number in [0, 1), fixed for the file's base name (SHA-1 of the name, first 8 bytes)."""
    digest = hashlib.sha1(os.path.basename(file_name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def select_split(dataset_dicts: List[Dict[str, Any]], part: str, val_fraction: float) -> List[Dict[str, Any]]:
    """The dicts of ``part``: "val" keeps the images whose ``file_name_fraction`` is below
    ``val_fraction`` (about that fraction of them), "train" the others, "all" every one."""
    if part not in SPLIT_PARTS:
        raise ValueError(f"split part must be one of {SPLIT_PARTS}, got {part!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"the held-out (val) fraction must lie strictly between 0 and 1, got {val_fraction}")
    if part == "all":
        return dataset_dicts
    in_val = part == "val"
    return [d for d in dataset_dicts if (file_name_fraction(d["file_name"]) < val_fraction) == in_val]
