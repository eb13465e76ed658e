"""``maskgit sweep``: inpaint one test set over a grid of decode settings and score every cell.

Grid: every (sampler, schedule, T, S) with S <= T, where T = ``total_iter`` (r = (t+1)/T) and S = the sweet spot,
the number of steps actually run (docs/lab.md, "The lab's inference"; default S = T, all steps). Sweet spots above T
are skipped. The sampler (``--samplers confidence,halton``; default the ``--sampler`` value) is the outermost
dimension. Cells that must give the same images as an earlier cell are computed once and their rows say
``same_as``: S = 1 (one step fills every masked token with its first draw, whatever the sampler, schedule and T),
and the halton sampler at a given S (its count uses S alone: the schedule and T play no part).

Cost: the models are loaded once and every input batch is VQGAN-encoded once
(:func:`maskgit_cli.decoding.inpaint.encode_inputs`: encoding does not depend on the schedule); each cell then runs
only the iterative decoding and the VQGAN decoder (:func:`maskgit_cli.decoding.inpaint.decode_inputs`). Decoding is
per-image deterministic, so every cell sees the same random streams for a given seed. A cell's images stay in
memory as uint8 and are scored at once; they are written only with ``save_images``.

Steps: :func:`plan_sweep` checks the grid and the inputs before anything heavy is loaded, :func:`run_grid` decodes
and scores every cell, :func:`report_sweep` ranks them and writes the files; :func:`run_sweep` runs the three.

Scores (:mod:`maskgit_cli.evaluation.sweep_scores`): FID (and KID) with :func:`maskgit_cli.evaluation.fid.compute_fid`
when the Inception weights are on disk (or a test extractor is injected); the reference statistics are computed once
(``OUT/ref_fid_stats.npz``) and the network is loaded once. Whenever REF holds the ground truth of the same images (a
folder or the lab csv with one image per input, sorted name order) PSNR/SSIM are computed too, over the whole images
and over the hole pixels only (:mod:`maskgit_cli.metrics`). Best cell = lowest FID, else highest hole PSNR.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgit_cli.choices import FID_MODES, SAMPLERS, SCHEDULES, SWEEP_METRICS, check_choice
from maskgit_cli.data.images import save_image, to_uint8, to_unit
from maskgit_cli.data.input_folder import InpaintInputs
from maskgit_cli.data.outputs import FolderWriter, check_output_folder
from maskgit_cli.decoding.inpaint import (
    Prepared,
    decode_inputs,
    encode_inputs,
    mask_tile,
    prepare_models,
    with_defaults,
)
from maskgit_cli.decoding.pipeline import stream_keys
from maskgit_cli.decoding.settings import DecodeSettings, InpaintSettings
from maskgit_cli.errors import MaskgitError
from maskgit_cli.evaluation.fid import compute_fid
from maskgit_cli.evaluation.sweep_report import SweepResult, plot_sweep, result_dict, write_csv
from maskgit_cli.evaluation.sweep_scores import (
    FidSetup,
    Reference,
    find_fid_weights,
    load_fid,
    open_sweep_reference,
    pair_scores,
    rank_cells,
)
from maskgit_cli.progress import log, progress_bar
from maskgit_cli.viz import save_grid
from maskgit_cli.weights import load_config

_T = DecodeSettings.total_iter  # the T of a sweep given none


def make_cells(
    schedules: list[str], total_iters: list[int], sweet_spots: list[int] | None
) -> tuple[list[tuple[str, int, int]], list[tuple[int, int]]]:
    """Cells (schedule, T, S) with S <= T (S defaults to T) and the skipped (T, S) pairs with S > T."""
    cells, skipped = [], []
    for t in total_iters:
        for s in sweet_spots or [t]:
            if s > t:
                if (t, s) not in skipped:
                    skipped.append((t, s))
                continue
            cells.extend((name, t, s) for name in schedules)
    cells.sort(key=lambda c: (schedules.index(c[0]), c[1], c[2]))
    if not cells:
        raise MaskgitError(
            f"--sweet-spot {','.join(str(s) for s in sweet_spots or [])} are all above every --total-iter "
            f"{','.join(str(t) for t in total_iters)}: no cell to run (a sweet spot is a number of steps <= T)"
        )
    return cells, skipped


GRID_IMAGES = 8  # with save_images: step grids for the first images of every cell, as inpaint's default --grids


def _cell_name(sampler: str, schedule: str, t: int, s: int) -> str:
    return ("" if sampler == "confidence" else f"{sampler}_") + f"{schedule}_T{t}_S{s}"


def _same_key(sampler: str, s: int):
    """Cells with the same key give the same images (None: a cell of its own). S = 1: one step draws every masked
    token once, the same way for both samplers; halton: only S matters (docs/decoding.md, "The Halton sampler")."""
    if s == 1:
        return ("one step",)
    return ("halton", s) if sampler == "halton" else None


# ---------------------------------------------------------------------------------------------------------
# plan -> run -> report


@dataclass
class SweepOptions:
    """What :func:`run_sweep` takes besides the models, the images, the reference and the output folder."""

    masks_dir: Any = None  # lab-format masks; or generated ones of mask_kind (mask_seed); or the images' alpha
    mask_kind: str | None = None
    mask_seed: int = 0
    schedules: list[str] | None = None  # default: every schedule
    total_iters: list[int] | None = None  # T values; default: DecodeSettings' T
    sweet_spots: list[int] | None = None  # S values; default: S = T
    samplers: list[str] | None = None  # the grid's outermost dimension; default: the settings' sampler
    settings: InpaintSettings | None = None  # everything but the sampler, schedule, T and S of a cell
    metric: str = "auto"  # auto | fid | psnr
    fid_mode: str = "clean"
    kid: bool = False
    inception: Any = None  # Inception weights file; default: found on disk (never downloaded for metric auto)
    device: Any = "cpu"
    batch_size: int = 64
    save_images: bool = False  # also write every cell's images to images/<cell>/
    fid_batch_size: int = 32
    num_workers: int | None = None
    grids: tuple[Path, list[str]] | None = None  # with save_images: (steps folder, image names) for step grids
    code_patches: Any = None  # CodePatches for the guidance; default: the transformer file's, else the VQGAN's
    overwrite: bool = False
    any_vqgan: bool = False


@dataclass
class SweepPlan:
    """A sweep as :func:`plan_sweep` checked it, before anything heavy is loaded."""

    options: SweepOptions
    settings: InpaintSettings
    cells: list[tuple[str, str, int, int]]  # (sampler, schedule, T, S), in the order they run
    skipped: list[tuple[int, int]]  # (T, S) pairs left out because S > T
    samplers: list[str]
    models: dict[str, Any]  # transformer, vqgan: models or weights files (the shipped ones by default)
    images_dir: Any
    ref: Any
    out: Path
    data: InpaintInputs
    reference: Reference
    fid_weights: str | None  # Inception weights or "custom extractor"; None: no FID, for fid_reason
    fid_reason: str | None
    device: torch.device


@dataclass
class SweepRun:
    """What :func:`run_grid` found: a row per cell, and what the report says about how."""

    rows: list[dict[str, Any]]
    fid: FidSetup | None  # the FID network and reference statistics; None without FID
    encode_seconds: float
    ready: Prepared  # the models as they ran (normalization, guidance's code patches)


def run_sweep(transformer, vqgan, images_dir, ref, out_dir, **options) -> SweepResult:
    """Inpaint ``images_dir`` for every cell of the grid and score it against ``ref``; writes ``out_dir``/
    sweep.csv, sweep.png, sweep.json (and images/<cell>/ with ``save_images``).

    ``transformer`` and ``vqgan`` are models or weights files (files are loaded once, after the options and
    inputs were checked); ``options`` are :class:`SweepOptions`'. ``settings`` (an
    :class:`~maskgit_cli.decoding.settings.InpaintSettings`) gives everything but the sampler, schedule, T and S:
    token rule, dilate, composite, blend, sampling, choice temperature, seed, pixel guidance. ``out_dir`` is written
    whole or not at all and must be new or empty unless ``overwrite``
    (:func:`~maskgit_cli.data.outputs.check_output_folder`).
    """
    plan = plan_sweep(transformer, vqgan, images_dir, ref, out_dir, SweepOptions(**options))
    o = plan.options  # the models next, once for all cells (their errors come before the output folder is made)
    ready = prepare_models(
        plan.models["transformer"], plan.models["vqgan"], plan.device, plan.settings, o.code_patches, o.any_vqgan
    )
    with FolderWriter(plan.out) as tmp:  # the output folder appears whole, or not at all
        run = run_grid(plan, ready, tmp)
        result = report_sweep(plan, run, tmp)
    return result


def plan_sweep(transformer, vqgan, images_dir, ref, out_dir, options: SweepOptions) -> SweepPlan:
    """The grid, FID or not, the inputs and the output folder, checked before anything heavy is loaded."""
    o = options
    check_choice(o.metric, SWEEP_METRICS, "--metric")
    check_choice(o.fid_mode, FID_MODES, "--fid-mode")
    settings = o.settings or InpaintSettings()
    grid, skipped = make_cells(o.schedules or list(SCHEDULES), sorted(set(o.total_iters or [_T])), o.sweet_spots)
    samplers = list(dict.fromkeys(o.samplers or [settings.decode.sampler]))
    for name in samplers:
        check_choice(name, SAMPLERS, "--samplers")
    for t, s in skipped:
        log(f"skipping sweet spot {s} for --total-iter {t}: a sweet spot counts steps, at most T")
    fid_weights, fid_reason = find_fid_weights(o.metric, o.fid_mode, o.inception, o.kid)
    dev = torch.device(o.device)
    transformer, vqgan = with_defaults(transformer, vqgan)
    files = [m for m in (transformer, vqgan) if isinstance(m, (str, Path))]
    out = check_output_folder(out_dir, o.overwrite, [images_dir, o.masks_dir, ref, *files])
    size = (load_config(vqgan, "vqgan")[1] if isinstance(vqgan, (str, Path)) else vqgan.config).img_resolution
    data = InpaintInputs(images_dir, o.masks_dir, o.mask_kind, o.mask_seed, size, any_size=False)
    n = len(data)
    reference = open_sweep_reference(ref, data.files, size, need_pairs=fid_weights is None, why=fid_reason)
    if fid_weights is not None and (n < 2 or (reference.kind != "npz" and (reference.count or 0) < 2)):
        raise MaskgitError(f"FID needs at least 2 images in --images and --ref (found {n} and {reference.count})")
    cells = [(sampler, *cell) for sampler in samplers for cell in grid]
    models = {"transformer": transformer, "vqgan": vqgan}
    return SweepPlan(
        o,
        settings,
        cells,
        skipped,
        samplers,
        models,
        images_dir,
        ref,
        out,
        data,
        reference,
        fid_weights,
        fid_reason,
        dev,
    )


def run_grid(plan: SweepPlan, ready: Prepared, tmp: Path) -> SweepRun:
    """The FID network and reference statistics and the encoded inputs once, then every cell, with the ``ready``
    models; FID's reference statistics go to ``tmp``, and the cells' images with ``save_images``."""
    o, dev = plan.options, plan.device
    fid = None
    if plan.fid_weights is not None:
        fid = load_fid(
            plan.fid_weights, o.fid_mode, dev, plan.reference, plan.ref, tmp, o.kid, o.fid_batch_size, o.num_workers
        )
    patches = ready.guide.patches if ready.guide else None
    ctx = _Context(ready.transformer, ready.vqgan, patches, plan.settings, plan.reference, fid, o.kid, dev)
    encode_seconds = ctx.encode(plan.data, o.batch_size, o.fid_batch_size, o.num_workers)
    names = [f.stem + ".png" for f in plan.data.files]
    if o.save_images:
        ctx.grids = (tmp / "steps", names)
    rows = _run_cells(ctx, plan.cells, names, tmp / "images" if o.save_images else None)
    return SweepRun(rows, fid, encode_seconds, ready)


def report_sweep(plan: SweepPlan, run: SweepRun, tmp: Path) -> SweepResult:
    """The best cell, the lines that rerun and score it, and sweep.csv, sweep.png, sweep.json in ``tmp``."""
    o, out, fid = plan.options, plan.out, run.fid
    key, best, note = rank_cells(run.rows, fid, o.fid_mode, o.kid, plan.reference, plan.fid_reason)
    results = out / "best" / ("test_results" if plan.settings.lab else "images")
    fid_command = f"maskgit fid {shlex.quote(str(results))} {shlex.quote(str(plan.ref))} --mode {o.fid_mode}"
    files = {"csv": str(out / "sweep.csv"), "png": str(out / "sweep.png"), "json": str(out / "sweep.json")}
    if fid is not None and fid.stats is not None and plan.reference.kind != "npz":
        files["ref_fid_stats"] = str(out / fid.stats.name)
    if o.save_images:
        files["images"], files["steps"] = str(out / "images"), str(out / "steps")
    result = SweepResult(
        output=str(out),
        count=len(plan.data),
        metric=key,
        metric_note=note,
        cells=run.rows,
        best=best,
        command=_inpaint_command(plan, best),
        fid_command=fid_command,
        skipped=plan.skipped,
        files=files,
        encode_seconds=run.encode_seconds,
        settings=_settings_record(plan, run.ready),
        fid=None if fid is None else _fid_record(fid, o.fid_mode, plan.reference, out),
    )
    write_csv(run.rows, tmp / "sweep.csv")
    plot_sweep(result, tmp / "sweep.png")
    (tmp / "sweep.json").write_text(json.dumps(result_dict(result), indent=1))
    return result


def _settings_record(plan: SweepPlan, ready: Prepared) -> dict[str, Any]:
    """sweep.json's "settings": the decoding settings, the grid's samplers, the inputs and how they were read."""
    o = plan.options
    return {
        **asdict(plan.settings),
        "samplers": plan.samplers,
        "images": str(plan.images_dir),
        "masks": None if o.masks_dir is None else str(o.masks_dir),
        "mask_kind": o.mask_kind,
        "mask_seed": o.mask_seed if o.mask_kind else None,
        "code_patches": ready.guide.source if ready.guide else None,
        "vqgan_mean": list(ready.mean),
        "vqgan_std": list(ready.std),
        "ref": str(plan.ref),
        "device": str(plan.device),
        "batch_size": o.batch_size,
    }


def _fid_record(fid: FidSetup, mode: str, reference: Reference, out: Path) -> dict[str, Any]:
    """sweep.json's "fid": the mode, the network and where the reference statistics are."""
    return {
        "mode": mode,
        "weights": fid.weights,
        "feature_extractor": getattr(fid.extractor, "name", "custom extractor"),
        "comparable_to_lab": mode == "legacy_pytorch" and fid.weights != "custom extractor",
        "ref_stats": str(out / fid.stats.name) if reference.kind != "npz" else str(fid.stats),
        "ref_note": reference.note,
    }


def _cell_settings(settings: InpaintSettings, sampler: str, schedule: str, t: int, s: int) -> InpaintSettings:
    """``settings`` with a cell's sampler, schedule, T and S."""
    decode = replace(settings.decode, sampler=sampler, schedule=schedule, total_iter=t, sweet_spot=s)
    return replace(settings, decode=decode)


def _inpaint_command(plan: SweepPlan, best: dict[str, Any]) -> str:
    """The best cell as a ready-to-run `maskgit inpaint` line: the inputs, then its settings as arguments
    (:meth:`~maskgit_cli.decoding.settings.InpaintSettings.to_args`: ``--lab`` when the settings are the lab's, and
    every setting that differs from the defaults, or from the lab's), the cell's schedule, T and S always."""
    o, q = plan.options, shlex.quote
    t_path, v_path = (m if isinstance(m, (str, Path)) else n.upper() for n, m in plan.models.items())
    parts = ["maskgit inpaint", "--images", q(str(plan.images_dir))]
    parts += ["--masks", q(str(o.masks_dir))] if o.masks_dir is not None else ["--mask-kind", str(o.mask_kind)]
    if o.mask_kind is not None and o.mask_seed:
        parts += ["--mask-seed", str(o.mask_seed)]
    parts += ["--transformer", q(str(t_path)), "--vqgan", q(str(v_path)), "-o", q(str(plan.out / "best"))]
    cell = _cell_settings(plan.settings, best["sampler"], best["schedule"], best["total_iter"], best["sweet_spot"])
    return " ".join(parts + [q(arg) for arg in cell.to_args(keep=("schedule", "total_iter", "sweet_spot"))])


def _run_cells(ctx: _Context, cells, names: list[str], save_to: Path | None) -> list[dict[str, Any]]:
    """Decode and score every cell (sampler, schedule, T, S); the images of each cell go to ``save_to``/<cell>/ if
    given. A cell that must give an earlier cell's images (:func:`_same_key`) reuses them and says ``same_as``."""
    n = len(names)
    rows: list[dict[str, Any]] = []
    with progress_bar(len(cells) * n, f"sweep {len(cells)} cells", unit="img") as bar:
        done: dict[tuple, tuple[dict[str, Any], np.ndarray]] = {}
        for sampler, schedule, t, s in cells:
            bar.update(info=_cell_name(sampler, schedule, t, s))
            key = _same_key(sampler, s)
            if key in done:
                first, pred = done[key]
                same = _cell_name(first["sampler"], first["schedule"], first["total_iter"], first["sweet_spot"])
                row = {**first, "sampler": sampler, "schedule": schedule, "total_iter": t, "same_as": same}
                if ctx.grids is not None:  # the same images: the same step grids
                    shutil.copytree(ctx.grids[0] / same, ctx.grids[0] / _cell_name(sampler, schedule, t, s))
                bar.advance(n)
            else:
                row, pred = ctx.run_cell(sampler, schedule, t, s, bar)
                if key is not None:
                    done[key] = (row, pred)
            if save_to is not None:
                for img, name in zip(pred, names):
                    save_image(img, save_to / _cell_name(sampler, schedule, t, s) / name)
            rows.append(row)
    return rows


@dataclass
class _Context:
    """What every cell of a sweep shares: the models, the encoded inputs, the reference and FID's set-up."""

    transformer: Any
    vqgan: Any
    patches: Any  # code patches for known-pixel guidance, or None
    settings: InpaintSettings  # each cell replaces the sampler, schedule, T and S
    reference: Reference
    fid: FidSetup | None  # the FID network and reference statistics; None without FID
    kid: bool
    device: Any
    batches: list = field(default_factory=list)  # (images uint8, holes, ids, encoded inputs, stream keys) per batch
    holes: np.ndarray | None = None  # (N,H,W) bool, for the hole scores
    fid_batch_size: int = 32
    num_workers: int | None = None
    grids: tuple[Path, list[str]] | None = None  # with save_images: (steps folder, image names) for step grids

    def encode(self, data, batch_size: int, fid_batch_size: int, num_workers: int | None) -> float:
        """VQGAN-encode every batch once (encoding does not depend on the cell); returns the seconds it took.
        The inputs are kept as uint8: exact, since they were decoded from 8-bit files."""
        self.fid_batch_size, self.num_workers = fid_batch_size, num_workers
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
        holes = []
        start = time.perf_counter()
        with progress_bar(len(data), "encode", unit="img") as bar:
            for pixels, hole, ids in loader:  # uint8 (B,H,W,3), bool (B,H,W)
                keys = torch.tensor(stream_keys(pixels.numpy(), hole.numpy(), ids.tolist(), self.settings.lab))
                pixels = pixels.permute(0, 3, 1, 2).contiguous().to(self.device)
                hole, ids = hole.to(self.device), ids.to(self.device)
                encoded = encode_inputs(self.vqgan, to_unit(pixels), hole, self.settings)
                self.batches.append((pixels, hole, ids, encoded, keys.to(self.device)))
                holes.append(hole.cpu().numpy())
                bar.advance(len(ids))
        self.holes = np.concatenate(holes)
        return time.perf_counter() - start

    def run_cell(self, sampler: str, schedule: str, t: int, s: int, bar) -> tuple[dict[str, Any], np.ndarray]:
        """Decode every batch with (sampler, schedule, T, S) and score the images: (the csv row, the uint8 images)."""
        cell = _cell_settings(self.settings, sampler, schedule, t, s)
        start = time.perf_counter()
        outs = []
        for images_u8, holes, ids, encoded, keys in self.batches:
            images = to_unit(images_u8)
            rows = [r for r, i in enumerate(ids.tolist()) if i < GRID_IMAGES] if self.grids else []
            res = decode_inputs(self.transformer, self.vqgan, images, holes, encoded, cell, keys, rows, self.patches)
            outs.append(to_uint8(res.images, cell.rounding))  # a device sync: the timing is honest on CUDA too
            for r in rows:
                self._save_grids(res, images, r, int(ids[r]), _cell_name(sampler, schedule, t, s), cell.rounding)
            bar.advance(len(ids))
        seconds = time.perf_counter() - start
        pred = np.concatenate(outs)
        row: dict[str, Any] = {"sampler": sampler, "schedule": schedule, "total_iter": t, "sweet_spot": s}
        row.update(dict.fromkeys(("fid", "kid", "psnr_hole", "ssim_hole", "psnr", "ssim")))
        row.update(seconds=seconds, images_per_second=len(pred) / max(seconds, 1e-9), same_as=None)
        if self.reference.images is not None:
            row.update(pair_scores(pred, self.reference.images, self.holes))
        if self.fid is not None:
            r = compute_fid(
                pred,
                self.fid.stats,
                mode=self.fid.mode,
                device=self.device,
                batch_size=self.fid_batch_size,
                num_workers=self.num_workers,
                kid=self.kid,
                feature_extractor=self.fid.extractor,
            )
            row["fid"], row["kid"] = r["fid"], r.get("kid")
        return row, pred

    def _save_grids(self, res, images: torch.Tensor, row: int, index: int, cell: str, rounding: str) -> None:
        """The step grids of batch ``row`` (image ``index``) as inpaint writes them: steps/<cell>/<name>_mask.png
        (white = known, black = still masked, before and after each step) and <name>_image.png (input, each step,
        result)."""
        folder, names = self.grids
        stem, size = Path(names[index]).stem, images.shape[-1]
        save_grid([[mask_tile(m, size) for m in res.step_masks[row]]], folder / cell / f"{stem}_mask.png", scale=2)
        tiles = to_uint8(torch.stack([images[row], *res.step_images[row], res.images[row]]), rounding)
        save_grid([list(tiles)], folder / cell / f"{stem}_image.png", scale=2)
