"""Find the user's Hub token the ecosystem's way, and keep it (and token-like strings) out of text.

A token must never reach a log line, an error message, the model card or a file we upload; every
string we write goes through ``scrub``.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import HubAuthError

# Hugging Face user access tokens: "hf_" followed by a long alphanumeric tail.
TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9]{16,}\b")
REDACTED = "<redacted>"

LOGIN_HINT = (
    "log in with `hf auth login` (or `huggingface-cli login`), or set the HF_TOKEN environment variable "
    "to a token with write access (create one at https://huggingface.co/settings/tokens)"
)


def resolve_token(token: str | None = None) -> str:
    """The explicit token, else ``HF_TOKEN``, else the one stored by ``hf auth login``."""
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise HubAuthError(f"no Hugging Face token found, so nothing can be pushed: {LOGIN_HINT}")
    return found


def scrub(text: str, token: str | None = None) -> str:
    """``text`` with the given token and anything shaped like a Hub token replaced by a marker."""
    if token:
        text = text.replace(token, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, text)


def scrub_data(value: Any, token: str | None = None) -> Any:
    """``scrub`` applied to every string inside nested dicts and lists (recipes, run info)."""
    if isinstance(value, str):
        return scrub(value, token)
    if isinstance(value, dict):
        return {k: scrub_data(v, token) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_data(v, token) for v in value]
    return value
