"""Folders in, folders out: `maskgit inpaint` (and `sweep`'s inputs) over files.

The images of a folder are paired with the masks of another by sorted file name (the lab's way), with generated
masks (``--mask-kind``), or read with their own alpha channel as the mask (alpha 0 = hole). Images of any size are
read as they are; :class:`~maskgit_cli.decoding.pipeline.Inpainter` (the one decoding path of the CLI, the Python
API and the web page) inpaints them. The output folder is written whole or not at all and never mixed with an
earlier run's (:class:`FolderWriter`); the results are PNG files named after the inputs (:class:`Layout`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskgit_cli.choices import FITS, LAYOUTS, MASK_KINDS, check_choice
from maskgit_cli.data.images import check_pairs, list_images, read_image, save_image, to_rgb
from maskgit_cli.data.mask_generator import generate_mask_for, mask_rng
from maskgit_cli.data.masks import HOLE, alpha_mask, load_mask
from maskgit_cli.decoding.inpaint import InpaintSettings, auto_dilate, with_defaults
from maskgit_cli.decoding.pipeline import Inpainter, windows_for
from maskgit_cli.errors import MaskgitError
from maskgit_cli.progress import progress_bar
from maskgit_cli.runtime import resolve_precision
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
        if "," in spec:
            idx = sorted({int(s) for s in spec.split(",") if s.strip()})
        else:
            return list(range(min(int(spec), count)))
    except ValueError:
        raise MaskgitError(f"--grids {spec!r}: expected all, none, a count N, or indices like 0,5,9") from None
    bad = [i for i in idx if not 0 <= i < count]
    if bad:
        raise MaskgitError(f"--grids: indices {bad} are out of range (there are {count} images)")
    return idx


class InpaintInputs(torch.utils.data.Dataset):
    """(image uint8 (H,W,3), holes bool (H,W), index) of a folder's images, as they are: masks from a folder (paired
    by sorted name, each of its image's size), generated masks (``mask_kind``, drawn at the image's size), or, with
    neither, each image's own alpha channel (alpha 0 = hole). ``size``: the model's; with ``any_size`` False every
    image must have it. Errors name the files."""

    def __init__(
        self,
        images_dir,
        masks_dir=None,
        mask_kind: str | None = None,
        mask_seed: int = 0,
        size: int = 64,
        any_size: bool = True,
    ):
        self.files = list_images(images_dir, "image folder")
        self.size, self.mask_kind, self.mask_seed, self.any_size = size, mask_kind, mask_seed, any_size
        if masks_dir is not None and mask_kind is not None:
            raise MaskgitError("give --masks DIR or --mask-kind KIND, not both")
        if mask_kind is not None:
            check_choice(mask_kind, MASK_KINDS, "--mask-kind")
        self.masks = None
        if masks_dir is not None:
            self.masks = list_images(masks_dir, "mask folder")
            check_pairs(self.files, self.masks, f"images in {images_dir}", f"masks in {masks_dir}")
        stems: dict[str, Path] = {}
        for f in self.files:
            if f.stem in stems:
                raise MaskgitError(
                    f"{stems[f.stem].name} and {f.name} in {images_dir} would both be written as {f.stem}.png: "
                    "rename one"
                )
            stems[f.stem] = f

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files[i]
        img = read_image(path)
        pixels = np.asarray(to_rgb(img), dtype=np.uint8).copy()
        h, w = pixels.shape[:2]
        if not self.any_size and (h, w) != (self.size, self.size):
            raise MaskgitError(f"{path}: image is {w}x{h}, but the model inpaints {self.size}x{self.size} images")
        if self.masks is not None:
            mask = load_mask(self.masks[i])
            if mask.shape != (h, w):
                raise MaskgitError(
                    f"mask {self.masks[i]} is {mask.shape[1]}x{mask.shape[0]} but its image {path.name} is {w}x{h}: "
                    "they must be the same size"
                )
        elif self.mask_kind is not None:
            mask = generate_mask_for(self.mask_kind, mask_rng(self.mask_seed, i), h, w)
        else:
            mask = alpha_mask(img)
            if mask is None:
                raise MaskgitError(
                    f"{path}: no --masks, no --mask-kind, and the image has no transparent pixels to read as holes "
                    "(alpha 0 = hole)"
                )
        return pixels, mask == HOLE, i


def _as_list(items):
    """A DataLoader collate that keeps a batch as a list: images of any size do not stack."""
    return items


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

    @property
    def results_dir(self) -> str:
        return "test_results" if self.name == "lab" else "images"

    @property
    def grids_dirs(self) -> str:
        return "mask_scheduling/ and imga/" if self.name == "lab" else "steps/"


def check_output_folder(output, overwrite: bool, inputs=()) -> Path:
    """The output folder of a command that writes a whole folder of results (inpaint, sweep).

    A folder that already holds files is refused (results of two runs must never mix), unless ``overwrite``, which
    replaces it whole once the new results are complete. A folder that is, or holds, one of the ``inputs`` is
    refused in any case.
    """
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise MaskgitError(f"-o {out}: exists and is not a folder")
    above = next((p for p in out.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise MaskgitError(f"-o {out}: {above} is a file, not a folder")
    resolved = out.resolve()
    for item in inputs:
        if item is None:
            continue
        item = Path(item).resolve()
        if item == resolved or resolved in item.parents:
            raise MaskgitError(f"-o {out}: holds the input {item}; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        first = sorted(p.name for p in out.iterdir())[0]
        raise MaskgitError(
            f"-o {out}: already holds results (e.g. {first}); pass --overwrite to replace the whole folder, or "
            "choose another output folder (results of two runs are never mixed)"
        )
    return out


class FolderWriter:
    """Write a folder of results under a temporary name beside it, and put it in place only when complete: an
    interruption or a full disk leaves the previous folder (if any) as it was, never a mix."""

    def __init__(self, output: Path):
        self.output = Path(output)
        self.tmp = self.output.with_name(f".{self.output.name}.partial-{os.getpid()}")

    def __enter__(self) -> Path:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if isinstance(exc, OSError) and exc.filename and str(exc.filename).startswith(str(self.tmp)):
                exc.filename = str(self.output) + str(exc.filename)[len(str(self.tmp)) :]  # name the real place
            return
        old = self.output.with_name(f".{self.output.name}.old-{os.getpid()}")
        moved = False
        try:
            if self.output.exists():
                self.output.rename(old)
                moved = True
            self.tmp.rename(self.output)
        except OSError:
            if moved and not self.output.exists():
                old.rename(self.output)  # put the previous results back
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)


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
) -> InpaintSummary:
    """Inpaint a folder; writes the results, the per-step grids (see :class:`Layout`), ``overview.png`` and
    ``report.json`` under ``output``, which is written whole or not at all (:class:`FolderWriter`).

    ``transformer`` and ``vqgan`` are models or their weights files (None: the shipped emoji64 weights); an
    :class:`~maskgit_cli.decoding.pipeline.Inpainter` made from them does the work, ``batch_size`` images at a time.
    ``code_patches``: for known-pixel guidance, default those stored with the transformer file. ``grids``: all |
    none | N (the first N) | i,j,k; default the first 8 (``ours``) or all (``lab``); an image of another size than
    the model's gets a row per window, at the model's resolution, under a title that says where the window lies.
    ``num_samples`` > 1: that many results per image from the random streams of seed, seed+1, ... (named
    ``<stem>_<k>.png``; the grids and the report's counts are sample 0's), and ``samples.png``, a contact sheet.
    ``fit``: how images of another size are inpainted (:meth:`Inpainter.__call__`).
    """
    from maskgit_cli.data.images import default_workers

    if num_samples < 1:
        raise MaskgitError(f"--num-samples {num_samples}: must be at least 1")
    check_choice(layout, LAYOUTS, "--layout")
    check_choice(fit, FITS, "--fit")
    transformer, vqgan = with_defaults(transformer, vqgan)
    paths = [images_dir, masks_dir] + [m for m in (transformer, vqgan) if isinstance(m, (str, Path))]
    out = check_output_folder(output, overwrite, paths)
    where = Layout(layout)
    pipe = Inpainter(transformer, vqgan, device, any_vqgan, code_patches, settings)
    size = pipe.size
    data = InpaintInputs(images_dir, masks_dir, mask_kind, mask_seed, size, any_size=fit != "none")
    grid_rows = set(parse_grids(grids or ("all" if layout == "lab" else "8"), len(data)))
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=default_workers() if num_workers is None else num_workers,
        collate_fn=_as_list,
    )
    per_image, overview, sheet = [], [], []
    start = time.perf_counter()
    with FolderWriter(out) as tmp, progress_bar(len(data), "inpaint", unit="img") as bar:
        for items in loader:
            images, holes, ids = (list(x) for x in zip(*items))
            for i, pixels, hl in zip(ids, images, holes):
                try:
                    windows_for(pixels.shape[:2], hl, size, fit)  # a size the fit cannot take: name the file
                except MaskgitError as e:
                    raise MaskgitError(f"{data.files[i]}: {e}") from None
            record = [r for r, i in enumerate(ids) if i in grid_rows]
            samples = [pipe.fill(images, holes, k, ids, record if k == 0 else (), fit) for k in range(num_samples)]
            for r, i in enumerate(ids):
                first, stem = samples[0][r], data.files[i].stem
                names = [where.result(i, stem, k if num_samples > 1 else None) for k in range(num_samples)]
                for name, filled in zip(names, samples):
                    save_image(filled[r].image, tmp / name)
                per_image.append(_report_row(data.files[i], names, first, images[r].shape[:2], size))
                shown = _masked_input(images[r], holes[r])
                if num_samples > 1 and len(sheet) < 8:
                    sheet.append([_thumb(a, size) for a in (shown, *(s[r].image for s in samples))])
                if len(overview) < 16:
                    overview.append((_thumb(shown, size), _thumb(first.image, size)))
                if first.step_images:
                    _save_grids(first, tmp, where, i, stem, layout, (images[r].shape[1], images[r].shape[0]), size)
            bar.advance(len(ids))
        seconds = time.perf_counter() - start
        pairs = [[a, b] for a, b in overview]
        save_grid([sum(pairs[k : k + 4], []) for k in range(0, len(pairs), 4)], tmp / "overview.png", scale=2)
        if sheet:  # input | sample 0 .. N-1, for the first 8 images
            save_grid(sheet, tmp / "samples.png", scale=2)
        guide = pipe.ready.guide
        settings_dict = {
            **asdict(settings),
            "precision_used": resolve_precision(settings.precision, pipe.device),  # what "auto" became here
            "dilate_used": auto_dilate(settings.dilate, pipe.ready.vqgan.config),  # what None became
            "images": str(images_dir),
            "masks": str(masks_dir) if masks_dir else None,
            "mask_kind": mask_kind,
            "mask_seed": mask_seed if mask_kind else None,
            "alpha_masks": masks_dir is None and mask_kind is None,
            "fit": fit,
            "code_patches": guide.source if guide else None,
            "vqgan_mean": list(pipe.ready.mean),
            "vqgan_std": list(pipe.ready.std),
            "vqgan_sha256": pipe.ready.vqgan_sha256,
            "layout": layout,
            "grids": len(grid_rows),
            "num_samples": num_samples,
        }
        mean_counts = _mean_counts([p["still_masked"] for p in per_image])
        report = {
            "settings": settings_dict,
            "count": len(per_image),
            "seconds": seconds,
            "mean_still_masked": mean_counts,
            "images": per_image,
        }
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
    return InpaintSummary(
        str(out),
        len(per_image),
        seconds,
        len(per_image) / max(seconds, 1e-9),
        settings_dict,
        mean_counts,
        str(out / where.results_dir),
        f"{out}/{where.grids_dirs}" if grid_rows else None,
    )


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
    if len(names) > 1:
        row["samples"] = [Path(n).name for n in names]
    return row


def _mean_counts(counts: list[list[int]]) -> list[float]:
    """Mean tokens still masked after each step, over the images that had anything to fill."""
    counts = [c for c in counts if c]
    steps = max((len(c) for c in counts), default=0)
    return [float(np.mean([c[s] for c in counts if len(c) > s])) for s in range(steps)]


def _masked_input(pixels: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """The input as the model sees it: holes gray."""
    from maskgit_cli.data.masks import GRAY

    shown = pixels.copy()
    shown[holes] = GRAY
    return shown


def _thumb(pixels: np.ndarray, size: int) -> np.ndarray:
    """An image at size x size for a contact sheet (model-size images unchanged)."""
    if pixels.shape[:2] == (size, size):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BICUBIC))


def _save_grids(filled, tmp: Path, where: Layout, i: int, stem: str, layout: str, wh: tuple[int, int], size: int):
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
        [shown, *steps] if layout == "lab" else [shown, *steps, output]
        for shown, steps, output in zip(filled.inputs, filled.step_images, filled.outputs)
    ]
    save_grid(rows, tmp / where.image_grid(i, stem), scale=2, title=title)
