"""Using a trained classifier: ``predict`` (top-k labels of images) and ``evaluate`` (where it goes wrong).

See docs/predict-evaluate.md. ``load_trained_model`` reads run folders and LoRA adapter folders as well
as every source ``load_vit`` takes.
"""

from .evaluate import EvaluationResult, evaluate, load_split, model_label_ids
from .images import collect_images
from .loading import load_trained_model
from .predict import Prediction, PredictionResult, predict
from .report import classification_numbers, most_confused
from .scoring import Scores, score_dataset

__all__ = [
    "EvaluationResult",
    "Prediction",
    "PredictionResult",
    "Scores",
    "classification_numbers",
    "collect_images",
    "evaluate",
    "load_split",
    "load_trained_model",
    "model_label_ids",
    "most_confused",
    "predict",
    "score_dataset",
]
