"""Stage 1: train a :class:`~maskgit_cli.models.vqgan.VQGAN` on an image folder (`maskgit train-vqgan`).

Per step (images in [0,1], horizontally flipped with probability 1/2 when ``flip``):

- reconstruction loss ``l1_weight * |x' - x| + l2_weight * (x' - x)^2`` (means), measured in [0,1] pixel
  space (the decoder's normalized output is de-normalized first), so the weights and the logged losses mean
  the same for every preset whatever its mean/std; the L2 term is what PSNR measures;
- vector quantization with an **EMA codebook** (VQ-VAE-2 style k-means updates of
  ``codebook.embedding.weight``, decay ``codebook_decay``) plus the commitment loss
  ``beta * |z - sg(e)|^2``. The EMA replaces the usual codebook loss term; the straight-through estimator
  passes the decoder's gradient to the encoder. Nearest-code search is the model's own (fp32, squared L2).
- **dead-code restarts**: at step 0 every code is set to a random encoder output of the first batch (data
  dependent init), and every ``restart_every`` steps codes whose EMA use count fell below
  ``dead_code_threshold`` (uses per batch) are moved onto random encoder outputs of the current batch. This
  keeps (nearly) the whole codebook in use; validation reports the fraction used and the perplexity.
- optional **PatchGAN** adversarial loss from step ``gan_start``: a small discriminator (stride-2 4x4 convs,
  GroupNorm, LeakyReLU) with hinge losses; the generator term is weighted by ``gan_weight`` times the
  taming-transformers adaptive factor |grad rec| / |grad gan| at the decoder's last layer (``gan_adaptive``),
  or by ``gan_weight`` alone. The discriminator and its optimizer are part of the training state.

AdamW (decay only on matrices) with warmup + cosine LR, gradient clipping, bf16 autocast on CUDA and CPU.
Validation (every epoch or ``eval_every`` steps): PSNR and SSIM of the uint8 reconstructions, codebook
usage and perplexity; ``best.safetensors`` is the checkpoint with the highest validation PSNR. All model
files load with ``weights.load_model(path, "vqgan")``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from maskgit_cli.data.images import list_images, load_image, to_uint8, to_unit
from maskgit_cli.errors import MaskgitError
from maskgit_cli.metrics import codebook_usage, psnr, ssim
from maskgit_cli.progress import log, progress_bar
from maskgit_cli.runtime import autocast, resolve_device, resolve_precision, seed_everything
from maskgit_cli.training import run as training_run
from maskgit_cli.training.loop import LoopConfig, fit
from maskgit_cli.training.optim import WarmupCosine, make_adamw, seeded_generator, set_lr
from maskgit_cli.training.run import RunDir, config_dict
from maskgit_cli.vqgan.model import VQGAN, vqgan_preset
from maskgit_cli.vqgan.resolution import size_note
from maskgit_cli.vqgan.settings import FineTuneSettings, TrainVQGANConfig
from maskgit_cli.weights import load_model, model_fingerprint, save_model

# Keys of config.json that may change when resuming: they do not change the trained weights.
RESUME_MAY_DIFFER = (*training_run.RESUME_MAY_DIFFER, "data.train_dir", "data.val_dir")
FINE_TUNE_RESUME_MAY_DIFFER = (*RESUME_MAY_DIFFER, "data.vqgan")


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: one real/fake logit per overlapping patch. Input in [-1, 1]."""

    def __init__(self, channels: int = 32, layers: int = 2):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = channels
        for _ in range(1, layers):
            seq += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.GroupNorm(8, ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        seq += [
            nn.Conv2d(ch, ch * 2, 4, 1, 1, bias=False),
            nn.GroupNorm(8, ch * 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch * 2, 1, 4, 1, 1),
        ]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def load_images_uint8(folder, size: int, resize: bool, what: str) -> tuple[torch.Tensor, list[Path]]:
    """All images of ``folder`` as a uint8 (N,3,size,size) tensor; a bad file is an error naming it."""
    files = list_images(folder, what)
    arrays = np.empty((len(files), size, size, 3), dtype=np.uint8)
    with progress_bar(len(files), f"loading {Path(folder).name}", "img") as bar:
        for i, f in enumerate(files):
            arrays[i] = load_image(f, size, resize)
            bar.advance(1)
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous(), files


def image_batch(
    images_u8: torch.Tensor, indices: torch.Tensor, gen: torch.Generator, flip: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A training batch: the images ``indices`` of ``images_u8`` in [0,1], each mirrored with probability 1/2 when
    ``flip`` (drawn from ``gen``); and which were mirrored (None without ``flip``)."""
    x = to_unit(images_u8[indices.to(images_u8.device)])
    if not flip:
        return x, None
    mirrored = torch.rand(len(x), generator=gen, device=gen.device) < 0.5
    return torch.where(mirrored[:, None, None, None], x.flip(-1), x), mirrored


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params, grad_clip: float) -> None:
    """One optimizer step on ``loss``, the gradient norm of ``params`` clipped to ``grad_clip`` first (0: not)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


def _names_digest(files: list[Path]) -> str:
    return hashlib.sha256("\n".join(f.name for f in files).encode()).hexdigest()[:16]


class VQGANTask:
    """One VQGAN training run, as a :class:`~maskgit_cli.training.TrainTask`."""

    def __init__(
        self,
        cfg: TrainVQGANConfig,
        model: VQGAN,
        train: torch.Tensor,
        val: torch.Tensor | None,
        device: torch.device,
        total_steps: int,
    ):
        self.cfg, self.model, self.device = cfg, model, device
        self.train, self.val = train.to(device), (val.to(device) if val is not None else None)
        self.beta = cfg.beta if cfg.beta is not None else model.config.beta
        self.schedule = WarmupCosine(cfg.lr, total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
        # The codebook is updated by EMA, not by the optimizer.
        codebook = model.codebook.embedding.weight
        codebook.requires_grad_(False)
        k, d = codebook.shape
        self.cluster_size = torch.zeros(k, device=device)  # EMA of uses per batch
        self.embed_sum = torch.zeros(k, d, device=device)  # EMA of the sum of the latents assigned to each code
        self.optimizer = make_adamw(model, cfg.lr, cfg.weight_decay, cfg.betas)
        self.gen = seeded_generator(cfg.seed, 0xC0DE, device=device)  # flips and restarts
        self.disc = self.d_optimizer = None
        if cfg.gan_start is not None:
            self.disc = PatchDiscriminator(cfg.disc_channels, cfg.disc_layers).to(device)
            self.d_optimizer = make_adamw(self.disc, cfg.disc_lr or cfg.lr, cfg.weight_decay, (0.5, 0.9))

    # -- one step ------------------------------------------------------------------------------------------
    def train_step(self, indices: torch.Tensor, step: int) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        model.train()
        lr = self.schedule.apply(self.optimizer, step)
        x, _ = image_batch(self.train, indices, self.gen, cfg.flip)

        with autocast(self.device, cfg.precision):
            z = model.encode_latents(x)
            codes = model.codebook.nearest(z)  # fp32 distances, (B,h,w)
            if step == 0 or step % cfg.restart_every == 0:
                self._restart_dead_codes(z, codes, initial=step == 0)
                codes = model.codebook.nearest(z)
            z_q = model.codebook.lookup(codes)
            commit = F.mse_loss(z.float(), z_q)
            z_st = z + (z_q.to(z.dtype) - z).detach()  # straight-through
            recon = model.denormalize(model.decode_latents(z_st).float())
            l1 = (recon - x).abs().mean()
            l2 = ((recon - x) ** 2).mean()
            rec_loss = cfg.l1_weight * l1 + cfg.l2_weight * l2
            loss = rec_loss + self.beta * commit
            gan_on = self.disc is not None and step >= cfg.gan_start
            out: dict[str, float] = {}
            if gan_on:
                g_loss = -self.disc(recon * 2 - 1).float().mean()
                weight = cfg.gan_weight * (self._adaptive_weight(rec_loss, g_loss) if cfg.gan_adaptive else 1.0)
                loss = loss + weight * g_loss
                out.update(g_loss=g_loss.item(), gan_weight=float(weight))

        if not torch.isfinite(loss):  # keep the weights clean; fit() stops with a message
            return {"loss": loss.item()}
        descend(self.optimizer, loss, model.parameters(), cfg.grad_clip)
        self._ema_update(z.detach().float(), codes)

        if gan_on:
            set_lr(self.d_optimizer, (cfg.disc_lr or cfg.lr) / cfg.lr * lr)
            with autocast(self.device, cfg.precision):
                real = self.disc(x * 2 - 1).float()
                fake = self.disc(recon.detach() * 2 - 1).float()
                d_loss = 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
            self.d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_optimizer.step()
            out["d_loss"] = d_loss.item()
        return {"loss": loss.item(), "l1": l1.item(), "l2": l2.item(), "commit": commit.item(), "lr": lr, **out}

    def _adaptive_weight(self, rec_loss: torch.Tensor, g_loss: torch.Tensor) -> torch.Tensor:
        """|d rec / d W| / |d gan / d W| at the decoder's last conv W (taming-transformers), clamped."""
        last = self.model.decoder.model[-1].weight
        g_rec = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
        g_gan = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
        return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, 1e4).detach()

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """k-means style EMA update of the codebook from this batch's assignments (fp32)."""
        decay, weight = self.cfg.codebook_decay, self.model.codebook.embedding.weight
        k, d = weight.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        idx = codes.reshape(-1)
        counts = torch.bincount(idx, minlength=k).float()
        sums = torch.zeros(k, d, device=z.device).index_add_(0, idx, flat)
        self.cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
        self.embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
        n, eps = self.cluster_size.sum(), 1e-5
        smoothed = (self.cluster_size + eps) / (n + k * eps) * n  # Laplace smoothing: no division by zero
        weight.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def _restart_dead_codes(self, z: torch.Tensor, codes: torch.Tensor, initial: bool) -> None:
        """Move unused codes (all of them at step 0) onto random encoder outputs of this batch."""
        weight = self.model.codebook.embedding.weight
        k, d = weight.shape
        dead = (
            torch.ones(k, dtype=torch.bool, device=z.device)
            if initial
            else self.cluster_size < self.cfg.dead_code_threshold
        )
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        flat = z.detach().float().permute(0, 2, 3, 1).reshape(-1, d)
        if len(flat) >= n_dead:
            pick = torch.randperm(len(flat), generator=self.gen, device=z.device)[:n_dead]
        else:
            pick = torch.randint(len(flat), (n_dead,), generator=self.gen, device=z.device)
        new = flat[pick]
        if len(flat) < n_dead or initial:  # break ties between duplicates / identical latents
            new = new + 1e-3 * new.std() * torch.randn(new.shape, generator=self.gen, device=z.device)
        weight[dead] = new
        self.cluster_size[dead] = self.cfg.dead_code_threshold
        self.embed_sum[dead] = new * self.cfg.dead_code_threshold

    # -- evaluation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val is None:
            return {}
        s = evaluate_vqgan(self.model, self.val, self.cfg.val_batch_size, self.device, self.cfg.precision)
        self.model.train()
        return s

    # -- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "cluster_size": self.cluster_size,
            "embed_sum": self.embed_sum,
            "generator": self.gen.get_state(),
        }
        if self.disc is not None:
            state["disc"] = self.disc.state_dict()
            state["d_optimizer"] = self.d_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.cluster_size.copy_(state["cluster_size"])
        self.embed_sum.copy_(state["embed_sum"])
        self.gen.set_state(state["generator"])
        if self.disc is not None:
            if "disc" not in state:
                raise MaskgitError("the saved run has no discriminator; resume with the same --gan-start")
            self.disc.load_state_dict(state["disc"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])

    def export(self, path: Path, metadata: dict[str, str]) -> None:
        save_model(path, self.model, "vqgan", {"trainer": "train-vqgan", **metadata})


@torch.no_grad()
def evaluate_vqgan(
    model: VQGAN, images_u8: torch.Tensor, batch_size: int, device: torch.device, precision: str = "fp32"
) -> dict[str, float]:
    """Reconstruct uint8 images (N,3,H,W): mean PSNR (over finite values: exact reconstructions are left out)
    and SSIM of the uint8 reconstructions, codebook usage and perplexity."""
    model.eval()
    psnrs, ssims, codes = [], [], []
    for i in range(0, len(images_u8), batch_size):
        x_u8 = images_u8[i : i + batch_size].to(device)
        with autocast(device, precision):
            idx = model.encode(to_unit(x_u8))
            rec = model.decode(idx)
        rec_u8 = to_uint8(rec)
        ref_u8 = x_u8.permute(0, 2, 3, 1).cpu().numpy()
        psnrs.append(psnr(rec_u8, ref_u8))
        ssims.append(ssim(rec_u8, ref_u8))
        codes.append(idx.cpu())
    p = np.concatenate(psnrs)
    finite = p[np.isfinite(p)]
    usage, perplexity = codebook_usage(torch.cat(codes), model.config.num_codebook_vectors)
    return {
        "psnr": float(finite.mean()) if len(finite) else math.inf,
        "ssim": float(np.concatenate(ssims).mean()),
        "usage": usage,
        "perplexity": perplexity,
    }


def train_vqgan(train_dir, val_dir, run_dir, cfg: TrainVQGANConfig, resume: bool = False) -> dict[str, Any]:
    """Train a VQGAN on ``train_dir`` (validating on ``val_dir`` if given) into the run folder ``run_dir``.

    Returns a summary: status (finished/stopped/interrupted), exit_code, steps, best val PSNR, the last
    validation metrics, paths of the weights, wall time and speed.
    """
    device = resolve_device(cfg.device)
    model_cfg = vqgan_preset(cfg.preset, *cfg.size)
    size = model_cfg.img_resolution
    train, train_files = load_images_uint8(train_dir, size, cfg.resize, "training images")
    val, val_files = (
        load_images_uint8(val_dir, size, cfg.resize, "validation images") if val_dir is not None else (None, [])
    )
    loop = LoopConfig.of(cfg, "psnr" if val is not None else None)
    total = loop.total_steps(len(train))

    run = RunDir(run_dir)
    run_config = {
        "trainer": "train-vqgan",
        "train": config_dict(cfg),
        "model": config_dict(model_cfg),
        "data": {
            "train_dir": str(train_dir),
            "train_images": len(train),
            "train_names": _names_digest(train_files),
            "val_dir": str(val_dir) if val_dir is not None else None,
            "val_images": len(val_files),
            "val_names": _names_digest(val_files) if val_files else None,
        },
    }
    run.start(run_config, resume, may_differ=RESUME_MAY_DIFFER)  # locks the run folder until fit returns
    with run:  # ... or until something fails before fit
        seed_everything(cfg.seed)
        model = VQGAN(model_cfg).to(device)
        task = VQGANTask(cfg, model, train, val, device, total)
        precision = resolve_precision(cfg.precision, device)
        log(
            f"train-vqgan: preset {cfg.preset} ({model.num_params() / 1e6:.2f}M parameters, "
            f"{model_cfg.num_codebook_vectors} codes{size_note(model_cfg)}), {len(train)} train / "
            f"{len(val_files)} val images, {total} steps of {cfg.batch_size} on {device} ({precision})"
        )
        result = fit(task, run, len(train), loop, resume=resume, description="train-vqgan", unit="img")

    return {
        **result.summary(run),
        "best_psnr": result.best,
        "last": str(run.last) if run.last.exists() else None,
        "best": str(run.best) if run.best.exists() else None,
        "parameters": model.num_params(),
    }


# ---------------------------------------------------------------------------------------------------------
# What the fine-tuners of a trained VQGAN (robust-vqgan, tune-decoder) share


class FineTuneTask:
    """What the tasks of the fine-tuners share: a copy of a trained VQGAN of which the modules ``trained`` alone
    learn (AdamW, warmup-cosine LR), the images on the device, and the generator of the flips (stream ``stream``).
    A subclass adds its own ``train_step``, ``evaluate`` and ``export``."""

    def __init__(self, cfg: FineTuneSettings, model: VQGAN, trained: nn.Module, train, val, device, total: int, stream):
        self.cfg, self.model, self.trained, self.device = cfg, model, trained, device
        self.train, self.val = train.to(device), (val.to(device) if val is not None else None)
        model.requires_grad_(False)
        trained.requires_grad_(True)
        self.optimizer = make_adamw(trained, cfg.lr, cfg.weight_decay, cfg.betas)
        self.schedule = WarmupCosine(cfg.lr, total, cfg.warmup_steps, cfg.min_lr_ratio)
        self.gen = seeded_generator(cfg.seed, stream, device=device)  # flips

    def learn(self, loss: torch.Tensor, **values: float) -> dict[str, float]:
        """One optimizer step of the trained modules on ``loss``, unless it is NaN/inf (the weights stay clean and
        fit() stops with a message); returns the step's values to log, the loss first."""
        if not torch.isfinite(loss):
            return {"loss": loss.item()}
        descend(self.optimizer, loss, self.trained.parameters(), self.cfg.grad_clip)
        return {"loss": loss.item(), **values}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.gen.get_state()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"])


@dataclass
class FineTuning:
    """A fine-tuner's inputs, loaded and checked, and its run folder, started (locked until ``fit`` returns)."""

    source: VQGAN  # the VQGAN file's model, frozen: the fine-tuner trains a copy of it
    source_sha256: str  # its fingerprint (weights.model_fingerprint)
    train: torch.Tensor  # uint8 (N,3,H,W)
    val: torch.Tensor | None
    loop: LoopConfig
    total: int  # steps
    run: RunDir
    device: torch.device


def start_fine_tuning(
    trainer: str, vqgan_path, train_dir, val_dir, run_dir, cfg: FineTuneSettings, resume: bool, best_metric: str
) -> FineTuning:
    """Load the VQGAN file ``vqgan_path`` and the images, then start (or resume) the run folder ``run_dir`` of
    ``trainer``; ``best_metric`` (a validation key) picks best.safetensors when there are validation images."""
    device = resolve_device(cfg.device)
    source = load_model(vqgan_path, "vqgan", device).eval().requires_grad_(False)
    size = source.config.img_resolution
    train, _ = load_images_uint8(train_dir, size, cfg.resize, "training images")
    val = load_images_uint8(val_dir, size, cfg.resize, "validation images")[0] if val_dir is not None else None
    loop = LoopConfig.of(cfg, best_metric if val is not None else None)
    total = loop.total_steps(len(train))
    source_sha256 = model_fingerprint(source)
    run = RunDir(run_dir)
    run_config = {
        "trainer": trainer,
        "train": config_dict(cfg),
        "model": config_dict(source.config),
        "data": {
            "vqgan": str(vqgan_path),
            "vqgan_sha256": source_sha256,
            "train_dir": str(train_dir),
            "train_images": len(train),
            "val_dir": str(val_dir) if val_dir else None,
        },
    }
    run.start(run_config, resume, may_differ=FINE_TUNE_RESUME_MAY_DIFFER)
    return FineTuning(source, source_sha256, train, val, loop, total, run, device)
