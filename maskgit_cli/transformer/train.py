"""Stage 2: masked visual token modeling (`maskgit train`) on cached VQGAN tokens.

Per step, for each token grid of the batch (docs/decoding.md, "Training objective"):

- a number of positions to mask: ``--mask-ratio cosine`` (paper: r ~ U[0,1), ceil(gamma(r) * N), any
  schedule name works) or ``uniform:a,b`` (the lab seed's choice: a fraction uniform in [a, b]), then that
  many random positions, drawn from a torch.Generator that is part of the training state;
- masked positions take the mask id; the transformer predicts every position;
- with ``copies_ratio`` R > 0 (a cache from ``tokenize --masked-copies K``), a share R of the grids trains on what
  inpainting sees instead: the tokens of one of its masked copies (holes filled gray, so the context is as polluted
  as at inpainting time) with the tokens to generate (the copy's holes, dilated by ``dilate``) set to the mask id,
  and the clean tokens as targets (docs/decoding.md, "Training on what inpainting sees");
- with ``shaped_masks`` S > 0, a share S of the grids masks a hole users draw instead of random positions: a
  generated pixel mask (stroke, box, half or outpaint, equally often: data/mask_generator) turned into the tokens it
  touches (``dilate`` rings more), drawn from the same generator (resume stays exact);
- cross-entropy with label smoothing (default 0.1) on the masked positions (``loss_on="all"``: everywhere);
- AdamW (decay only on matrices and embeddings), warmup + cosine LR, gradient accumulation, clipping,
  bf16 autocast on CUDA and CPU, optional torch.compile and EMA weights (exported when enabled).

Validation: loss and masked-token accuracy on the validation tokens under masks from a fixed generator
(the same masks at every evaluation), and, with ``val_masks``, accuracy under the real inpainting masks
(pixel masks -> token masks, context from the ground truth): the number that predicts inpainting quality. A
validation cache with masked copies also gives ``copies_acc``: accuracy on its first copies, context as polluted as
at inpainting time. Every validation also gives the accuracy under one generated mask of each kind per grid
(``stroke_acc``, ``box_acc``, ``half_acc``, ``outpaint_acc``: the same masks for every run), so what bigger holes
cost shows in the logs.

Distributed: under ``torchrun`` each rank takes its share of every global batch (the global batch stays as
given), gradients are averaged by DDP, and rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from maskgit_cli.choices import MASK_KINDS
from maskgit_cli.data.images import check_pairs, list_images
from maskgit_cli.data.mask_generator import generate_mask, mask_rng
from maskgit_cli.data.masks import HOLE, dilate_token_mask, load_mask, token_mask_for
from maskgit_cli.errors import MaskgitError
from maskgit_cli.progress import log
from maskgit_cli.runtime import autocast, distributed, init_distributed, resolve_precision, seed_everything
from maskgit_cli.schedules import training_mask
from maskgit_cli.training import run as training_run
from maskgit_cli.training.loop import LoopConfig, fit
from maskgit_cli.training.optim import ModelEMA, WarmupCosine, make_adamw, seeded_generator
from maskgit_cli.training.run import RunDir, config_dict
from maskgit_cli.transformer.model import MaskGITTransformer, forbid_mask_token, get_preset, mask_tokens
from maskgit_cli.transformer.settings import TrainConfig
from maskgit_cli.vqgan.code_patches import stored_with
from maskgit_cli.vqgan.resolution import cache_text, tokens_text
from maskgit_cli.vqgan.tokens import TokenCache, check_made_by, check_same_grid, check_same_vqgan, load_token_cache
from maskgit_cli.weights import config_to_json, save_tensors

# config.json keys that may change on resume: they do not change the trained weights.
RESUME_MAY_DIFFER = (*training_run.RESUME_MAY_DIFFER, "train.compile", "data.train", "data.val", "data.val_masks")
# The seed of validation's masks of each kind: mask i of a kind is drawn by mask_rng(VAL_KINDS_SEED, i).
VAL_KINDS_SEED = 1


class TransformerTask:
    """One transformer training run, as a :class:`~maskgit_cli.training.TrainTask`."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: MaskGITTransformer,
        train: TokenCache,
        val: TokenCache | None,
        val_masks: torch.Tensor | None,
        device: torch.device,
        total_steps: int,
    ):
        self.cfg, self.device = cfg, device
        self.model = model
        self.train = train
        self.rank, self.world = distributed()
        self.net = model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.train_tokens = train.tokens.flatten(1).to(device)
        self.val_tokens = val.tokens.flatten(1) if val is not None else None
        self.val_masks = val_masks
        self.train_copies = _copies(train, cfg.dilate, device) if cfg.copies_ratio > 0 else None
        self.val_copies = _copies(val, cfg.dilate, "cpu", first_only=True) if val is not None else None
        self.val_kinds = (
            {kind: _val_kind_masks(kind, val, cfg.dilate) for kind in MASK_KINDS} if val is not None else {}
        )
        self.optimizer = make_adamw(model, cfg.lr, cfg.weight_decay, cfg.betas)
        self.schedule = WarmupCosine(cfg.lr, total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
        self.mask_gen = seeded_generator(cfg.seed, 0x3A5C, self.rank)  # on CPU: identical streams on any device
        self.ema = ModelEMA(model, cfg.ema) if cfg.ema > 0 else None
        self.mask_id = model.config.mask_token_id

    def _loss(
        self, tokens: torch.Tensor, masked: torch.Tensor, net, inputs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, number of correct masked predictions) for target tokens (B,L) with ``masked`` (B,L) positions;
        the model sees ``inputs`` (default: the targets) with those positions masked."""
        idx = mask_tokens(tokens if inputs is None else inputs, masked, self.mask_id)
        on_masked = self.cfg.loss_on == "masked"  # then the head runs on those positions only (forward's where)
        with autocast(self.device, self.cfg.precision):
            logits = net(idx, where=masked if on_masked else None)
        logits = logits.float().flatten(0, -2)  # one row per predicted position
        targets = tokens[masked] if on_masked else tokens.flatten()
        loss = F.cross_entropy(logits, targets, label_smoothing=self.cfg.label_smoothing)
        hits = forbid_mask_token(logits.detach(), self.mask_id).argmax(-1) == targets
        correct = hits.sum() if on_masked else hits[masked.flatten()].sum()
        return loss, correct

    def train_step(self, indices: torch.Tensor, step: int) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        lr = self.schedule.apply(self.optimizer, step)
        mine = indices[self.rank :: self.world]  # this rank's share of the global batch
        micro = mine.chunk(cfg.accum_grad)
        total_loss, correct, n_masked = 0.0, 0, 0
        for i, part in enumerate(micro):
            tokens = self.train_tokens[part.to(self.device)]
            masked = self._training_mask(len(part)).to(self.device)
            inputs = None
            if self.train_copies is not None:
                inputs, masked = self._with_copies(part, tokens, masked)
            sync = i == len(micro) - 1 or self.world == 1
            ctx = self.net.no_sync() if not sync and hasattr(self.net, "no_sync") else contextlib.nullcontext()
            with ctx:
                loss, c = self._loss(tokens, masked, self.net, inputs)
                (loss / len(micro)).backward()
            total_loss += loss.item() / len(micro)
            correct += int(c)
            n_masked += int(masked.sum())
        grad_norm = 0.0
        if cfg.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
        if not torch.isfinite(torch.tensor(total_loss)):
            self.optimizer.zero_grad(set_to_none=True)  # keep the weights clean; fit() stops with a message
            return {"loss": total_loss}
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return {"loss": total_loss, "acc": correct / max(n_masked, 1), "lr": lr, "grad_norm": grad_norm}

    def _training_mask(self, n: int) -> torch.Tensor:
        """The positions (n,L) to predict for n grids: the mask ratio's random positions, and with ``shaped_masks``
        that share of the grids a generated hole of a random kind instead (all drawn from the mask generator, so
        resume stays exact; with a share of 0 nothing more is drawn: the paper's masks, as before)."""
        masked = training_mask(self.cfg.mask_ratio, n, self.train_tokens.shape[1], generator=self.mask_gen)
        if self.cfg.shaped_masks == 0:
            return masked
        use = torch.rand(n, generator=self.mask_gen) < self.cfg.shaped_masks
        kinds = torch.randint(len(MASK_KINDS), (n,), generator=self.mask_gen)
        seeds = torch.randint(2**62, (n,), generator=self.mask_gen)
        for i in use.nonzero().flatten().tolist():
            rng = np.random.default_rng(int(seeds[i]))
            masked[i] = shape_token_mask(MASK_KINDS[kinds[i]], rng, self.train, self.cfg.dilate)
        return masked

    def _with_copies(
        self, rows: torch.Tensor, tokens: torch.Tensor, masked: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, masked) of a micro-batch where a share ``copies_ratio`` of the grids (drawn from the mask
        generator, so resume stays exact) takes one of its masked copies: their tokens as the input, their
        dilated holes as the positions to predict."""
        copy_tokens, copy_holes = self.train_copies
        n, k = len(rows), copy_tokens.shape[1]
        use = torch.rand(n, generator=self.mask_gen) < self.cfg.copies_ratio
        which = torch.randint(k, (n,), generator=self.mask_gen)
        rows, use, which = rows.to(self.device), use.to(self.device), which.to(self.device)
        inputs = torch.where(use[:, None], copy_tokens[rows, which], tokens)
        masked = torch.where(use[:, None], copy_holes[rows, which], masked)
        return inputs, masked

    def _eval_model(self) -> MaskGITTransformer:
        if self.ema is None:
            return self.model
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.ema.averaged_state(self.model))
        return model

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val_tokens is None or self.rank != 0:
            return {}
        model = self._eval_model().eval()
        gen = seeded_generator(self.cfg.seed, 0xE7A1)  # the same validation masks at every evaluation
        out: dict[str, float] = {}
        sets = [("", None, None)]
        if self.val_masks is not None:
            sets.append(("inpaint_", self.val_masks, None))
        if self.val_copies is not None:
            sets.append(("copies_", self.val_copies[1], self.val_copies[0]))
        sets += [(f"{kind}_", masks, None) for kind, masks in self.val_kinds.items()]
        for prefix, fixed, fixed_inputs in sets:
            loss_sum, correct, n_masked, n_batches = 0.0, 0, 0, 0
            for i in range(0, len(self.val_tokens), self.cfg.val_batch_size):
                rows = slice(i, i + self.cfg.val_batch_size)
                tokens = self.val_tokens[rows].to(self.device)
                if fixed is None:
                    masked = training_mask(self.cfg.mask_ratio, len(tokens), tokens.shape[1], generator=gen)
                else:
                    masked = fixed[rows]
                masked = masked.to(self.device)
                inputs = fixed_inputs[rows].to(self.device) if fixed_inputs is not None else None
                loss, c = self._loss(tokens, masked, model, inputs)
                loss_sum += float(loss)
                correct += int(c)
                n_masked += int(masked.sum())
                n_batches += 1
            out[f"{prefix}loss"] = loss_sum / n_batches
            out[f"{prefix}acc"] = correct / max(n_masked, 1)
        return out

    def objective(self) -> dict[str, Any]:
        """What the model was trained on, recorded in its file."""
        cfg = self.cfg
        objective: dict[str, Any] = {
            "mask_ratio": cfg.mask_ratio,
            "loss_on": cfg.loss_on,
            "copies_ratio": 0.0,
            "shaped_masks": cfg.shaped_masks,
        }
        if self.train_copies is not None:
            objective.update(copies_ratio=cfg.copies_ratio, masked_copies=self.train.masked_copies, dilate=cfg.dilate)
        return objective

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "mask_gen": self.mask_gen.get_state(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.mask_gen.set_state(state["mask_gen"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])

    def export(self, path: Path, metadata: dict[str, str]) -> None:
        if self.rank != 0:
            return
        weights = self.ema.averaged_state(self.model) if self.ema is not None else self.model.state_dict()
        aux, aux_meta = stored_with(self.train)  # every code's mean look, for known-pixel guidance
        save_tensors(
            path,
            {**weights, **aux},
            {
                "kind": "transformer",
                "config": config_to_json(self.model.config),
                "trainer": "train",
                "ema": str(self.cfg.ema),
                "objective": json.dumps(self.objective()),
                **aux_meta,
                **metadata,
            },
        )


def _copies(cache: TokenCache, dilate: int, device, first_only: bool = False):
    """A cache's masked copies as (tokens (N,K,L), positions to predict (N,K,L): the holes dilated by ``dilate``),
    on ``device``; None when it has none. ``first_only``: copy 0 only, as (N,L) each (validation)."""
    if cache.masked_tokens is None:
        return None
    tokens, holes = cache.masked_tokens, cache.masked_holes
    if first_only:
        tokens, holes = tokens[:, :1], holes[:, :1]
    n, k = tokens.shape[:2]
    predict = dilate_token_mask(holes.flatten(0, 1), dilate).view(n, k, -1)
    tokens = tokens.reshape(n, k, -1)
    if first_only:
        return tokens[:, 0].to(device), predict[:, 0].to(device)
    return tokens.to(device), predict.to(device)


def shape_token_mask(kind: str, rng: np.random.Generator, cache: TokenCache, dilate: int) -> torch.Tensor:
    """The tokens (L,) to predict under one generated pixel mask of ``kind`` drawn from ``rng``, at the size of the
    cache's images: the tokens its holes touch, then ``dilate`` rings (as for --val-masks)."""
    holes = torch.from_numpy(generate_mask(kind, rng, cache.image_size) == HOLE)
    return token_mask_for(holes[None], cache.grid[0], dilate=dilate).flatten()


def _val_kind_masks(kind: str, val: TokenCache, dilate: int) -> torch.Tensor:
    """Validation's fixed masks (N,L) of ``kind``: grid i's from ``mask_rng(VAL_KINDS_SEED, i)``."""
    return torch.stack(
        [shape_token_mask(kind, mask_rng(VAL_KINDS_SEED, i), val, dilate) for i in range(len(val.tokens))]
    )


def val_token_masks(masks_dir, val: TokenCache, dilate: int) -> torch.Tensor:
    """Token masks (N,L) for the validation cache's images from lab-format masks paired in sorted name order."""
    files = list_images(masks_dir, "mask folder")
    check_pairs(files, val.files, f"masks in --val-masks {masks_dir}", f"validation images in {val.path}")
    holes = torch.stack([torch.from_numpy(load_mask(f, val.image_size) == HOLE) for f in files])
    tmask = token_mask_for(holes, val.grid[0], dilate=dilate).flatten(1)
    if val.flip:  # the cache holds flipped copies after the originals: mirror the masks for them
        tmask = torch.cat([tmask, tmask.view(-1, *val.grid).flip(-1).flatten(1)])
    return tmask


def _check_resumed_grid(run: RunDir, tokens: int, train: TokenCache) -> None:
    """The transformer of a run being resumed against the cache it is now given: one line naming both grids (any
    other difference is for :meth:`RunDir.start` to say)."""
    try:
        saved = json.loads(run.config.read_text())["model"]["num_image_tokens"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if saved != tokens:
        raise MaskgitError(f"--resume {run.path}: the transformer expects {tokens_text(saved)} but {train.path} "
                           f"holds {cache_text(train)}: resume with the cache it was trained on")  # fmt: skip


def train_transformer(
    train_path, val_path, run_dir, cfg: TrainConfig, resume: bool = False, val_masks_dir=None
) -> dict[str, Any]:
    """Train a transformer on the token cache ``train_path`` into ``run_dir``; returns a summary dict."""
    rank, world, device = init_distributed(cfg.device)
    train = load_token_cache(train_path)
    val = load_token_cache(val_path) if val_path is not None else None
    if val is not None:
        check_same_grid(train, val)  # first: another grid is another VQGAN, but say which grids
        check_made_by(val, train.vqgan_sha256)
        check_same_vqgan(train, val)
        if val.grid != train.grid or val.num_codebook_vectors != train.num_codebook_vectors:
            raise MaskgitError(
                f"{val_path}: grid {val.grid} / {val.num_codebook_vectors} codes differ from "
                f"{train_path}: grid {train.grid} / {train.num_codebook_vectors} codes"
            )
    if cfg.copies_ratio > 0 and train.masked_copies == 0:
        raise MaskgitError(
            f"--copies-ratio {cfg.copies_ratio}: {train_path} holds no masked copies; make it with "
            "`maskgit tokenize ... --masked-copies K`"
        )
    overrides = {"num_codebook_vectors": train.num_codebook_vectors, "num_image_tokens": train.grid[0] * train.grid[1]}
    if cfg.dropout is not None:
        overrides.update(dropout=cfg.dropout)
    model_cfg = get_preset(cfg.preset, **overrides)
    masks = val_token_masks(val_masks_dir, val, cfg.dilate) if val_masks_dir is not None and val is not None else None
    if val_masks_dir is not None and val is None:
        raise MaskgitError("--val-masks needs --val (the tokens of the images the masks belong to)")
    best_metric = ("inpaint_acc" if masks is not None else "acc") if val is not None else None
    loop = LoopConfig.of(cfg, best_metric)
    if cfg.batch_size % (world * cfg.accum_grad):
        raise MaskgitError(
            f"--batch-size {cfg.batch_size} must be divisible by the number of processes ({world}) "
            f"times --accum-grad ({cfg.accum_grad})"
        )
    total = loop.total_steps(len(train.tokens))
    run = RunDir(run_dir)
    if resume:
        _check_resumed_grid(run, model_cfg.num_image_tokens, train)
    run_config = {
        "trainer": "train",
        "train": config_dict(cfg),
        "model": config_dict(model_cfg),
        "data": {
            "train": str(train_path),
            "train_rows": len(train.tokens),
            "train_masked_copies": train.masked_copies,
            "train_context_fidelity": train.context_fidelity,
            "vqgan_sha256": train.vqgan_sha256,
            "val": str(val_path) if val_path else None,
            "val_rows": len(val.tokens) if val else 0,
            "val_masks": str(val_masks_dir) if val_masks_dir else None,
        },
        "world_size": world,
    }
    if rank == 0:  # the main rank alone locks the run folder, until fit returns
        run.start(run_config, resume, may_differ=RESUME_MAY_DIFFER)
    with run:  # ... or until something fails before fit
        if world > 1:
            torch.distributed.barrier()
        seed_everything(cfg.seed + rank)
        model = MaskGITTransformer(model_cfg).to(device)
        if world > 1:  # identical initial weights on every rank
            for p in model.parameters():
                torch.distributed.broadcast(p.data, 0)
        task = TransformerTask(cfg, model, train, val, masks, device, total)
        if rank == 0:
            precision = resolve_precision(cfg.precision, device)
            log(
                f"train: preset {cfg.preset} ({model.num_params() / 1e6:.2f}M parameters), {len(train.tokens)} "
                f"train / {len(val.tokens) if val else 0} val token grids, {total} steps of {cfg.batch_size} on "
                f"{device} ({precision}{', ' + str(world) + ' processes' if world > 1 else ''})"
            )
        result = fit(task, run, len(train.tokens), loop, resume=resume, description="train", is_main=rank == 0)
    return {
        **result.summary(run),
        "best_metric": loop.best_metric,
        "best": result.best,
        "parameters": model.num_params(),
        "world_size": world,
        "rank": rank,
    }
