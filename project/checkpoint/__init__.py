"""Saving and loading model weights in Detectron2's formats (see ``DetectionCheckpointer``)."""

from .c2_model_loading import align_and_update_state_dicts, convert_c2_name, convert_c2_weights
from .detection_checkpoint import DetectionCheckpointer, is_class_dependent
from .download import get_local_checkpoint_path
from .errors import (
    CheckpointDownloadError,
    CheckpointError,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointSaveError,
    NonFiniteWeightsError,
    UnsafeCheckpointError,
)
from .load_report import LoadReport
from .safe_unpickle import RestrictedUnpickler, load_pickle
from .torchvision_model_loading import (
    convert_torchvision_resnet_names,
    is_torchvision_resnet_state_dict,
)

__all__ = [
    "CheckpointDownloadError",
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "CheckpointSaveError",
    "DetectionCheckpointer",
    "LoadReport",
    "NonFiniteWeightsError",
    "RestrictedUnpickler",
    "UnsafeCheckpointError",
    "align_and_update_state_dicts",
    "convert_c2_name",
    "convert_c2_weights",
    "convert_torchvision_resnet_names",
    "get_local_checkpoint_path",
    "is_class_dependent",
    "is_torchvision_resnet_state_dict",
    "load_pickle",
]
