"""Push trained runs to the Hugging Face Hub with model cards (see docs/hub.md)."""

from .card import build_model_card
from .errors import HubAuthError, HubError, HubPermissionError, NoTrainedModelError
from .push import PushResult, prepare_upload, push_run
from ..runs.folder import RunFolder, read_run_folder

__all__ = [
    "HubAuthError",
    "HubError",
    "HubPermissionError",
    "NoTrainedModelError",
    "PushResult",
    "RunFolder",
    "build_model_card",
    "prepare_upload",
    "push_run",
    "read_run_folder",
]
