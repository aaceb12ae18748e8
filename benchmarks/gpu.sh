#!/usr/bin/env bash
# The GPU benchmark in one command (benchmarks/bench_gpu.py): ViT-B/16 at 224 and 384 px, bf16; vit-transfer
# (defaults, compile), the transformers Trainer (defaults, torch_compile) and timm's train.py loop, each at both
# sizes; images/s, MFU against the device's dense bf16 datasheet peak beside the matmul rate measured in the
# same run, peak memory, first-step and compile time; the loader alone with the machine's cores.
#
#   bash benchmarks/gpu.sh              # one GPU, at most 8 minutes: benchmarks/results/gpu.md (and .json)
#   bash benchmarks/gpu.sh --rehearse   # the same script on the CPU, micro ViT, ~2 minutes, with `datasets`
#                                       # and `evaluate` hidden: benchmarks/results/gpu_rehearsal.md (and .json)
#
# Needs nothing installed beyond what a bare GPU machine has (torch, transformers, timm, peft, accelerate,
# huggingface_hub, safetensors, scikit-learn, matplotlib, tqdm): this checkout goes on PYTHONPATH (no pip, no
# package index, no network), every model is built locally with random weights, the images are scikit-learn's
# digits (or Fashion-MNIST where Debian's package is installed). Extra arguments go to bench_gpu.py.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ " $* " == *" --rehearse "* ]]; then  # behave as the GPU machine does: no datasets, no evaluate
  export PYTHONPATH="$root/benchmarks/without_packages:$PYTHONPATH" HIDE_PACKAGES="${HIDE_PACKAGES-datasets,evaluate}"
fi
python="${PYTHON:-python3}"  # the interpreter that has torch
# from outside the checkout, so that it is PYTHONPATH (not the current folder) that finds this vit_transfer
(cd / && "$python" - "$root" <<'EOF'
import sys
from pathlib import Path

import vit_transfer

found = Path(vit_transfer.__file__).resolve()
if not found.is_relative_to(Path(sys.argv[1]) / "vit_transfer"):
    sys.exit(f"gpu.sh: {sys.executable} imports vit_transfer from {found}, not from this checkout {sys.argv[1]}")
import accelerate, peft, timm, torch, transformers

print(f"vit_transfer from {found.parent}; Python {sys.version.split()[0]}, torch {torch.__version__}, transformers "
      f"{transformers.__version__}, timm {timm.__version__}, peft {peft.__version__}, accelerate {accelerate.__version__}")
EOF
)
exec "$python" benchmarks/bench_gpu.py "$@"
