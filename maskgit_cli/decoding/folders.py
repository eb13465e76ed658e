"""Folders in, folders out: `maskgit inpaint` over files, and its report.

The inputs are :class:`~maskgit_cli.data.input_folder.InpaintInputs` (images paired with masks, generated masks or
their own alpha channel); :class:`~maskgit_cli.decoding.pipeline.Inpainter` (the one decoding path of the CLI, the
Python API and the web page) inpaints them. The output folder is written whole or not at all and never mixed with
an earlier run's (:mod:`maskgit_cli.data.outputs`); the results are PNG files named after the inputs
(:class:`Layout`), with the per-step grids, an overview and ``report.json``.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Subset

from maskgit_cli.choices import ANIMATIONS, LAYOUTS, check_choice
from maskgit_cli.data.images import default_workers, save_image
from maskgit_cli.data.input_folder import InpaintInputs
from maskgit_cli.data.inputs import holes_gray
from maskgit_cli.data.outputs import FolderWriter, check_output_folder
from maskgit_cli.decoding.inpaint import InpaintSettings, auto_dilate, with_defaults
from maskgit_cli.decoding.lab_pictures import image_picture, mask_picture
from maskgit_cli.decoding.pipeline import Inpainter, side_by_side, window_scales
from maskgit_cli.decoding.replay import animation_frames, merged_message, steps_capped, write_animation
from maskgit_cli.errors import MaskgitError, OptionError
from maskgit_cli.model_card import card_summary
from maskgit_cli.progress import Bar, progress_bar
from maskgit_cli.runtime import gather_results, init_distributed, resolve_precision, shard
from maskgit_cli.viz import save_grid
from maskgit_cli.vqgan.code_patches import CodePatches


def parse_grids(spec: str, count: int) -> list[int]:
    """``all`` | ``none`` | ``N`` (the first N images) | ``i,j,k`` (0-based indices) -> sorted indices."""
    spec = spec.strip().lower()
    if spec == "all":
        return list(range(count))
    if spec in ("none", "0", ""):
        return []
    try:
        values = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise OptionError(f"--grids {spec!r}: expected all, none, a count N >= 0, or indices like 0,5,9")
    if "," not in spec:
        return list(range(min(values[0], count)))
    idx = sorted(set(values))
    bad = [i for i in idx if not 0 <= i < count]
    if bad:
        raise OptionError(f"--grids: indices {bad} are out of range (there are {count} images)")
    return idx


@dataclass
class InpaintSummary:
    output: str
    images: int
    seconds: float
    images_per_second: float
    settings: dict
    mean_still_masked: list[float]
    results: str  # the folder of the results (the one FID reads)
    grids: str | None  # the folder(s) of the per-step grids, None when none were written
    steps_capped: str | None = None  # the line saying T was capped at some images' masked tokens (replay.py)
    model: dict | None = None  # the model card's name and note (None: no card), as report.json records them
    other_size: int = 0  # how many images were not at the model's resolution (cut into windows or scaled)
    size: int = 0  # the model's resolution


@dataclass(frozen=True)
class Layout:
    """Where the results and the per-step grids of image ``i`` (file stem ``stem``) go inside the output folder.

    ``ours``: images/<stem>.png, steps/<stem>_mask.png and steps/<stem>_image.png. ``lab``: the lab's names
    (docs/lab.md, "The lab's inference"): test_results/image_{i:03d}.png, mask_scheduling/test_{i}.png and
    imga/test_{i}.png.
    """

    name: str = "ours"

    def result(self, i: int, stem: str, sample: int | None = None) -> str:
        """Sample ``sample`` of ``--num-samples`` (None: the only one) of image ``i``."""
        k = "" if sample is None else f"_{sample}"
        return f"test_results/image_{i:03d}{k}.png" if self.name == "lab" else f"images/{stem}{k}.png"

    def mask_grid(self, i: int, stem: str) -> str:
        return f"mask_scheduling/test_{i}.png" if self.name == "lab" else f"steps/{stem}_mask.png"

    def image_grid(self, i: int, stem: str) -> str:
        return f"imga/test_{i}.png" if self.name == "lab" else f"steps/{stem}_image.png"

    def animation(self, i: int, stem: str, kind: str) -> str:
        """The animation of the steps (``kind`` gif or webp), beside the grids."""
        return f"animation/test_{i}.{kind}" if self.name == "lab" else f"steps/{stem}.{kind}"

    @property
    def results_dir(self) -> str:
        return "test_results" if self.name == "lab" else "images"

    @property
    def grids_dirs(self) -> str:
        return "mask_scheduling/ and imga/" if self.name == "lab" else "steps/"


def inpaint_folder(
    transformer,
    vqgan,
    images_dir,
    output,
    settings: InpaintSettings,
    masks_dir=None,
    mask_kind: str | None = None,
    mask_seed: int = 0,
    grids: str | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    num_workers: int | None = 0,
    code_patches: CodePatches | None = None,
    layout: str = "ours",
    overwrite: bool = False,
    any_vqgan: bool = False,
    num_samples: int = 1,
    fit: str = "auto",
    animation: str = "none",
) -> InpaintSummary | None:
    """Inpaint a folder; writes the results, the per-step grids (see :class:`Layout`), ``overview.png`` and
    ``report.json`` (with the model card's name and note, and where images of another size were cut into windows:
    each window and its scale, image pixels per model pixel across and down) under ``output``, which is written
    whole or not at all
    (:class:`~maskgit_cli.data.outputs.FolderWriter`).

    ``transformer`` and ``vqgan`` are models or their weights files (None: the shipped emoji64 weights); an
    :class:`~maskgit_cli.decoding.pipeline.Inpainter` made from them does the work, ``batch_size`` images at a time.
    ``code_patches``: for known-pixel guidance, default those stored with the transformer file. ``grids``: all |
    none | N (the first N) | i,j,k; default the first 8 (``ours``) or all (``lab``); an image of another size than
    the model's gets a row per window, at the model's resolution, under a title that says where the window lies.
    ``num_samples`` > 1: that many results per image from the random streams of seed, seed+1, ... (named
    ``<stem>_<k>.png``; the grids and the report's counts are sample 0's), and ``samples.png``, a contact sheet.
    ``fit``: how images of another size are inpainted (:meth:`Inpainter.__call__`). ``animation``: none, gif or
    webp: the images with grids also get an animation of their steps, still-masked tokens marked
    (:func:`~maskgit_cli.decoding.replay.animation_frames`). T larger than an image's masked tokens is capped
    there; report.json's ``steps_capped`` and the summary say so in one line.

    Under torchrun each rank inpaints its shard of the files (:func:`~maskgit_cli.runtime.shard`), a batch at a
    time; rank 0 gathers every batch and writes the folder of a single-process run (the same files and pixels:
    the random streams are keyed by the images, not by the process) and returns the summary (the other ranks:
    None).
    """
    if num_samples < 1:
        raise MaskgitError(f"--num-samples {num_samples}: must be at least 1")
    check_choice(layout, LAYOUTS, "--layout")
    check_choice(animation, ANIMATIONS, "--animation")
    rank, world, device = init_distributed(device)
    transformer, vqgan = with_defaults(transformer, vqgan)
    paths = [images_dir, masks_dir] + [m for m in (transformer, vqgan) if isinstance(m, (str, Path))]
    out = check_output_folder(output, overwrite, paths)
    pipe = Inpainter(transformer, vqgan, device, any_vqgan, code_patches, settings)
    data = InpaintInputs(images_dir, masks_dir, mask_kind, mask_seed, pipe.size, any_size=fit != "none")
    grid_rows = set(parse_grids(grids or ("all" if layout == "lab" else "8"), len(data)))
    results = _Results(Layout(layout), pipe.size, num_samples, settings.decode.total_iter, animation)
    mine = shard(len(data), rank, world)
    rounds = -(-len(shard(len(data), 0, world)) // batch_size)  # rank 0's shard is the largest: as many rounds
    start = time.perf_counter()
    batches = iter(_batches(data if world == 1 else Subset(data, mine), batch_size, num_workers))
    main = rank == 0
    writer = FolderWriter(out) if main else contextlib.nullcontext(None)
    bar_context = progress_bar(len(data), "inpaint", unit="img") if main else contextlib.nullcontext(Bar(None, None))
    with writer as tmp, bar_context as bar, steps_capped() as caps:
        for _ in range(rounds):  # under torchrun, round k is files k B W .. (k + 1) B W - 1 over the W ranks
            done = gather_results(lambda: _inpaint_batch(pipe, data, next(batches, []), grid_rows, num_samples, fit))
            if main:
                for i, pixels, holes, samples in sorted((x for part in done for x in part), key=lambda x: x[0]):
                    results.add(tmp, data.files[i], i, pixels, holes, samples)
            bar.advance(sum(len(part) for part in done))
        if not main:  # another process of a torchrun: rank 0 writes the folder and reports it
            return None
        seconds = time.perf_counter() - start
        results.save_sheets(tmp)
        run = {"images": images_dir, "masks": masks_dir, "mask_kind": mask_kind, "mask_seed": mask_seed, "fit": fit}
        recorded = _recorded_settings(settings, pipe, run, layout, len(grid_rows), num_samples)
        mean_counts = _mean_counts([p["still_masked"] for p in results.rows])
        capped = merged_message(caps)
        report = {
            "model": card_summary(pipe.card),  # the model card's name and note (None: no card)
            "settings": recorded,
            "count": len(results.rows),
            "seconds": seconds,
            "mean_still_masked": mean_counts,
            "steps_capped": capped,
            "images": results.rows,
        }
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
    count = len(results.rows)
    grids_at = f"{out}/{results.where.grids_dirs}" if grid_rows else None
    results_at = str(out / results.where.results_dir)
    other_size = sum("size" in row for row in results.rows)
    return InpaintSummary(
        str(out), count, seconds, count / max(seconds, 1e-9), recorded, mean_counts, results_at, grids_at, capped,
        report["model"], other_size, pipe.size,
    )  # fmt: skip


def _inpaint_batch(pipe: Inpainter, data: InpaintInputs, items: list, grid_rows: set, num_samples: int, fit: str):
    """One batch of ``(pixels, holes, index)`` items inpainted ``num_samples`` times: ``(index, pixels, holes,
    samples)`` per image (the grids of sample 0 only, and only for ``grid_rows``)."""
    if not items:
        return []
    images, holes, ids = (list(x) for x in zip(*items))
    record = [r for r, i in enumerate(ids) if i in grid_rows]
    files = [str(data.files[i]) for i in ids]  # what an error about an image names
    samples = [pipe.fill(images, holes, k, ids, record if k == 0 else (), fit, names=files)
               for k in range(num_samples)]  # fmt: skip
    return [(i, images[r], holes[r], [sample[r] for sample in samples]) for r, i in enumerate(ids)]


def _as_list(items):
    """A DataLoader collate that keeps a batch as a list: images of any size do not stack."""
    return items


def _batches(data: InpaintInputs, batch_size: int, num_workers: int | None):
    """The inputs ``batch_size`` at a time, decoded in ``num_workers`` processes (None: the default number)."""
    workers = default_workers() if num_workers is None else num_workers
    return torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_as_list
    )


@dataclass
class _Results:
    """:func:`inpaint_folder`'s results as they are written: the files and grids of every image, and what the
    report and the contact sheets collect."""

    where: Layout
    size: int  # the model's
    num_samples: int
    total_iter: int  # T: the lab's pictures have a tile per step, run or not
    animation: str = "none"  # none, gif or webp: an animation of the steps beside each image's grids
    rows: list[dict] = field(default_factory=list)  # report.json's entry of every image
    overview: list = field(default_factory=list)  # (input, result) of the first 16 images
    sheet: list = field(default_factory=list)  # input and every sample of the first 8 images (num_samples > 1)

    def add(self, tmp: Path, file: Path, i: int, pixels: np.ndarray, holes: np.ndarray, samples: list) -> None:
        """Write image ``i``'s results (its :class:`~maskgit_cli.decoding.pipeline.Filled` samples) and grids."""
        first, stem, size = samples[0], file.stem, self.size
        several = self.num_samples > 1
        names = [self.where.result(i, stem, k if several else None) for k in range(self.num_samples)]
        for name, filled in zip(names, samples):
            save_image(filled.image, tmp / name)
        self.rows.append(_report_row(file, names, first, pixels.shape[:2], size))
        shown = holes_gray(pixels, holes)
        if several and len(self.sheet) < 8:
            self.sheet.append([_thumb(a, size) for a in (shown, *(s.image for s in samples))])
        if len(self.overview) < 16:
            self.overview.append((_thumb(shown, size), _thumb(first.image, size)))
        if first.step_images and self.where.name == "lab" and len(first.windows) == 1:
            _save_lab_pictures(first, tmp, self.where, i, stem, self.total_iter)
        elif first.step_images:
            _save_grids(first, tmp, self.where, i, stem, (pixels.shape[1], pixels.shape[0]), size)
        if first.step_images and self.animation != "none":
            write_animation(_animation(first), tmp / self.where.animation(i, stem, self.animation))

    def save_sheets(self, tmp: Path) -> None:
        """overview.png (input | result, four pairs a row) and, with samples, samples.png (input | sample 0 ..)."""
        pairs = [[a, b] for a, b in self.overview]
        save_grid([sum(pairs[k : k + 4], []) for k in range(0, len(pairs), 4)], tmp / "overview.png", scale=2)
        if self.sheet:
            save_grid(self.sheet, tmp / "samples.png", scale=2)


def _recorded_settings(settings: InpaintSettings, pipe: Inpainter, run: dict, layout: str, grids: int, samples: int):
    """report.json's settings: the decoding settings, what "auto" and None became here, the inputs, the models'
    statistics and fingerprint, the layout."""
    guide = pipe.ready.guide
    return {
        **asdict(settings),
        "precision_used": resolve_precision(settings.precision, pipe.device),  # what "auto" became here
        "dilate_used": auto_dilate(settings.dilate, pipe.ready.vqgan.config),  # what None became
        "images": str(run["images"]),
        "masks": str(run["masks"]) if run["masks"] else None,
        "mask_kind": run["mask_kind"],
        "mask_seed": run["mask_seed"] if run["mask_kind"] else None,
        "alpha_masks": run["masks"] is None and run["mask_kind"] is None,
        "fit": run["fit"],
        "code_patches": guide.source if guide else None,
        "vqgan_mean": list(pipe.ready.mean),
        "vqgan_std": list(pipe.ready.std),
        "vqgan_sha256": pipe.ready.vqgan_sha256,
        "layout": layout,
        "grids": grids,
        "num_samples": samples,
    }


def _report_row(file: Path, names: list[str], filled, shape: tuple[int, int], size: int) -> dict:
    """One image's entry in report.json (sample 0's counts)."""
    row = {
        "name": Path(names[0]).name,
        "input": file.name,
        "tokens_generated": filled.tokens_generated,
        "still_masked": filled.still_masked,
    }
    if tuple(shape) != (size, size):
        row["size"] = [shape[1], shape[0]]
        row["windows"] = [list(w) for w in filled.windows]  # (x0, y0, width, height), each inpainted at size x size
        row["scales"] = window_scales(filled.windows, size)  # image pixels per model pixel, across and down
    if len(names) > 1:
        row["samples"] = [Path(n).name for n in names]
    return row


def _mean_counts(counts: list[list[int]]) -> list[float]:
    """Mean tokens still masked after each step, over the images that had anything to fill."""
    counts = [c for c in counts if c]
    steps = max((len(c) for c in counts), default=0)
    return [float(np.mean([c[s] for c in counts if len(c) > s])) for s in range(steps)]


def _thumb(pixels: np.ndarray, size: int) -> np.ndarray:
    """An image at size x size for a contact sheet (model-size images unchanged)."""
    if pixels.shape[:2] == (size, size):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BICUBIC))


def _save_lab_pictures(filled, tmp: Path, where: Layout, i: int, stem: str, total_iter: int) -> None:
    """The lab's pictures of a model-size image (docs/lab.md, "The lab's pictures"): the token mask after each step
    and the masked input then each step's image, T tiles each, black for the steps not run."""
    save_image(mask_picture(filled.step_tokens[0][1:], total_iter), tmp / where.mask_grid(i, stem))
    save_image(image_picture(filled.inputs[0], filled.step_images[0], total_iter), tmp / where.image_grid(i, stem))


def _save_grids(filled, tmp: Path, where: Layout, i: int, stem: str, wh: tuple[int, int], size: int):
    """The per-step mask and image grids of one image: a row per window, at the model's resolution (input, each
    step, and, in our layout, the window's result); an image of another size gets a title saying where each
    window lies."""
    title = None
    if wh != (size, size):
        lines = [f"{stem}: {wh[0]}x{wh[1]}, inpainted at {size}x{size} in {len(filled.windows)} window(s)"]
        for k, (x0, y0, w, h) in enumerate(filled.windows):
            lines.append(f"row {k + 1}: x {x0}-{x0 + w}, y {y0}-{y0 + h} ({w}x{h} pixels)")
        title = "\n".join(lines)
    save_grid([list(m) for m in filled.step_masks], tmp / where.mask_grid(i, stem), scale=2, title=title)
    rows = [
        [shown, *steps] if where.name == "lab" else [shown, *steps, output]
        for shown, steps, output in zip(filled.inputs, filled.step_images, filled.outputs)
    ]
    save_grid(rows, tmp / where.image_grid(i, stem), scale=2, title=title)


def _animation(filled) -> list[np.ndarray]:
    """The frames of an image's animation: every window's (:func:`~maskgit_cli.decoding.replay.animation_frames`:
    input, marked steps, result), side by side as the grids' rows are."""
    windows = zip(filled.inputs, filled.step_images, filled.step_tokens, filled.outputs)
    per_window = [animation_frames(shown, steps, tokens[1:], output) for shown, steps, tokens, output in windows]
    return [side_by_side(frame) for frame in zip(*per_window)]
