"""The transfer-method menu: one module per method, one table, one lookup.

``METHODS[name]`` is a ``Method`` (``base.py``): it sets which parameters train, reports them (each
counted once), saves the run's export and names itself on the model card. Adding a method is one new
module here, one line in ``METHODS``, and its tests. See docs/methods.md.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import Method, PreparedMethod
from .bitfit import BitFit
from .full import FullFineTuning
from .head import HeadOnly
from .lora import LoRA
from .norm import NormTuning
from .peft_tuner import PeftTuner
from .ssf import SSF
from .vpt import VPT

METHODS: dict[str, Method] = {m.name: m for m in (FullFineTuning(), HeadOnly(), LoRA(), BitFit(), NormTuning(), PeftTuner(),
                                                  SSF(), VPT())}


def get_method(name: str) -> Method:
    """The registered method called ``name``, or a ``ConfigError`` that lists the menu."""
    if name not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {name!r}")
    return METHODS[name]


def prepare_method(model, method: str, options=None) -> PreparedMethod:
    """Make ``model`` ready for ``method``: only what it trains keeps ``requires_grad``."""
    chosen = get_method(method)
    return chosen.prepare(model, options if options is not None else chosen.default_options())


__all__ = ["METHODS", "Method", "PreparedMethod", "get_method", "prepare_method"]
