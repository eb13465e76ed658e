#!/usr/bin/env bash
# Rebuild every default weight file in weights/ from data/emoji64 (`make weights`).
#
#   DEVICE=auto|cpu|cuda  (default auto: cuda when available)    PYTHON=.venv/bin/python    RUNS=runs
#   WEIGHTS_DIR=weights   DATA=data/emoji64 (train/; val/ + val_mask64/ select the checkpoints; test/ is only reported)
#   SETTINGS=auto|cpu|gpu (default auto: the GPU settings on cuda): which of the two sizings below to use
#   Quick runs (tools/gpu_check.sh --dry-run): PRESET (both models), VQGAN_STEPS, VQGAN_BATCH (also the decoder
#   stage's), DECODER_STEPS, MASKGIT_STEPS, MASKGIT_BATCH override the settings below when set (the defaults are the
#   settings as written). MASKED_COPIES (default 2) and COPIES_RATIO (default 0: the paper's random masks only;
#   COPIES_RATIO=0.5 trains half of every batch on the masked copies, context-corrupted training, which lost 0.48 dB
#   in the validation holes at full length with the local VQGAN: weights/README.md).
#   Precision: auto everywhere (bf16 where the hardware computes it natively, fp32 elsewhere).
#
# Each stage trains into $RUNS/<name>/ and copies the run's best checkpoint into $WEIGHTS_DIR/. A stage whose run
# folder already holds a checkpoint is resumed (--resume continues exactly; a finished run returns at once),
# so an interrupted `make weights` can simply be restarted. Delete $RUNS/<name>/ to train from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-runs}
WEIGHTS_DIR=${WEIGHTS_DIR:-weights}
DATA=${DATA:-data/emoji64}
DEVICE=${DEVICE:-auto}
if [[ "$DEVICE" == auto ]]; then
  DEVICE=$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
fi
SETTINGS=${SETTINGS:-auto}
if [[ "$SETTINGS" == auto ]]; then
  SETTINGS=$([[ "$DEVICE" == cuda* ]] && echo gpu || echo cpu)
fi
if [[ "$SETTINGS" != cpu && "$SETTINGS" != gpu ]]; then
  echo "SETTINGS=$SETTINGS: expected auto, cpu or gpu" >&2
  exit 1
fi
if [[ ! -d $DATA/train || ! -d $DATA/val || ! -d $DATA/val_mask64 || ! -d $DATA/test ]]; then
  echo "$DATA is missing: build it first with '$PYTHON tools/build_emoji64.py'" >&2
  exit 1
fi
mkdir -p "$RUNS" "$WEIGHTS_DIR"
maskgit() { "$PYTHON" -m maskgit_cli "$@"; }
# The overrides, as flags appended after a stage's settings (the last of a repeated option wins).
VQGAN_OVERRIDES=(${PRESET:+--preset "$PRESET"} ${VQGAN_BATCH:+--batch-size "$VQGAN_BATCH"}
  ${VQGAN_STEPS:+--max-steps "$VQGAN_STEPS"})
DECODER_OVERRIDES=(${VQGAN_BATCH:+--batch-size "$VQGAN_BATCH"} ${DECODER_STEPS:+--max-steps "$DECODER_STEPS"})
MASKGIT_OVERRIDES=(${PRESET:+--preset "$PRESET"} ${MASKGIT_BATCH:+--batch-size "$MASKGIT_BATCH"}
  ${MASKGIT_STEPS:+--max-steps "$MASKGIT_STEPS"})
MASKED_COPIES=${MASKED_COPIES:-2}
COPIES_RATIO=${COPIES_RATIO:-0}
# The training cache needs its masked copies only when training reads them (COPIES_RATIO > 0); the validation
# cache always has one, for validation's copies_acc and tokenize's context-fidelity line.
TRAIN_COPIES=$(awk -v r="$COPIES_RATIO" -v k="$MASKED_COPIES" 'BEGIN { print (r + 0 > 0 ? k : 0) }')

# ---------------------------------------------------------------------------------------------------------
# 1. VQGAN -> $VQGAN_RUN/best.safetensors (its tokens; 1b gives it the shipped decoder)
#
# The `local` preset (2.6M parameters, 10 MB): `small`'s decoder with the local encoder, whose tokens see their own
# 4x4 patch only, so holes change no token outside them (context fidelity 100%, docs/decoding.md "A tokenizer that
# keeps the context"), and flat areas get the same code wherever they are, which the transformer can predict.
# CPU (2 cores): batch 16, lr 1e-3, 5000 steps (~26 epochs): ~47 min on a 2-core AMD EPYC Zen 4 (31 img/s median;
#   measured for the shipped file, weights/README.md); 29 min on a Zen 5 (the same file bit for bit, 2026-12-03).
#   (1,000-step trials, validation PSNR: lr 1e-3 26.36 dB, lr 5e-4 26.02 dB; tokens that also see the ring of
#   patches around them, encoder_reach 1: 25.84 dB with a codebook perplexity of 402 instead of 128.)
# CUDA: the same preset (the file must stay <= 25 MB), batch 128, 4000 steps: 512k images (~170 epochs), 6x what
#   the CPU run sees. Sized for about 2 minutes on an H100 from the FLOP count; not run yet (tools/gpu_check.sh
#   runs it first).
if [[ "$SETTINGS" == gpu ]]; then
  VQGAN_RUN=$RUNS/vqgan-emoji64-gpu
  VQGAN_ARGS=(--preset local --batch-size 128 --lr 8e-4 --warmup-steps 300 --max-steps 4000 --eval-every 1000)
else
  VQGAN_RUN=$RUNS/vqgan-emoji64
  VQGAN_ARGS=(--preset local --batch-size 16 --lr 1e-3 --warmup-steps 200 --max-steps 5000 --eval-every 500)
fi
echo "== VQGAN: $VQGAN_RUN on $DEVICE" >&2
if [[ -f "$VQGAN_RUN/state.safetensors" ]]; then
  maskgit train-vqgan --resume "$VQGAN_RUN"
else
  maskgit train-vqgan "$DATA/train" --val "$DATA/val" -o "$VQGAN_RUN" "${VQGAN_ARGS[@]}" \
    --precision auto --seed 0 --device "$DEVICE" "${VQGAN_OVERRIDES[@]}"
fi

# 1b. The same VQGAN with a fine-tuned decoder -> $WEIGHTS_DIR/vqgan-emoji64.safetensors
#
# `maskgit tune-decoder`: encoder and codebook frozen (every image keeps its tokens; the file records the stage-1
# VQGAN's token fingerprint, which the token caches and the transformer below then carry), the decoder fine-tuned
# with a fresh learning-rate schedule on train-vqgan's L1 + L2 loss: +0.24 dB test PSNR after 1,500 steps, more
# after 3,000 (weights/README.md).
# CPU: batch 16, lr 5e-4, 3000 steps (48k images, ~8 epochs): ~20 min on a 2-core AMD EPYC Zen 4 (46 img/s), 12 min
#   on a Zen 5 (65 img/s).
# CUDA: batch 128, 1000 steps (128k images): sized like the VQGAN stage's GPU settings; not run yet.
if [[ "$SETTINGS" == gpu ]]; then
  DECODER_RUN=$RUNS/vqgan-emoji64-decoder-gpu
  DECODER_ARGS=(--batch-size 128 --lr 4e-4 --warmup-steps 50 --max-steps 1000 --eval-every 250)
else
  DECODER_RUN=$RUNS/vqgan-emoji64-decoder
  DECODER_ARGS=(--batch-size 16 --lr 5e-4 --warmup-steps 50 --max-steps 3000 --eval-every 500)
fi
echo "== VQGAN decoder: $DECODER_RUN on $DEVICE" >&2
if [[ -f "$DECODER_RUN/state.safetensors" ]]; then
  maskgit tune-decoder --resume "$DECODER_RUN"
else
  maskgit tune-decoder "$DATA/train" --vqgan "$VQGAN_RUN/best.safetensors" --val "$DATA/val" -o "$DECODER_RUN" \
    "${DECODER_ARGS[@]}" --precision auto --seed 0 --device "$DEVICE" "${DECODER_OVERRIDES[@]}"
fi
cp "$DECODER_RUN/best.safetensors" "$WEIGHTS_DIR/vqgan-emoji64.safetensors"
maskgit reconstruct "$DATA/test" --vqgan "$WEIGHTS_DIR/vqgan-emoji64.safetensors" -o "$RUNS/vqgan-emoji64-recon" \
  --device "$DEVICE" --json > "$RUNS/vqgan-emoji64-recon.json"
echo "== $WEIGHTS_DIR/vqgan-emoji64.safetensors: test scores in $RUNS/vqgan-emoji64-recon.json" >&2

# ---------------------------------------------------------------------------------------------------------
# 2. Transformer -> $WEIGHTS_DIR/maskgit-emoji64.safetensors
#
# The token caches come from the VQGAN just copied into $WEIGHTS_DIR/ (training flips included, as in `--flip`);
# tokenize also sums the pixels under every code, and train stores the means in the transformer file
# (aux.code_patches, for known-pixel guidance). With COPIES_RATIO > 0 the training cache also holds $MASKED_COPIES
# masked copies of every grid (holes filled as inpainting fills them), and that share of the grids trains on them
# (docs/decoding.md, "Training on what inpainting sees"; default 0: none); checkpoints are selected on val/ under its
# stroke masks (val_mask64/).
# CPU: the `small` preset (3.8M parameters, 15 MB), batch 64 in two micro-batches of 32 (--accum-grad 2: a batch
#   of 32 runs 17% faster per image on a 2-core CPU than one of 64, whose activations outgrow the cache), lr 1e-3,
#   1500 steps (~16 epochs of 6,114 grids): 22 min on a 2-core Intel Xeon with AMX (71.5-73 img/s with issue 13's
#   faster step; the shipped file: 29 min, its first 300 steps beside the test suite, weights/README.md); ~62 min on
#   a 2-core AMD EPYC Zen 4 (26.3 img/s, before the faster step); 36 min on a Zen 5 (44.6 img/s, before
#   MatmulAttention). The whole script: 1 h 19 min in one run on the Zen 5 (weights/README.md).
# CUDA: the same preset (keeps the file <= 40 MB) with batch 256 and 6000 steps (~230 epochs, 10x the CPU run's
#   samples). Sized for about 2 minutes on an H100 (6.1 GFLOP per training sample, memory-bound elementwise work at
#   dim 256); not run yet (tools/gpu_check.sh runs it first).
maskgit tokenize "$DATA/train" --vqgan "$WEIGHTS_DIR/vqgan-emoji64.safetensors" -o "$RUNS/emoji64-train.tokens" \
  --flip --masked-copies "$TRAIN_COPIES" --device "$DEVICE" --overwrite
maskgit tokenize "$DATA/val" --vqgan "$WEIGHTS_DIR/vqgan-emoji64.safetensors" -o "$RUNS/emoji64-val.tokens" \
  --masked-copies 1 --mask-seed 1 --device "$DEVICE" --overwrite
if [[ "$SETTINGS" == gpu ]]; then
  MASKGIT_RUN=$RUNS/maskgit-emoji64-gpu
  MASKGIT_ARGS=(--preset small --batch-size 256 --lr 1e-3 --warmup-steps 300 --max-steps 6000 --eval-every 500)
else
  MASKGIT_RUN=$RUNS/maskgit-emoji64
  MASKGIT_ARGS=(--preset small --batch-size 64 --accum-grad 2 --lr 1e-3 --warmup-steps 100 --max-steps 1500
    --eval-every 250)
fi
echo "== transformer: $MASKGIT_RUN on $DEVICE" >&2
if [[ -f "$MASKGIT_RUN/state.safetensors" ]]; then
  maskgit train --resume "$MASKGIT_RUN"
else
  maskgit train "$RUNS/emoji64-train.tokens" --val "$RUNS/emoji64-val.tokens" --val-masks "$DATA/val_mask64" \
    -o "$MASKGIT_RUN" "${MASKGIT_ARGS[@]}" --mask-ratio cosine --label-smoothing 0.1 --copies-ratio "$COPIES_RATIO" \
    --precision auto --seed 0 --device "$DEVICE" "${MASKGIT_OVERRIDES[@]}"
fi
cp "$MASKGIT_RUN/best.safetensors" "$WEIGHTS_DIR/maskgit-emoji64.safetensors"
echo "== $WEIGHTS_DIR/maskgit-emoji64.safetensors: validation in $MASKGIT_RUN/metrics.jsonl" >&2
