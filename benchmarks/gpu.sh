#!/usr/bin/env bash
# The GPU run of benchmarks/bench_training.py: ViT-B/16 at 224 and 384 px, bf16, compile off and on, every
# contender (vit-transfer, transformers Trainer, the timm train.py loop), images/s and MFU against the GPU's
# dense bf16 datasheet peak, plus training memory (full / LoRA / activation checkpointing) at batch 32.
# One command, about 6-8 minutes on one H100/H200:   bash benchmarks/gpu.sh
# Results: benchmarks/results/training_gpu.md (and .json).
#
# STATUS: NOT RUN ON A GPU YET. No session of this project has been lent one so far (the device tool's
# `status` said "not drawn"); training_gpu.md does not exist until this script runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 -c "import vit_transfer" 2>/dev/null || python3 -m pip install -q --no-deps -e .
name="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
case "$name" in  # dense bf16 TFLOP/s, datasheet (no sparsity)
  *H100*|*H200*|*GH200*) peak=989 ;;
  *A100*) peak=312 ;;
  *L40S*) peak=362 ;;
  *A10G*) peak=70 ;;
  *L4*) peak=121 ;;
  *) peak=0; echo "unknown GPU '$name': MFU left out (the share of the measured GEMM rate is still reported)" ;;
esac
python3 benchmarks/bench_training.py --arch base --image-size 224 --size-b 384 --batch 128 --steps 40 --warmup 15 \
  --precision bf16 --threads 8 --workers 12 --memory-arch base --memory-batch 32 --memory-steps 6 \
  --peak-tflops "$peak" --output benchmarks/results/training_gpu.md "$@"
