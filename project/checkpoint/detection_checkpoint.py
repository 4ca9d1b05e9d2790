"""``DetectionCheckpointer``: save and load detection models in every Detectron2 weight format.

It is fvcore's ``Checkpointer`` (the class Detectron2 builds on) plus:

* reading, without executing code from the file:
  - Detectron2 model-zoo ``.pkl`` files ``{"model": {name: ndarray}, "__author__": ...}``,
    optionally with ``"matching_heuristics": True`` (names relative to a submodule);
  - Detectron / Caffe2 ``.pkl`` files, either ``{"blobs": {...}}`` (detection models) or a flat
    ``{caffe2_name: ndarray}`` (MSRA / FAIR ImageNet models such as ``R-101.pkl``);
  - ``torch.save`` files: Detectron2 training outputs ``{"model": ..., "optimizer": ...,
    "scheduler": ..., "iteration": ...}``, this project's own checkpoints, and torchvision
    ResNet state dicts (recognised by keys such as ``layer1.0.conv1.weight``);
* renaming Caffe2 / torchvision names and matching relative names to the model's full names
  (also on request, with a ``?matching_heuristics=True`` suffix on the path);
* ``detectron2://`` paths and URLs (see :mod:`.file_io`);
* clear errors naming the file for missing, corrupt, unsafe or wrong-architecture checkpoints,
  and a grouped table of loaded / mismatched / missing / skipped keys after each load;
* weights with NaN or infinite values (a diverged run) are neither saved nor loaded;
* atomic saves, and resuming from the newest complete checkpoint when ``last_checkpoint`` is
  unusable.

Loading traps (the file cannot tell the model how it expects its input; set the config):

* MSRA / Caffe2 ImageNet weights: BGR input, ``MODEL.PIXEL_STD = [1, 1, 1]``,
  ``MODEL.RESNETS.STRIDE_IN_1X1 = True``, and FrozenBN (they hold no BN statistics).
* torchvision weights: RGB input, ``MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]``,
  ``MODEL.PIXEL_STD = [58.395, 57.12, 57.375]``, ``MODEL.RESNETS.STRIDE_IN_1X1 = False``.
* Detectron2 puts the background class *last* in ``roi_heads.box_predictor.cls_score``
  (index ``NUM_CLASSES``). Only Caffe2 Detectron files, which put it first, are reordered;
  rows of Detectron2 files are loaded as they are.
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlparse

import numpy as np
import torch
from fvcore.common.checkpoint import Checkpointer, _IncompatibleKeys, _strip_prefix_if_present
from torch import nn

from ..utils.file_io import FileWriteError, PathManager, atomic_write
from .c2_model_loading import align_and_update_state_dicts, convert_c2_weights
from .download import get_local_checkpoint_path
from .errors import (
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointSaveError,
    NonFiniteWeightsError,
    UnsafeCheckpointError,
)
from .finite_weights import describe_non_finite, non_finite_keys
from .last_checkpoint import LAST_CHECKPOINT, checkpoint_named_in_record, newest_complete_checkpoint
from .load_report import LoadReport, Shape
from .safe_unpickle import load_pickle
from .torchvision_model_loading import (
    convert_torchvision_resnet_names,
    is_torchvision_resnet_state_dict,
)

logger = logging.getLogger(__name__)

# Layers whose output size is the number of classes; their shapes legitimately differ when
# fine-tuning on a dataset with another class count, and they then keep their initialisation.
CLASS_DEPENDENT_MODULES: Sequence[str] = (
    "box_predictor.cls_score",
    "box_predictor.bbox_pred",
    "mask_head.predictor",
)
# A shape mismatch under this prefix means the checkpoint is for another backbone: an error.
BACKBONE_PREFIX = "backbone."
_SAMPLE_SIZE = 5
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive


def is_class_dependent(key: str) -> bool:
    """Whether the tensor ``key`` belongs to a layer sized by the number of classes."""
    module = key.rsplit(".", 1)[0]
    return any(module == name or module.endswith("." + name) for name in CLASS_DEPENDENT_MODULES)


def _split_matching_heuristics_query(path: str) -> Tuple[str, bool]:
    """Split Detectron2's ``?matching_heuristics=True`` suffix off a checkpoint path.

    ``"w.pth?matching_heuristics=True"`` -> ``("w.pth", True)``;
    ``"w.pth"`` -> ``("w.pth", False)``.
    """
    if "?" not in path or os.path.isfile(path):
        return path, False
    parsed = urlparse(path)
    queries = parse_qs(parsed.query)
    requested = queries.pop("matching_heuristics", ["False"]) == ["True"]
    if queries:
        raise ValueError(
            f"{path}: unsupported query {sorted(queries)}; only '?matching_heuristics=True' "
            "is understood after a checkpoint path"
        )
    return parsed._replace(query="").geturl(), requested


def _require_mapping(value: Any, source: str, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise CheckpointFormatError(f"{source}: expected {what} to be a dict of weights, got {type(value).__name__}")
    return value


def _describe_shape_mismatches(mismatches: Sequence[Tuple[str, Shape, Shape]]) -> str:
    return "; ".join(
        f"{key}: {checkpoint_shape} in checkpoint vs {model_shape} in model"
        for key, checkpoint_shape, model_shape in mismatches[:_SAMPLE_SIZE]
    )


class DetectionCheckpointer(Checkpointer):
    """fvcore ``Checkpointer`` that reads Detectron2, Detectron/Caffe2 and torchvision weights.

    ``load(path)`` returns the checkpoint's extra data (e.g. ``{"iteration": ...}``) like
    fvcore, and leaves a :class:`~.load_report.LoadReport` in :attr:`last_load_report`.
    ``save(name, **extra)`` writes ``<save_dir>/<name>.pth`` atomically and records its name
    in ``<save_dir>/last_checkpoint`` (fvcore's convention, used by ``resume_or_load``).
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: bool = True,
        **checkpointables: Any,
    ):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.logger = logger
        self.path_manager = PathManager
        self.last_load_report: Optional[LoadReport] = None
        self._source = ""  # the file being loaded, for messages
        self._matching_heuristics_requested = False

    # ------------------------------------------------------------------ loading
    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        """Load ``path`` (local file, URL or ``detectron2://`` path) into the model and the
        named checkpointables (all when ``None``); an empty path loads nothing.

        Raises:
            FileNotFoundError, CheckpointDownloadError: the file cannot be obtained.
            CheckpointFormatError, UnsafeCheckpointError: the file cannot be read safely.
            CheckpointMismatchError: the checkpoint does not fit the model's architecture.
        """
        if not path:
            return super().load(path, checkpointables)
        path, self._matching_heuristics_requested = _split_matching_heuristics_query(path)
        local_path = get_local_checkpoint_path(path, self.path_manager)
        self._source = path if local_path == path else f"{path} (cached as {local_path})"
        try:
            return super().load(local_path, checkpointables)
        finally:
            self._source = ""
            self._matching_heuristics_requested = False

    def _load_file(self, filename: str) -> Dict[str, Any]:
        with open(filename, "rb") as f:
            is_zip = f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
        if filename.endswith(".pkl") and not is_zip:
            checkpoint = self._read_pickle_checkpoint(filename)
        else:
            checkpoint = self._read_torch_checkpoint(filename)
        if self._matching_heuristics_requested:
            checkpoint["matching_heuristics"] = True
        return checkpoint

    def _read_pickle_checkpoint(self, filename: str) -> Dict[str, Any]:
        data = _require_mapping(load_pickle(filename), self._source, "the file's content")
        if "model" in data and "__author__" in data:
            self.logger.info("Reading a Detectron2-format file written by %s", data["__author__"])
            self._convert_ndarray_to_tensor(_require_mapping(data["model"], self._source, "'model'"))
            return dict(data)
        # Caffe2 Detectron detection models keep their weights under "blobs"; ImageNet models
        # are a flat name -> array dict.
        blobs = _require_mapping(data.get("blobs", data), self._source, "'blobs'")
        momentum = [name for name in blobs if name.endswith("_momentum")]
        if momentum:
            self.logger.info("Skipped %d Caffe2 optimizer '_momentum' blobs", len(momentum))
        weights = {name: value for name, value in blobs.items() if not name.endswith("_momentum")}
        self._convert_ndarray_to_tensor(weights)
        self.logger.info(
            "Reading Caffe2 weights: batch norms are affine (no running statistics), so load "
            "them into FrozenBatchNorm2d; the model must take BGR input with PIXEL_STD [1, 1, 1]"
        )
        try:
            converted = convert_c2_weights(weights)
        except ValueError as error:
            raise CheckpointFormatError(f"{self._source}: {error}") from error
        return {"model": converted, "__author__": "Caffe2", "matching_heuristics": True}

    def _read_torch_checkpoint(self, filename: str) -> Dict[str, Any]:
        try:
            loaded = torch.load(filename, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise UnsafeCheckpointError(
                f"{self._source}: torch.load(weights_only=True) refused to unpickle this file: it "
                "holds Python objects other than tensors and plain containers, or was not written "
                "by torch.save. Nothing from it was executed. Re-save only the state dicts if you "
                f"trust the file. ({str(error).splitlines()[0]})"
            ) from error
        # Corrupt archives surface as RuntimeError, KeyError, EOFError and more.
        except Exception as error:
            raise CheckpointFormatError(
                f"{self._source}: not a readable PyTorch checkpoint (expected a file written by "
                "torch.save, such as a Detectron2 .pth training output, a torchvision state dict "
                f"or a checkpoint saved by this project): {type(error).__name__}: {error}"
            ) from error
        loaded = dict(_require_mapping(loaded, self._source, "the file's content"))
        if "model" not in loaded:  # a bare state dict
            loaded = {"model": loaded}
        state_dict = _require_mapping(loaded["model"], self._source, "'model'")
        self._convert_ndarray_to_tensor(state_dict)
        _strip_prefix_if_present(state_dict, "module.")  # saved from DistributedDataParallel
        if is_torchvision_resnet_state_dict(state_dict):
            self.logger.info(
                "Reading torchvision ResNet weights: the model must take RGB input with "
                "torchvision's PIXEL_MEAN / PIXEL_STD and RESNETS.STRIDE_IN_1X1 False"
            )
            loaded.update(
                {
                    "model": convert_torchvision_resnet_names(state_dict),
                    "__author__": "torchvision",
                    "matching_heuristics": True,
                }
            )
        return loaded

    def _convert_ndarray_to_tensor(self, state_dict: Dict[str, Any]) -> None:
        """Replace numpy arrays in ``state_dict`` by tensors of the same dtype, in place.

        Raises:
            CheckpointFormatError: a value is neither a numpy array nor a tensor, or is an
                array of a dtype torch has no tensors of (e.g. ``object``).
        """
        for key, value in list(state_dict.items()):
            if isinstance(value, torch.Tensor):
                continue
            if not isinstance(value, np.ndarray):
                raise CheckpointFormatError(
                    f"{self._source}: weight {key!r} is a {type(value).__name__}; expected a "
                    "numpy array or a torch tensor"
                )
            try:
                # Arrays unpickled from immutable buffers are read-only; torch needs writable memory.
                state_dict[key] = torch.from_numpy(value if value.flags.writeable else value.copy())
            except TypeError:  # a dtype torch has no tensors of (object, str, ...)
                raise CheckpointFormatError(
                    f"{self._source}: weight {key!r} is a numpy array of dtype {value.dtype}, which "
                    "cannot become a tensor; expected numeric arrays (float32 for weights)"
                ) from None

    def _load_model(self, checkpoint: Dict[str, Any]) -> _IncompatibleKeys:
        state_dict = checkpoint["model"]
        model_state_dict = self.model.state_dict()
        if checkpoint.get("matching_heuristics", False):
            state_dict = align_and_update_state_dicts(
                model_state_dict, state_dict, c2_conversion=False, source=self._source
            )
            checkpoint["model"] = state_dict
        self._check_architecture(state_dict, model_state_dict)
        self._check_finite(state_dict, model_state_dict)
        incompatible = super()._load_model(checkpoint)
        mismatched = {key for key, _, _ in incompatible.incorrect_shapes}
        not_loaded = set(incompatible.missing_keys)
        self.last_load_report = LoadReport(
            source=self._source,
            loaded=[key for key in model_state_dict if key not in not_loaded],
            missing=[key for key in incompatible.missing_keys if key not in mismatched],
            unexpected=list(incompatible.unexpected_keys),
            incorrect_shapes=list(incompatible.incorrect_shapes),
        )
        return incompatible

    def _check_architecture(
        self, state_dict: Mapping[str, torch.Tensor], model_state_dict: Mapping[str, torch.Tensor]
    ) -> None:
        """Refuse, before anything is loaded, a checkpoint that cannot be for this model."""
        common = [key for key in state_dict if key in model_state_dict]
        mismatches = [
            (key, tuple(state_dict[key].shape), tuple(model_state_dict[key].shape))
            for key in common
            if state_dict[key].shape != model_state_dict[key].shape
        ]
        if state_dict and model_state_dict and len(mismatches) == len(common):
            message = (
                f"{self._source}: none of its {len(state_dict)} tensors fits the model "
                f"({len(model_state_dict)} tensors); is it a checkpoint of another architecture? "
                f"Checkpoint keys: {sorted(state_dict)[:_SAMPLE_SIZE]}. "
                f"Model keys: {sorted(model_state_dict)[:_SAMPLE_SIZE]}."
            )
            if mismatches:
                message += f" Same names, different shapes: {_describe_shape_mismatches(mismatches)}."
            raise CheckpointMismatchError(message)
        backbone_mismatches = [m for m in mismatches if m[0].startswith(BACKBONE_PREFIX)]
        if backbone_mismatches:
            raise CheckpointMismatchError(
                f"{self._source}: {len(backbone_mismatches)} backbone tensors have other shapes "
                "than in the model, so the checkpoint is for a different backbone (depth, width, "
                f"groups or norm): {_describe_shape_mismatches(backbone_mismatches)}"
            )

    def _check_finite(
        self, state_dict: Mapping[str, torch.Tensor], model_state_dict: Mapping[str, torch.Tensor]
    ) -> None:
        """Refuse, before anything is loaded, NaN or infinite values in the tensors that would be
        loaded (tensors skipped for their name or shape do not matter)."""
        loaded = [
            key
            for key in state_dict
            if key in model_state_dict and state_dict[key].shape == model_state_dict[key].shape
        ]
        bad = non_finite_keys(state_dict, loaded)
        if bad:
            raise NonFiniteWeightsError(
                f"{self._source}: {len(bad)} of its tensors hold NaN or infinite values: "
                f"{describe_non_finite(state_dict, bad)}. A model with such weights gives every "
                "detection a NaN score, so it predicts nothing, and training from it diverges at "
                "once; nothing was loaded. The run that wrote this file had probably diverged: "
                "load one of its earlier checkpoints instead."
            )

    def _log_incompatible_keys(self, incompatible: _IncompatibleKeys) -> None:
        report = self.last_load_report
        for key, checkpoint_shape, model_shape in report.incorrect_shapes:
            if is_class_dependent(key):
                self.logger.warning(
                    "%s: %s has shape %s in the checkpoint but %s in the model: the number of "
                    "classes differs, so this layer keeps its fresh initialisation (expected when "
                    "fine-tuning on a dataset with other classes).",
                    report.source,
                    key,
                    checkpoint_shape,
                    model_shape,
                )
            else:
                self.logger.warning(
                    "%s: skipped %s: shape %s in the checkpoint but %s in the model; the layer "
                    "keeps its initialisation.",
                    report.source,
                    key,
                    checkpoint_shape,
                    model_shape,
                )
        if report.missing or report.unexpected:
            self.logger.warning(
                "%s: %d model tensors are not in the checkpoint and keep their initialisation; "
                "%d checkpoint tensors are not used by the model (table follows).",
                report.source,
                len(report.missing),
                len(report.unexpected),
            )
        complete = not (report.missing or report.unexpected or report.incorrect_shapes)
        self.logger.log(logging.INFO if complete else logging.WARNING, report.format_table())

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **kwargs: Any) -> None:
        """Write the model, the checkpointables and ``kwargs`` to ``<save_dir>/<name>.pth``.

        The file appears complete or not at all (see :func:`project.utils.file_io.atomic_write`);
        ``last_checkpoint`` is updated only after it is in place. Does nothing without a
        ``save_dir`` or with ``save_to_disk=False``.

        Raises:
            NonFiniteWeightsError: a model tensor holds NaN or infinite values (training has
                diverged); nothing is written.
            CheckpointSaveError: writing failed (e.g. the disk is full).
        """
        if not self.save_dir or not self.save_to_disk:
            return
        basename = f"{name}.pth"
        if os.path.basename(basename) != basename:
            raise ValueError(f"checkpoint name {name!r} must not contain a directory")
        save_file = os.path.join(self.save_dir, basename)
        model_state = self.model.state_dict()
        self._refuse_non_finite(model_state, save_file)
        data = {"model": model_state}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        self.logger.info("Saving checkpoint to %s", save_file)
        try:
            atomic_write(save_file, lambda f: torch.save(data, f))
            self.tag_last_checkpoint(basename)
        except FileWriteError as error:
            raise CheckpointSaveError(str(error)) from error

    @staticmethod
    def _refuse_non_finite(model_state: Mapping[str, torch.Tensor], save_file: str) -> None:
        bad = non_finite_keys(model_state, list(model_state))
        if bad:
            raise NonFiniteWeightsError(
                f"Refusing to save {save_file}: training has diverged, {len(bad)} model tensors hold "
                f"NaN or infinite values: {describe_non_finite(model_state, bad)}. Such a checkpoint "
                "would predict nothing. Earlier checkpoints, and last_checkpoint, are left as they "
                "were. Try a lower SOLVER.BASE_LR, a longer SOLVER.WARMUP_ITERS or "
                "SOLVER.CLIP_GRADIENTS.ENABLED=true."
            )

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Atomically record ``last_filename_basename`` in ``<save_dir>/last_checkpoint``."""
        atomic_write(
            os.path.join(self.save_dir, LAST_CHECKPOINT),
            lambda f: f.write(last_filename_basename.encode()),
        )

    def get_checkpoint_file(self) -> str:
        """The checkpoint to resume from: the one ``<save_dir>/last_checkpoint`` names, or ""
        without that record. When the record is unusable (not UTF-8, empty, or naming no file),
        the newest complete ``model_*.pth`` of ``save_dir`` is used instead, with a warning.

        Raises:
            CheckpointFormatError: the record is unusable and there is no checkpoint to fall back on.
        """
        if not self.has_checkpoint():
            return ""
        path, problem = checkpoint_named_in_record(self.save_dir)
        if path is not None:
            return path
        fallback = newest_complete_checkpoint(self.save_dir)
        if fallback is None:
            raise CheckpointFormatError(
                f"{problem}, and {self.save_dir} holds no complete model_*.pth checkpoint to resume "
                f"from instead. Write the name of a checkpoint file of {self.save_dir} into "
                f"{LAST_CHECKPOINT}, or delete it or run with resume=false to start from iteration 0."
            )
        self.logger.warning(
            "%s; resuming from %s instead, the newest complete checkpoint in that folder (write "
            "another checkpoint's name into %s to choose it)",
            problem,
            fallback,
            LAST_CHECKPOINT,
        )
        return fallback
