"""This project's model and its components in Detectron2's registries.

``register_with_detectron2()`` adds to Detectron2's registries, under the names
``detectron2_component_name`` gives (a prefix Detectron2 never uses, so nothing clashes):

- ``META_ARCH_REGISTRY``: ``ProjectGeneralizedRCNN``;
- ``BACKBONE_REGISTRY``: ``project_build_resnet_backbone``, ``project_build_resnet_fpn_backbone``;
- ``PROPOSAL_GENERATOR_REGISTRY``: ``ProjectRPN``;
- ``ROI_HEADS_REGISTRY``: ``ProjectStandardROIHeads``;

(every entry of this project's registries of those four kinds when it is called; call it again
after registering more). Each is built from the Detectron2 ``CfgNode`` it is given, converted to this project's
config (``from_detectron2_cfg``); ``ProjectGeneralizedRCNN`` builds all its parts from this
project's registries, so its other component names (``MODEL.ROI_HEADS.NAME`` ...) are this
project's, i.e. Detectron2's names of the same parts.

Each registered class is a subclass of this project's class that converts at the boundary:
what Detectron2 code passes in (its ``Instances``, ``Boxes``, ``PolygonMasks``/``BitMasks``,
``ImageList``) becomes this project's, and what goes back is Detectron2's: inference outputs
``{"instances": Instances}`` with ``pred_boxes`` as ``Boxes`` and ``pred_masks`` as the
(N, H, W) bool tensor (also with ``TEST.PRED_MASK_FORMAT`` "crop"). Parameters and buffers are
the project model's own, so the state-dict keys are Detectron2's and Detectron2's
``DetectionCheckpointer`` loads Detectron2 checkpoints into it. In training under Detectron2's
trainer, the statistics the model records reach Detectron2's ``EventStorage``.

This project's own registries are not touched.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from detectron2 import modeling as d2_modeling
from detectron2.modeling import Backbone as D2Backbone
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .. import modeling as ours
from ..config.configurable import is_config
from ..config.detectron2_yaml import detectron2_component_name
from .detectron2_config import from_detectron2_cfg
from .detectron2_structures import (
    detectron2_events,
    to_detectron2_instance_list,
    to_detectron2_outputs,
    to_detectron2_shape_specs,
    to_project_image_list,
    to_project_inputs,
    to_project_instance_list,
)

logger = logging.getLogger(__name__)


def project_config(cfg: Any) -> DictConfig:
    """This project's config for ``cfg``: converted from a Detectron2 ``CfgNode``, or ``cfg``
    itself when it is this project's already."""
    if isinstance(cfg, DictConfig):
        return cfg
    if not is_config(cfg):
        raise TypeError(f"expected a Detectron2 CfgNode or this project's config, got {type(cfg).__name__}")
    return from_detectron2_cfg(cfg)[0]


# Config keys naming the parts ProjectGeneralizedRCNN builds, and the registries holding them.
_PART_REGISTRIES = (
    ("MODEL.BACKBONE.NAME", ours.BACKBONE_REGISTRY),
    ("MODEL.PROPOSAL_GENERATOR.NAME", ours.PROPOSAL_GENERATOR_REGISTRY),
    ("MODEL.RPN.HEAD_NAME", ours.RPN_HEAD_REGISTRY),
    ("MODEL.ANCHOR_GENERATOR.NAME", ours.ANCHOR_GENERATOR_REGISTRY),
    ("MODEL.ROI_HEADS.NAME", ours.ROI_HEADS_REGISTRY),
    ("MODEL.ROI_BOX_HEAD.NAME", ours.ROI_BOX_HEAD_REGISTRY),
    ("MODEL.ROI_MASK_HEAD.NAME", ours.ROI_MASK_HEAD_REGISTRY),
)


def check_part_names(cfg: DictConfig, model_name: str) -> None:
    """Raise ``ValueError`` when ``cfg`` names a part this project does not have (a Detectron2
    component such as ``CascadeROIHeads``), saying which ones it has."""
    for key, registry in _PART_REGISTRIES:
        if key == "MODEL.ROI_MASK_HEAD.NAME" and not cfg.MODEL.MASK_ON:
            continue
        name = OmegaConf.select(cfg, key)
        if name not in registry:
            available = ", ".join(sorted(n for n, _ in registry))
            raise ValueError(
                f"{key}={name!r}: this project has no such component (it has: {available}). {model_name} "
                "builds every part from this project's registries; for Detectron2's own components use "
                "Detectron2's GeneralizedRCNN, which can also take this project's parts by their registered "
                "names (see project.integrations.detectron2)"
            )


class _MetaArchitectureBoundary:
    """Converts at the boundary of a whole model (see the module docstring)."""

    @classmethod
    def from_config(cls, cfg: Any, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        converted = project_config(cfg)
        check_part_names(converted, cls.__name__)
        return super().from_config(converted, *args, **kwargs)  # type: ignore[misc]

    def forward(self, batched_inputs: Sequence[Dict[str, Any]]):
        inputs = to_project_inputs(batched_inputs)
        if not self.training:
            return self.inference(inputs)
        with detectron2_events():
            return super().forward(inputs)  # type: ignore[misc]

    def inference(
        self,
        batched_inputs: Sequence[Dict[str, Any]],
        detected_instances: Optional[Sequence[Any]] = None,
        do_postprocess: bool = True,
    ):
        results = super().inference(  # type: ignore[misc]
            to_project_inputs(batched_inputs), to_project_instance_list(detected_instances), do_postprocess
        )
        return to_detectron2_outputs(results) if do_postprocess else to_detectron2_instance_list(results)


class _ProposalGeneratorBoundary:
    """Converts at the boundary of a proposal generator: (images, features, gt_instances) in,
    (proposals, losses) out."""

    @classmethod
    def from_config(cls, cfg: Any, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        return super().from_config(project_config(cfg), *args, **kwargs)  # type: ignore[misc]

    def forward(self, images: Any, features: Dict[str, Any], gt_instances: Optional[Sequence[Any]] = None):
        with detectron2_events():
            proposals, losses = super().forward(  # type: ignore[misc]
                to_project_image_list(images), features, to_project_instance_list(gt_instances)
            )
        return to_detectron2_instance_list(proposals), losses


class _ROIHeadsBoundary:
    """Converts at the boundary of ROI heads: (images, features, proposals, targets) in,
    (instances, losses) out; also ``forward_with_given_boxes``."""

    @classmethod
    def from_config(cls, cfg: Any, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        return super().from_config(project_config(cfg), *args, **kwargs)  # type: ignore[misc]

    def forward(
        self,
        images: Any,
        features: Dict[str, Any],
        proposals: Sequence[Any],
        targets: Optional[Sequence[Any]] = None,
    ):
        with detectron2_events():
            results, losses = super().forward(  # type: ignore[misc]
                to_project_image_list(images),
                features,
                to_project_instance_list(proposals),
                to_project_instance_list(targets),
            )
        return to_detectron2_instance_list(results), losses

    def forward_with_given_boxes(self, features: Dict[str, Any], instances: Sequence[Any]):
        results = super().forward_with_given_boxes(features, to_project_instance_list(instances))  # type: ignore[misc]
        return to_detectron2_instance_list(results)


def _bridged_class(boundary: type, project_class: type) -> type:
    """``project_class`` with ``boundary`` converting at its boundary, named as registered in
    Detectron2 and kept as an attribute of this module (so that it pickles by name)."""
    name = detectron2_component_name(project_class.__name__)
    doc = f"This project's ``{project_class.__name__}`` for Detectron2 code (see {__name__})."
    bridged = type(name, (boundary, project_class), {"__module__": __name__, "__qualname__": name, "__doc__": doc})
    globals()[name] = bridged
    return bridged


@functools.cache
def detectron2_backbone_class(project_class: type) -> type:
    """``project_class`` (a backbone of this project) as a subclass of Detectron2's
    ``Backbone`` too, which Detectron2's ``build_backbone`` insists on, with ``output_shape``
    in Detectron2's ``ShapeSpec``. Its own methods come first."""
    name = detectron2_component_name(project_class.__name__)

    def output_shape(self):
        return to_detectron2_shape_specs(project_class.output_shape(self))

    attributes = {"__module__": __name__, "__qualname__": name, "output_shape": output_shape}
    bridged = type(name, (project_class, D2Backbone), attributes)
    globals()[name] = bridged
    return bridged


def _bridged_backbone_builder(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """A Detectron2 backbone builder calling this project's ``builder`` with the converted
    config. The backbone built is given the class ``detectron2_backbone_class`` makes (the
    same object and parameters; only its class gains Detectron2's ``Backbone``)."""

    def build(cfg: Any, input_shape: Any) -> nn.Module:
        backbone = builder(project_config(cfg), input_shape)
        backbone.__class__ = detectron2_backbone_class(type(backbone))
        return backbone

    build.__name__ = build.__qualname__ = detectron2_component_name(builder.__name__)
    build.__doc__ = f"This project's ``{builder.__name__}`` for Detectron2's ``build_backbone``."
    return build


# (Detectron2's registry name, this project's registry, Detectron2's registry, how an entry is bridged)
_BRIDGES: Tuple[Tuple[str, Any, Any, Callable[[Any], Any]], ...] = (
    (
        "META_ARCH",
        ours.META_ARCH_REGISTRY,
        d2_modeling.META_ARCH_REGISTRY,
        functools.partial(_bridged_class, _MetaArchitectureBoundary),
    ),
    ("BACKBONE", ours.BACKBONE_REGISTRY, d2_modeling.BACKBONE_REGISTRY, _bridged_backbone_builder),
    (
        "PROPOSAL_GENERATOR",
        ours.PROPOSAL_GENERATOR_REGISTRY,
        d2_modeling.PROPOSAL_GENERATOR_REGISTRY,
        functools.partial(_bridged_class, _ProposalGeneratorBoundary),
    ),
    (
        "ROI_HEADS",
        ours.ROI_HEADS_REGISTRY,
        d2_modeling.ROI_HEADS_REGISTRY,
        functools.partial(_bridged_class, _ROIHeadsBoundary),
    ),
)


def register_with_detectron2() -> Dict[str, List[str]]:
    """Register this project's meta-architectures, backbones, proposal generators and ROI heads
    in Detectron2's registries (see the module docstring). Idempotent: names already there are
    left alone. Returns the registered names by registry (``{"META_ARCH": [...], ...}``)."""
    names: Dict[str, List[str]] = {}
    for label, ours_registry, d2_registry, bridge in _BRIDGES:
        names[label] = []
        for project_name, obj in ours_registry:
            name = detectron2_component_name(project_name)
            if name not in d2_registry:
                d2_registry.register(bridge(obj))
                logger.debug("Registered %s in Detectron2's %s registry", name, label)
            names[label].append(name)
    return names


__all__ = ["check_part_names", "detectron2_backbone_class", "project_config", "register_with_detectron2"]
