"""The one Accelerate training loop: ``train(recipe)`` for runs, ``fit(...)`` / ``TrainingRunner`` for library callers."""

from .checkpoints import list_checkpoints, resolve_resume, rotate_checkpoints, save_checkpoint, verify_checkpoint
from .config import EvalConfig, OptimConfig, OutputConfig, ScheduleConfig, TrainConfig
from ..runtime.evaluation import evaluate_model, prepare_eval_loader
from .loop import FitResult, TrainingRunner, TrainState, fit
from .optim import build_optimizer
from .recipe import TrainRecipe, load_train_recipe
from ..methods import prepare_method
from .run import TrainResult, train
from .schedule import build_scheduler

__all__ = [
    "EvalConfig", "FitResult", "OptimConfig", "OutputConfig", "ScheduleConfig", "TrainConfig", "TrainRecipe",
    "TrainResult", "TrainState", "TrainingRunner", "build_optimizer", "build_scheduler",
    "evaluate_model", "fit", "list_checkpoints", "load_train_recipe", "prepare_eval_loader", "prepare_method",
    "resolve_resume", "rotate_checkpoints", "save_checkpoint", "train", "verify_checkpoint",
]
