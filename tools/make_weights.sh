#!/usr/bin/env bash
# Rebuild every default weight file in weights/ from data/emoji64 (`make weights`).
#
#   DEVICE=auto|cpu|cuda  (default auto: cuda when available)    PYTHON=.venv/bin/python    RUNS=runs
#
# Each stage trains into $RUNS/<name>/ and copies the run's best checkpoint into weights/. A stage whose run
# folder already holds a checkpoint is resumed (--resume continues exactly; a finished run returns at once),
# so an interrupted `make weights` can simply be restarted. Delete $RUNS/<name>/ to train from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-runs}
DEVICE=${DEVICE:-auto}
if [[ "$DEVICE" == auto ]]; then
  DEVICE=$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
fi
if [[ ! -d data/emoji64/train || ! -d data/emoji64/test ]]; then
  echo "data/emoji64 is missing: build it first with '$PYTHON tools/build_emoji64.py'" >&2
  exit 1
fi
mkdir -p "$RUNS" weights
maskgit() { "$PYTHON" -m maskgit_cli "$@"; }

# ---------------------------------------------------------------------------------------------------------
# 1. VQGAN -> weights/vqgan-emoji64.safetensors
#
# CPU (2 cores, bf16 autocast): the `small` preset (2.8M parameters, 11 MB), batch 16, 3000 steps (~14 epochs),
#   about 20 min on an idle 2-core CPU, longer when the CPU is shared.
# CUDA: the same `small` preset (the file must stay <= 25 MB: `base`, 13M parameters, would be 52 MB), with a GPU
#   sized batch of 64 and 4x the images seen (15000 steps, ~285 epochs). These GPU settings have not been run yet.
if [[ "$DEVICE" == cuda* ]]; then
  VQGAN_RUN=$RUNS/vqgan-emoji64-gpu
  VQGAN_ARGS=(--preset small --batch-size 64 --lr 8e-4 --warmup-steps 500 --max-steps 15000 --eval-every 1000)
else
  VQGAN_RUN=$RUNS/vqgan-emoji64
  VQGAN_ARGS=(--preset small --batch-size 16 --lr 5e-4 --warmup-steps 200 --max-steps 3000 --eval-every 500)
fi
echo "== VQGAN: $VQGAN_RUN on $DEVICE" >&2
if [[ -f "$VQGAN_RUN/state.safetensors" ]]; then
  maskgit train-vqgan --resume "$VQGAN_RUN"
else
  maskgit train-vqgan data/emoji64/train --val data/emoji64/test -o "$VQGAN_RUN" "${VQGAN_ARGS[@]}" \
    --precision bf16 --seed 0 --device "$DEVICE"
fi
cp "$VQGAN_RUN/best.safetensors" weights/vqgan-emoji64.safetensors
maskgit reconstruct data/emoji64/test --vqgan weights/vqgan-emoji64.safetensors -o "$RUNS/vqgan-emoji64-recon" \
  --device "$DEVICE" --json > "$RUNS/vqgan-emoji64-recon.json"
echo "== weights/vqgan-emoji64.safetensors: test scores in $RUNS/vqgan-emoji64-recon.json" >&2

# ---------------------------------------------------------------------------------------------------------
# 2. Transformer -> weights/maskgit-emoji64.safetensors
#
# The token caches come from the VQGAN just copied into weights/ (training flips included, as in `--flip`);
# tokenize also sums the pixels under every code, and train stores the means in the transformer file
# (aux.code_patches, for known-pixel guidance).
# CPU: the `small` preset (3.8M parameters, 15 MB), batch 64, lr 1e-3, 2400 steps (~23 epochs of 6,742 grids).
# CUDA: the same preset (keeps the file <= 40 MB) with batch 256 and 8000 steps (~300 epochs); not run yet.
maskgit tokenize data/emoji64/train --vqgan weights/vqgan-emoji64.safetensors -o "$RUNS/emoji64-train.tokens" \
  --flip --device "$DEVICE" --overwrite
maskgit tokenize data/emoji64/test --vqgan weights/vqgan-emoji64.safetensors -o "$RUNS/emoji64-test.tokens" \
  --device "$DEVICE" --overwrite
if [[ "$DEVICE" == cuda* ]]; then
  MASKGIT_RUN=$RUNS/maskgit-emoji64-gpu
  MASKGIT_ARGS=(--preset small --batch-size 256 --lr 1e-3 --warmup-steps 500 --max-steps 8000 --eval-every 500)
else
  MASKGIT_RUN=$RUNS/maskgit-emoji64
  MASKGIT_ARGS=(--preset small --batch-size 64 --lr 1e-3 --warmup-steps 100 --max-steps 2400 --eval-every 200)
fi
echo "== transformer: $MASKGIT_RUN on $DEVICE" >&2
if [[ -f "$MASKGIT_RUN/state.safetensors" ]]; then
  maskgit train --resume "$MASKGIT_RUN"
else
  maskgit train "$RUNS/emoji64-train.tokens" --val "$RUNS/emoji64-test.tokens" --val-masks data/emoji64/mask64 \
    -o "$MASKGIT_RUN" "${MASKGIT_ARGS[@]}" --mask-ratio cosine --label-smoothing 0.1 --precision bf16 --seed 0 \
    --device "$DEVICE"
fi
cp "$MASKGIT_RUN/best.safetensors" weights/maskgit-emoji64.safetensors
echo "== weights/maskgit-emoji64.safetensors: validation in $MASKGIT_RUN/metrics.jsonl" >&2
