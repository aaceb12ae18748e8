"""Files of the run folder, each written atomically (temp file or folder, then rename)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

TMP_PREFIX = ".tmp-"


def write_json(path: "str | Path", data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(TMP_PREFIX + path.name)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")
    os.replace(tmp, path)
    return path


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def replace_dir(build, final: "str | Path") -> Path:
    """Call ``build(tmp_dir)`` then move ``tmp_dir`` to ``final``, replacing any previous folder."""
    final = Path(final)
    tmp = final.with_name(TMP_PREFIX + final.name)
    old = final.with_name(TMP_PREFIX + final.name + ".old")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    tmp.mkdir(parents=True)
    build(tmp)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final


def library_versions() -> dict[str, str]:
    versions = {}
    for name in ("vit_transfer", "torch", "transformers", "timm", "peft", "accelerate", "datasets"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            continue
    return versions


def command_line() -> str:
    """How this process was started, as a user would type it (``python -m vit_transfer`` for ``-m`` runs)."""
    if not sys.argv or not sys.argv[0]:
        return ""
    program = Path(sys.argv[0]).name
    if program == "__main__.py":
        program = "python -m vit_transfer"
    return " ".join([program, *sys.argv[1:]])
