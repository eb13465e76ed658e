"""Benchmarks: throughput as ratios measured in one run (achieved FLOP/s over the matmul peak just measured).

``bench_train``: img/s of `maskgit train`'s training step (forward, backward, AdamW) on random tokens, the model's
matmul FLOPs per image (``MaskGITTransformer.flops_per_image``) -> achieved TFLOP/s, and MFU against the peak
of a large square matmul in the same precision measured in the same process.
``bench_inpaint``: img/s of the whole inpainting path (VQGAN encode, T decode steps, VQGAN decode).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from maskgit_cli.choices import PRECISIONS, check_choice
from maskgit_cli.errors import MaskgitError
from maskgit_cli.runtime import autocast


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dtype(precision: str) -> torch.dtype:
    check_choice(precision, PRECISIONS, "--precision")
    return torch.bfloat16 if precision == "bf16" else torch.float32


def matmul_peak(device: torch.device, precision: str = "bf16", n: int | None = None, seconds: float = 1.0) -> float:
    """FLOP/s of an n x n x n matmul in ``precision`` on ``device`` (best of repeated timings)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    dtype = _dtype(precision)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    best, deadline = 0.0, time.perf_counter() + seconds
    reps = 10 if device.type == "cuda" else 2
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best


@dataclass
class TrainBench:
    device: str
    preset: str
    batch_size: int
    precision: str
    compile: bool
    params: int
    images_per_second: float
    gflop_per_image: float
    achieved_tflops: float
    peak_tflops: float
    mfu: float

    def to_dict(self) -> dict:
        return asdict(self)


def bench_train(
    preset: str = "small",
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    precision: str = "bf16",
    compile: bool = False,
    steps: int | None = None,
    warmup: int = 3,
) -> TrainBench:
    """Time `maskgit train`'s own training step (:meth:`TransformerTask.train_step`: masks, forward, loss,
    backward, clipping, AdamW) on random tokens already on the device (no data loading)."""
    from maskgit_cli.transformer.model import MaskGITTransformer, get_preset
    from maskgit_cli.transformer.train import TrainConfig, TransformerTask
    from maskgit_cli.vqgan.tokens import TokenCache

    device = torch.device(device)
    batch_size = batch_size or (256 if device.type == "cuda" else 32)
    steps = steps or (20 if device.type == "cuda" else 5)
    cfg = TrainConfig(preset=preset, batch_size=batch_size, precision=precision, compile=compile, warmup_steps=0)
    model_cfg = get_preset(preset)
    torch.manual_seed(0)
    model = MaskGITTransformer(model_cfg).to(device)
    g = torch.Generator().manual_seed(0)
    side = int(model_cfg.num_image_tokens**0.5)
    tokens = torch.randint(0, model_cfg.num_codebook_vectors, (batch_size, side, side), generator=g)
    cache = TokenCache(tokens, [], "", {}, 64, model_cfg.num_codebook_vectors, False)
    task = TransformerTask(cfg, model, cache, None, None, device, total_steps=warmup + steps)
    indices = torch.arange(batch_size)
    for step in range(warmup):
        task.train_step(indices, step)
    _sync(device)
    t0 = time.perf_counter()
    for step in range(warmup, warmup + steps):
        task.train_step(indices, step)
    _sync(device)
    ips = batch_size * steps / (time.perf_counter() - t0)
    flops_img = model.flops_per_image(training=True)
    peak = matmul_peak(device, precision)
    achieved = ips * flops_img
    return TrainBench(
        str(device),
        preset,
        batch_size,
        precision,
        compile,
        model.num_params(),
        ips,
        flops_img / 1e9,
        achieved / 1e12,
        peak / 1e12,
        achieved / peak,
    )


@dataclass
class InpaintBench:
    device: str
    preset: str
    vqgan_preset: str
    batch_size: int
    total_iter: int
    precision: str  # the transformer's; the VQGAN runs in bf16 on CUDA, fp32 on CPU
    images_per_second: float
    decode_only_images_per_second: float

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def bench_inpaint(
    preset: str = "small",
    vqgan_preset: str = "small",
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    total_iter: int = 8,
    rounds: int = 3,
) -> InpaintBench:
    """img/s of inpainting random images with randomly initialised models (speed does not depend on weights)."""
    from maskgit_cli.decoding.decode import DecodeSettings, decode_tokens
    from maskgit_cli.decoding.inpaint import InpaintSettings, inpaint_batch
    from maskgit_cli.transformer.model import MaskGITTransformer, get_preset
    from maskgit_cli.vqgan.code_patches import vqgan_code_patches
    from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS

    device = torch.device(device)
    if vqgan_preset not in VQGAN_PRESETS:
        raise MaskgitError(f"--vqgan-preset {vqgan_preset}: expected one of {', '.join(VQGAN_PRESETS)}")
    vcfg = VQGAN_PRESETS[vqgan_preset]
    tcfg = get_preset(preset, num_codebook_vectors=vcfg.num_codebook_vectors, num_image_tokens=vcfg.tokens_per_image)
    torch.manual_seed(0)
    transformer = MaskGITTransformer(tcfg).to(device).eval()
    vqgan = VQGAN(vcfg).to(device, memory_format=torch.channels_last).eval()  # as decoding.inpaint.prepare_models
    batch_size = batch_size or (512 if device.type == "cuda" else 32)
    size = vcfg.img_resolution
    images = torch.rand(batch_size, 3, size, size, device=device)
    holes = torch.zeros(batch_size, size, size, dtype=torch.bool, device=device)
    holes[:, size // 4 : size * 3 // 4, size // 4 : size * 3 // 4] = True  # a centre box: 25% of the pixels
    settings = InpaintSettings(decode=DecodeSettings(schedule="cosine", total_iter=total_iter), dilate=1)
    amp = autocast(device, settings.precision)  # the transformer's precision in inpaint_batch too

    def timed(fn) -> float:
        fn()  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn()
        _sync(device)
        return batch_size * rounds / (time.perf_counter() - t0)

    patches = vqgan_code_patches(vqgan)  # once per run, as `maskgit inpaint` does (guidance is on by default)
    full = timed(lambda: inpaint_batch(transformer, vqgan, images, holes, settings, patches=patches))
    tokens = torch.randint(0, vcfg.num_codebook_vectors, (batch_size, tcfg.num_image_tokens), device=device)
    unknown = torch.rand(batch_size, tcfg.num_image_tokens, device=device) < 0.5

    def decode_only():
        with amp:
            decode_tokens(transformer, tokens, unknown, settings.decode)

    return InpaintBench(
        str(device), preset, vqgan_preset, batch_size, total_iter, settings.precision, full, timed(decode_only)
    )
