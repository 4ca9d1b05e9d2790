"""Helpers for unit tests: random boxes, untrained zoo models and comparing ``Instances``.

The names are those of ``detectron2.utils.testing``, so tests written against Detectron2 import
them unchanged. Nothing here downloads anything.
"""

from __future__ import annotations

import io
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from ..structures import Instances

__all__ = [
    "assert_instances_allclose",
    "convert_scripted_instances",
    "get_model_no_weights",
    "get_sample_coco_image",
    "random_boxes",
    "reload_script_model",
]


def random_boxes(num_boxes: int, max_coord: float = 100, device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """(num_boxes, 4) float32 XYXY boxes with both corners below ``max_coord``.

    Draws one ``torch.rand(num_boxes, 4)`` (the global generator), read as a top-left corner
    and a size, each in ``[1, max_coord / 2)``; x1 >= x0 and y1 >= y0 always hold.
    """
    corner_and_size = torch.rand(num_boxes, 4, device=device) * (max_coord * 0.5)
    corner_and_size.clamp_(min=1.0)  # boxes under a pixel make box-regression tests unstable
    top_left, size = corner_and_size[:, :2], corner_and_size[:, 2:]
    size += top_left
    return corner_and_size


def get_model_no_weights(config_path: str) -> nn.Module:
    """The untrained model of a model-zoo name (e.g. ``"COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"``),
    built on CUDA when available, else on the CPU; no checkpoint, not even the pretrained
    backbone, is loaded.

    Raises:
        ValueError: the name is not in this project's model zoo.
    """
    from .. import model_zoo
    from ..modeling import build_model

    return build_model(model_zoo.get_config(config_path))


def get_sample_coco_image(tensor: bool = True) -> Union[torch.Tensor, np.ndarray]:
    """A COCO image in BGR, as a (3, H, W) uint8 tensor or, with ``tensor=False``, an (H, W, 3) array.

    Reads the first image of the registered ``coco_2017_val_100`` subset from disk; nothing is
    downloaded.

    Raises:
        FileNotFoundError: the subset is not registered or its image is not on disk.
    """
    from ..data import DatasetCatalog
    from ..data.detection_utils import read_image
    from .file_io import PathManager

    try:
        file_name = DatasetCatalog.get("coco_2017_val_100")[0]["file_name"]
    except (KeyError, OSError, IndexError) as error:
        raise FileNotFoundError(
            f"get_sample_coco_image needs the COCO 2017 val images on disk (dataset 'coco_2017_val_100'): {error}"
        ) from error
    if not PathManager.exists(file_name):
        raise FileNotFoundError(f"get_sample_coco_image: {file_name} is not on disk; it is never downloaded")
    image = read_image(file_name, format="BGR")
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))) if tensor else image


def convert_scripted_instances(instances: Any) -> Instances:
    """A plain :class:`Instances` with the fields that are set on ``instances``, an object
    with ``image_size`` and ``_field_names`` whose fields are attributes ``_<name>`` (the
    shape TorchScript gives ``Instances``)."""
    if not hasattr(instances, "image_size"):
        raise TypeError(f"convert_scripted_instances needs an Instances-like object, got {type(instances).__name__}")
    values = {name: getattr(instances, "_" + name, None) for name in instances._field_names}
    return Instances(instances.image_size, **{name: v for name, v in values.items() if v is not None})


def _assert_field_close(name: str, actual: Any, expected: Any, rtol: float, prefix: str) -> None:
    """Box-like fields (anything with ``.tensor``) to an absolute ``100 * rtol`` (coordinates are
    pixels, of order 100); float tensors to ``rtol`` times the largest magnitude; others exactly."""
    if hasattr(actual, "tensor"):
        ok = torch.allclose(actual.tensor, expected.tensor, atol=100 * rtol)
    elif isinstance(actual, torch.Tensor) and actual.dtype.is_floating_point:
        scale = actual.abs().max().item() if actual.numel() else 0.0
        ok = torch.allclose(actual, expected, atol=scale * rtol)
    elif isinstance(actual, torch.Tensor):
        ok = torch.equal(actual, expected)
    else:
        raise ValueError(f"{prefix}field '{name}' is a {type(actual).__name__}, which cannot be compared")
    assert ok, f"{prefix}field '{name}' differs: {actual} vs {expected}"


def assert_instances_allclose(
    input: Any, other: Any, *, rtol: float = 1e-5, msg: str = "", size_as_tensor: bool = False
) -> None:
    """Assert that two ``Instances`` (or TorchScript ones) have the same image size, the same
    field names and close field values (see :func:`_assert_field_close`).

    ``size_as_tensor`` compares the image sizes as tensors (traced models return them so).
    ``msg`` starts every failure message.
    """
    actual, expected = (x if isinstance(x, Instances) else convert_scripted_instances(x) for x in (input, other))
    prefix = msg.rstrip() + " " if msg else "Instances differ: "
    sizes = [torch.as_tensor(i.image_size) if size_as_tensor else tuple(i.image_size) for i in (actual, expected)]
    same_size = torch.equal(*sizes) if size_as_tensor else sizes[0] == sizes[1]
    assert same_size, f"{prefix}image_size {actual.image_size} vs {expected.image_size}"
    names = sorted(actual.get_fields())
    assert names == sorted(expected.get_fields()), f"{prefix}fields {names} vs {sorted(expected.get_fields())}"
    for name in names:
        _assert_field_close(name, actual.get(name), expected.get(name), rtol, prefix)


def reload_script_model(module: Any) -> Any:
    """``module`` (a TorchScript module or function) saved with ``torch.jit.save`` to memory and
    loaded back, to test that it survives serialisation."""
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)
