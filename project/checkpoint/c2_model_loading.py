"""Rename Caffe2 weights (Detectron models, MSRA / FAIR ImageNet models) to Detectron2 names.

Caffe2 blob names are flat, e.g. ``res2_0_branch2a_bn_s``; Detectron2 names are module paths,
e.g. ``res2.0.conv1.norm.weight``. Converted names are *relative*: they carry no
``backbone.bottom_up.`` or ``roi_heads.`` prefix and are attached to the model's full names
afterwards by suffix matching (:func:`align_and_update_state_dicts`, which lives here as in
Detectron2; the matching rule is in :mod:`.state_dict_alignment`).

Loading traps for these weights (set the model config accordingly, nothing here can check it):

* MSRA / Caffe2 ImageNet models expect **BGR** input in 0-255 with ``MODEL.PIXEL_STD =
  [1, 1, 1]`` and were trained with the stride in the 1x1 conv of each bottleneck
  (``MODEL.RESNETS.STRIDE_IN_1X1 = True``).
* Their batch norms are stored as an affine transform (``_bn_s`` scale, ``_bn_b`` bias) with no
  running statistics. They must go into ``FrozenBatchNorm2d``, whose default statistics
  (mean 0, variance ``1 - eps``) make it apply exactly ``x * scale + bias``; the statistics are
  left missing on purpose rather than loaded as (0, 1).
* Detectron (Caffe2) box and mask predictors put the background class *first*; Detectron2 puts
  it *last* in ``cls_score`` (index ``NUM_CLASSES``) and has no background outputs in
  ``bbox_pred`` or the mask predictor. :func:`convert_c2_weights` reorders those rows.
  Files already in Detectron2 format never pass through this module, so their rows are kept.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Dict, Mapping, Optional, Sequence, Tuple, TypeVar

import torch

from .state_dict_alignment import match_by_suffix

logger = logging.getLogger(__name__)

Value = TypeVar("Value")

# Caffe2 parameter suffix -> Detectron2 parameter path. Longer suffixes must come first.
_PARAMETER_SUFFIXES: Sequence[Tuple[str, str]] = (
    ("_bn_s", ".norm.weight"),
    ("_bn_b", ".norm.bias"),
    ("_bn_rm", ".norm.running_mean"),
    ("_bn_riv", ".norm.running_var"),
    ("_gn_s", ".norm.weight"),
    ("_gn_b", ".norm.bias"),
    ("_w", ".weight"),
    ("_b", ".bias"),
)

_RPN = "proposal_generator.rpn_head"

# Caffe2 module name (the blob name without parameter suffix), matched in full -> Detectron2
# module path, written as a ``re.Match.expand`` template.
_MODULE_RULES: Sequence[Tuple[str, str]] = (
    # ResNet backbone
    (r"(?:res_)?conv1", "stem.conv1"),
    (r"res(\d+)_(\d+)_branch2a", r"res\1.\2.conv1"),
    (r"res(\d+)_(\d+)_branch2b", r"res\1.\2.conv2"),
    (r"res(\d+)_(\d+)_branch2c", r"res\1.\2.conv3"),
    (r"res(\d+)_(\d+)_branch1", r"res\1.\2.shortcut"),
    # RPN: with FPN, the head is defined at level 2 ("_fpn2") and shared by the other levels.
    (r"conv_rpn(?:_fpn2)?", f"{_RPN}.conv"),
    (r"rpn_cls_logits(?:_fpn2)?", f"{_RPN}.objectness_logits"),
    (r"rpn_bbox_pred(?:_fpn2)?", f"{_RPN}.anchor_deltas"),
    # FPN: "fpn_inner_res4_22_sum_lateral" is a lateral conv, "fpn_res4_22_sum" an output conv.
    (r"fpn_inner_res(\d+)_\d+_sum(?:_lateral)?", r"fpn_lateral\1"),
    (r"fpn_res(\d+)_\d+_sum", r"fpn_output\1"),
    # Box head and predictor
    (r"fc6", "box_head.fc1"),
    (r"fc7", "box_head.fc2"),
    (r"head_conv(\d+)", r"box_head.conv\1"),
    (r"cls_score", "cls_score"),
    (r"bbox_pred", "bbox_pred"),
    # Mask head: FPN heads name their convs "_[mask]_fcnK", C4 heads upsample with "conv5_mask".
    (r"_\[mask\]_fcn(\d+)", r"mask_head.mask_fcn\1"),
    (r"conv5_mask", "mask_head.deconv"),
    (r"mask_fcn_logits", "mask_head.predictor"),
)

# The ImageNet classifier, which detection models never use.
_CLASSIFIER_NAMES = re.compile(r"fc1000_[wb]")


def _convert_module_name(c2_module: str) -> Optional[str]:
    """Detectron2 module path for a known Caffe2 module name, else ``None``."""
    for pattern, template in _MODULE_RULES:
        match = re.fullmatch(pattern, c2_module)
        if match is not None:
            return match.expand(template)
    return None


def convert_c2_name(c2_name: str) -> str:
    """Detectron2 name for one Caffe2 blob name, e.g. ``res2_0_branch1_bn_s`` ->
    ``res2.0.shortcut.norm.weight``.

    Modules outside the known ResNet / FPN / RPN / box / mask patterns get every ``_`` replaced
    by ``.`` (``kps_score_w`` -> ``kps.score.weight``), so they surface as unused in the load
    report instead of being dropped.
    """
    for c2_suffix, d2_suffix in _PARAMETER_SUFFIXES:
        if c2_name.endswith(c2_suffix):
            c2_module = c2_name[: -len(c2_suffix)]
            return (_convert_module_name(c2_module) or c2_module.replace("_", ".")) + d2_suffix
    return c2_name.replace("_", ".")


def _move_background_to_detectron2_layout(name: str, value: torch.Tensor) -> torch.Tensor:
    """Rearrange Caffe2 predictor rows, whose background class is at index 0, for Detectron2."""
    if name.startswith("cls_score."):
        logger.info("Moved the background row of %s from index 0 to the end", name)
        return torch.cat([value[1:], value[:1]])
    if name.startswith("bbox_pred."):
        logger.info("Dropped the 4 background box-delta rows of %s", name)
        return value[4:]
    if name.startswith("mask_head.predictor.") and value.shape[0] > 1:
        # Class-specific masks have a background channel; a class-agnostic head has 1 channel.
        logger.info("Dropped the background channel of %s", name)
        return value[1:]
    return value


def convert_c2_weights(weights: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename Caffe2 weights to Detectron2 names and lay out background predictions as
    Detectron2 expects them (see the module docstring).

    The ImageNet classifier (``fc1000_*``) is dropped and logged; each rename is logged at
    DEBUG level.

    Raises:
        ValueError: two Caffe2 names convert to the same Detectron2 name.
    """
    converted: Dict[str, torch.Tensor] = {}
    original_names: Dict[str, str] = {}
    classifier = sorted(name for name in weights if _CLASSIFIER_NAMES.fullmatch(name))
    if classifier:
        logger.info(
            "Skipped %d ImageNet classifier weights unused by detection models: %s",
            len(classifier),
            ", ".join(classifier),
        )
    for c2_name in sorted(set(weights) - set(classifier)):
        name = convert_c2_name(c2_name)
        if name in original_names:
            raise ValueError(f"Caffe2 weights {original_names[name]!r} and {c2_name!r} both convert to {name!r}")
        logger.debug("Caffe2 weight %s -> %s", c2_name, name)
        converted[name] = _move_background_to_detectron2_layout(name, weights[c2_name])
        original_names[name] = c2_name
    logger.info("Renamed %d Caffe2 weights to Detectron2 names", len(converted))
    return converted


def _longest_common_prefix_str(names: Sequence[str]) -> str:
    """The longest string every one of ``names`` starts with ("" for no names)."""
    return os.path.commonprefix(list(names))


def _added_module_prefix(renamed: Mapping[str, str]) -> str:
    """The module path (up to its last ``.``) that all renamed keys gained, or ""."""
    prefix = _longest_common_prefix_str(list(renamed.values()))
    return prefix[: prefix.rfind(".") + 1]


def align_and_update_state_dicts(
    model_state_dict: Mapping[str, object],
    ckpt_state_dict: Mapping[str, Value],
    c2_conversion: bool = True,
    *,
    source: str = "checkpoint",
) -> Dict[str, Value]:
    """``ckpt_state_dict`` with each key renamed to the model key it matches by suffix (see
    :mod:`.state_dict_alignment`), ready for ``load_state_dict``. With ``c2_conversion`` (the
    default, as in Detectron2) the keys are first read as Caffe2 blob names and converted by
    :func:`convert_c2_weights`; names that are already module paths pass through unchanged
    unless they contain ``_``, so pass ``False`` for checkpoints saved by PyTorch.

    Only the model's keys are used, not its values: shapes are compared later, by the loader.
    Checkpoint entries that match no model key keep their names (the loader reports them as
    unused). ``source`` names the checkpoint in messages.

    Raises:
        CheckpointMismatchError: one checkpoint key is the best match of two model keys.
        ValueError: with ``c2_conversion``, two Caffe2 names convert to the same name.
    """
    weights = convert_c2_weights(ckpt_state_dict) if c2_conversion else ckpt_state_dict
    model_key_of = match_by_suffix(model_state_dict.keys(), weights.keys(), source=source)
    renamed = {key: model_key for key, model_key in model_key_of.items() if key != model_key}
    prefix = _added_module_prefix(renamed)
    logger.info(
        "%s: matched %d of %d checkpoint keys to model keys by name suffix (%d renamed%s)",
        source,
        len(model_key_of),
        len(weights),
        len(renamed),
        f", under {prefix!r}" if prefix else "",
    )
    return {model_key_of.get(key, key): value for key, value in weights.items()}
