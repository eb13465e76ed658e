"""``maskgit sweep``: inpaint one test set over a grid of decode settings and score every cell.

Grid: every (sampler, schedule, T, S) with S <= T, where T = ``total_iter`` (r = (t+1)/T) and S = the sweet spot,
the number of steps actually run (docs/lab.md, "The lab's inference"; default S = T, all steps). Sweet spots above T
are skipped. The sampler (``--samplers confidence,halton``; default the ``--sampler`` value) is the outermost
dimension. Cells that must give the same images as an earlier cell are computed once and their rows say
``same_as``: S = 1 (one step fills every masked token with its first draw, whatever the sampler, schedule and T),
and the halton sampler at a given S (its count uses S alone: the schedule and T play no part).

Cost: the models are loaded once and every input batch is VQGAN-encoded once
(:func:`maskgit_cli.inpaint.encode_inputs`: encoding does not depend on the schedule); each cell then runs
only the iterative decoding and the VQGAN decoder (:func:`maskgit_cli.inpaint.decode_inputs`). Decoding is
per-image deterministic, so every cell sees the same random streams for a given seed. A cell's images stay in
memory as uint8 and are scored at once; they are written only with ``save_images``.

Scores: FID (and KID) with :func:`maskgit_cli.evaluation.fid.compute_fid` when the Inception weights are on disk (or a
test extractor is injected); the reference statistics are computed once (``OUT/ref_fid_stats.npz``) and the
network is loaded once. Whenever REF holds the ground truth of the same images (a folder or the lab csv with
one image per input, sorted name order) PSNR/SSIM are computed too, over the whole images and over the hole
pixels only (:mod:`maskgit_cli.metrics`). Best cell = lowest FID, else highest hole PSNR.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from maskgit_cli.errors import MaskgitError
from maskgit_cli.evaluation.sweep_report import SweepResult, plot_sweep, result_dict, write_csv

DEFAULT_TOTAL_ITERS = (8,)


# ---------------------------------------------------------------------------------------------------------
# option parsing (comma lists)


def parse_schedules(text: str | None) -> list[str]:
    """``cosine,linear`` (names or aliases, case-insensitive) or ``all`` / None -> canonical names, in order."""
    from maskgit_cli.choices import SCHEDULE_NAMES, SCHEDULES
    from maskgit_cli.schedules import canonical_schedule

    if text is None or text.strip().lower() == "all":
        return list(SCHEDULES)
    names: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise MaskgitError(f"--schedules {text!r}: empty name in the list (expected e.g. cosine,linear,square)")
        try:
            name = canonical_schedule(item)
        except MaskgitError:
            raise MaskgitError(
                f"--schedules: unknown schedule {item!r}; valid names: {', '.join(SCHEDULE_NAMES)}, or all"
            ) from None
        if name not in names:
            names.append(name)
    return names


def parse_samplers(text: str | None, default: str = "confidence") -> list[str]:
    """``confidence,halton`` -> sampler names, in order, without repeats; None -> [``default``]."""
    from maskgit_cli.choices import SAMPLERS

    if text is None:
        return [default]
    names: list[str] = []
    for item in text.split(","):
        item = item.strip().lower()
        if item not in SAMPLERS:
            raise MaskgitError(f"--samplers {text!r}: unknown sampler {item!r}; expected {', '.join(SAMPLERS)}")
        if item not in names:
            names.append(item)
    return names


def parse_int_list(text: str | None, option: str, example: str = "4,8,12") -> list[int] | None:
    """``4,8,12`` -> sorted unique positive ints (None stays None); one clear error naming the option."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise MaskgitError(f"{option} {text!r}: expected comma-separated whole numbers, e.g. {example}") from None
    bad = [v for v in values if v < 1]
    if bad:
        raise MaskgitError(f"{option} {text!r}: every value must be at least 1 (got {bad[0]})")
    return sorted(set(values))


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


# ---------------------------------------------------------------------------------------------------------
# the reference


@dataclass
class _Reference:
    label: str
    kind: str  # folder | csv | npz
    images: np.ndarray | None = None  # uint8 (N,H,W,3) when it pairs up with the inputs
    count: int | None = None
    note: str | None = None  # why PSNR/SSIM cannot be computed


def _open_reference(ref, inputs: list[Path], size: int, need_pairs: bool, why: str | None = None) -> _Reference:
    """--ref for PSNR/SSIM (paired one to one with the inputs, when it can be) and for FID."""
    from maskgit_cli.data.images import check_pairs
    from maskgit_cli.evaluation.references import RefStats, open_reference

    if need_pairs:  # FID is off: the reference must hold the ground truth of the inputs
        try:
            reference = open_reference(ref, "--ref", stats=False)
        except MaskgitError as e:
            raise MaskgitError(f"{e}; FID is off ({why})") from None
    else:
        reference = open_reference(ref, "--ref")
    if isinstance(reference, RefStats):
        return _Reference(str(ref), "npz", note="REF is FID statistics (no images to pair)")
    if reference.size != (size, size):
        h, w = reference.size
        raise MaskgitError(f"--ref {ref} holds {w}x{h} images but the VQGAN makes {size}x{size} images")
    if len(reference) != len(inputs):
        if need_pairs:
            check_pairs(inputs, reference.names, "images in --images", f"images in --ref {ref}")
        note = f"REF has {len(reference)} images, not {len(inputs)}"
        return _Reference(str(ref), reference.kind, count=len(reference), note=note)
    return _Reference(str(ref), reference.kind, images=reference.load_all(), count=len(reference))


# ---------------------------------------------------------------------------------------------------------
# FID set-up: weights found (or the reason they are not), network loaded once, reference statistics once


@dataclass
class _Fid:
    mode: str
    extractor: Any  # callable (B,3,299,299) -> (B,D), with a ``name``
    weights: str
    stats: Path | None = None  # reference statistics (npz)


class _Named:
    """A loaded Inception network with the extractor id clean-fid statistics files are tagged with."""

    def __init__(self, fn, name: str):
        self.fn, self.name = fn, name

    def __call__(self, x):
        return self.fn(x)


def _fid_plan(metric: str, mode: str, inception, kid: bool) -> tuple[str | None, str | None]:
    """(weights file or "custom extractor" or None, reason FID is skipped). Never downloads for ``auto``."""
    from maskgit_cli.evaluation import fid
    from maskgit_cli.evaluation.inception import ENV_INCEPTION, INCEPTION_FILES, inception_available, resolve_inception

    if metric == "psnr":
        if kid:
            raise MaskgitError("--kid needs FID's features: drop --metric psnr")
        return None, "--metric psnr"
    if fid.FEATURE_EXTRACTOR_OVERRIDE is not None:
        return "custom extractor", None
    if metric == "fid" or inception is not None:
        return str(resolve_inception(mode, inception)), None  # one line naming the file when it is missing
    found = inception_available(mode)
    if found is not None:
        return str(found), None
    spec = INCEPTION_FILES[mode]
    return None, (
        f"no Inception weights for --fid-mode {mode} ({spec.filename} is not at {spec.cache_path()} and "
        f"${ENV_INCEPTION} is unset)"
    )


def _load_fid(weights: str, mode: str, dev, ref: _Reference, ref_path, out: Path, kid: bool, batch_size, workers):
    from maskgit_cli.evaluation import fid, inception, references

    if weights == "custom extractor":
        fn = fid.FEATURE_EXTRACTOR_OVERRIDE
    else:
        fn = _Named(inception.load_inception(mode, weights, dev), inception.INCEPTION_FILES[mode].extractor)
    plan = _Fid(mode, fn, weights)
    if ref.kind == "npz":
        stats = references.load_stats(ref_path)
        if stats.mode is not None and stats.mode != mode:
            raise MaskgitError(f"--ref {ref_path} holds --mode {stats.mode} statistics but --fid-mode is {mode}")
        if kid and stats.features is None:
            raise MaskgitError(f"--ref {ref_path} holds no features (made with --no-features): --kid needs them")
        plan.stats = Path(ref_path)
        return plan
    plan.stats = out / "ref_fid_stats.npz"
    source = ref.images if ref.images is not None else ref_path
    fid.make_stats(source, plan.stats, mode, dev, batch_size, workers, feature_extractor=fn, save_features=kid)
    return plan


# ---------------------------------------------------------------------------------------------------------


def _cell_name(sampler: str, schedule: str, t: int, s: int) -> str:
    return ("" if sampler == "confidence" else f"{sampler}_") + f"{schedule}_T{t}_S{s}"


def _same_key(sampler: str, s: int):
    """Cells with the same key give the same images (None: a cell of its own). S = 1: one step draws every masked
    token once, the same way for both samplers; halton: only S matters (docs/decoding.md, "The Halton sampler")."""
    if s == 1:
        return ("one step",)
    return ("halton", s) if sampler == "halton" else None


def _mean(values) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None


def _pair_scores(pred: np.ndarray, ref: np.ndarray, holes: np.ndarray) -> dict[str, float | None]:
    from maskgit_cli.metrics import psnr, ssim

    with_holes = holes.reshape(len(holes), -1).any(axis=1)
    scores = {"psnr": _mean(psnr(pred, ref)), "ssim": _mean(ssim(pred, ref))}
    if with_holes.any():
        p, r, h = pred[with_holes], ref[with_holes], holes[with_holes]
        scores.update(psnr_hole=_mean(psnr(p, r, mask=h)), ssim_hole=_mean(ssim(p, r, mask=h)))
    else:
        scores.update(psnr_hole=None, ssim_hole=None)
    return scores


def _inpaint_command(images_dir, masks_dir, mask_kind, mask_seed, t_path, v_path, out, settings, best) -> str:
    """The best cell as a ready-to-run `maskgit inpaint` line, with every setting that differs from the defaults
    (``--lab`` when the settings are the lab's inference, then only what differs from that)."""
    from maskgit_cli.decoding.inpaint import InpaintSettings

    lab = settings.lab
    base = InpaintSettings.from_options(lab=lab)
    q = shlex.quote
    parts = ["maskgit inpaint", "--images", q(str(images_dir))]
    parts += ["--masks", q(str(masks_dir))] if masks_dir is not None else ["--mask-kind", str(mask_kind)]
    if mask_kind is not None and mask_seed:
        parts += ["--mask-seed", str(mask_seed)]
    parts += ["--transformer", q(str(t_path)), "--vqgan", q(str(v_path)), "-o", q(str(Path(out) / "best"))]
    parts += ["--lab"] if lab else []
    sampler = best.get("sampler", "confidence")
    parts += ["--sampler", sampler] if sampler != base.decode.sampler else []
    parts += ["--schedule", best["schedule"], "--total-iter", str(best["total_iter"])]
    parts += ["--sweet-spot", str(best["sweet_spot"])]
    for name in (
        "normalization",
        "sampling",
        "token_mask",
        "dilate",
        "pixel_guidance",
        "precision",
        "choice_temperature",
        "temperature",
        "seed",
    ):
        value = settings.option(name)
        if value != base.option(name):
            parts += [f"--{name.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
    if settings.composite != base.composite:
        parts.append("--composite" if settings.composite else "--no-composite")
    return " ".join(parts)


def run_sweep(
    transformer,
    vqgan,
    images_dir,
    ref,
    out_dir,
    *,
    masks_dir=None,
    mask_kind: str | None = None,
    mask_seed: int = 0,
    schedules: list[str] | None = None,
    total_iters: list[int] | None = None,
    sweet_spots: list[int] | None = None,
    samplers: list[str] | None = None,
    settings=None,
    metric: str = "auto",
    fid_mode: str = "clean",
    kid: bool = False,
    inception=None,
    device="cpu",
    batch_size: int = 64,
    save_images: bool = False,
    fid_batch_size: int = 32,
    num_workers: int | None = None,
    code_patches=None,
    overwrite: bool = False,
    any_vqgan: bool = False,
) -> SweepResult:
    """Inpaint ``images_dir`` for every cell of the grid and score it against ``ref``; writes ``out_dir``/
    sweep.csv, sweep.png, sweep.json (and images/<cell>/ with ``save_images``).

    ``transformer`` and ``vqgan`` are models or weights files (files are loaded once, after the options and
    inputs were checked). ``settings`` (an :class:`~maskgit_cli.decoding.inpaint.InpaintSettings`) gives everything
    but the sampler, schedule, T and S: token rule, dilate, composite, sampling, choice temperature, seed, pixel
    guidance. ``samplers`` (default: the settings' sampler) are the grid's outermost dimension.
    ``code_patches`` (:class:`~maskgit_cli.vqgan.code_patches.CodePatches`) for the guidance: by default those
    stored in the transformer file, else decoded from the VQGAN. ``out_dir`` is written whole or not at all and
    must be new or empty unless ``overwrite`` (:func:`~maskgit_cli.decoding.folders.check_output_folder`).
    """
    import torch

    from maskgit_cli.choices import FID_MODES, SAMPLERS, SWEEP_METRICS, check_choice
    from maskgit_cli.decoding.folders import FolderWriter, InpaintInputs, check_output_folder
    from maskgit_cli.decoding.inpaint import InpaintSettings, prepare_models, with_defaults
    from maskgit_cli.progress import log
    from maskgit_cli.weights import load_config

    # 1. options and inputs, checked before anything heavy is loaded
    check_choice(metric, SWEEP_METRICS, "--metric")
    check_choice(fid_mode, FID_MODES, "--fid-mode")
    settings = settings or InpaintSettings()
    schedules = schedules or parse_schedules(None)
    cells, skipped = make_cells(schedules, sorted(set(total_iters or DEFAULT_TOTAL_ITERS)), sweet_spots)
    samplers = list(dict.fromkeys(samplers or [settings.decode.sampler]))
    for name in samplers:
        check_choice(name, SAMPLERS, "--samplers")
    cells = [(sampler, *cell) for sampler in samplers for cell in cells]
    for t, s in skipped:
        log(f"skipping sweet spot {s} for --total-iter {t}: a sweet spot counts steps, at most T")
    weights, fid_reason = _fid_plan(metric, fid_mode, inception, kid)
    dev = torch.device(device)
    transformer, vqgan = with_defaults(transformer, vqgan)
    paths = {"transformer": transformer, "vqgan": vqgan}
    inputs = [images_dir, masks_dir, ref] + [m for m in paths.values() if isinstance(m, (str, Path))]
    out = check_output_folder(out_dir, overwrite, inputs)
    size = (load_config(vqgan, "vqgan")[1] if isinstance(vqgan, (str, Path)) else vqgan.config).img_resolution
    data = InpaintInputs(images_dir, masks_dir, mask_kind, mask_seed, size, any_size=False)
    n = len(data)
    reference = _open_reference(ref, data.files, size, need_pairs=weights is None, why=fid_reason)
    if weights is not None and (n < 2 or (reference.kind != "npz" and (reference.count or 0) < 2)):
        raise MaskgitError(f"FID needs at least 2 images in --images and --ref (found {n} and {reference.count})")

    # 2. models, FID network and reference statistics, the encoded inputs: once for all cells
    ready = prepare_models(transformer, vqgan, dev, settings, code_patches, any_vqgan)
    guide = ready.guide
    with FolderWriter(out) as tmp:  # the output folder appears whole, or not at all
        plan = None
        if weights is not None:
            plan = _load_fid(weights, fid_mode, dev, reference, ref, tmp, kid, fid_batch_size, num_workers)
        patches = guide.patches if guide else None
        ctx = _Context(ready.transformer, ready.vqgan, patches, settings, reference, plan, kid, dev)
        encode_seconds = ctx.encode(data, batch_size, fid_batch_size, num_workers)

        # 3. every cell: decode, score
        names = [f.stem + ".png" for f in data.files]
        rows = _run_cells(ctx, cells, names, tmp / "images" if save_images else None)

        # 4. the best cell, the files
        key, best, note = _rank(rows, plan, fid_mode, kid, reference, fid_reason)
        t_path = paths["transformer"] if isinstance(paths["transformer"], (str, Path)) else "TRANSFORMER"
        v_path = paths["vqgan"] if isinstance(paths["vqgan"], (str, Path)) else "VQGAN"
        command = _inpaint_command(images_dir, masks_dir, mask_kind, mask_seed, t_path, v_path, out, settings, best)
        results = out / "best" / ("test_results" if settings.lab else "images")
        fid_command = f"maskgit fid {shlex.quote(str(results))} {shlex.quote(str(ref))} --mode {fid_mode}"
        files = {"csv": str(out / "sweep.csv"), "png": str(out / "sweep.png"), "json": str(out / "sweep.json")}
        if plan is not None and plan.stats is not None and reference.kind != "npz":
            files["ref_fid_stats"] = str(out / plan.stats.name)
        if save_images:
            files["images"] = str(out / "images")
        result = SweepResult(
            output=str(out),
            count=n,
            metric=key,
            metric_note=note,
            cells=rows,
            best=best,
            command=command,
            fid_command=fid_command,
            skipped=skipped,
            files=files,
            encode_seconds=encode_seconds,
            settings={
                **asdict(settings),
                "samplers": samplers,
                "images": str(images_dir),
                "masks": None if masks_dir is None else str(masks_dir),
                "mask_kind": mask_kind,
                "mask_seed": mask_seed if mask_kind else None,
                "code_patches": guide.source if guide else None,
                "vqgan_mean": list(ready.mean),
                "vqgan_std": list(ready.std),
                "ref": str(ref),
                "device": str(dev),
                "batch_size": batch_size,
            },
            fid=None
            if plan is None
            else {
                "mode": fid_mode,
                "weights": plan.weights,
                "feature_extractor": getattr(plan.extractor, "name", "custom extractor"),
                "comparable_to_lab": fid_mode == "legacy_pytorch" and plan.weights != "custom extractor",
                "ref_stats": str(out / plan.stats.name) if reference.kind != "npz" else str(plan.stats),
                "ref_note": reference.note,
            },
        )
        write_csv(rows, tmp / "sweep.csv")
        plot_sweep(result, tmp / "sweep.png")
        (tmp / "sweep.json").write_text(json.dumps(result_dict(result), indent=1))
    return result


def _run_cells(ctx: _Context, cells, names: list[str], save_to: Path | None) -> list[dict[str, Any]]:
    """Decode and score every cell (sampler, schedule, T, S); the images of each cell go to ``save_to``/<cell>/ if
    given. A cell that must give an earlier cell's images (:func:`_same_key`) reuses them and says ``same_as``."""
    from maskgit_cli.data.images import save_image
    from maskgit_cli.progress import progress_bar

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
    """What every cell of a sweep shares: the models, the encoded inputs, the reference and FID's plan."""

    transformer: Any
    vqgan: Any
    patches: Any  # code patches for known-pixel guidance, or None
    settings: Any  # InpaintSettings; each cell replaces the sampler, schedule, T and S
    reference: _Reference
    plan: _Fid | None
    kid: bool
    device: Any
    batches: list = field(default_factory=list)  # (images uint8, holes, ids, encoded inputs) per batch
    holes: np.ndarray | None = None  # (N,H,W) bool, for the hole scores
    fid_batch_size: int = 32
    num_workers: int | None = None

    def encode(self, data, batch_size: int, fid_batch_size: int, num_workers: int | None) -> float:
        """VQGAN-encode every batch once (encoding does not depend on the cell); returns the seconds it took.
        The inputs are kept as uint8: exact, since they were decoded from 8-bit files."""
        import torch

        from maskgit_cli.decoding.inpaint import encode_inputs
        from maskgit_cli.progress import progress_bar

        self.fid_batch_size, self.num_workers = fid_batch_size, num_workers
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
        holes = []
        start = time.perf_counter()
        with progress_bar(len(data), "encode", unit="img") as bar:
            for pixels, hole, ids in loader:  # uint8 (B,H,W,3), bool (B,H,W)
                pixels = pixels.permute(0, 3, 1, 2).contiguous().to(self.device)
                hole, ids = hole.to(self.device), ids.to(self.device)
                encoded = encode_inputs(self.vqgan, pixels.float().div(255.0), hole, self.settings)
                self.batches.append((pixels, hole, ids, encoded))
                holes.append(hole.cpu().numpy())
                bar.advance(len(ids))
        self.holes = np.concatenate(holes)
        return time.perf_counter() - start

    def run_cell(self, sampler: str, schedule: str, t: int, s: int, bar) -> tuple[dict[str, Any], np.ndarray]:
        """Decode every batch with (sampler, schedule, T, S) and score the images: (the csv row, the uint8 images)."""
        from maskgit_cli.data.images import to_uint8
        from maskgit_cli.decoding.inpaint import decode_inputs
        from maskgit_cli.evaluation.fid import compute_fid

        d = self.settings.decode
        cell = replace(self.settings, decode=replace(d, sampler=sampler, schedule=schedule, total_iter=t, sweet_spot=s))
        start = time.perf_counter()
        outs = []
        for images_u8, holes, ids, encoded in self.batches:
            images = images_u8.float().div_(255.0)
            res = decode_inputs(self.transformer, self.vqgan, images, holes, encoded, cell, ids, (), self.patches)
            outs.append(to_uint8(res.images))  # a device sync: the timing is honest on CUDA too
            bar.advance(len(ids))
        seconds = time.perf_counter() - start
        pred = np.concatenate(outs)
        row: dict[str, Any] = {"sampler": sampler, "schedule": schedule, "total_iter": t, "sweet_spot": s}
        row.update(dict.fromkeys(("fid", "kid", "psnr_hole", "ssim_hole", "psnr", "ssim")))
        row.update(seconds=seconds, images_per_second=len(pred) / max(seconds, 1e-9), same_as=None)
        if self.reference.images is not None:
            row.update(_pair_scores(pred, self.reference.images, self.holes))
        if self.plan is not None:
            r = compute_fid(
                pred,
                self.plan.stats,
                mode=self.plan.mode,
                device=self.device,
                batch_size=self.fid_batch_size,
                num_workers=self.num_workers,
                kid=self.kid,
                feature_extractor=self.plan.extractor,
            )
            row["fid"], row["kid"] = r["fid"], r.get("kid")
        return row, pred


def _rank(rows, plan, fid_mode: str, kid: bool, reference: _Reference, fid_reason) -> tuple[str, dict, str]:
    """(the ranking metric, the best row, one line saying how the cells were ranked); marks every row's "best"."""
    if plan is not None:
        key, best = "fid", min(rows, key=lambda r: r["fid"])
        if fid_mode == "legacy_pytorch" and plan.weights != "custom extractor":
            lab = "comparable to the lab's numbers"
        elif fid_mode == "legacy_pytorch":
            lab = "a custom feature extractor: not comparable to the lab's numbers"
        else:
            lab = "not comparable to the lab's numbers: use --fid-mode legacy_pytorch for that"
        note = f"metric: FID{' and KID' if kid else ''} (--fid-mode {fid_mode}, weights {plan.weights}; {lab})"
    else:
        key = "psnr_hole" if any(r["psnr_hole"] is not None for r in rows) else "psnr"
        best = max(rows, key=lambda r: -math.inf if r[key] is None else r[key])
        label = "hole PSNR/SSIM" if key == "psnr_hole" else "PSNR/SSIM (no holes in the masks)"
        note = f"metric: {label} against {reference.label}; FID skipped: {fid_reason}"
        if kid:
            note += " (so no KID either)"
    for r in rows:
        r["best"] = r is best
    return key, best, note
