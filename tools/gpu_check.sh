#!/usr/bin/env bash
# GPU check (issue #15, `make gpu-check`): test, benchmark and retrain maskgit on one GPU in one call of about
# 9 minutes, every result under $OUT as soon as its step ends, so that a call cut short still returns the early ones.
#
#   bash tools/gpu_check.sh            on an H100/H200: the device tool runs it from the repo root with $OUT set
#   bash tools/gpu_check.sh --dry-run  every command line of the real run, on CPU with tiny sizes (about 3 minutes
#                                      on 2 cores); tests/test_gpu_check.py runs it, so a typo fails here, not there
#
# Steps, in order: (a) nvidia-smi, the Python packages and torch/CUDA versions, `pytest -m cuda`;
# (b) `maskgit bench` train (lab preset, batch 256) with and without --compile, inpaint (lab, T = 8) and
# tokenize (the lab VQGAN on PNG files); (c) tools/make_weights.sh (one `maskgit fit`, GPU-sized), then `maskgit
# inpaint` of the emoji64 test set with the new and with the shipped weights, and tools/compare_baselines.py on
# both; (d) `maskgit fit` on emoji64's training images at 128x128 (downsample 8) in what is left of a 2-minute budget.
# A failing step is recorded with its exit code and the next step runs; the script itself exits 0 only when every
# step succeeded.
#
# Environment:
#   OUT=./gpu-check-out  at most 7 files (the device tool returns 8, two folders deep), each written when known:
#                        steps.jsonl  a line per step: step, rc, ok, seconds, limit_s, result (its JSON, else a tail)
#                        log.txt      every command and all its output
#                        bench.json   the four benchmarks' JSON results, by step name
#                        summary.json at the end: environment, exit codes, key figures and the issue's goals
#                        runs.tar.gz  metrics, configs and scores of the training runs and comparisons (no weights)
#                        weights/     the two files make_weights.sh trained (never the repo's weights/)
#   WORK=(a new temporary folder)  runs, token caches and images: too many or too big for $OUT
#   PYTHON  default: .venv/bin/python if it imports torch, else python3 (the device's, which holds torch). Nothing
#           is installed: maskgit_cli runs from this checkout through PYTHONPATH. Wheels in $WHEELS (default
#           .whl/, e.g. clean-fid, which the device lacks) are first unpacked into $WORK/site.
#   BUDGET_S=540 (dry run: 600)  the script's own deadline: each step's time limit is cut to the time left
#   ONLY=step,step  run only these steps, e.g. ONLY=make-weights,inpaint-new,inpaint-shipped,compare for a rerun
set -uo pipefail # no -e: a failing step is recorded, then the next one runs

cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *)
    echo "usage: bash tools/gpu_check.sh [--dry-run]" >&2
    exit 2
    ;;
esac

OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/maskgit-gpu-check.XXXXXX")}
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)
rm -f "$OUT/steps.jsonl" "$OUT/log.txt" "$OUT/bench.json" "$OUT/summary.json" "$OUT/runs.tar.gz"
LOG=$OUT/log.txt
: >"$LOG"
START=$SECONDS
BUDGET_S=${BUDGET_S:-$((DRY ? 600 : 540))}
export MASKGIT_NO_PROGRESS=1 PYTHONUNBUFFERED=1

if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  if [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import torch' 2>/dev/null; then
    PYTHON=$ROOT/.venv/bin/python
  fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
MASKGIT=("$PYTHON" -m maskgit_cli)

# ---------------------------------------------------------------------------------------------------------
# Sizes: the real run on the GPU, the dry run on CPU. Everything else is the same command line.
if ((DRY)); then
  DEVICE=cpu
  TRAIN_SIZE=(--preset tiny --batch-size 4 --steps 1)
  INPAINT_SIZE=(--preset tiny --vqgan-preset tiny --batch-size 2)
  TOKENIZE_SIZE=(--vqgan-preset tiny --images 16 --batch-size 8)
  WEIGHTS_SIZE=(PRESET=tiny) # make_weights.sh's `maskgit fit --preset tiny`: a few steps of the tiny models
  EVAL=$WORK/data # a few emoji64 images of each folder (make_subset)
  FIT_SIZE=(--preset tiny --time-budget 0.3 --resolution 32 --downsample 8)
else
  DEVICE=cuda
  TRAIN_SIZE=(--preset lab --batch-size 256)
  INPAINT_SIZE=(--preset lab --vqgan-preset lab)
  TOKENIZE_SIZE=(--vqgan-preset lab)
  WEIGHTS_SIZE=()
  EVAL=$ROOT/data/emoji64
  FIT_SIZE=(--time-budget 2 --resolution 128 --downsample 8)
fi
NEW_WEIGHTS=(--transformer "$OUT/weights/maskgit-emoji64.safetensors" --vqgan "$OUT/weights/vqgan-emoji64.safetensors")
SHIPPED_WEIGHTS=(--transformer "$ROOT/weights/maskgit-emoji64.safetensors" --vqgan "$ROOT/weights/vqgan-emoji64.safetensors")

# ---------------------------------------------------------------------------------------------------------
# Steps

say() { echo "$*" | tee -a "$LOG"; }

wanted() { [[ -z "${ONLY:-}" || ",$ONLY," == *",$1,"* ]]; }

# The time limit of a step: its cap, cut to what the budget leaves after `reserve` seconds for the steps after it.
limit_for() {
  local cap=$1 reserve=${2:-0} left
  left=$((BUDGET_S - (SECONDS - START) - reserve))
  echo $((cap < left ? cap : left))
}

# Append a step's line to steps.jsonl, with its stdout as "result" (parsed when it is JSON), and keep bench.json
# up to date. Without a working Python the line holds the exit code alone.
record() {
  "$PYTHON" - "$OUT" "$@" 2>>"$LOG" <<'PY' || printf '{"step": "%s", "rc": %s, "ok": false}\n' "$1" "$2" >>"$OUT/steps.jsonl"
import json, sys
from pathlib import Path

out, name, rc, seconds, limit, stdout, note = sys.argv[1:8]
text = Path(stdout).read_text(errors="replace").strip() if stdout and Path(stdout).is_file() else ""
try:
    result = json.loads(text)
except ValueError:
    result = text[-4000:] or None
line = {"step": name, "rc": int(rc), "ok": rc == "0", "seconds": round(float(seconds), 1), "limit_s": int(limit)}
line.update(result=result, **({"note": note} if note else {}))
with open(Path(out) / "steps.jsonl", "a") as f:
    f.write(json.dumps(line) + "\n")
if name.startswith("bench-") and isinstance(result, dict):
    path = Path(out) / "bench.json"
    bench = json.loads(path.read_text()) if path.is_file() else {}
    bench[name] = result
    path.write_text(json.dumps(bench, indent=2) + "\n")
PY
}

# run_step NAME CAP RESERVE COMMAND...: run COMMAND with a time limit, its stdout to $WORK/NAME.out (and the log),
# its stderr to the log; record the exit code (pytest's 5, "no tests ran", counts as success) and go on.
# COMMAND may be one of the functions below: it runs in a new bash (timeout runs programs only), so it must take
# all it needs as arguments.
run_step() {
  local name=$1 cap=$2 reserve=$3 limit t0 rc from seconds
  shift 3
  wanted "$name" || return 0
  limit=$(limit_for "$cap" "$reserve")
  if ((limit < 10)); then
    say "== $name: skipped, ${limit}s left of the ${BUDGET_S}s budget"
    record "$name" 124 0 0 "" "skipped: out of time"
    return 0
  fi
  say "== $name (limit ${limit}s): $*"
  if [[ $(type -t "$1") == function ]]; then
    set -- bash -c "$(declare -f "$1"); \"\$@\"" "$1" "$@"
  fi
  from=$(wc -c <"$LOG")
  t0=$EPOCHREALTIME
  timeout -k 20 "$limit" "$@" >"$WORK/$name.out" 2>>"$LOG"
  rc=$?
  seconds=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  [[ "$name" == pytest-* && $rc == 5 ]] && rc=0
  cat "$WORK/$name.out" >>"$LOG"
  record "$name" "$rc" "$seconds" "$limit" "$WORK/$name.out" ""
  say "-- $name: rc $rc in ${seconds}s"
  if ((rc != 0)); then # the end of what the step printed, for a reader who sees only the console
    tail -c +"$((from + 1))" "$LOG" | tail -n 25 | sed 's/^/   | /'
  fi
}

skip_step() {
  wanted "$1" || return 0
  say "== $1: skipped ($2)"
  record "$1" 0 0 0 "" "skipped: $2"
}

# ---------------------------------------------------------------------------------------------------------
# Helpers run as steps (in a new bash: everything they use comes as arguments)

python_env() { # PYTHON
  "$1" - <<'PY'
import importlib, importlib.metadata, json, os, platform, sys

found = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform()}
missing = []
# module -> distribution: maskgit's dependencies (pyproject.toml), OpenCV and pytest for the checks
modules = {"torch": "torch", "torchvision": "torchvision", "typer": "typer", "rich": "rich",
           "safetensors": "safetensors", "cleanfid": "clean-fid", "numpy": "numpy", "PIL": "pillow",
           "yaml": "pyyaml", "matplotlib": "matplotlib", "scipy": "scipy", "cv2": "opencv-python-headless",
           "pytest": "pytest", "maskgit_cli": None}
for name, dist in modules.items():
    try:
        module = importlib.import_module(name)
        try:
            found[name] = importlib.metadata.version(dist) if dist else module.__version__
        except importlib.metadata.PackageNotFoundError:
            found[name] = getattr(module, "__version__", "?")
        found[name] += f" ({os.path.dirname(module.__file__)})" if name == "maskgit_cli" else ""
    except Exception as e:  # noqa: BLE001 - report, do not stop
        found[name] = None
        if name != "cv2":  # OpenCV serves the Telea comparison only, which is skipped without it
            missing.append(f"{name} ({type(e).__name__}: {e})")
import torch

found.update(cuda_available=torch.cuda.is_available(), torch_cuda=torch.version.cuda,
             cudnn=torch.backends.cudnn.version(), cpu_count=os.cpu_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    found.update(device=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                 multiprocessors=p.multi_processor_count, bf16=torch.cuda.is_bf16_supported(),
                 nccl=".".join(map(str, torch.cuda.nccl.version())))
found["missing"] = missing
print(json.dumps(found, indent=2))
sys.exit(1 if missing else 0)
PY
}

install_wheels() { # PYTHON SITE WHEEL...
  "$1" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" "${@:3}"
}

# The first images of every emoji64 folder (24 of train/, 6 of the others, which pair up by sorted name), for the
# dry run's make_weights.sh and comparison: the same layout, whichever folders make_weights.sh reads.
make_subset() { # EMOJI64 TARGET
  local folder name
  for folder in "$1"/*/; do
    name=$(basename "$folder")
    mkdir -p "$2/$name"
    find "$folder" -maxdepth 1 -name '*.png' | LC_ALL=C sort | head -n "$([[ $name == train ]] && echo 24 || echo 6)" |
      xargs -r cp -t "$2/$name" || return
    echo "$2/$name: $(find "$2/$name" -name '*.png' | wc -l) images"
  done
}

# Scores of the new weights from make_weights.sh's runs (its fit's stages, runs/<model>/runs/<stage>/): the VQGAN's
# reconstruction of the test set, the transformer's validation (masked-token accuracy under the test masks), the
# training speeds.
weights_quality() { # PYTHON RUNS
  "$1" - "$2" <<'PY'
import json, sys
from pathlib import Path

runs = Path(sys.argv[1])
report = {}
recon = runs / "vqgan-emoji64-recon.json"
if recon.is_file():
    data = json.loads(recon.read_text())
    report["vqgan_recon"] = {k: v for k, v in data.items() if not isinstance(v, (list, dict))}
for metrics in sorted(runs.rglob("metrics.jsonl")):  # make_weights.sh's fit: runs/emoji64*/runs/<stage>/
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    vals = [r for r in records if r.get("kind") == "val"]
    speeds = [r["img_per_s"] for r in records if r.get("kind") == "train" and "img_per_s" in r]
    key = "inpaint_acc" if any("inpaint_acc" in r for r in vals) else "psnr"
    best = max(vals, key=lambda r: r.get(key, float("-inf")), default=None)
    report[metrics.parent.name] = {"steps": max((r.get("step", 0) for r in records), default=0), "best_val": best,
                                   "last_val": vals[-1] if vals else None, "img_per_s": speeds[-1] if speeds else None}
print(json.dumps(report, indent=2))
sys.exit(0 if report else 1)
PY
}

# Small files of the runs and comparisons (metrics, configs, scores, curves): no checkpoints, no images.
pack_runs() {
  (cd "$WORK" && find runs compare inpaint-* -maxdepth 4 \( -name metrics.jsonl -o -name config.json \
    -o -name curves.png -o -name '*.json' \) 2>/dev/null | LC_ALL=C sort | tar -czf "$OUT/runs.tar.gz" -T -)
}

summary() {
  "$PYTHON" - "$OUT" "$WORK" "$DRY" "$((SECONDS - START))" "$BUDGET_S" <<'PY'
import json, sys
from pathlib import Path

out, work, dry, seconds, budget = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", *map(int, sys.argv[4:])
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
result = {s["step"]: s.get("result") for s in steps}
bench = {k: v for k, v in result.items() if k.startswith("bench-") and isinstance(v, dict)}


def get(step, *keys):
    value = result.get(step)
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


quality = result.get("weights-quality") if isinstance(result.get("weights-quality"), dict) else {}
transformer = next((v for k, v in quality.items() if k == "transformer" or k.startswith("maskgit-")), {}) or {}
figures = {
    "train_compiled_img_s": get("bench-train-compile", "images_per_second"),
    "train_compiled_mfu": get("bench-train-compile", "mfu"),
    "train_img_s": get("bench-train", "images_per_second"),
    "train_mfu": get("bench-train", "mfu"),
    "matmul_peak_tflops": get("bench-train-compile", "peak_tflops"),
    "inpaint_img_s": get("bench-inpaint", "images_per_second"),
    "inpaint_decode_only_img_s": get("bench-inpaint", "decode_only_images_per_second"),
    "tokenize_img_s": get("bench-tokenize", "images_per_second"),
    "vqgan_psnr": (quality.get("vqgan_recon") or {}).get("psnr"),
    "vqgan_codebook_usage": (quality.get("vqgan_recon") or {}).get("codebook_usage"),
    "masked_token_accuracy": ((transformer.get("best_val") or {}).get("inpaint_acc")),
}


def goal(value, target):
    return {"value": value, "target": target, "met": value is not None and value >= target}


compare = work / "compare" / "compare.json"
summary = {
    "mode": "dry-run (CPU, tiny sizes: the figures mean nothing)" if dry else "gpu",
    "seconds": seconds,
    "budget_s": budget,
    "all_ok": all(s["ok"] for s in steps),
    "failed": [s["step"] for s in steps if not s["ok"]],
    "steps": {s["step"]: {"rc": s["rc"], "seconds": s.get("seconds"), "note": s.get("note")} for s in steps},
    "environment": result.get("python-env") if isinstance(result.get("python-env"), dict) else None,
    "figures": figures,
    "goals (issue #15)": {
        "train, lab, bf16 + compile: MFU": goal(figures["train_compiled_mfu"], 0.50),
        "inpaint, lab, T = 8: img/s": goal(figures["inpaint_img_s"], 1500),
        "tokenize, lab VQGAN, from PNG files: img/s": goal(figures["tokenize_img_s"], 2500),
        "make weights: VQGAN PSNR (dB)": goal(figures["vqgan_psnr"], 29.0),
        "make weights: VQGAN codebook usage": goal(figures["vqgan_codebook_usage"], 0.90),
        "make weights: masked-token accuracy": goal(figures["masked_token_accuracy"], 0.50),
    },
    "weights_quality": quality or None,
    "compare": json.loads(compare.read_text()) if compare.is_file() else None,
}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps({k: summary[k] for k in ("mode", "seconds", "all_ok", "failed", "figures")}, indent=2))
PY
}

# ---------------------------------------------------------------------------------------------------------
# The run

say "gpu_check: $([[ $DRY == 1 ]] && echo dry run on CPU || echo GPU run), OUT=$OUT WORK=$WORK PYTHON=$PYTHON" \
  "budget ${BUDGET_S}s, $(date -u +%FT%TZ)"
WHEELS=${WHEELS:-$ROOT/.whl}
shopt -s nullglob
wheels=("$WHEELS"/*.whl)
shopt -u nullglob
if ((${#wheels[@]})); then
  run_step wheels 120 0 install_wheels "$PYTHON" "$WORK/site" "${wheels[@]}"
  export PYTHONPATH="$WORK/site:$PYTHONPATH"
fi

# (a) the machine, the packages, the CUDA-only tests
if command -v nvidia-smi >/dev/null; then
  run_step nvidia-smi 30 0 nvidia-smi
elif ((DRY)); then
  skip_step nvidia-smi "not found; dry run"
else
  run_step nvidia-smi 30 0 nvidia-smi # fails, and says so in steps.jsonl
fi
run_step python-env 60 0 python_env "$PYTHON"
run_step pytest-cuda 180 0 "$PYTHON" -m pytest -m cuda -v -rsP -p no:cacheprovider --continue-on-collection-errors tests

# (b) speed
run_step bench-train-compile 200 0 "${MASKGIT[@]}" bench train "${TRAIN_SIZE[@]}" --compile --device "$DEVICE" --json
run_step bench-train 90 0 "${MASKGIT[@]}" bench train "${TRAIN_SIZE[@]}" --device "$DEVICE" --json
run_step bench-inpaint 120 0 "${MASKGIT[@]}" bench inpaint "${INPAINT_SIZE[@]}" --total-iter 8 --device "$DEVICE" --json
run_step bench-tokenize 120 0 "${MASKGIT[@]}" bench tokenize "${TOKENIZE_SIZE[@]}" --device "$DEVICE" --json

# (c) weights with GPU settings, then their quality against the shipped weights and OpenCV Telea
if ((DRY)); then
  run_step subset 60 0 make_subset "$ROOT/data/emoji64" "$WORK/data"
fi
# make_weights.sh as `make weights` runs it (`make` itself would first build a venv), 100 s left for what follows
wanted make-weights && rm -rf "$OUT/weights"
run_step make-weights 600 100 env DEVICE="$DEVICE" PYTHON="$PYTHON" RUNS="$WORK/runs" WEIGHTS_DIR="$OUT/weights" \
  DATA="$EVAL" "${WEIGHTS_SIZE[@]}" bash tools/make_weights.sh
run_step weights-quality 30 0 weights_quality "$PYTHON" "$WORK/runs"
pack_runs
run_step inpaint-new 90 45 "${MASKGIT[@]}" inpaint --images "$EVAL/masked_image" --masks "$EVAL/mask64" \
  "${NEW_WEIGHTS[@]}" -o "$WORK/inpaint-new" --grids none --device "$DEVICE" --json
run_step inpaint-shipped 90 30 "${MASKGIT[@]}" inpaint --images "$EVAL/masked_image" --masks "$EVAL/mask64" \
  "${SHIPPED_WEIGHTS[@]}" -o "$WORK/inpaint-shipped" --grids none --device "$DEVICE" --json
# Without OpenCV (a dev extra, no dependency of maskgit) the table has no Telea and NS rows, the rest is the same.
run_step compare 120 0 "$PYTHON" tools/compare_baselines.py --images "$EVAL/masked_image" --masks "$EVAL/mask64" \
  --ref "$EVAL/test" -o "$WORK/compare" --model none --kind lab --pred "new weights=$WORK/inpaint-new/images" \
  --pred "shipped weights=$WORK/inpaint-shipped/images" \
  --accuracy "new weights=$OUT/weights/maskgit-emoji64.safetensors,$OUT/weights/vqgan-emoji64.safetensors" \
  --accuracy "shipped weights=$ROOT/weights/maskgit-emoji64.safetensors,$ROOT/weights/vqgan-emoji64.safetensors"
pack_runs

# (d) `maskgit fit`: every stage into a model folder in one command, at another resolution than the lab's (what is
# left of the budget; the dry run: tiny at 32x32)
run_step fit 150 0 "${MASKGIT[@]}" fit "$EVAL/train" -o "$WORK/fit" "${FIT_SIZE[@]}" --device "$DEVICE" --json

summary | tee -a "$LOG"
say "gpu_check: done in $((SECONDS - START))s; results in $OUT (work files in $WORK)"
"$PYTHON" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["all_ok"] else 1)' "$OUT/summary.json"
