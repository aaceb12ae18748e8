"""``load_trained_model``: what ``load_vit`` loads, plus what ``vit-transfer train`` leaves behind.

A run folder (its ``model/``, or its ``adapter/`` when LoRA was not merged) and a LoRA adapter folder
on its own (peft layout with ``vit_transfer_adapter.json``) are read the way ``push`` reads them: the
base is rebuilt at the run's size, labels and head, the adapter loaded and merged for inference.
"""

from __future__ import annotations

from pathlib import Path

from ..models import TransferModel, load_vit


def load_trained_model(source: "str | Path | TransferModel") -> TransferModel:
    """A ready classifier from a run folder, an adapter folder, or any source ``load_vit`` takes."""
    if isinstance(source, TransferModel):
        return source
    path = Path(str(source)).expanduser()
    if path.is_dir() and ((path / "adapter_config.json").is_file() or not (path / "config.json").is_file()):
        from ..adapters.peft_adapter import merge_adapter
        from ..runs.folder import model_with_adapter, read_run_folder

        run = read_run_folder(path)  # names what is missing when the folder holds no model
        if run.model_dir is not None:
            return load_vit(run.model_dir)
        model = model_with_adapter(run)
        merge_adapter(model)  # one plain model: the same logits, no peft wrappers in the forward
        return model
    return load_vit(source)
