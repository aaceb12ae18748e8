"""What every entry point that runs a model shares, below training and inference: the ``Accelerator`` they build
(``accelerator``) and the sharded top-1 / top-5 / loss pass (``evaluation``)."""

from .accelerator import make_accelerator, scoped_accelerator
from .evaluation import evaluate_model, prepare_eval_loader

__all__ = ["evaluate_model", "make_accelerator", "prepare_eval_loader", "scoped_accelerator"]
