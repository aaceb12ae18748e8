"""Errors raised while preparing or uploading a push: each names the repo or file and the fix."""

from __future__ import annotations

from ..errors import VitTransferError


class HubError(VitTransferError):
    """Base class for push failures (network, server refusals, an unusable output folder)."""


class HubAuthError(HubError):
    """No token was found, so nothing can be written to the Hub."""


class HubPermissionError(HubError):
    """The server refused the token (401/403) for this repo: invalid, read-only or not a member."""


class NoTrainedModelError(HubError, FileNotFoundError):
    """The folder given to push holds no trained model or adapter (or lacks a piece of one)."""
