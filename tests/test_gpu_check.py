"""tools/gpu_check.sh --dry-run: every command line of the GPU check runs on CPU, so that the one call a GPU
session gets cannot fail on a typo, and the repo's weights/ stay as they are."""

import hashlib
import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
STEPS = [
    "nvidia-smi",
    "python-env",
    "pytest-cuda",
    "bench-train-compile",
    "bench-train",
    "bench-inpaint",
    "bench-tokenize",
    "subset",
    "make-weights",
    "weights-quality",
    "inpaint-new",
    "inpaint-shipped",
    "compare",
    "fit",
]


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_dry_run_runs_every_step_and_leaves_the_shipped_weights_alone(tmp_path):
    before = _hashes(ROOT / "weights")
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "OUT": str(out), "WORK": str(work)}
    for name in ("ONLY", "BUDGET_S", "PYTHON", "WHEELS"):
        env.pop(name, None)
    t0 = time.perf_counter()
    r = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, env=env, timeout=600)
    print(f"gpu_check.sh --dry-run: {time.perf_counter() - t0:.0f} s")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]

    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == STEPS
    failed = {s["step"]: s["rc"] for s in steps if s["rc"] != 0 or not s["ok"]}
    assert not failed, f"{failed}\n{r.stdout[-4000:]}"

    bench = json.loads((out / "bench.json").read_text())
    assert set(bench) == {"bench-train-compile", "bench-train", "bench-inpaint", "bench-tokenize"}
    assert all(result["images_per_second"] > 0 and result["device"] == "cpu" for result in bench.values())
    assert bench["bench-train-compile"]["compile"] and not bench["bench-train"]["compile"]
    assert bench["bench-tokenize"]["images"] == 16

    summary = json.loads((out / "summary.json").read_text())
    assert summary["all_ok"] and summary["mode"].startswith("dry-run")
    assert summary["figures"]["vqgan_psnr"] is not None and summary["figures"]["masked_token_accuracy"] is not None
    methods = [row["method"] for row in summary["compare"]["rows"]]  # the Telea row only where OpenCV is installed
    accuracy = summary["compare"]["token_accuracy"]
    assert set(accuracy) == {"new weights", "shipped weights"} and all(0 <= a <= 1 for a in accuracy.values())
    assert methods[-2:] == ["new weights", "shipped weights"]
    assert ("OpenCV Telea" in methods) == (importlib.util.find_spec("cv2") is not None)

    # $OUT stays within what the device tool returns: at most 8 files, at most two folders down
    files = [p.relative_to(out) for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(len(p.parts) <= 3 for p in files), files
    assert {p.name for p in (out / "weights").iterdir()} == {"vqgan-emoji64.safetensors", "maskgit-emoji64.safetensors"}
    assert json.loads((work / "runs" / "emoji64" / "card.json").read_text())["preset"] == "tiny"  # one `maskgit fit`
    assert _hashes(ROOT / "weights") == before
