"""``DefaultTrainer``: the standard training run built from a config (model, optimizer,
schedule, data, checkpoints, evaluation, logging), and ``default_setup`` for a process."""

from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import DetectionCheckpointer
from ..data import build_detection_test_loader, build_detection_train_loader, build_mapper
from ..data.build import log_evaluation_bad_input, log_training_bad_input
from ..data.class_alignment import with_aligned_datasets
from ..evaluation import COCOEvaluator, DatasetEvaluator, inference_on_dataset, print_csv_format
from ..modeling import build_model
from ..solver import build_gradient_clipper, build_lr_scheduler, build_optimizer
from ..utils import comm
from ..utils.ddp import unwrap_model
from ..utils.env import seed_all_rng
from ..utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardWriter
from ..utils.file_io import atomic_write, ensure_writable_directory, remove_stale_temporaries
from . import hooks
from .logger import setup_logger
from .prediction_images import PredictionImages
from .reproducibility import configure_determinism, preserve_rng_state, restore_rng_state
from .train_loop import SimpleTrainer, TrainerBase, model_device

logger = logging.getLogger(__name__)

CONFIG_FILE_NAME = "config.yaml"


def save_config(cfg: DictConfig, path: str) -> None:
    """Write the resolved ``cfg`` as YAML to ``path`` atomically (``project.config.load_cfg``
    reads it back)."""
    text = OmegaConf.to_yaml(cfg, resolve=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _remove_interrupted_writes(output_dir: str) -> None:
    removed = remove_stale_temporaries(output_dir)
    if removed:
        logger.warning(
            "Removed %d temporary file(s) that a killed process left while writing to %s: %s",
            len(removed),
            output_dir,
            ", ".join(os.path.basename(path) for path in removed),
        )


def default_setup(cfg: DictConfig) -> None:
    """Prepare this process for a run: create ``OUTPUT_DIR`` (checking that it is writable),
    log to the console (main process) and ``OUTPUT_DIR/log.txt``, remove the temporary files
    of writes a killed run left there and save the config as ``OUTPUT_DIR/config.yaml`` (main
    process), seed every generator with ``SEED + rank`` (a random seed when ``SEED < 0``) and
    set ``DETERMINISTIC`` / ``CUDNN_BENCHMARK``.

    Raises:
        FileWriteError: ``OUTPUT_DIR`` cannot be created or written to.
    """
    rank = comm.get_rank()
    ensure_writable_directory(cfg.OUTPUT_DIR)
    setup_logger(cfg.OUTPUT_DIR, rank)
    logger.info(
        "Process %d of %d, torch %s, device %s", rank, comm.get_world_size(), torch.__version__, cfg.MODEL.DEVICE
    )
    if comm.is_main_process():
        _remove_interrupted_writes(cfg.OUTPUT_DIR)
        path = os.path.join(cfg.OUTPUT_DIR, CONFIG_FILE_NAME)
        save_config(cfg, path)
        logger.info("Resolved config saved to %s", path)
    seed = seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    logger.info("Random generators seeded with %d%s", seed, " (deterministic mode)" if cfg.DETERMINISTIC else "")
    configure_determinism(cfg.DETERMINISTIC, cfg.CUDNN_BENCHMARK)


def create_ddp_model(model: nn.Module) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` when there are several processes
    (rank 0's weights and buffers are copied to all at construction and buffers again at
    every forward pass)."""
    if comm.get_world_size() == 1:
        return model
    device_ids = [comm.get_local_rank()] if model_device(model).type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def synchronize_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm statistics) to every process. Each process updates
    them from its own batch during the forward pass, so after training they differ until
    synchronised; evaluating then gives every shard the same model."""
    if comm.get_world_size() == 1:
        return
    for buffer in unwrap_model(model).buffers():
        torch.distributed.broadcast(buffer, src=0)


def _check_periods(cfg: DictConfig) -> None:
    for key, minimum in (
        ("SOLVER.MAX_ITER", 1),
        ("SOLVER.CHECKPOINT_PERIOD", 1),
        ("LOG_PERIOD", 1),
        ("TEST.EVAL_PERIOD", 0),
        ("VIS_PERIOD", 0),
        ("TENSORBOARD.HISTOGRAM_PERIOD", 0),
        ("TENSORBOARD.EVAL_IMAGES", 0),
    ):
        value = OmegaConf.select(cfg, key)
        if value < minimum:
            raise ValueError(f"{key}={value}; it must be at least {minimum}")


class DefaultTrainer(TrainerBase):
    """Trains ``cfg``'s model on ``cfg.DATASETS.TRAIN`` and evaluates it on ``DATASETS.TEST``.

    Built from the config: model, SGD (``build_optimizer``), LR schedule, train loader (with
    ``SOLVER.ACCUM_ITER`` batches of ``IMS_PER_BATCH / ACCUM_ITER`` images per step; built
    when training starts, so that a resumed run's loader continues after the batches the
    interrupted run consumed, see ``build_detection_train_loader``), AMP,
    gradient clipping, DDP when several processes run, and the hooks: iteration timer, LR
    schedule, periodic checkpoints (``SOLVER.CHECKPOINT_PERIOD``), evaluation every
    ``TEST.EVAL_PERIOD`` iterations and at the end, the best checkpoint by
    ``SOLVER.BEST_CHECKPOINT_METRIC``, the validation loss (``TEST.VAL_LOSS``), weight and
    gradient statistics every ``TENSORBOARD.HISTOGRAM_PERIOD`` iterations, and writers
    (``metrics.jsonl``, TensorBoard events, console) every ``LOG_PERIOD`` iterations. At each
    evaluation, the predictions on ``TENSORBOARD.EVAL_IMAGES`` validation images are drawn as
    TensorBoard images (see ``PredictionImages``); the model draws its own training pictures
    every ``VIS_PERIOD`` iterations.

    Before anything is built, the classes of every dataset are compared with those of
    ``DATASETS.TRAIN[0]`` by name: datasets with the same classes in another order (or some of
    them) are read through views numbered like it, and a class it lacks stops the run
    (``ClassSetMismatchError``, see ``project.data.class_alignment``).

    Usage::

        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=False)
        results = trainer.train()
    """

    def __init__(self, cfg: DictConfig):
        super().__init__()
        _check_periods(cfg)
        with_aligned_datasets(cfg)  # a class-set mismatch stops the run here; the loaders read the aligned views
        self.cfg = cfg
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        self._trainer = SimpleTrainer(
            create_ddp_model(model),
            data_loader=None,  # built in train(), once resume_or_load has set start_iter
            optimizer=optimizer,
            amp=cfg.SOLVER.AMP.ENABLED,
            accumulation_steps=cfg.SOLVER.ACCUM_ITER,
            grad_clipper=build_gradient_clipper(cfg),
        )
        # The hooks are registered on this trainer, while the inner one runs the step and reaches
        # the point where the gradients are complete: it calls them through this one (weakly, as
        # hooks hold their trainer).
        outer = weakref.proxy(self)
        self._trainer.after_backward = lambda: outer.after_backward()
        self._prediction_images: Optional[PredictionImages] = None
        self._prediction_images_built = False
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        checkpointables: Dict[str, Any] = {"optimizer": optimizer, "scheduler": self.scheduler}
        if self._trainer.grad_scaler is not None:
            checkpointables["grad_scaler"] = self._trainer.grad_scaler
        self.checkpointer = DetectionCheckpointer(
            model, cfg.OUTPUT_DIR, save_to_disk=comm.is_main_process(), **checkpointables
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self._last_eval_results: Mapping[str, Any] = {}
        self.register_hooks(self.build_hooks())

    @property
    def model(self) -> nn.Module:
        return self._trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._trainer.optimizer

    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume`` and a checkpoint named in ``OUTPUT_DIR/last_checkpoint``, restore
        the model, optimizer, scheduler, grad scaler, this process's RNG state and continue
        after its iteration. Otherwise load only the model weights of ``MODEL.WEIGHTS`` (if
        set) and start at iteration 0."""
        resuming = resume and self.checkpointer.has_checkpoint()
        extra = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if not resuming:
            return
        self.start_iter = int(extra.get("iteration", -1)) + 1
        rng_states = extra.get("rng_states")
        if rng_states is None:
            logger.warning("The checkpoint holds no RNG state; random streams restart from the seed")
        elif len(rng_states) != comm.get_world_size():
            logger.warning(
                "The checkpoint's RNG states are for %d processes, this run has %d; random streams "
                "restart from the seed",
                len(rng_states),
                comm.get_world_size(),
            )
        else:
            restore_rng_state(rng_states[comm.get_rank()])
        logger.info("Resuming at iteration %d", self.start_iter)

    def build_hooks(self) -> List[Optional[hooks.HookBase]]:
        cfg = self.cfg
        eval_period = cfg.TEST.EVAL_PERIOD

        def evaluate() -> Mapping[str, Any]:
            synchronize_buffers(self.model)
            self._last_eval_results = self.test(cfg, self.model)
            self.record_prediction_images()
            return self._last_eval_results

        best_metric = cfg.SOLVER.BEST_CHECKPOINT_METRIC
        return [
            hooks.IterationTimer(),
            hooks.LRScheduler(self.optimizer, self.scheduler),
            # Before the checkpointer and the evaluation, which should both see its statistics.
            hooks.PreciseBN(eval_period, self.model, lambda: self.build_train_loader(cfg), cfg.TEST.PRECISE_BN.NUM_ITER)
            if cfg.TEST.PRECISE_BN.ENABLED
            else None,
            hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, max_iter=self.max_iter),
            hooks.EvalHook(eval_period, evaluate),
            hooks.BestCheckpointer(self.checkpointer, best_metric, cfg.SOLVER.BEST_CHECKPOINT_MODE)
            if best_metric and eval_period > 0
            else None,
            hooks.ValidationLoss(self.build_validation_loader(cfg), eval_period)
            if cfg.TEST.VAL_LOSS and eval_period > 0 and cfg.DATASETS.TEST
            else None,
            hooks.ParameterStatistics(self.model, cfg.TENSORBOARD.HISTOGRAM_PERIOD)
            if cfg.TENSORBOARD.HISTOGRAM_PERIOD > 0
            else None,
            hooks.PeriodicWriter(self.build_writers(), period=cfg.LOG_PERIOD) if comm.is_main_process() else None,
        ]

    def record_prediction_images(self) -> None:
        """On the main process, record the predictions on the first ``TENSORBOARD.EVAL_IMAGES``
        images of ``DATASETS.TEST[0]`` as TensorBoard images at the current iteration (the
        images are chosen and read at the first call, see ``build_prediction_images``)."""
        if not comm.is_main_process():
            return
        if not self._prediction_images_built:
            self._prediction_images = self.build_prediction_images(self.cfg)
            self._prediction_images_built = True
        if self._prediction_images is not None:
            self._prediction_images(unwrap_model(self.model))

    def build_writers(self) -> List[EventWriter]:
        """``metrics.jsonl`` and TensorBoard events in ``OUTPUT_DIR``, and the console."""
        return [
            CommonMetricPrinter(self.max_iter, window_size=self.cfg.LOG_PERIOD),
            JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.jsonl"), window_size=self.cfg.LOG_PERIOD),
            TensorboardWriter(self.cfg.OUTPUT_DIR, window_size=self.cfg.LOG_PERIOD),
        ]

    def train(self) -> Mapping[str, Any]:
        """Run iterations ``start_iter .. SOLVER.MAX_ITER - 1``; returns the results of the
        last evaluation (``{}`` on processes other than the main one)."""
        # Building the loader must not advance the generators a resumed run has just restored.
        with preserve_rng_state():
            self._trainer.data_loader = self.build_train_loader(self.cfg, start_iter=self.start_iter)
        super().train(self.start_iter, self.max_iter)
        log_training_bad_input(list(self.cfg.DATASETS.TRAIN), self._trainer.data_loader)
        return self._last_eval_results

    def run_step(self) -> None:
        self._trainer.iter = self.iter
        self._trainer.run_step()

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg: DictConfig) -> nn.Module:
        return build_model(cfg)

    @classmethod
    def build_optimizer(cls, cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg: DictConfig, optimizer: torch.optim.Optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: DictConfig, start_iter: int = 0):
        """Batches of ``IMS_PER_BATCH / ACCUM_ITER`` images (over all processes): with
        gradient accumulation, one optimizer step still sees ``IMS_PER_BATCH`` images. The
        stream skips the ``start_iter * ACCUM_ITER`` batches that iterations before
        ``start_iter`` consumed."""
        total, accumulation = cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.ACCUM_ITER
        world_size = comm.get_world_size()
        if accumulation < 1 or total % (accumulation * world_size):
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH={total} must be a multiple of SOLVER.ACCUM_ITER={accumulation} "
                f"times the number of processes ({world_size})"
            )
        return build_detection_train_loader(
            with_aligned_datasets(cfg), total_batch_size=total // accumulation, start_batch=start_iter * accumulation
        )

    @classmethod
    def build_prediction_images(cls, cfg: DictConfig) -> Optional[PredictionImages]:
        """The validation images drawn at each evaluation (None: none)."""
        return PredictionImages.from_config(cfg, cfg.TENSORBOARD.EVAL_IMAGES)

    @classmethod
    def build_test_loader(cls, cfg: DictConfig, dataset_name: str):
        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_validation_loader(cls, cfg: DictConfig):
        """``DATASETS.TEST`` with ground truth, mapped as for training (for ``TEST.VAL_LOSS``)."""
        aligned = with_aligned_datasets(cfg)
        return build_detection_test_loader(aligned, list(aligned.DATASETS.TEST), mapper=build_mapper(cfg, True))

    @classmethod
    def build_evaluator(
        cls, cfg: DictConfig, dataset_name: str, output_folder: Optional[str] = None
    ) -> DatasetEvaluator:
        """COCO bbox (and segm, with masks) AP, up to ``TEST.DETECTIONS_PER_IMAGE`` detections
        per image; results in ``OUTPUT_DIR/inference/<dataset_name>``."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder, max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)

    @classmethod
    def test(
        cls, cfg: DictConfig, model: nn.Module, evaluators: Optional[Sequence[DatasetEvaluator]] = None
    ) -> Mapping[str, Any]:
        """Evaluate ``model`` on every dataset of ``DATASETS.TEST``.

        A dataset whose classes are those of ``DATASETS.TRAIN[0]`` in another order (or some
        of them) is evaluated through its view numbered like the training set (see
        ``project.data.class_alignment``); ``evaluators`` given for such a dataset must be built
        for that view's name. Results and outputs keep the dataset's own name.

        Returns ``{dataset: {task: {metric: value}}}``, or ``{task: {metric: value}}`` for a
        single dataset; ``{}`` on processes other than the main one.

        Raises:
            ClassSetMismatchError: a dataset has a class that ``DATASETS.TRAIN[0]`` lacks.
        """
        names = list(cfg.DATASETS.TEST)
        if evaluators is not None and len(evaluators) != len(names):
            raise ValueError(f"{len(evaluators)} evaluators given for {len(names)} datasets in DATASETS.TEST")
        views = list(with_aligned_datasets(cfg).DATASETS.TEST)
        results: OrderedDict[str, Any] = OrderedDict()
        for index, (name, view) in enumerate(zip(names, views)):
            data_loader = cls.build_test_loader(cfg, view)
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", name)
            evaluator = evaluators[index] if evaluators is not None else cls.build_evaluator(cfg, view, output_folder)
            dataset_results = inference_on_dataset(unwrap_model(model), data_loader, evaluator)
            results[name] = dataset_results
            if comm.is_main_process() and dataset_results:
                logger.info("Evaluation results for %s in csv format:", name)
                print_csv_format(dataset_results)
            if comm.is_main_process():
                log_evaluation_bad_input(name)
        if len(results) == 1:
            return next(iter(results.values()))
        return results
