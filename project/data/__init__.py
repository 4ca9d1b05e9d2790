"""Datasets: registration, loading, mapping to model inputs, and batching.

Importing this package registers the built-in datasets (COCO 2017, cells_demo, road_demo);
registration reads no file.
"""

from . import transforms
from .bad_input import BadAnnotationError, bad_annotation_policy
from .build import (
    build_batch_data_loader,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
    print_instances_class_histogram,
    trivial_batch_collator,
)
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .common import AspectRatioGroupedDataset, DatasetFromList, MapDataset, ToIterableDataset
from .dataset_mapper import MAPPER_REGISTRY, DatasetMapper, build_mapper
from .datasets import (
    convert_to_coco_dict,
    convert_to_coco_json,
    load_coco_json,
    load_instance_id_png,
    load_labelme_json,
    load_mask_folder_instances,
    load_via_json,
    register_coco_instances,
    register_datasets_from_config,
    register_instance_id_png,
    register_labelme_instances,
    register_mask_folder_instances,
    register_via_instances,
)
from .samplers import InferenceSampler, RepeatFactorTrainingSampler, TrainingSampler

__all__ = [
    "AspectRatioGroupedDataset",
    "BadAnnotationError",
    "DatasetCatalog",
    "DatasetFromList",
    "DatasetMapper",
    "InferenceSampler",
    "MAPPER_REGISTRY",
    "MapDataset",
    "Metadata",
    "MetadataCatalog",
    "RepeatFactorTrainingSampler",
    "ToIterableDataset",
    "TrainingSampler",
    "bad_annotation_policy",
    "build_batch_data_loader",
    "build_detection_test_loader",
    "build_detection_train_loader",
    "build_mapper",
    "convert_to_coco_dict",
    "convert_to_coco_json",
    "get_detection_dataset_dicts",
    "load_coco_json",
    "load_instance_id_png",
    "load_labelme_json",
    "load_mask_folder_instances",
    "load_via_json",
    "print_instances_class_histogram",
    "register_coco_instances",
    "register_datasets_from_config",
    "register_instance_id_png",
    "register_labelme_instances",
    "register_mask_folder_instances",
    "register_via_instances",
    "transforms",
    "trivial_batch_collator",
]
