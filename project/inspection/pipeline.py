"""One inspection: run the model once with hooks, then take each stage's view of that run.

Steps (``ALL_STEPS``): ``anchors``, ``proposals``, ``boxes`` (box refinement), ``masks``,
``activations``, ``weights`` and ``result``. A step the model cannot give (no RPN, no mask
head, ...) is skipped with the reason in ``Inspection.skipped``; nothing else fails for it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from torch import nn

from .activations import DEAD_ZERO_FRACTION, EXPLODING_MAGNITUDE, ActivationRecord, ActivationRecorder
from .anchors import AnchorStep, anchor_step, flat_rpn_predictions
from .capture import Capture, capture, component
from .inputs import InspectionInput, ground_truth_boxes
from .masks import MasksStep, masks_step
from .proposals import ProposalsStep, proposals_step
from .refinement import RefinementStep, refinement_step
from .weights import OVERFLOW_MAGNITUDE, WeightRecord, inspect_weights

ALL_STEPS = ("anchors", "proposals", "boxes", "masks", "activations", "weights", "result")


@dataclass
class InspectionOptions:
    """What to inspect and how much to show.

    ``top_n``: anchors, proposals, detections and masks drawn (and listed) per step.
    ``steps``: a subset of ``ALL_STEPS``. ``montage_channels``: feature maps shown per
    activation. ``activation_modules``: paths of further modules of the model whose outputs
    count as activations (``roi_heads.box_head``). The thresholds are those of
    ``flag_activation`` and ``flag_weight``; ``histogram_bins`` those of the weight histograms.
    """

    top_n: int = 30
    steps: Tuple[str, ...] = ALL_STEPS
    montage_channels: int = 16
    activation_modules: Tuple[str, ...] = ()
    dead_zero_fraction: float = DEAD_ZERO_FRACTION
    exploding_magnitude: float = EXPLODING_MAGNITUDE
    weight_overflow: float = OVERFLOW_MAGNITUDE
    histogram_bins: int = 40

    def __post_init__(self) -> None:
        self.steps = tuple(self.steps)
        unknown = [s for s in self.steps if s not in ALL_STEPS]
        if unknown:
            raise ValueError(f"unknown inspection step(s) {unknown}; the steps are {list(ALL_STEPS)}")
        for name in ("top_n", "montage_channels", "histogram_bins"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive whole number, got {getattr(self, name)}")


@dataclass
class Inspection:
    """Everything one inspection found. Steps not run, or not available for this model or
    image, are None (or empty), with the reason in ``skipped``. ``seconds`` times the model run
    (``model``) and each step."""

    input: InspectionInput
    capture: Capture
    options: InspectionOptions
    anchors: Optional[AnchorStep] = None
    proposals: Optional[ProposalsStep] = None
    boxes: Optional[RefinementStep] = None
    masks: Optional[MasksStep] = None
    activations: List[ActivationRecord] = field(default_factory=list)
    weights: List[WeightRecord] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _timed(seconds: Optional[Dict[str, float]], name: str) -> Iterator[Dict[str, float]]:
    """Add the seconds the block takes to ``seconds[name]`` (a new dict when None), yielded."""
    seconds = {} if seconds is None else seconds
    began = time.perf_counter()
    try:
        yield seconds
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - began


class UnknownModuleError(ValueError):
    """An ``activation_modules`` path names no module of the model."""


def _extra_modules(model: nn.Module, paths: Sequence[str]) -> Dict[str, nn.Module]:
    modules = {}
    for path in paths:
        try:
            modules[path] = model.get_submodule(path)
        except AttributeError:
            top = ", ".join(name for name, _ in model.named_children())
            raise UnknownModuleError(
                f"the model has no module {path!r} to record activations of; its top-level modules are {top} "
                "(give dotted paths such as roi_heads.box_head)"
            ) from None
    return modules


def _rpn_parts_missing(found: Capture, rpn: Optional[nn.Module]) -> Optional[str]:
    """Why the RPN steps cannot run, or None when they can."""
    for name in ("anchors", "objectness_logits", "proposals"):
        if name in found.notes:
            return found.notes[name]
    if getattr(rpn, "box2box_transform", None) is None:
        return "the proposal generator has no `box2box_transform` to decode its deltas"
    return None


def inspect_model(
    model: nn.Module, inspection_input: InspectionInput, options: Optional[InspectionOptions] = None
) -> Inspection:
    """Inspect ``model`` (any model of this project; run once, in eval mode, mode restored) on
    ``inspection_input`` (see ``inputs``). The captured output equals ``model([input])``."""
    options = options or InspectionOptions()
    steps = set(options.steps)
    recorder = None
    backbone = component(model, "backbone")
    if "activations" in steps and backbone is not None:
        recorder = ActivationRecorder(
            backbone,
            _extra_modules(model, options.activation_modules),
            options.montage_channels,
            options.dead_zero_fraction,
            options.exploding_magnitude,
        )
    with _timed(None, "model") as seconds:
        found = capture(model, inspection_input.model_input, recorder)
    result = Inspection(input=inspection_input, capture=found, options=options, seconds=seconds)
    gt_boxes = ground_truth_boxes(inspection_input.ground_truth)
    image_size = found.input_size

    rpn = component(model, "proposal_generator")
    rpn_missing = _rpn_parts_missing(found, rpn)
    for name in sorted(steps & {"anchors", "proposals"}):
        if rpn_missing is not None:
            result.skipped[name] = rpn_missing
    if rpn_missing is None and steps & {"anchors", "proposals"}:
        logits, deltas = flat_rpn_predictions(found.objectness_logits, found.anchor_deltas)
        if "anchors" in steps:
            with _timed(result.seconds, "anchors"):
                result.anchors = anchor_step(rpn, found.anchors, logits, deltas, gt_boxes, image_size, options.top_n)
            if gt_boxes is None:
                result.skipped["anchor_labels"] = "the input has no annotations (use --dataset NAME --index K)"
        if "proposals" in steps:
            with _timed(result.seconds, "proposals"):
                result.proposals = proposals_step(
                    rpn, found.anchors, logits, deltas, found.proposals, gt_boxes, image_size
                )

    if steps & {"boxes", "masks"}:
        if found.detections is None or found.roi_proposals is None:
            reason = found.notes.get("detections", "the ROI heads gave no detections")
            result.skipped.update({name: reason for name in sorted(steps & {"boxes", "masks"})})
        else:
            with _timed(result.seconds, "boxes"):
                predictor = component(model, "roi_heads.box_predictor")
                result.boxes = refinement_step(
                    predictor, found.box_predictions, found.roi_proposals, found.detections, found.output
                )
    if "masks" in steps and result.boxes is not None:
        if not found.output.has("pred_masks"):
            result.skipped["masks"] = "the model predicts no masks (MODEL.MASK_ON is false?)"
        else:
            with _timed(result.seconds, "masks"):
                result.masks = masks_step(
                    found.output,
                    found.detections,
                    result.boxes.output_index,
                    inspection_input.ground_truth,
                    options.top_n,
                )

    if "activations" in steps:
        result.activations = found.activations
        if recorder is None:
            result.skipped["activations"] = "the model has no `backbone`"
    if "weights" in steps:
        with _timed(result.seconds, "weights"):
            result.weights = inspect_weights(model, options.histogram_bins, options.weight_overflow)
    return result


__all__ = ["ALL_STEPS", "Inspection", "InspectionOptions", "UnknownModuleError", "inspect_model"]
