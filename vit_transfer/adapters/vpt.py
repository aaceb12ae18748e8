"""Visual prompt tuning (Jia et al., ECCV 2022): learned tokens in the sequence, the backbone frozen.

``tokens`` prompt vectors join the sequence right after the prefix tokens (class, distillation,
registers) and before the patches, after the position embeddings are added (prompts have no
position). Shallow: once, entering the first block. Deep: every block gets its own prompts, which
replace what the previous block made of them. Only the prompts and the head train.

It works through two hooks on the native model (``TransferModel.token_sites``: the module whose output
enters block 0, and the blocks), for transformers and timm alike; ``TransferModel.num_prompt_tokens``
tells pooling (and diagnostics) to treat the prompts as prefix tokens. Export:

- shallow prompts on a timm ViT without registers *are* timm register tokens (same place, no position
  embedding: a zero row is inserted where the table has prefix rows), so ``prompts_to_registers`` turns
  them into ``reg_token`` and the saved model is a stock timm checkpoint (``reg_tokens`` in its config);
- anything else (transformers models, deep prompts) is saved beside the model as ``PROMPTS_FILE``, a
  small safetensors file that ``load_vit`` re-applies; a stock loader reads the model without them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

PROMPTS_FILE = "vpt_prompts.safetensors"


@dataclass
class VPTSettings:
    """``vpt:`` recipe section (``method: vpt``)."""

    tokens: int = 10
    deep: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
            raise ConfigError(f"vpt.tokens must be a positive number of prompt tokens, got {self.tokens!r}")


class Prompts(nn.Module):
    """``(layers, tokens, dim)`` prompt vectors and the hooks that put them into the sequence."""

    def __init__(self, model, tokens: int, deep: bool):
        super().__init__()
        entry, blocks = model.token_sites()
        layers = len(blocks) if deep else 1
        # the paper's init: uniform in +-sqrt(6 / (fan_in + fan_out)) of a patch-sized projection
        bound = math.sqrt(6.0 / (3 * model.patch_size[0] * model.patch_size[1] + model.embed_dim))
        self.tokens = nn.Parameter(torch.empty(layers, tokens, model.embed_dim).uniform_(-bound, bound))
        self.start, self.deep = model.num_prefix_tokens, deep
        self._handles = [entry.register_forward_hook(self._insert)]
        if deep:
            self._handles += [b.register_forward_pre_hook(_Replace(self, i), with_kwargs=True)
                              for i, b in enumerate(blocks) if i > 0]

    def _prompt(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        return self.tokens[layer].to(like.dtype).unsqueeze(0).expand(like.shape[0], -1, -1)

    def _insert(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        s = self.start
        hidden = torch.cat([hidden[:, :s], self._prompt(0, hidden), hidden[:, s:]], dim=1)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    def replace(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        s, n = self.start, self.tokens.shape[1]
        return torch.cat([hidden[:, :s], self._prompt(layer, hidden), hidden[:, s + n:]], dim=1)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class _Replace:
    """Block ``layer``'s pre-hook: its prompts replace the previous block's output at the prompt positions.
    An object, not a closure, so a deep copy of the model (timm's EMA) hooks its own copy of the prompts."""

    def __init__(self, prompts: Prompts, layer: int):
        self.prompts, self.layer = prompts, layer

    def __call__(self, module, args, kwargs):
        if args:
            return (self.prompts.replace(self.layer, args[0]), *args[1:]), kwargs
        return args, dict(kwargs, hidden_states=self.prompts.replace(self.layer, kwargs["hidden_states"]))


def apply_vpt(model, cfg: VPTSettings) -> Prompts:
    """Add prompts to ``model`` (a ``TransferModel``) in place; freeze everything but them and the head."""
    if getattr(model, "prompts", None) is not None:
        raise ConfigError("this model already has VPT prompts")
    for p in model.parameters():
        p.requires_grad_(False)
    model.prompts = Prompts(model, cfg.tokens, cfg.deep)
    model.num_prompt_tokens = cfg.tokens
    for p in model.head_parameters():
        p.requires_grad_(True)
    return model.prompts


def remove_prompts(model) -> None:
    if getattr(model, "prompts", None) is not None:
        model.prompts.remove()
        del model.prompts
    model.num_prompt_tokens = 0


def prompts_to_registers(model) -> bool:
    """Shallow prompts of a timm ViT without registers become its ``reg_token`` (a stock timm model); returns
    whether it could. The logits do not change (tested)."""
    prompts = getattr(model, "prompts", None)
    net = model.model
    if (prompts is None or prompts.deep or model.ecosystem != "timm" or getattr(net, "reg_token", None) is not None
            or type(net).__name__ != "VisionTransformer" or prompts.start != int(net.num_prefix_tokens)):
        return False
    tokens = prompts.tokens.detach()[0].unsqueeze(0).clone()
    n = tokens.shape[1]
    with torch.no_grad():
        if net.pos_embed is not None and not net.no_embed_class:  # prefix rows in the table: zero rows for the new ones
            pos = net.pos_embed.data
            zeros = pos.new_zeros(1, n, pos.shape[-1])
            net.pos_embed = nn.Parameter(torch.cat([pos[:, :prompts.start], zeros, pos[:, prompts.start:]], dim=1),
                                         requires_grad=net.pos_embed.requires_grad)
    net.reg_token = nn.Parameter(tokens.to(net.cls_token.dtype if net.cls_token is not None else tokens.dtype))
    net.num_reg_tokens = n
    net.num_prefix_tokens += n
    net._model_args = dict(getattr(net, "_model_args", {}), reg_tokens=n)  # timm's save_for_hf writes it
    remove_prompts(model)
    return True


def save_prompts(model, folder: "str | Path") -> Path:
    """``PROMPTS_FILE`` (the prompt tensor, with how to put it back) in ``folder``, beside the saved model."""
    from safetensors.torch import save_file

    prompts = model.prompts
    path = Path(folder) / PROMPTS_FILE
    save_file({"tokens": prompts.tokens.detach().cpu().contiguous()}, str(path),
              metadata={"vit_transfer": json.dumps({"tokens": prompts.tokens.shape[1], "deep": prompts.deep,
                                                    "start": prompts.start})})
    return path


def load_prompts(model, folder: "str | Path") -> bool:
    """Re-apply the prompts saved in ``folder`` (if any) to ``model``, frozen; returns whether there were some."""
    from safetensors import safe_open

    path = Path(folder) / PROMPTS_FILE
    if not path.is_file():
        return False
    with safe_open(str(path), framework="pt") as f:
        info = json.loads(f.metadata()["vit_transfer"])
        tokens = f.get_tensor("tokens")
    if info["start"] != model.num_prefix_tokens:
        raise ConfigError(f"{path}: prompts saved for {info['start']} prefix tokens, the model has "
                          f"{model.num_prefix_tokens}")
    model.prompts = Prompts(model, int(info["tokens"]), bool(info["deep"]))
    model.num_prompt_tokens = int(info["tokens"])
    with torch.no_grad():
        model.prompts.tokens.copy_(tokens)
    model.prompts.tokens.requires_grad_(False)
    return True
