"""Use this project from Detectron2: its model in Detectron2's ``build_model``,
``DefaultPredictor``, ``DefaultTrainer`` and ``COCOEvaluator``; its datasets in Detectron2's
catalogs; its mapper in Detectron2's loaders; configs converted both ways.

Needs Detectron2 installed; nothing here is imported by ``import project``. Nothing is
registered until asked for::

    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor
    from project.integrations.detectron2 import register_with_detectron2

    register_with_detectron2()                      # idempotent
    cfg = get_cfg()
    cfg.merge_from_file(".../mask_rcnn_R_101_FPN_3x.yaml")
    cfg.MODEL.META_ARCHITECTURE = "ProjectGeneralizedRCNN"
    predictor = DefaultPredictor(cfg)                # this project's model, Detectron2's outputs

Training with Detectron2's trainer on this project's datasets and mapper::

    from detectron2.engine import DefaultTrainer
    from detectron2.evaluation import COCOEvaluator
    from project.integrations.detectron2 import project_train_loader, register_datasets_with_detectron2

    register_datasets_with_detectron2(["cells_demo_train", "cells_demo_val"])

    class Trainer(DefaultTrainer):
        @classmethod
        def build_train_loader(cls, cfg):
            return project_train_loader(cfg)       # this project's DatasetMapper

        @classmethod
        def build_evaluator(cls, cfg, dataset_name):
            return COCOEvaluator(dataset_name, output_dir=cfg.OUTPUT_DIR)

Configs: ``from_detectron2_cfg(cfg)`` gives this project's config (and the ignored keys),
``to_detectron2_cfg(project_cfg)`` a ``CfgNode``, ``add_project_config(cfg)`` adds this
project's extra keys (``TEST.PRED_MASK_FORMAT``, ``TEST.TILE``, ...) to a Detectron2 config.

Names registered in Detectron2 (``detectron2_component_name``: classes prefixed "Project",
builder functions "project_"): ``ProjectGeneralizedRCNN`` (META_ARCH),
``project_build_resnet_backbone`` and ``project_build_resnet_fpn_backbone`` (BACKBONE),
``ProjectRPN`` (PROPOSAL_GENERATOR), ``ProjectStandardROIHeads`` (ROI_HEADS). The parts can
also go into Detectron2's own ``GeneralizedRCNN`` by those names. How structures, configs and
datasets are converted: ``detectron2_models``, ``detectron2_structures``,
``detectron2_config``, ``detectron2_data`` beside this module, and
``project.config.detectron2_yaml`` (Detectron2 YAML files without Detectron2).
"""

from ..config.detectron2_yaml import detectron2_component_name, load_detectron2_yaml, project_component_name

try:
    from .detectron2_config import add_project_config, from_detectron2_cfg, to_detectron2_cfg
    from .detectron2_data import (
        ProjectDatasetMapper,
        bridged_datasets,
        project_test_loader,
        project_train_loader,
        register_datasets_with_detectron2,
    )
    from .detectron2_models import register_with_detectron2
    from .detectron2_structures import to_detectron2_instances, to_project_instances
except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] != "detectron2":
        raise
    raise ModuleNotFoundError(
        "project.integrations.detectron2 needs Detectron2, which is not importable in this environment "
        f"({e}). Install Detectron2 to use this project from it; this project itself, and reading Detectron2 "
        "YAML files (project.config.detectron2_yaml), work without it",
        name=e.name,
    ) from e

__all__ = [
    "ProjectDatasetMapper",
    "add_project_config",
    "bridged_datasets",
    "detectron2_component_name",
    "from_detectron2_cfg",
    "load_detectron2_yaml",
    "project_component_name",
    "project_test_loader",
    "project_train_loader",
    "register_datasets_with_detectron2",
    "register_with_detectron2",
    "to_detectron2_cfg",
    "to_detectron2_instances",
    "to_project_instances",
]
