"""Sharper reconstructions for the same tokens (`maskgit tune-decoder`): fine-tune a VQGAN's decoder alone.

The encoder, ``quant_conv`` and the codebook are frozen, so every image keeps exactly the tokens it had: token
caches, a transformer trained on them and its code patches all stay valid (the exported VQGAN records its source's
token fingerprint, ``VQGANConfig.tokens_of``, and `inpaint`/`tokenize` accept it for the source). Only the decoder
and ``post_quant_conv`` learn, from the training images' codes (encoded once at the start as `tokenize` encodes
them, the mirrored images' too when ``flip``) to their pixels, with ``l1_weight * |x' - x| + l2_weight * (x' - x)^2``
in [0,1] pixel space, train-vqgan's loss (measured on emoji64, 1,500 steps: L1 + L2 28.78 dB validation PSNR, L2
alone 28.79 dB at lr 5e-4 and 28.70 dB at lr 2e-4; weights/README.md).

AdamW with warmup + cosine LR, gradient clipping, bf16 autocast where the hardware computes it. Validation: PSNR and
SSIM of the uint8 reconstructions (as `train-vqgan` reports them); ``best.safetensors`` has the highest PSNR.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import torch

from maskgit_cli.data.images import to_unit
from maskgit_cli.progress import log, progress_bar
from maskgit_cli.runtime import autocast, resolve_precision, seed_everything, vqgan_autocast
from maskgit_cli.training.loop import fit
from maskgit_cli.vqgan.model import VQGAN
from maskgit_cli.vqgan.settings import TuneDecoderConfig
from maskgit_cli.vqgan.train import FineTuneTask, evaluate_vqgan, image_batch, start_fine_tuning
from maskgit_cli.weights import save_model, token_fingerprint


def trained_modules(model: VQGAN) -> torch.nn.ModuleList:
    """The parts `tune-decoder` trains: everything after the codebook lookup."""
    return torch.nn.ModuleList([model.post_quant_conv, model.decoder])


@torch.no_grad()
def encode_all(model: VQGAN, images_u8: torch.Tensor, flip: bool, batch_size: int = 256) -> torch.Tensor:
    """The codes (V,N,h,w) int64 of uint8 images (N,3,H,W), in the precision `tokenize` and `inpaint` encode with
    (:func:`~maskgit_cli.runtime.vqgan_autocast`); V = 2 with ``flip`` (view 1: the mirrored images), else 1."""
    model.eval()
    amp = vqgan_autocast(images_u8.device)
    views = []
    with progress_bar(len(images_u8) * (2 if flip else 1), "encoding the training images", "img") as bar:
        for mirrored in (False, True) if flip else (False,):
            chunks = []
            for i in range(0, len(images_u8), batch_size):
                x = to_unit(images_u8[i : i + batch_size])
                with amp:
                    chunks.append(model.encode(x.flip(-1) if mirrored else x))
                bar.advance(len(x))
            views.append(torch.cat(chunks))
    return torch.stack(views)


class TuneDecoderTask(FineTuneTask):
    """One `tune-decoder` run, as a :class:`~maskgit_cli.training.TrainTask`: ``post_quant_conv`` and the decoder
    learn, from the codes of the training images (and of their mirror images with ``flip``)."""

    def __init__(self, cfg: TuneDecoderConfig, model: VQGAN, source_tokens: str, train, val, device, total: int):
        super().__init__(cfg, model, trained_modules(model), train, val, device, total, stream=0xDEC0)
        self.source_tokens = source_tokens
        self.codes = encode_all(model, self.train, cfg.flip)

    def train_step(self, indices: torch.Tensor, step: int) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        model.train()
        lr = self.schedule.apply(self.optimizer, step)
        x, mirrored = image_batch(self.train, indices, self.gen, cfg.flip)
        indices = indices.to(self.device)
        codes = self.codes[0, indices]
        if mirrored is not None:  # the mirrored images' codes
            codes = torch.where(mirrored[:, None, None], self.codes[1, indices], codes)
        with autocast(self.device, cfg.precision):
            recon = model.denormalize(model.decode_latents(model.codebook.lookup(codes)).float())
        l1 = (recon - x).abs().mean()
        l2 = ((recon - x) ** 2).mean()
        loss = cfg.l1_weight * l1 + cfg.l2_weight * l2
        return self.learn(loss, l1=l1.item(), l2=l2.item(), lr=lr)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val is None:
            return {}
        s = evaluate_vqgan(self.model, self.val, self.cfg.val_batch_size, self.device, "fp32")
        self.model.train()
        return {"psnr": s["psnr"], "ssim": s["ssim"]}

    def export(self, path: Path, metadata: dict[str, str]) -> None:
        self.model.config = replace(self.model.config, tokens_of=self.source_tokens)
        save_model(path, self.model, "vqgan", {"trainer": "tune-decoder", **metadata})


def tune_decoder(vqgan_path, train_dir, val_dir, run_dir, cfg: TuneDecoderConfig, resume: bool = False) -> dict:
    """Fine-tune the decoder of the VQGAN file ``vqgan_path`` on ``train_dir`` into the run folder ``run_dir``."""
    tuning = start_fine_tuning("tune-decoder", vqgan_path, train_dir, val_dir, run_dir, cfg, resume, "psnr")
    source, train, val, total, device = tuning.source, tuning.train, tuning.val, tuning.total, tuning.device
    with tuning.run:  # unlocked when fit returns, or when something fails before it
        seed_everything(cfg.seed)
        model = copy.deepcopy(source)
        task = TuneDecoderTask(cfg, model, token_fingerprint(source, tuning.source_sha256), train, val, device, total)
        n = sum(p.numel() for p in trained_modules(model).parameters())
        log(
            f"tune-decoder: decoder of {vqgan_path} ({n / 1e6:.2f}M parameters; encoder and codebook frozen, tokens "
            f"unchanged), {len(train)} train / {0 if val is None else len(val)} val images, {total} steps of "
            f"{cfg.batch_size} on {device} ({resolve_precision(cfg.precision, device)})"
        )
        source_psnr = None
        if val is not None:  # what the fine-tuning has to beat
            source_psnr = evaluate_vqgan(source, task.val, cfg.val_batch_size, device, "fp32")["psnr"]
            log(f"tune-decoder: the source VQGAN's validation PSNR is {source_psnr:.2f} dB")
        result = fit(task, tuning.run, len(train), tuning.loop, resume=resume, description="tune-decoder", unit="img")
    return {**result.summary(tuning.run), "best_psnr": result.best, "source_psnr": source_psnr}
