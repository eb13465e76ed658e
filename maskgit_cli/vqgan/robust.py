"""A mask-robust tokenizer (`maskgit robust-vqgan`): fine-tune a VQGAN's encoder so that holes change no token
outside the region inpainting regenerates (docs/decoding.md, "Training on what inpainting sees").

Filling a hole gray and encoding the image changes tokens far from the hole: the encoder's convolutions reach
across it, its GroupNorm statistics and self-attention span the whole image. Inpainting then decodes with a
polluted context. Here the encoder (and ``quant_conv``) of a trained VQGAN, the *student*, learns from a frozen
copy of itself, the *teacher*: per step, for each image x with the holes of a generated mask (the kinds
``tokenize --masked-copies`` uses, from a bank of up to 4,096 masks drawn once from the seed, taken in turn by
(step, row), so resume is exact and no step waits for mask drawing),

- ``clean``: the student's latents of x stay on the teacher's codes, ``|z(x) - e(teacher codes)|^2``: clean images
  keep their tokens, so a transformer trained on the teacher's tokens stays valid;
- ``masked``: the student's latents of x with the holes filled gray, encoded hole-blind (normalization and
  attention over the known positions, :meth:`~maskgit_cli.vqgan.model.VQGAN.encode_masked`), match the teacher's
  codes of the clean x at every token outside the holes and their ``dilate`` rings.

The codebook and the decoder are frozen: codes mean what they meant, and reconstructions change only where a
clean image's code changes. Validation: *context fidelity* (the share of tokens outside the regenerated region equal
to the clean image's teacher tokens, under fixed masks), the share of clean tokens kept, and reconstruction PSNR;
``best.safetensors`` has the highest fidelity. The exported VQGAN records ``hole_blind`` in its config.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from maskgit_cli.data.images import to_unit
from maskgit_cli.data.inputs import holes_gray
from maskgit_cli.data.mask_generator import generate_mask, mask_rng
from maskgit_cli.data.masks import HOLE, dilate_token_mask, token_mask_for
from maskgit_cli.progress import log
from maskgit_cli.runtime import autocast, resolve_precision, seed_everything
from maskgit_cli.training.loop import fit
from maskgit_cli.vqgan.model import VQGAN
from maskgit_cli.vqgan.settings import RobustConfig
from maskgit_cli.vqgan.tokens import COPY_KINDS, context_counts
from maskgit_cli.vqgan.train import FineTuneTask, evaluate_vqgan, image_batch, start_fine_tuning
from maskgit_cli.weights import model_fingerprint, save_model

MASK_BANK = 4096  # masks drawn once per run (about 1 ms each on a CPU), then taken in turn


def mask_bank(seed: int, count: int, size: int) -> torch.Tensor:
    """``count`` pixel hole masks (count,size,size) bool of the kinds ``tokenize --masked-copies`` uses: mask n is a
    pure function of (seed, n)."""
    out = np.zeros((count, size, size), dtype=bool)
    for n in range(count):
        out[n] = generate_mask(COPY_KINDS[n % len(COPY_KINDS)], mask_rng(seed, n), size=size) == HOLE
    return torch.from_numpy(out)


def step_holes(bank: torch.Tensor, step: int, rows: int) -> torch.Tensor:
    """The holes (rows,size,size) of one training step: the bank's masks step*rows ... in turn."""
    return bank[(step * rows + torch.arange(rows)) % len(bank)]


class RobustTask(FineTuneTask):
    """One `robust-vqgan` run, as a :class:`~maskgit_cli.training.TrainTask`: the student's encoder and
    ``quant_conv`` learn."""

    def __init__(self, cfg: RobustConfig, student: VQGAN, teacher: VQGAN, train, val, device, total_steps: int):
        trained = torch.nn.ModuleList([student.encoder, student.quant_conv])
        super().__init__(cfg, student, trained, train, val, device, total_steps, stream=0x0B57)
        self.teacher = teacher
        self.size, self.latent = student.config.img_resolution, student.config.latent_resolution
        self.bank = mask_bank(cfg.mask_seed, min(MASK_BANK, total_steps * cfg.batch_size), self.size).to(device)
        self.val_holes = mask_bank(cfg.mask_seed + 1, len(val), self.size).to(device) if val is not None else None

    def _outside(self, holes: torch.Tensor) -> torch.Tensor:
        """(B,1,h,w) bool: the tokens inpainting keeps (outside the holes' tokens and their rings)."""
        return ~dilate_token_mask(token_mask_for(holes, self.latent, "any", 0), self.cfg.dilate)[:, None]

    def train_step(self, indices: torch.Tensor, step: int) -> dict[str, float]:
        cfg, student = self.cfg, self.model
        student.train()
        lr = self.schedule.apply(self.optimizer, step)
        x, _ = image_batch(self.train, indices, self.gen, cfg.flip)
        holes = step_holes(self.bank, step, len(x))
        with torch.no_grad():
            target = student.codebook.lookup(self.teacher.encode(x))  # (B,D,h,w), the teacher's codes of x
        with autocast(self.device, cfg.precision):
            z_clean = student.encode_latents(x).float()
            known = ~holes if cfg.hole_blind else None
            z_masked = student.encode_latents(holes_gray(x, holes), known).float()
        outside = self._outside(holes).float()
        clean = F.mse_loss(z_clean, target)
        masked = (((z_masked - target) ** 2) * outside).sum() / (outside.sum() * target.shape[1]).clamp_min(1)
        loss = clean + cfg.masked_weight * masked
        return self.learn(loss, clean=clean.item(), masked=masked.item(), lr=lr)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val is None:
            return {}
        student, teacher = self.model.eval(), self.teacher
        fidelity, kept = measure_context_fidelity(student, teacher, self.val, self.val_holes, self.cfg.dilate,
                                                  self.cfg.hole_blind, self.cfg.val_batch_size)  # fmt: skip
        scores = evaluate_vqgan(student, self.val, self.cfg.val_batch_size, self.device, "fp32")
        self.model.train()
        return {"fidelity": fidelity, "clean_kept": kept, "psnr": scores["psnr"], "usage": scores["usage"]}

    def export(self, path: Path, metadata: dict[str, str]) -> None:
        self.model.config = replace(self.model.config, hole_blind=self.cfg.hole_blind)
        teacher = model_fingerprint(self.teacher)
        save_model(path, self.model, "vqgan", {"trainer": "robust-vqgan", "teacher_sha256": teacher, **metadata})


@torch.no_grad()
def measure_context_fidelity(
    model: VQGAN,
    reference: VQGAN,
    images_u8: torch.Tensor,
    holes: torch.Tensor,
    dilate: int = 1,
    hole_blind: bool | None = None,
    batch_size: int = 128,
) -> tuple[float, float]:
    """(context fidelity, clean tokens kept) of ``model`` on uint8 images (N,3,H,W) with ``holes`` (N,H,W): the
    share of tokens outside the regenerated region (holes + ``dilate`` rings) of the masked images equal to
    ``reference``'s tokens of the clean images, and the share of clean tokens equal to ``reference``'s.
    ``hole_blind`` None: as the model's config says."""
    latent = model.config.latent_resolution
    hole_blind = model.config.hole_blind if hole_blind is None else hole_blind
    same = outside_n = kept = total = 0
    for i in range(0, len(images_u8), batch_size):
        x = to_unit(images_u8[i : i + batch_size])
        h = holes[i : i + batch_size]
        want = reference.encode(x)
        got = model.encode(holes_gray(x, h), ~h if hole_blind else None)
        counts = context_counts(want, got[:, None], token_mask_for(h, latent)[:, None], dilate)
        same, outside_n = same + counts[0], outside_n + counts[1]
        kept += int((model.encode(x) == want).sum())
        total += want.numel()
    return same / max(outside_n, 1), kept / max(total, 1)


def robust_vqgan(vqgan_path, train_dir, val_dir, run_dir, cfg: RobustConfig, resume: bool = False) -> dict[str, Any]:
    """Fine-tune the encoder of the VQGAN file ``vqgan_path`` on ``train_dir`` into the run folder ``run_dir``."""
    tuning = start_fine_tuning("robust-vqgan", vqgan_path, train_dir, val_dir, run_dir, cfg, resume, "fidelity")
    teacher, train, val, total, device = tuning.source, tuning.train, tuning.val, tuning.total, tuning.device
    with tuning.run:  # unlocked when fit returns, or when something fails before it
        seed_everything(cfg.seed)
        student = copy.deepcopy(teacher)
        task = RobustTask(cfg, student, teacher, train, val, device, total)
        blind = ", hole-blind" if cfg.hole_blind else ""
        log(
            f"robust-vqgan: encoder of {vqgan_path} ({sum(p.numel() for p in student.encoder.parameters()) / 1e6:.2f}M "
            f"parameters), {len(train)} train / {0 if val is None else len(val)} val images, {total} steps of "
            f"{cfg.batch_size} on {device} ({resolve_precision(cfg.precision, device)}{blind})"
        )
        result = fit(task, tuning.run, len(train), tuning.loop, resume=resume, description="robust-vqgan", unit="img")
    return {**result.summary(tuning.run), "best_fidelity": result.best}
