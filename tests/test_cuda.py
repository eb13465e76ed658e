"""What only a GPU can show (issue #15): bf16 training steps with and without torch.compile, inpainting one image,
exact resume, torchrun over NCCL, and CUDA tokens against CPU tokens.

Every test is marked ``cuda`` and skips without CUDA, so CI collects and skips them; `pytest -m cuda` runs them
alone, as tools/gpu_check.sh does on a GPU. Agreement figures are printed (shown with ``pytest -rP``) so that
a passing run still reports them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (tools/gpu_check.sh)"),
]

ROOT = Path(__file__).resolve().parents[1]
EMOJI_TEST = ROOT / "data" / "emoji64" / "test"
CODES = 16


def _token_cache(path, n=64, seed=0, grid=16, codes=CODES):
    """A learnable tiny token cache (as tests/test_transformer_train.py makes them): each grid is a left and a
    right half of one random code each."""
    from maskgit_cli.vqgan.tokens import save_token_cache

    g = torch.Generator().manual_seed(seed)
    halves = torch.randint(0, codes, (n, 1, 2), generator=g)
    tokens = halves.repeat_interleave(grid // 2, dim=2).expand(n, grid, grid).contiguous()
    save_token_cache(path, tokens, [f"image_{i:03d}.png" for i in range(n)], "a" * 64, "{}", grid * 4, codes)
    return path


@pytest.fixture
def caches(tmp_path):
    return _token_cache(tmp_path / "train.tokens"), _token_cache(tmp_path / "val.tokens", n=32, seed=1)


def _run_env() -> dict:
    """The environment for a subprocess that imports maskgit_cli from this checkout, installed or not."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT), "MASKGIT_NO_PROGRESS": "1"}


# ---------------------------------------------------------------------------------------------------------
# training


def _losses(compile: bool, steps: int = 3) -> tuple[list[float], torch.nn.Module]:
    from maskgit_cli.bench import make_train_task

    task = make_train_task("small", "cuda", batch_size=32, precision="bf16", compile=compile, total_steps=steps)
    indices = torch.arange(32)
    losses = [task.train_step(indices, step)["loss"] for step in range(steps)]
    torch.cuda.synchronize()
    return losses, task.model


def test_bf16_train_step_eager_and_compiled_agree():
    """`maskgit train`'s step in bf16 autocast on CUDA, then the same step under torch.compile: same initial
    weights, tokens and masks, so the first losses agree up to bf16 rounding and both runs learn."""
    eager, model = _losses(compile=False)
    compiled, compiled_model = _losses(compile=True)
    print(f"bf16 losses on CUDA: eager {eager}, compiled {compiled}")
    assert all(np.isfinite(eager + compiled))
    assert compiled[0] == pytest.approx(eager[0], rel=2e-2)
    assert eager[-1] < eager[0] and compiled[-1] < compiled[0]
    assert next(model.parameters()).device.type == "cuda"
    for a, b in zip(model.parameters(), compiled_model.parameters()):
        assert torch.isfinite(b).all() and a.shape == b.shape


# ---------------------------------------------------------------------------------------------------------
# inpainting


def test_inpaint_one_image_on_cuda_keeps_the_known_pixels():
    """Batch = one image through the public pipeline, with the shipped weights."""
    from PIL import Image

    from maskgit_cli.decoding.pipeline import Inpainter

    pipe = Inpainter.from_pretrained(device="cuda")
    assert pipe.device.type == "cuda"
    image = np.asarray(Image.open(sorted(EMOJI_TEST.glob("*.png"))[0]).convert("RGB"))
    mask = np.full((64, 64), 255, np.uint8)
    mask[16:48, 16:48] = 0  # the lab's convention: 0 = hole
    result = np.asarray(pipe(image, mask))
    known = mask == 255
    assert result.shape == (64, 64, 3) and result.dtype == np.uint8
    assert np.array_equal(result[known], image[known])
    assert not np.array_equal(result[~known], np.full_like(result[~known], 128))  # the hole was filled


# ---------------------------------------------------------------------------------------------------------
# resume


def test_resume_on_cuda_is_as_exact_as_the_gpu_is_deterministic(caches, tmp_path):
    """As tests/test_transformer_train.py on CPU: a run stopped at step 5 and resumed ends with the weights of an
    uninterrupted run. CUDA kernels may not be bit-reproducible (atomics in backward passes), so a third,
    uninterrupted run measures the GPU's own run-to-run difference: when two plain runs agree bit for bit, the
    resumed run must too; otherwise it may differ from the first run no more than the second run does (x10)."""
    from maskgit_cli.transformer.train import TrainConfig, train_transformer
    from maskgit_cli.weights import read_tensors

    train, val = caches

    def cfg(**kw):
        base = dict(preset="tiny", batch_size=8, max_steps=12, epochs=None, lr=3e-3, warmup_steps=2, device="cuda")
        return TrainConfig(**{**base, "eval_every": 6, "log_every": 2, "ema": 0.9, **kw})

    full = train_transformer(train, val, tmp_path / "a", cfg())
    first = train_transformer(train, val, tmp_path / "b", cfg(stop_at=5))
    assert first["status"] == "stopped" and first["step"] == 5
    second = train_transformer(train, val, tmp_path / "b", cfg(), resume=True)
    again = train_transformer(train, val, tmp_path / "c", cfg())
    assert second["status"] == "finished" and full["step"] == second["step"] == again["step"] == 12
    a, b, c = (read_tensors(tmp_path / run / "last.safetensors") for run in "abc")
    assert a.keys() == b.keys() == c.keys()

    def diff(x, y):
        return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)

    resumed, rerun = diff(a, b), diff(a, c)
    print(f"resume on CUDA: max |full - resumed| = {resumed:.3g}, max |full - rerun| = {rerun:.3g}")
    if rerun == 0:
        assert resumed == 0
    else:
        assert resumed <= 10 * rerun
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(x)["step"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------------------
# torchrun and NCCL

NCCL_SCRIPT = """
import json, os
import torch
import torch.distributed as dist
from maskgit_cli.transformer.model import MaskGITTransformer, get_preset

dist.init_process_group("nccl")
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
t = torch.full((4,), float(dist.get_rank() + 1), device="cuda")
dist.all_reduce(t)
torch.manual_seed(0)
model = MaskGITTransformer(get_preset("tiny", num_codebook_vectors=16)).cuda()
ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[torch.cuda.current_device()])
tokens = torch.randint(0, 16, (8, 256), device="cuda")
with torch.autocast("cuda", dtype=torch.bfloat16):
    loss = ddp(tokens).float().logsumexp(-1).mean()
loss.backward()
grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
print(json.dumps({"backend": dist.get_backend(), "world": dist.get_world_size(), "sum": t.tolist(),
                  "grads_finite": grads_finite, "nccl": list(torch.cuda.nccl.version())}))
dist.destroy_process_group()
"""


def _torchrun(*args, port: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port", str(port), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_run_env(), timeout=300, cwd=ROOT)


def test_torchrun_one_gpu_trains_and_nccl_all_reduces(caches, tmp_path):
    """`torchrun --nproc-per-node 1 -m maskgit_cli train ... --device cuda` end to end. With one process
    `maskgit train` joins no process group (WORLD_SIZE=1), so NCCL and DDP are checked by a second torchrun
    process that initialises NCCL itself, all-reduces and runs one DDP-wrapped bf16 backward pass."""
    from maskgit_cli.weights import load_model

    train, val = caches
    run = tmp_path / "torchrun"
    args = ["--val", val, "-o", run, "--preset", "tiny", "--batch-size", "8", "--max-steps", "4", "--eval-every", "2"]
    r = _torchrun("-m", "maskgit_cli", "train", train, *map(str, args), "--device", "cuda", port=29531)
    assert r.returncode == 0, r.stderr[-3000:]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in records if x["kind"] == "val"] == [2, 4]
    assert load_model(run / "last.safetensors", "transformer").config.num_codebook_vectors == CODES

    script = tmp_path / "nccl_check.py"
    script.write_text(NCCL_SCRIPT)
    r = _torchrun(str(script), port=29533)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"NCCL under torchrun: {report}")
    assert report["backend"] == "nccl" and report["sum"] == [1.0] * 4 and report["grads_finite"]


# ---------------------------------------------------------------------------------------------------------
# tokens


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a == b).float().mean())


@pytest.mark.skipif(not EMOJI_TEST.is_dir(), reason="needs data/emoji64/test")
def test_vqgan_tokens_on_cuda_equal_cpu_tokens(tmp_path):
    """The shipped VQGAN's codes for the emoji64 test images, CUDA against CPU, on >= 99.9% of the positions:
    the model in fp32 on both (CUDA's own kernels, TF32 included), then `maskgit tokenize`'s own path, which
    encodes in bf16 autocast on CUDA and fp32 on CPU."""
    from maskgit_cli.data.images import load_folder
    from maskgit_cli.vqgan.tokens import load_token_cache, tokenize_folder
    from maskgit_cli.weights import default_weights, load_model

    path = default_weights("vqgan")
    images, _ = load_folder(EMOJI_TEST, 64)
    with torch.no_grad():
        cpu = load_model(path, "vqgan", "cpu").encode(images)
        cuda = load_model(path, "vqgan", "cuda").encode(images.cuda()).cpu()
    fp32 = _agreement(cpu, cuda)

    tokenize_folder(EMOJI_TEST, path, tmp_path / "cpu.tokens", device="cpu")
    tokenize_folder(EMOJI_TEST, path, tmp_path / "cuda.tokens", device="cuda")
    tokenized = _agreement(
        load_token_cache(tmp_path / "cpu.tokens").tokens, load_token_cache(tmp_path / "cuda.tokens").tokens
    )
    print(f"CUDA tokens equal to CPU tokens on {len(images)} images: fp32 {fp32:.4%}, maskgit tokenize {tokenized:.4%}")
    assert fp32 >= 0.999
    assert tokenized >= 0.999
