"""``method: peft``: any peft tuner from a ``peft:`` mapping (``peft_type: LOHA | LOKR | IA3 | VERA | BOFT | OFT |
FOURIERFT | ...`` plus that tuner's own options), on a transformers or a timm ViT.

The mapping is handed to peft's config class for its ``peft_type`` (peft's own
``PEFT_TYPE_TO_CONFIG_MAPPING``, so every tuner peft adds works unchanged). vit-transfer fills in what
depends on the loaded model: ``target_modules`` (leaf names resolved to full names as LoRA does; default
``model.default_lora_targets()``), IA3's ``feedforward_modules`` (resolved the same way; default none),
and ``modules_to_save`` (always the head, plus any the mapping names). Export: ``OUTPUT_DIR/adapter`` and,
where the tuner can merge, the merged plain model in ``OUTPUT_DIR/model``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ConfigError
from .base import Method, PreparedMethod, export_adapter, merged_copy

# tuners that add or reroute tokens of a language model, not layers of a vision backbone
NOT_FOR_VISION = {"PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "MULTITASK_PROMPT_TUNING", "ADAPTION_PROMPT",
                  "CPT", "TRAINABLE_TOKENS", "XLORA", "CARTRIDGE", "POLY"}
RESOLVED_MODULE_KEYS = ("target_modules", "feedforward_modules")  # leaf names -> full Linear names


def peft_config_classes() -> dict[str, type]:
    """``{PEFT_TYPE: config class}`` for the tuners that adapt layers, from peft's own table."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    out = {}
    for key, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items():
        name = str(getattr(key, "value", key))
        fields = {f.name for f in dataclasses.fields(cls)}
        if name not in NOT_FOR_VISION and "target_modules" in fields:
            out[name] = cls
    return out


def split_peft_mapping(mapping: dict) -> tuple[type, dict]:
    """The config class for ``mapping['peft_type']`` and the remaining options, or a ``ConfigError``."""
    options = dict(mapping or {})
    raw = options.pop("peft_type", None)
    known = peft_config_classes()
    if raw is None:
        raise ConfigError(f"method: peft needs peft.peft_type, one of {', '.join(sorted(known))}")
    name = str(raw).upper()
    if name not in known:
        raise ConfigError(f"peft.peft_type {raw!r} is not a peft tuner for vision layers; known: {', '.join(sorted(known))}")
    cls = known[name]
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(k for k in options if k not in fields)
    if unknown:
        raise ConfigError(f"peft.{unknown[0]} is not an option of peft's {cls.__name__} (peft_type {name})")
    if "task_type" in options:
        raise ConfigError("peft.task_type: leave it out; the ViT is wrapped as a plain module (task_type None)")
    return cls, options


def build_peft_config(model, mapping: dict):
    """peft's config for ``mapping`` with targets, feedforward modules and the head resolved for ``model``."""
    from ..adapters.lora import resolve_target_modules

    cls, options = split_peft_mapping(mapping)
    for key in (*RESOLVED_MODULE_KEYS, "modules_to_save"):  # YAML `target_modules: qkv` means [qkv]
        if isinstance(options.get(key), str):
            options[key] = [options[key]]
    options["target_modules"] = resolve_target_modules(model, options.get("target_modules"), "peft.target_modules")
    if "feedforward_modules" in {f.name for f in dataclasses.fields(cls)}:
        ff = options.get("feedforward_modules") or []
        options["feedforward_modules"] = resolve_target_modules(model, ff, "peft.feedforward_modules") if ff else []
        stray = sorted(set(options["feedforward_modules"]) - set(options["target_modules"]))
        if stray:
            raise ConfigError(f"peft.feedforward_modules must be among peft.target_modules; not targeted: {stray}")
    heads = model.head_module_names()
    options["modules_to_save"] = heads + [m for m in options.get("modules_to_save") or [] if m not in heads]
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"peft ({cls.__name__}): {exc}") from exc


class PeftTuner(Method):
    name = "peft"
    title = "peft tuner"
    writes_adapter = True
    options_section, options_type = "peft", dict  # the peft: mapping, handed to peft's config class

    def card_title(self, adapter_config: dict) -> str:
        peft_type = adapter_config.get("peft_type")
        text = f"peft {peft_type}" if peft_type else self.title
        variants = [v for v, key in (("DoRA", "use_dora"), ("rsLoRA", "use_rslora")) if adapter_config.get(key)]
        return text + (f" ({', '.join(variants)})" if variants else "")

    def validate(self, options: dict) -> None:
        cls, rest = split_peft_mapping(options)
        try:  # the options alone (targets are resolved once the model is loaded)
            named = list(rest.get("target_modules") or []) + list(rest.get("feedforward_modules") or [])
            cls(**{**rest, "target_modules": named or ["placeholder"]})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"peft ({cls.__name__}): {exc}") from exc

    def prepare(self, model, options=None) -> PreparedMethod:
        from ..adapters.peft_adapter import apply_peft_config

        handle = apply_peft_config(model, build_peft_config(model, options))
        return PreparedMethod(self.name, handle.trainable_parameters, handle.total_parameters,
                              handle.description, handle)

    def export(self, model, prepared: PreparedMethod, output_dir: Path, options=None) -> None:
        export_adapter(model, output_dir, merge=True)

    def plain_copy(self, model):
        return merged_copy(model)
