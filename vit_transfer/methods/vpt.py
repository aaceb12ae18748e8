"""``method: vpt`` with ``vpt.tokens`` and ``vpt.deep`` (Jia et al. 2022): prompt tokens and the head train.

``adapters/vpt.py`` holds the prompts. Export: shallow prompts on a timm ViT without registers become timm
register tokens, so ``OUTPUT_DIR/model`` is a stock timm checkpoint; otherwise ``OUTPUT_DIR/model`` holds
the frozen backbone with the trained head in its stock layout plus ``vpt_prompts.safetensors``, which
``load_vit`` re-applies (a stock loader reads the model without the prompts; the model card says so).
"""

from __future__ import annotations

from pathlib import Path

from ..adapters.vpt import PROMPTS_FILE, VPTSettings, apply_vpt, prompts_to_registers, save_prompts
from ..adapters.peft_adapter import count_parameters
from .base import Method, PreparedMethod


class VPT(Method):
    name = "vpt"
    title = "Visual prompt tuning (prompts + head)"
    options_section = "vpt"
    options_type = VPTSettings

    def prepare(self, model, options=None) -> PreparedMethod:
        apply_vpt(model, options)
        kind = "deep" if options.deep else "shallow"
        return PreparedMethod(self.name, *count_parameters(model), f"VPT-{kind}, {options.tokens} prompt tokens + head")

    def export(self, model, prepared: PreparedMethod, output_dir: Path, options=None) -> None:
        from ..runs.files import replace_dir

        if prompts_to_registers(model):  # a stock timm model with register tokens
            replace_dir(model.save, Path(output_dir) / "model")
            return

        def save_with_prompts(folder: Path) -> None:
            model.save(folder)
            save_prompts(model, folder)

        replace_dir(save_with_prompts, Path(output_dir) / "model")

    has_plain_form = False  # the prompts have no starting value to interpolate from

    def plain_copy(self, model):
        return None

    def card_note(self) -> str:
        return (f"The prompts are stored beside the weights in `{PROMPTS_FILE}` unless they were exported as timm "
                "register tokens; `vit_transfer.load_vit` re-applies them, a stock loader reads the model without them.")
