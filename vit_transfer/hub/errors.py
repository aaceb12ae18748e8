"""Errors raised while preparing or uploading a push: each names the repo or file and the fix."""

from __future__ import annotations

from ..errors import HubError, NoTrainedModelError  # defined below the hub: reading a run folder raises them too


class HubAuthError(HubError):
    """No token was found, so nothing can be written to the Hub."""


class HubPermissionError(HubError):
    """The server refused the token (401/403) for this repo: invalid, read-only or not a member."""


__all__ = ["HubAuthError", "HubError", "HubPermissionError", "NoTrainedModelError"]
