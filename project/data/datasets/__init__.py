"""Dataset loaders and register functions, one per annotation format, and the built-in datasets."""

from .builtin import register_all_builtin
from .coco import (
    convert_to_coco_dict,
    convert_to_coco_json,
    dataset_dicts_to_coco,
    load_coco_json,
    register_coco_instances,
    save_coco_json,
)
from .instance_id_png import load_instance_id_png, register_instance_id_png
from .labelme import load_labelme_json, register_labelme_instances
from .mask_folder import load_mask_folder_instances, register_mask_folder_instances
from .registration import DATASET_FORMATS, register_datasets_from_config
from .via import load_via_json, register_via_instances

register_all_builtin()

__all__ = [
    "DATASET_FORMATS",
    "convert_to_coco_dict",
    "convert_to_coco_json",
    "dataset_dicts_to_coco",
    "load_coco_json",
    "load_instance_id_png",
    "load_labelme_json",
    "load_mask_folder_instances",
    "load_via_json",
    "register_coco_instances",
    "register_datasets_from_config",
    "register_instance_id_png",
    "register_labelme_instances",
    "register_mask_folder_instances",
    "register_via_instances",
    "save_coco_json",
]
