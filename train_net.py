#!/usr/bin/env python
"""Train and evaluate Mask R-CNN from the Hydra config tree in ``configs/``.

    python train_net.py                                   # the embedded cells demo, on CPU
    python train_net.py +experiment=finetune_dsb2018      # DSB2018 nuclei from ../shared/data
    python train_net.py +experiment=coco_pretrain_R101_FPN_3x num_gpus=8
    python train_net.py eval_only=true MODEL.WEIGHTS=output/model_final.pth   # or --eval-only
    python train_net.py resume=true                       # or --resume: continue from OUTPUT_DIR/last_checkpoint
    torchrun --nproc_per_node=4 train_net.py ...          # torchrun sets the process counts

Every option is a config key (``SOLVER.BASE_LR=0.01``); the resolved config is saved as
``OUTPUT_DIR/config.yaml`` next to the checkpoints, ``metrics.jsonl``, TensorBoard events and
``log.txt``. Bad input (an unregistered dataset, a missing weights file, a config that does not
resolve, a test set with classes the training set lacks, a read-only ``OUTPUT_DIR``, a
checkpoint that cannot be written, weights that diverged to NaN) ends the run with a message
and exit status 1.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, List, Mapping

import hydra
import torch.multiprocessing as mp
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from project.checkpoint import (
    CheckpointDownloadError,
    CheckpointFormatError,
    CheckpointMismatchError,
    DetectionCheckpointer,
    NonFiniteWeightsError,
    UnsafeCheckpointError,
)
from project.config import finalize
from project.config.overrides import UnknownConfigKeyError, check_overrides
from project.data import BadAnnotationError, DatasetCatalog, register_datasets_from_config
from project.data.class_alignment import ClassSetMismatchError
from project.engine import DefaultTrainer, default_setup, launch
from project.utils.file_io import FileWriteError, ensure_writable_directory

logger = logging.getLogger("project.train_net")

# Command-line spellings accepted besides Hydra overrides.
ARGUMENT_ALIASES = {"--eval-only": "eval_only=true", "--resume": "resume=true"}

# Errors caused by the user's input; they end the run with their message, without traceback.
INPUT_ERRORS = (
    OmegaConfBaseException,
    FileNotFoundError,
    FileWriteError,  # CheckpointSaveError included: a full disk, a read-only OUTPUT_DIR
    BadAnnotationError,  # raised under DATALOADER.ON_BAD_ANNOTATION=error
    ClassSetMismatchError,
    CheckpointDownloadError,
    CheckpointFormatError,
    CheckpointMismatchError,
    NonFiniteWeightsError,
    UnsafeCheckpointError,
    FloatingPointError,  # the loss diverged
)


class InputError(ValueError):
    """The config names something that does not exist."""


def check_inputs(cfg: DictConfig) -> None:
    """Fail before any work if a config value is left unset (``???``), ``OUTPUT_DIR`` cannot
    be written to, a dataset of ``DATASETS.TRAIN`` / ``TEST`` is not registered or
    ``MODEL.WEIGHTS`` names a local file that does not exist."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise InputError(f"config values left unset (???): {', '.join(missing)}")
    try:
        ensure_writable_directory(cfg.OUTPUT_DIR)
    except FileWriteError as error:
        raise InputError(
            f"OUTPUT_DIR={cfg.OUTPUT_DIR}: {error}; the run writes its checkpoints, logs and config there. "
            "Choose a writable folder with OUTPUT_DIR=/path/to/folder."
        ) from error
    try:
        register_datasets_from_config(cfg)
    except (ValueError, TypeError) as error:  # a DATASETS.REGISTER entry that does not fit
        raise InputError(str(error)) from error
    needed = ([] if cfg.eval_only else [("DATASETS.TRAIN", n) for n in cfg.DATASETS.TRAIN]) + [
        ("DATASETS.TEST", n) for n in cfg.DATASETS.TEST
    ]
    for key, name in needed:
        if name not in DatasetCatalog:
            raise InputError(
                f"{key} names dataset '{name}', which is not registered. Registered datasets: "
                f"{', '.join(sorted(DatasetCatalog))}. Register it in Python or with a DATASETS.REGISTER entry."
            )
    if not cfg.eval_only and not cfg.DATASETS.TRAIN:
        raise InputError("DATASETS.TRAIN is empty: there is nothing to train on (or pass eval_only=true)")
    weights = cfg.MODEL.WEIGHTS.split("?", 1)[0]
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise InputError(f"MODEL.WEIGHTS={cfg.MODEL.WEIGHTS}: no such file")


def run(cfg: DictConfig) -> Mapping[str, Any]:
    """Train (or with ``eval_only``, evaluate) in this process; all processes call it."""
    try:
        default_setup(cfg)
        if cfg.eval_only:
            model = DefaultTrainer.build_model(cfg)
            DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=cfg.resume)
            return DefaultTrainer.test(cfg, model)
        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=cfg.resume)
        return trainer.train()
    except INPUT_ERRORS + (InputError,) as error:
        _exit_with_message(error)


def _exit_with_message(error: BaseException) -> None:
    print(f"train_net.py: error: {error}", file=sys.stderr, flush=True)
    sys.exit(1)


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        finalize(cfg)
        check_inputs(cfg)
    except INPUT_ERRORS + (InputError,) as error:
        _exit_with_message(error)
    backend = "gloo" if cfg.MODEL.DEVICE == "cpu" else "nccl"
    try:
        launch(
            run,
            cfg.num_gpus,
            num_machines=cfg.num_machines,
            machine_rank=cfg.machine_rank,
            dist_url=cfg.dist_url,
            args=(cfg,),
            backend=backend,
        )
    except mp.ProcessExitedException as error:  # a process already reported its error
        _exit_with_message(error)


def rewrite_aliases(argv: List[str]) -> List[str]:
    return [ARGUMENT_ALIASES.get(argument, argument) for argument in argv]


def check_command_line(arguments: List[str]) -> None:
    """Report an unknown config key with the valid keys at its level (Hydra would only say
    it is unknown); malformed overrides and Hydra's own flags are left to Hydra."""
    try:
        check_overrides([argument for argument in arguments if not argument.startswith("-")])
    except OverrideParseException:
        return
    except UnknownConfigKeyError as error:
        _exit_with_message(error)


if __name__ == "__main__":
    sys.argv = rewrite_aliases(sys.argv)
    check_command_line(sys.argv[1:])
    main()
