#!/usr/bin/env bash
# Rebuild every default weight file in weights/ from data/emoji64 (`make weights`): one `maskgit fit`.
#
#   DEVICE=auto|cpu|cuda  (default auto: cuda when available)    PYTHON=.venv/bin/python    RUNS=runs
#   WEIGHTS_DIR=weights   DATA=data/emoji64 (train/; val/ + val_mask64/ select the checkpoints; test/ is only reported)
#   PRESET=default        `maskgit fit --preset`: default = the settings below; tiny = a few steps of the tiny models
#                         (tools/gpu_check.sh --dry-run)
#   STYLES=               more training styles, whose train/ folders join DATA's (default none: the shipped files).
#                         STYLES="data/blob64 data/fluent64" TIME_BUDGET=100 is issue 25's three-style run, measured
#                         and not shipped: worse on every check set but Fluent (weights/README.md, "Three styles")
#   TIME_BUDGET=          `maskgit fit --time-budget` minutes (default none: every stage its full steps below)
#
# `maskgit fit` trains every stage into the model folder $RUNS/emoji64 (emoji64-gpu on CUDA), its runs under
# $RUNS/emoji64/runs/<stage>/; this script then copies the model's two files into $WEIGHTS_DIR/ under the shipped
# names and reports the VQGAN's reconstruction of test/. An interrupted `make weights` is simply restarted: fit
# continues where it stopped (a stage resumes exactly from its state file; a stage done is skipped). Delete the
# model folder to train from scratch. weights/card.json (the shipped model's card, with its test figures) is
# written by hand from weights/README.md; the model folder's own card.json says what this run did.
#
# What fit runs (the default preset's settings live in maskgit_cli/fit/settings.py; `maskgit fit --help`):
# 1. `train-vqgan`: the `local` preset (2.6M parameters, 10 MB): `small`'s decoder with the local encoder, whose
#    tokens see their own 4x4 patch only, so holes change no token outside them (context fidelity 100%,
#    docs/decoding.md "A tokenizer that keeps the context"), and flat areas get the same code wherever they are.
#    CPU (2 cores): batch 16, lr 1e-3, warmup 200, 5000 steps (~26 epochs), validated every 500: ~47 min on a
#    2-core AMD EPYC Zen 4 (31 img/s median; the shipped file, weights/README.md); 29 min on a Zen 5 (the same file
#    bit for bit, 2026-12-03). (1,000-step trials, validation PSNR: lr 1e-3 26.36 dB, lr 5e-4 26.02 dB; tokens that
#    also see the ring of patches around them, encoder_reach 1: 25.84 dB with a codebook perplexity of 402, not 128.)
#    CUDA: the same preset (the file must stay <= 25 MB), batch 128, lr 8e-4, warmup 300, 4000 steps (512k images,
#    ~170 epochs, 6x what the CPU run sees), validated every 1000; sized for about 2 minutes on an H100 (FLOP count).
# 2. `tune-decoder`: encoder and codebook frozen (every image keeps its tokens), the decoder fine-tuned with a fresh
#    learning-rate schedule on train-vqgan's L1 + L2 loss: +0.24 dB test PSNR after 1,500 steps, more after 3,000.
#    CPU: batch 16, lr 5e-4, warmup 50, 3000 steps (~8 epochs), validated every 500: ~20 min on a Zen 4 (46 img/s),
#    12 min on a Zen 5 (65 img/s). CUDA: batch 128, lr 4e-4, warmup 50, 1000 steps, validated every 250.
# 3. `tokenize` with the fine-tuned VQGAN: train/ with its mirror images (`--flip`, no masked copies: the transformer
#    trains on the paper's random masks only), val/ with one masked copy (`--masked-copies 1 --mask-seed 1`, for
#    validation's copies_acc and the context-fidelity figure).
# 4. `train`: the `small` preset (3.8M parameters, 15 MB), `--mask-ratio cosine --label-smoothing 0.1
#    --copies-ratio 0 --shaped-masks 0.5` (half the grids mask a generated stroke, box, half or outpaint hole; the
#    shipped file predates it and had none), checkpoints selected on val/ under the stroke masks of val_mask64/.
#    CPU: batch 64 in two micro-batches of 32 (`--accum-grad 2`: a batch of 32 runs 17% faster per image on a
#    2-core CPU than one of 64, whose activations outgrow the cache), lr 1e-3, warmup 100, 1500 steps (~16 epochs
#    of 6,114 grids), validated every 250: 22 min on a 2-core Intel Xeon with AMX (71.5-73 img/s); 36 min on a
#    Zen 5 (44.6 img/s). CUDA: batch 256, warmup 300, 6000 steps (~230 epochs), validated every 500; sized for about
#    2 minutes on an H100.
# Every stage: `--precision auto` (bf16 where the hardware computes it natively, fp32 elsewhere), `--seed 0`.
# The whole CPU run: 1 h 19 min on a Zen 5 (weights/README.md). The experiments of docs/decoding.md (masked copies
# in the training cache, `--copies-ratio 0.5`) run the four commands by hand, as weights/README.md writes them.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-runs}
WEIGHTS_DIR=${WEIGHTS_DIR:-weights}
DATA=${DATA:-data/emoji64}
STYLES=${STYLES:-}
DEVICE=${DEVICE:-auto}
PRESET=${PRESET:-default}
if [[ "$DEVICE" == auto ]]; then
  DEVICE=$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
fi
TIME_BUDGET=${TIME_BUDGET:-}
if [[ ! -d $DATA/train || ! -d $DATA/val || ! -d $DATA/val_mask64 || ! -d $DATA/test ]]; then
  echo "$DATA is missing: build it first with '$PYTHON tools/build_emoji64.py'" >&2
  exit 1
fi
for set in $STYLES; do # only their train/ is read
  if [[ ! -d $set/train ]]; then
    echo "$set is missing: build it first with '$PYTHON tools/build_styles64.py' ($set/README.md)" >&2
    exit 1
  fi
done
MODEL=$RUNS/emoji64$([[ "$DEVICE" == cuda* ]] && echo -gpu || true)
mkdir -p "$RUNS" "$WEIGHTS_DIR"
maskgit() { "$PYTHON" -m maskgit_cli "$@"; }
TRAIN=("$DATA/train")
for set in $STYLES; do TRAIN+=("$set/train"); done
BUDGET=()
if [[ -n "$TIME_BUDGET" ]]; then BUDGET=(--time-budget "$TIME_BUDGET"); fi

echo "== maskgit fit: $MODEL on $DEVICE (preset $PRESET${TIME_BUDGET:+, $TIME_BUDGET minutes}) from ${TRAIN[*]}" >&2
maskgit fit "${TRAIN[@]}" --val "$DATA/val" --val-masks "$DATA/val_mask64" -o "$MODEL" --preset "$PRESET" \
  --device "$DEVICE" "${BUDGET[@]}"
cp "$MODEL/vqgan.safetensors" "$WEIGHTS_DIR/vqgan-emoji64.safetensors"
cp "$MODEL/transformer.safetensors" "$WEIGHTS_DIR/maskgit-emoji64.safetensors"
echo "== $WEIGHTS_DIR/vqgan-emoji64.safetensors, $WEIGHTS_DIR/maskgit-emoji64.safetensors: from $MODEL" >&2

maskgit reconstruct "$DATA/test" --vqgan "$WEIGHTS_DIR/vqgan-emoji64.safetensors" -o "$RUNS/vqgan-emoji64-recon" \
  --device "$DEVICE" --json > "$RUNS/vqgan-emoji64-recon.json"
echo "== test scores of the VQGAN in $RUNS/vqgan-emoji64-recon.json; the stages' validation in $MODEL/README.md" >&2
