"""Running a model once, as ``model([input])`` does, and keeping what each stage produced.

Nothing of the model is changed: forward hooks on its components record their inputs and
outputs while the model itself runs, so the captured output *is* the model's output. The
components are found by their conventional names (``backbone``, ``proposal_generator`` with
``anchor_generator`` and ``rpn_head``, ``roi_heads`` with ``box_predictor``); whatever a
registered model lacks is left as None, with the reason in ``Capture.notes``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..structures import Boxes, ImageList, Instances
from .activations import ActivationRecord, ActivationRecorder

Hook = Callable[[nn.Module, Tuple[Any, ...], Dict[str, Any], Any], None]


@dataclass
class Capture:
    """What one run of the model on one image produced, stage by stage.

    ``output``: the model's result for the image (``model([input])[0]["instances"]``, original
    frame). In the input (resized) frame: ``images`` (the normalised, padded batch),
    ``features`` (backbone outputs, (1, C, H_l, W_l) each), ``anchors`` (per RPN level, Boxes
    of H_l * W_l * A rows), ``objectness_logits`` / ``anchor_deltas`` (per level, as the RPN
    head returns them: (1, A, H_l, W_l) and (1, A * 4, H_l, W_l)), ``proposals`` (the proposal
    generator's output), ``roi_proposals`` (the proposals the ROI heads received),
    ``box_predictions`` (the box predictor's (class logits (R, K + 1), deltas (R, K * 4))) and
    ``detections`` (the ROI heads' output: ``pred_boxes``, ``scores``, ``pred_classes`` and
    ``pred_masks`` (D, 1, M, M) probabilities). ``activations``: the recorder's records.
    """

    model_input: Dict[str, Any]
    output: Instances
    images: Optional[ImageList] = None
    features: Optional[Dict[str, torch.Tensor]] = None
    anchors: Optional[List[Boxes]] = None
    objectness_logits: Optional[List[torch.Tensor]] = None
    anchor_deltas: Optional[List[torch.Tensor]] = None
    proposals: Optional[Instances] = None
    roi_proposals: Optional[Instances] = None
    box_predictions: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    detections: Optional[Instances] = None
    activations: List[ActivationRecord] = field(default_factory=list)
    notes: Dict[str, str] = field(default_factory=dict)

    @property
    def input_size(self) -> Optional[Tuple[int, int]]:
        """(height, width) of the resized image, before padding."""
        if self.images is not None:
            return tuple(int(s) for s in self.images.image_sizes[0])
        return tuple(int(s) for s in self.model_input["image"].shape[-2:])


class HookSet(contextlib.AbstractContextManager):
    """Forward hooks (with keyword arguments) registered on entry's behalf and all removed on
    exit, even when the forward pass raises."""

    def __init__(self) -> None:
        self._handles: List[Any] = []

    def add(self, module: nn.Module, hook: Hook) -> None:
        self._handles.append(module.register_forward_hook(hook, with_kwargs=True))

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _argument(args: Sequence[Any], kwargs: Dict[str, Any], index: int, name: str) -> Any:
    """Positional argument ``index`` of a call, or keyword ``name``; None if neither was given."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _first(value: Any) -> Any:
    """The first image's entry of a per-image list (the value itself otherwise)."""
    return value[0] if isinstance(value, (list, tuple)) and value else value


def component(model: nn.Module, path: str) -> Optional[nn.Module]:
    """The submodule at dotted ``path`` (``proposal_generator.rpn_head``), or None."""
    module: Any = model
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module if isinstance(module, nn.Module) else None


Taker = Callable[[Tuple[Any, ...], Dict[str, Any], Any], Any]


def _recording(slots: Dict[str, Any], **takers: Taker) -> Hook:
    """A hook that stores ``taker(args, kwargs, output)`` in ``slots[name]`` for each taker."""

    def hook(module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any], output: Any) -> None:
        for name, take in takers.items():
            slots[name] = take(args, kwargs, output)

    return hook


def _output(args: Tuple[Any, ...], kwargs: Dict[str, Any], output: Any) -> Any:
    return output


def _output_item(index: int) -> Taker:
    return lambda args, kwargs, output: output[index] if isinstance(output, (list, tuple)) else None


def _call_argument(index: int, name: str) -> Taker:
    return lambda args, kwargs, output: _argument(args, kwargs, index, name)


def _component_hooks(model: nn.Module, slots: Dict[str, Any]) -> Iterator[Tuple[nn.Module, Hook]]:
    """(module, hook) pairs filling ``slots`` from the components ``model`` has."""
    wiring = {
        "backbone": {"features": _output},
        "proposal_generator": {"images": _call_argument(0, "images"), "proposals": _output_item(0)},
        "proposal_generator.anchor_generator": {"anchors": _output},
        "proposal_generator.rpn_head": {"rpn_head": _output},
        "roi_heads": {
            "roi_images": _call_argument(0, "images"),
            "roi_proposals": _call_argument(2, "proposals"),
            "detections": _output_item(0),
        },
        "roi_heads.box_predictor": {"box_predictions": _output},
    }
    for path, takers in wiring.items():
        module = component(model, path)
        if module is not None:
            yield module, _recording(slots, **takers)


def capture(model: nn.Module, model_input: Dict[str, Any], recorder: Optional[ActivationRecorder] = None) -> Capture:
    """Run ``model([model_input])`` once without gradients, in eval mode (every module's mode is
    restored afterwards), recording each stage (see ``Capture``); ``recorder``'s hooks record
    the backbone's activations in the same run."""
    slots: Dict[str, Any] = {}
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with HookSet() as hooks, torch.no_grad():
            for module, hook in _component_hooks(model, slots):
                hooks.add(module, hook)
            if recorder is not None:
                for module, hook in recorder.hooks():
                    hooks.add(module, hook)
            outputs = model([model_input])
    finally:
        for module, training in modes:  # each module's own mode, as it was
            module.training = training
    result = outputs[0]["instances"] if isinstance(outputs[0], dict) else outputs[0]
    head = slots.get("rpn_head")
    head_ok = isinstance(head, (list, tuple)) and len(head) == 2
    box_predictions = slots.get("box_predictions")
    found = Capture(
        model_input=model_input,
        output=result,
        images=slots.get("images") if slots.get("images") is not None else slots.get("roi_images"),
        features=slots.get("features") if isinstance(slots.get("features"), dict) else None,
        anchors=slots.get("anchors"),
        objectness_logits=list(head[0]) if head_ok else None,
        anchor_deltas=list(head[1]) if head_ok else None,
        proposals=_first(slots.get("proposals")),
        roi_proposals=_first(slots.get("roi_proposals")),
        box_predictions=tuple(box_predictions) if isinstance(box_predictions, (list, tuple)) else None,
        detections=_first(slots.get("detections")),
        activations=list(recorder.records) if recorder is not None else [],
    )
    _note_missing(model, found)
    return found


def _note_missing(model: nn.Module, found: Capture) -> None:
    """Say in ``found.notes`` which stages could not be captured, and why."""
    reasons = {
        "features": "the model has no `backbone` returning a dict of feature maps",
        "proposals": "the model has no `proposal_generator` (precomputed proposals?)",
        "anchors": "the proposal generator has no `anchor_generator`",
        "objectness_logits": "the proposal generator has no `rpn_head` returning (logits, deltas)",
        "roi_proposals": "the model has no `roi_heads`",
        "box_predictions": "the ROI heads have no `box_predictor` returning (scores, deltas)",
        "detections": "the model has no `roi_heads`",
    }
    for name, reason in reasons.items():
        if getattr(found, name) is None:
            found.notes[name] = reason


__all__ = ["Capture", "HookSet", "capture", "component"]
