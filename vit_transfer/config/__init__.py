"""Recipe loading: YAML + ``key=value`` overrides into validated dataclasses."""

from .loader import apply_override, from_dict, load_recipe, save_recipe, to_dict
from .sections import ModelConfig

__all__ = ["ModelConfig", "apply_override", "from_dict", "load_recipe", "save_recipe", "to_dict"]
