"""Running the model: the predictor for user code, training, and process launching."""

from ..utils.env import seed_all_rng
from ..utils.events import (
    CommonMetricPrinter,
    EventStorage,
    EventWriter,
    JSONWriter,
    TensorboardWriter,
    get_event_storage,
)
from .defaults import DefaultTrainer, create_ddp_model, default_setup, save_config
from .hooks import (
    BestCheckpointer,
    EvalHook,
    IterationTimer,
    LRScheduler,
    ParameterStatistics,
    PeriodicCheckpointer,
    PeriodicWriter,
    PreciseBN,
    ValidationLoss,
)
from .launch import launch
from .logger import setup_logger
from .prediction_images import PredictionImages
from .predictor import DefaultPredictor
from .reproducibility import (
    capture_rng_state,
    configure_determinism,
    preserve_rng_state,
    restore_rng_state,
)
from .tiled_predictor import TiledPredictor
from .train_loop import HookBase, SimpleTrainer, TrainerBase

__all__ = [
    "BestCheckpointer",
    "CommonMetricPrinter",
    "DefaultPredictor",
    "DefaultTrainer",
    "EvalHook",
    "EventStorage",
    "EventWriter",
    "HookBase",
    "IterationTimer",
    "JSONWriter",
    "LRScheduler",
    "ParameterStatistics",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "PreciseBN",
    "PredictionImages",
    "SimpleTrainer",
    "TiledPredictor",
    "TensorboardWriter",
    "TrainerBase",
    "ValidationLoss",
    "capture_rng_state",
    "configure_determinism",
    "create_ddp_model",
    "default_setup",
    "get_event_storage",
    "launch",
    "preserve_rng_state",
    "restore_rng_state",
    "save_config",
    "seed_all_rng",
    "setup_logger",
]
