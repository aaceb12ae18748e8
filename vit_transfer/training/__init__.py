"""The one Accelerate training loop: ``train(recipe)`` for runs, ``fit(...)`` for library callers."""

from .checkpoints import list_checkpoints, resolve_resume, rotate_checkpoints, save_checkpoint
from .config import EvalConfig, OptimConfig, OutputConfig, ScheduleConfig, TrainConfig
from .ema import WeightEma
from .evaluation import evaluate_model
from .loop import FitResult, TrainState, fit
from .loss import classification_loss
from .metrics import load_topk_accuracy
from .optim import build_optimizer
from .recipe import TrainRecipe, check_recipe, load_train_recipe
from .run import TrainResult, prepare_method, train
from .schedule import build_scheduler

__all__ = [
    "EvalConfig", "FitResult", "OptimConfig", "OutputConfig", "ScheduleConfig", "TrainConfig", "TrainRecipe",
    "TrainResult", "TrainState", "WeightEma", "build_optimizer", "build_scheduler", "check_recipe",
    "classification_loss", "evaluate_model", "fit", "list_checkpoints", "load_topk_accuracy", "load_train_recipe",
    "prepare_method", "resolve_resume", "rotate_checkpoints", "save_checkpoint", "train",
]
