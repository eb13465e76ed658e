"""Benchmarks: throughput as ratios measured in one run (achieved FLOP/s over the matmul peak just measured).

``bench_train``: img/s of `maskgit train`'s training step (forward, backward, AdamW) on random tokens, the model's
matmul FLOPs per image (``MaskGITTransformer.flops_per_image``) -> achieved TFLOP/s, and MFU against the peak
of a large square matmul in the same precision measured in the same process.
``bench_inpaint``: img/s of the whole inpainting path (VQGAN encode, T decode steps, VQGAN decode).
``bench_tokenize``: img/s of `maskgit tokenize`'s own path (:func:`~maskgit_cli.vqgan.tokens.tokenize_folder`) on
a folder of PNG files, end to end: PNG decoding in the loader's workers, VQGAN encoding, the cache write.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskgit_cli.choices import PRECISIONS, check_choice
from maskgit_cli.data.images import default_workers
from maskgit_cli.decoding.decode import DecodeSettings, decode_tokens
from maskgit_cli.decoding.inpaint import InpaintSettings, inpaint_batch
from maskgit_cli.errors import MaskgitError
from maskgit_cli.runtime import autocast, resolve_precision
from maskgit_cli.schedules import training_mask_count
from maskgit_cli.transformer.model import MaskGITTransformer, get_preset
from maskgit_cli.transformer.train import TrainConfig, TransformerTask
from maskgit_cli.vqgan.code_patches import vqgan_code_patches
from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS, vqgan_preset
from maskgit_cli.vqgan.resolution import DEFAULT_DOWNSAMPLE, DEFAULT_RESOLUTION
from maskgit_cli.vqgan.tokens import TokenCache, tokenize_folder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dtype(precision: str) -> torch.dtype:
    """The matmul dtype of a resolved precision (bf16 or fp32; resolve ``auto`` first with
    :func:`~maskgit_cli.runtime.resolve_precision`)."""
    check_choice(precision, PRECISIONS, "--precision")
    if precision == "auto":
        raise ValueError("resolve precision 'auto' first (runtime.resolve_precision)")
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


def make_train_task(
    preset: str,
    device: torch.device | str,
    batch_size: int,
    precision: str = "bf16",
    compile: bool = False,
    total_steps: int = 10,
    seed: int = 0,
    grid: int | None = None,
):
    """A :class:`~maskgit_cli.transformer.train.TransformerTask` (what `maskgit train` steps) on one batch of
    random tokens already on ``device``: the step that bench_train times and tests/test_cuda.py runs on a GPU.
    The same arguments give the same initial weights and tokens. ``grid``: the token grid's side (None: the
    preset's, 16x16), e.g. 32 for a VQGAN of 128x128 images at downsample 4."""
    device = torch.device(device)
    cfg = TrainConfig(
        preset=preset, batch_size=batch_size, precision=precision, compile=compile, warmup_steps=0, seed=seed
    )
    model_cfg = get_preset(preset) if grid is None else get_preset(preset, num_image_tokens=grid * grid)
    torch.manual_seed(seed)
    model = MaskGITTransformer(model_cfg).to(device)
    g = torch.Generator().manual_seed(seed)
    side = int(model_cfg.num_image_tokens**0.5)
    tokens = torch.randint(0, model_cfg.num_codebook_vectors, (batch_size, side, side), generator=g)
    cache = TokenCache(tokens, [], "", {}, side * 4, model_cfg.num_codebook_vectors, False)  # image size: unused
    return TransformerTask(cfg, model, cache, None, None, device, total_steps=total_steps)


def _predicted_share(task) -> float:
    """The share of positions a training step sends through the head: the masked ones when the loss is on them
    (the mean of the mask-ratio draws, e.g. 0.64 for cosine), else all."""
    if task.cfg.loss_on != "masked":
        return 1.0
    n = task.model.config.num_image_tokens
    counts = training_mask_count(task.cfg.mask_ratio, n, 100_000, generator=torch.Generator().manual_seed(0))
    return float(counts.double().mean()) / n


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
    grid: int | None = None,
) -> TrainBench:
    """Time `maskgit train`'s own training step (:meth:`TransformerTask.train_step`: masks, forward, loss,
    backward, clipping, AdamW) on random tokens already on the device (no data loading). ``precision`` auto is
    resolved first (bf16 where the hardware has it), and the peak is measured in the precision used. ``grid``: the
    token grid's side (None: the preset's, 16x16)."""
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    batch_size = batch_size or (256 if device.type == "cuda" else 32)
    steps = steps or (20 if device.type == "cuda" else 5)
    task = make_train_task(preset, device, batch_size, precision, compile, total_steps=warmup + steps, grid=grid)
    model = task.model
    indices = torch.arange(batch_size)
    for step in range(warmup):
        task.train_step(indices, step)
    _sync(device)
    t0 = time.perf_counter()
    for step in range(warmup, warmup + steps):
        task.train_step(indices, step)
    _sync(device)
    ips = batch_size * steps / (time.perf_counter() - t0)
    flops_img = model.flops_per_image(training=True, predicted=_predicted_share(task))
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
    vqgan_preset: str = "local",
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    total_iter: int = 8,
    rounds: int = 3,
    resolution: int = DEFAULT_RESOLUTION,
    downsample: int = DEFAULT_DOWNSAMPLE,
) -> InpaintBench:
    """img/s of inpainting random images with randomly initialised models (speed does not depend on weights), the
    VQGAN preset at ``resolution`` and ``downsample`` (:func:`~maskgit_cli.vqgan.model.vqgan_preset`)."""
    device = torch.device(device)
    vcfg = _vqgan_config(vqgan_preset, resolution, downsample)
    tcfg = get_preset(preset, num_codebook_vectors=vcfg.num_codebook_vectors, num_image_tokens=vcfg.tokens_per_image)
    torch.manual_seed(0)
    transformer = MaskGITTransformer(tcfg).to(device).eval()
    vqgan = VQGAN(vcfg).to(device, memory_format=torch.channels_last).eval()  # as decoding.inpaint.prepare_models
    batch_size = batch_size or (512 if device.type == "cuda" else 32)
    size = vcfg.img_resolution
    images = torch.rand(batch_size, 3, size, size, device=device)
    holes = torch.zeros(batch_size, size, size, dtype=torch.bool, device=device)
    holes[:, size // 4 : size * 3 // 4, size // 4 : size * 3 // 4] = True  # a centre box: 25% of the pixels
    settings = InpaintSettings(decode=DecodeSettings(total_iter=total_iter), dilate=1)
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
            decode_tokens(transformer, tokens, unknown, settings.decode, transformer.config.mask_token_id)

    return InpaintBench(
        str(device), preset, vqgan_preset, batch_size, total_iter, settings.precision, full, timed(decode_only)
    )


def _vqgan_config(name: str, resolution: int, downsample: int):
    """The VQGAN preset ``name`` (``--vqgan-preset``) at ``resolution`` and ``downsample``."""
    if name not in VQGAN_PRESETS:
        raise MaskgitError(f"--vqgan-preset {name}: expected one of {', '.join(VQGAN_PRESETS)}")
    return vqgan_preset(name, resolution, downsample)


@dataclass
class TokenizeBench:
    device: str
    vqgan_preset: str
    batch_size: int
    images: int
    workers: int  # PNG decoding processes of the loader
    precision: str  # the encoder's, as in `maskgit tokenize`: bf16 autocast on CUDA, fp32 on CPU
    images_per_second: float  # end to end: files -> token cache on disk
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def write_random_pngs(folder, n: int, size: int = 64, seed: int = 0) -> list[Path]:
    """n PNGs of uniform RGB noise: the worst case for PNG decoding (noise does not compress), so the img/s
    measured on them is a floor for real images such as the emoji."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"image_{i:06d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, compress_level=1)
        paths.append(path)
    return paths


def bench_tokenize(
    vqgan_preset: str = "local",
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    images: int | None = None,
    folder=None,
    workers: int | None = None,
    resolution: int = DEFAULT_RESOLUTION,
    downsample: int = DEFAULT_DOWNSAMPLE,
) -> TokenizeBench:
    """img/s of `maskgit tokenize` on ``folder`` (default: ``images`` random PNGs written to a temporary folder)
    with a randomly initialised VQGAN of ``vqgan_preset`` at ``resolution`` and ``downsample`` (speed does not depend
    on weights).

    One warm-up call on ``batch_size`` other images first (CUDA context, cuDNN plans), then one timed call over the
    whole folder; the loader's worker start-up is part of the timed call, as it is of every `maskgit tokenize`."""
    device = torch.device(device)
    cfg = _vqgan_config(vqgan_preset, resolution, downsample)
    batch_size = batch_size or (256 if device.type == "cuda" else 32)
    workers = default_workers() if workers is None else workers
    torch.manual_seed(0)
    vqgan = VQGAN(cfg).eval()
    with tempfile.TemporaryDirectory(prefix="maskgit-bench-tokenize-") as tmp:
        tmp = Path(tmp)
        if folder is None:
            images = images or (8192 if device.type == "cuda" else 64)
            folder = tmp / "images"
            write_random_pngs(folder, images, cfg.img_resolution, seed=0)
        elif not Path(folder).is_dir():
            raise MaskgitError(f"--folder {folder}: not a folder of images")
        write_random_pngs(tmp / "warmup", batch_size, cfg.img_resolution, seed=1)
        run = dict(batch_size=batch_size, device=device, num_workers=workers, overwrite=True)
        tokenize_folder(tmp / "warmup", vqgan, tmp / "warmup.tokens", **run)
        summary = tokenize_folder(folder, vqgan, tmp / "bench.tokens", **run)
    n = summary.images  # every image of the folder: tokenize_folder fails on an unreadable one
    precision = "bf16" if device.type == "cuda" else "fp32"  # the VQGAN's own rule (runtime.vqgan_autocast)
    return TokenizeBench(
        str(device), vqgan_preset, batch_size, n, workers, precision, n / summary.seconds, summary.seconds
    )
