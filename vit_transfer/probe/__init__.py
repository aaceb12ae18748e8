"""How good are a frozen ViT's features for your data? Linear probe and few-shot, with a feature cache.

Library use (no recipe file)::

    from vit_transfer import load_vit
    from vit_transfer.data import DataConfig, load_image_datasets
    from vit_transfer.probe import ProbeConfig, probe_model

    datasets = load_image_datasets(DataConfig(source="sklearn:digits"))
    result = probe_model(load_vit("google/vit-base-patch16-224-in21k"), datasets, ProbeConfig(shots=[10]))
    print(result.table())
"""

from .cache import FeatureCache, cached_features, default_cache_dir, model_digest
from .config import ProbeConfig, ProbeRecipe
from .features import Features, extract_features
from .fewshot import FewShotResult, FewShotScore, fewshot_lsr, ridge_accuracy
from .head import attach_linear_head, head_agreement, load_linear_head
from .logistic import CSearch, LogisticRegression, fit_logistic_regression, select_C, topk_accuracy
from .results import LinearProbeResult, ProbeResult
from .run import linear_probe, probe_model, run_linear_probe

__all__ = [
    "CSearch",
    "FeatureCache",
    "Features",
    "FewShotResult",
    "FewShotScore",
    "LinearProbeResult",
    "LogisticRegression",
    "ProbeConfig",
    "ProbeRecipe",
    "ProbeResult",
    "attach_linear_head",
    "cached_features",
    "default_cache_dir",
    "extract_features",
    "fewshot_lsr",
    "fit_logistic_regression",
    "head_agreement",
    "linear_probe",
    "load_linear_head",
    "model_digest",
    "probe_model",
    "ridge_accuracy",
    "run_linear_probe",
    "select_C",
    "topk_accuracy",
]
