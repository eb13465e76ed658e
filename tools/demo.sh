#!/usr/bin/env bash
# `make demo`: the main job on the embedded default data set, with the shipped default weights, offline.
#
#   tokenize the training images -> a short real training run (stopped and resumed, to show it works)
#   -> inpaint the test set with --schedule square (step grids, overview) -> score (FID when the Inception
#   file is present, else PSNR/SSIM on the holes) -> print where everything is.
#
# Every step is a plain `maskgit` command, so this file doubles as a walkthrough. Variables (for tests and
# other data): OUT, DATA, VQGAN, TRANSFORMER, PRESET, STEPS, DEVICE, MASKGIT (the command to run).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-demo-out}
DATA=${DATA:-data/emoji64}
VQGAN=${VQGAN:-weights/vqgan-emoji64.safetensors}
TRANSFORMER=${TRANSFORMER:-weights/maskgit-emoji64.safetensors}
PRESET=${PRESET:-small}
STEPS=${STEPS:-20}
DEVICE=${DEVICE:-auto}
MASKGIT=${MASKGIT:-.venv/bin/maskgit}
export MASKGIT_NO_DOWNLOAD=1  # the demo never downloads anything

for f in "$VQGAN" "$TRANSFORMER"; do
  [[ -f "$f" ]] || { echo "Error: $f is missing (the default weights ship in weights/; 'make weights' rebuilds them)" >&2; exit 1; }
done
rm -rf "$OUT"
mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
start=$(date +%s)

step "1/5 tokenize the training and validation images with the default VQGAN"
"$MASKGIT" tokenize "$DATA/train" --vqgan "$VQGAN" -o "$OUT/train.tokens" --device "$DEVICE"
"$MASKGIT" tokenize "$DATA/val" --vqgan "$VQGAN" -o "$OUT/val.tokens" --device "$DEVICE"

step "2/5 a short real training run: $STEPS steps, stopped half-way and resumed"
"$MASKGIT" train "$OUT/train.tokens" --val "$OUT/val.tokens" --val-masks "$DATA/val_mask64" -o "$OUT/train-run" \
  --preset "$PRESET" --batch-size 16 --max-steps "$STEPS" --eval-every "$((STEPS / 2))" --warmup-steps 5 \
  --stop-at "$((STEPS / 2))" --device "$DEVICE"
"$MASKGIT" train --resume "$OUT/train-run"

# --draws 1: one draw per image, four times faster than the default (four draws averaged, +0.17 dB in the holes
# here; docs/decoding.md, "Several draws, averaged"), so that the demo stays under 3 minutes on 2 CPU cores.
step "3/5 inpaint the test set with the default weights (--schedule square, one draw per image)"
"$MASKGIT" inpaint --images "$DATA/masked_image" --masks "$DATA/mask64" --transformer "$TRANSFORMER" \
  --vqgan "$VQGAN" -o "$OUT/inpaint" --schedule square --draws 1 --grids 8 --device "$DEVICE"

step "4/5 score the results against the ground truth"
if "$MASKGIT" fid "$OUT/inpaint/images" "$DATA/test" --json > "$OUT/fid.json" 2> "$OUT/fid.err"; then
  cat "$OUT/fid.json"
else
  echo "FID skipped: $(tail -n 1 "$OUT/fid.err" | sed 's/^Error: //')" >&2
  rm -f "$OUT/fid.json"
fi
"$MASKGIT" score "$OUT/inpaint/images" "$DATA/test" --masks "$DATA/mask64" | tee "$OUT/score.txt"

step "5/5 done in $(( $(date +%s) - start )) s. Where everything is:"
cat <<EOT
  token caches        $OUT/train.tokens, $OUT/val.tokens
  training run        $OUT/train-run/ (metrics.jsonl, curves.png, last/best.safetensors)
  inpainted images    $OUT/inpaint/images/
  per-step grids      $OUT/inpaint/steps/ (*_mask.png: white = known, black = still masked; *_image.png)
  overview            $OUT/inpaint/overview.png (input | result)
  report              $OUT/inpaint/report.json
  scores              $OUT/score.txt$( [[ -f "$OUT/fid.json" ]] && echo ", $OUT/fid.json" )
EOT
