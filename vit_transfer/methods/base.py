"""What every transfer method is: which weights it trains, how it counts them, how it saves, what the card says.

A method is one ``Method`` subclass in its own module of this package, registered by name in
``METHODS`` (``__init__.py``). ``train`` looks the recipe's ``method`` up there and calls ``validate``
when the recipe is read, ``prepare`` before the loop and ``export`` after it; the hub card reads
``card_title`` and ``card_note``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..adapters.peft_adapter import AdapterHandle, count_parameters

logger = logging.getLogger(__name__)


@dataclass
class PreparedMethod:
    """A model made ready for one method: what trains, counted once each (peft's head copy excluded)."""

    name: str
    trainable_parameters: int
    total_parameters: int
    description: str
    adapter: AdapterHandle | None = None  # peft methods: the PeftModel beside the TransferModel

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_parameters / max(1, self.total_parameters)

    def summary(self) -> str:
        return (f"{self.description}: {self.trainable_parameters:,} trainable of {self.total_parameters:,} "
                f"parameters ({self.trainable_percent:.2f}%)")

    def metrics(self) -> dict:
        return {"trainable_parameters": self.trainable_parameters, "trainable_percent": self.trainable_percent}


class Method:
    """One entry of the method menu. Subclasses set ``name``/``title`` and override ``select``
    (the parameters that train) or, for peft tuners, ``prepare`` and ``export``."""

    name: str = ""
    title: str = ""  # the model card's "Training method"
    writes_adapter: bool = False  # OUTPUT_DIR/adapter (peft layout) as well as / instead of OUTPUT_DIR/model
    options_section: str | None = None  # the recipe section it reads (lora:, peft:, vpt:), if any
    options_type: Any = None  # that section's settings type (LoraSettings, dict, VPTSettings); None: no options
    has_plain_form: bool = True  # plain_copy gives the stock architecture (train.wise_ft needs it)
    peft_type: str | None = None  # the peft tuner it always uses (LoRA: "LORA"; method: peft reads it from its config)

    def default_options(self) -> Any:
        """This method's settings when none are given (a library call without a recipe)."""
        return self.options_type() if self.options_type is not None else None

    def validate(self, options: Any) -> None:
        """Check this method's recipe settings when the recipe is read (raise ``ConfigError`` naming the key)."""

    def select(self, model) -> Callable[[str, nn.Parameter], bool]:
        """``(name, parameter) -> trains?`` over ``model.named_parameters()``."""
        raise NotImplementedError

    def prepare(self, model, options: Any = None) -> PreparedMethod:
        """Set ``requires_grad`` on exactly what this method trains."""
        trains = self.select(model)
        for name, p in model.named_parameters():
            p.requires_grad_(bool(trains(name, p)))
        return PreparedMethod(self.name, *count_parameters(model), self.title)

    def export(self, model, prepared: PreparedMethod, output_dir: Path, options: Any = None) -> None:
        """Write the trained result into the run folder; by default a plain model the stock loaders read."""
        save_plain_model(model, output_dir)

    def plain_copy(self, model):
        """A copy of the trained model in the stock architecture (adapters folded into the weights), with the
        state-dict keys of the model before ``prepare``; None when the method has no such form (WiSE-FT needs it)."""
        import copy

        return copy.deepcopy(model)

    def card_title(self, adapter_config: dict) -> str:
        """The model card's "Training method", given the saved ``adapter_config.json`` (empty without one)."""
        return self.title

    def card_note(self) -> str:
        """A sentence the model card adds under its details (how the export must be loaded), if any."""
        return ""


def save_plain_model(model, output_dir: Path) -> None:
    from ..runs.files import replace_dir

    replace_dir(model.save, Path(output_dir) / "model")


def head_parameter_ids(model) -> set[int]:
    return {id(p) for p in model.head_parameters()}


def merged_copy(model):
    """A copy of a peft-wrapped model with the adapter merged, or None for a tuner peft cannot merge."""
    import copy

    from ..adapters.peft_adapter import merge_adapter

    plain = copy.deepcopy(model)
    try:
        merge_adapter(plain)
    except (NotImplementedError, ValueError, AttributeError):
        return None
    return plain


def export_adapter(model, output_dir: Path, merge: bool) -> bool:
    """``OUTPUT_DIR/adapter`` always; with ``merge``, the merged plain model in ``OUTPUT_DIR/model``.

    Returns whether the merged model was written (False when peft cannot merge this tuner)."""
    from ..adapters.peft_adapter import merge_adapter, save_adapter
    from ..runs.files import replace_dir

    output_dir = Path(output_dir)
    replace_dir(lambda tmp: save_adapter(model, tmp), output_dir / "adapter")
    if not merge:
        return False
    try:
        merge_adapter(model)
    except (NotImplementedError, ValueError, AttributeError) as exc:
        logger.warning("the adapter cannot be merged (%s); OUTPUT_DIR/adapter is the export", exc)
        return False
    replace_dir(model.save, output_dir / "model")
    return True
