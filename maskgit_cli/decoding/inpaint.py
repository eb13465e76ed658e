"""Inpainting: masked images + lab masks -> VQGAN tokens -> iterative decoding -> images, grids and a report.

Pipeline per batch (docs/data.md, "Masks"; docs/decoding.md, "The decoding rule"):
  1. holes are filled with gray 128 (a no-op for the lab's masked images) and the image is VQGAN-encoded;
  2. pixel mask -> token mask (``any`` = the lab's rule: a token is regenerated if any of its pixels is a
     hole; ``majority``), then ``dilate`` extra rings of tokens: tokens next to a hole were encoded from the
     gray fill and come out wrong, so regenerating them too usually helps;
  3. :func:`maskgit_cli.decode.decode_tokens` fills the masked tokens under the schedule; with
     ``pixel_guidance`` > 0 the known pixels inside each regenerated token weigh in on its code
     (:mod:`maskgit_cli.guidance`);
  4. the VQGAN decodes the final tokens (and, only for images whose step grids are requested, the
     predictions after every step); with ``composite`` the known pixels of the input are pasted back.

The lab's FID numbers were made without compositing (``composite=False``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from maskgit_cli.choices import DECODE_PRECISIONS, LAYOUTS, MASK_KINDS, NORMALIZATIONS, TOKEN_RULES, check_choice
from maskgit_cli.data.images import check_pairs, list_images, load_image, save_image, to_tensor, to_uint8
from maskgit_cli.data.mask_generator import generate_mask, mask_rng
from maskgit_cli.data.masks import GRAY, HOLE, load_mask, token_mask_for
from maskgit_cli.decoding.decode import DecodeSettings, check_total_iter, decode_tokens
from maskgit_cli.decoding.guidance import code_patches_for, fallback_code_patches, known_pixel_bias
from maskgit_cli.errors import MaskgitError
from maskgit_cli.progress import progress_bar
from maskgit_cli.runtime import autocast
from maskgit_cli.viz import save_grid
from maskgit_cli.vqgan.code_patches import CodePatches, vqgan_code_patches


@dataclass
class InpaintSettings:
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    token_mask: str = "any"  # pixel -> token rule
    dilate: int = 1  # extra rings of regenerated tokens around the holes (0 = the lab's rule)
    composite: bool = True  # paste the known input pixels back over the decoded image
    # Known-pixel guidance strength (guidance.py): 0 = off, the lab's decoding. 50 = a 0.1 standard deviation.
    pixel_guidance: float = 50.0
    # The transformer's autocast: bf16 (about twice as fast as fp32, on a CPU too), fp32, or "auto" (bf16 on CUDA,
    # fp32 on CPU). The VQGAN runs in bf16 on CUDA and fp32 on CPU whatever this says.
    precision: str = "bf16"
    # The VQGAN's statistics for encoding the inputs and de-normalizing the outputs: "train" (its own) or "test"
    # (the lab's test-set statistics, as the lab's inference; docs/lab.md, "Normalization").
    normalization: str = "train"
    lab: bool = False  # made from --lab (LAB_SETTINGS, then what was given): recorded, and sweep's run-it line says so

    def __post_init__(self) -> None:
        check_choice(self.precision, DECODE_PRECISIONS, "--precision")
        check_choice(self.token_mask, TOKEN_RULES, "--token-mask")
        check_choice(self.normalization, NORMALIZATIONS, "--normalization")
        if self.dilate < 0:
            raise MaskgitError(f"--dilate {self.dilate}: must be >= 0")
        if not 0 <= self.pixel_guidance < math.inf:
            raise MaskgitError(
                f"--pixel-guidance {self.pixel_guidance}: must be a finite number >= 0 (0 turns guidance off)"
            )

    def option(self, name: str):
        """A setting by its option name, wherever it lives (here or in the DecodeSettings)."""
        return getattr(self, name) if name in {f.name for f in fields(self)} else getattr(self.decode, name)

    @classmethod
    def from_options(cls, lab: bool = False, **options) -> InpaintSettings:
        """Settings from flat option values, as the CLI and the Python API take them. Options that are None are
        not given: they take the default, or with ``lab`` the lab's inference (:data:`LAB_SETTINGS`)."""
        given = {**(LAB_SETTINGS if lab else {}), **{k: v for k, v in options.items() if v is not None}}
        decode_fields = [f.name for f in fields(DecodeSettings)]
        decode = DecodeSettings(**{k: given.pop(k) for k in decode_fields if k in given})
        return cls(decode, **given, lab=lab)


# The lab's inference exactly (docs/lab.md, "The lab's inference"): inputs encoded and outputs de-normalized with
# the lab's test-set statistics, the most likely code at every step, no compositing, the any-pixel token rule alone,
# no guidance. `--lab` sets these; any of them can still be given.
LAB_SETTINGS = {"normalization": "test", "sampling": "argmax", "composite": False, "dilate": 0, "pixel_guidance": 0.0}


@dataclass
class InpaintBatch:
    images: torch.Tensor  # (B,3,H,W) in [0,1], final results
    still_masked: torch.Tensor  # (B,S)
    token_masks: torch.Tensor  # (B,h,w) bool, the tokens that were generated
    step_images: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # batch row -> S images (3,H,W)
    step_masks: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # batch row -> S+1 masks (h,w)


def check_models(transformer, vqgan) -> None:
    t, v = transformer.config, vqgan.config
    if t.num_codebook_vectors != v.num_codebook_vectors:
        raise MaskgitError(
            f"the transformer predicts {t.num_codebook_vectors} codes but the VQGAN has "
            f"{v.num_codebook_vectors}: they were not trained together"
        )
    if t.num_image_tokens != v.tokens_per_image:
        raise MaskgitError(
            f"the transformer expects {t.num_image_tokens} tokens per image but the VQGAN makes "
            f"{v.latent_resolution}x{v.latent_resolution}"
        )


def with_defaults(transformer, vqgan):
    """``(transformer, vqgan)`` with None replaced by the shipped emoji64 weights files (both, or the missing one)."""
    from maskgit_cli.weights import default_weights

    transformer = default_weights("transformer") if transformer is None else transformer
    return transformer, default_weights("vqgan") if vqgan is None else vqgan


@dataclass
class Prepared:
    """Models ready to inpaint, and what a report needs to say about them."""

    transformer: torch.nn.Module
    vqgan: torch.nn.Module
    guide: CodePatches | None  # code patches for known-pixel guidance; None when it is off
    mean: tuple[float, ...]  # the VQGAN's normalization in use
    std: tuple[float, ...]
    vqgan_sha256: str


def prepare_models(
    transformer,
    vqgan,
    device,
    settings: InpaintSettings,
    code_patches: CodePatches | None = None,
    any_vqgan: bool = False,
) -> Prepared:
    """Models, or their weights files, ready to inpaint.

    Files are loaded strictly (the transformer's stored code patches with them, when guidance is on). The models
    must belong together: a transformer file that records the VQGAN it was trained with refuses another one unless
    ``any_vqgan``. They are moved to ``device`` in eval mode, the VQGAN's convolutions in channels-last layout (about
    1.5x faster on CPU, and the layout tensor cores prefer), and the VQGAN normalizes with ``settings.normalization``.
    Without stored code patches, guidance decodes them from the VQGAN once and caches them beside the transformer
    file (:func:`maskgit_cli.decoding.guidance.fallback_code_patches`).
    """
    from maskgit_cli.vqgan.code_patches import read_code_patches
    from maskgit_cli.weights import load_model, model_fingerprint, read_metadata

    transformer_path, recorded = None, None
    if isinstance(transformer, (str, Path)):
        transformer_path = Path(transformer)
        recorded = read_metadata(transformer_path).get("vqgan_sha256") or None
        if code_patches is None and settings.pixel_guidance > 0:
            code_patches = read_code_patches(transformer_path)
        transformer = load_model(transformer_path, "transformer", device)
    if isinstance(vqgan, (str, Path)):
        vqgan = load_model(vqgan, "vqgan", device)
    check_models(transformer, vqgan)
    check_total_iter(settings.decode.total_iter, transformer.config.num_image_tokens)
    transformer.to(device).eval()
    vqgan.to(device, memory_format=torch.channels_last).eval()
    mean, std = vqgan.use_normalization(settings.normalization)
    fingerprint = model_fingerprint(vqgan)
    recorded = recorded or (code_patches.vqgan_sha256 if code_patches is not None else None)
    if recorded and recorded != fingerprint and not any_vqgan:
        raise MaskgitError(
            f"the transformer was trained on the tokens of VQGAN {recorded[:12]}, but --vqgan is VQGAN "
            f"{fingerprint[:12]}: pass the VQGAN it was trained with (or --any-vqgan to use this one anyway)"
        )
    guide = None
    if settings.pixel_guidance > 0:
        # patches made with another VQGAN (allowed by any_vqgan) say nothing about this one's codes
        if code_patches is not None and code_patches.vqgan_sha256 in (None, fingerprint):
            guide = code_patches_for(vqgan, code_patches, fingerprint)
        else:
            guide = fallback_code_patches(vqgan, transformer, transformer_path, fingerprint, settings.normalization)
    return Prepared(transformer, vqgan, guide, mean, std, fingerprint)


@dataclass
class EncodedInputs:
    """A batch's VQGAN tokens and the tokens to generate: they do not depend on the decode settings."""

    tokens: torch.Tensor  # (B,L) ids of the gray-filled input
    token_masks: torch.Tensor  # (B,h,w) bool, the tokens to generate


@torch.no_grad()
def encode_inputs(vqgan, images: torch.Tensor, holes: torch.Tensor, settings: InpaintSettings) -> EncodedInputs:
    """Steps 1-2: fill the holes with gray, VQGAN-encode, and pick the tokens to generate (token rule, dilate)."""
    gray = torch.full_like(images, GRAY / 255.0)
    masked = torch.where(holes[:, None].expand_as(images), gray, images)
    with autocast(images.device, "auto"):
        tokens = vqgan.encode(masked).flatten(1)
    return EncodedInputs(
        tokens, token_mask_for(holes, vqgan.config.latent_resolution, settings.token_mask, settings.dilate)
    )


@torch.no_grad()
def decode_inputs(
    transformer,
    vqgan,
    images: torch.Tensor,
    holes: torch.Tensor,
    encoded: EncodedInputs,
    settings: InpaintSettings,
    image_ids: torch.Tensor | None = None,
    record_rows=(),
    patches: torch.Tensor | None = None,
) -> InpaintBatch:
    """Steps 3-4 on :func:`encode_inputs`' result: decode the tokens under ``settings.decode``, then the pixels.

    With ``settings.pixel_guidance`` > 0, ``patches`` (V,3,p,p) are the codes' mean looks for known-pixel
    guidance (:func:`maskgit_cli.guidance.code_patches_for`).
    """
    bias = None
    if settings.pixel_guidance > 0:
        if patches is None:
            raise ValueError("pixel guidance needs the code patches (see guidance.code_patches_for)")
        bias = known_pixel_bias(images, holes, patches, settings.pixel_guidance)
    hole4 = holes[:, None].expand_as(images)
    latent = vqgan.config.latent_resolution
    amp = autocast(images.device, "auto")
    tmask = encoded.token_masks
    record = bool(record_rows)
    with autocast(images.device, settings.precision):
        result = decode_tokens(transformer, encoded.tokens, tmask.flatten(1), settings.decode, image_ids, record, bias)
    with amp:
        out = vqgan.decode(result.tokens.view(-1, latent, latent)).float()
    if settings.composite:
        out = torch.where(hole4, out, images)
    batch = InpaintBatch(out, result.still_masked, tmask)
    for row in record_rows:
        with amp:
            preds = torch.stack([p[row] for p in result.step_predictions]).view(-1, latent, latent)
            step_imgs = vqgan.decode(preds).float()
        if settings.composite:
            step_imgs = torch.where(hole4[row : row + 1], step_imgs, images[row : row + 1])
        batch.step_images[row] = list(step_imgs)
        batch.step_masks[row] = [tmask[row]] + [m[row].view(latent, latent) for m in result.step_masks]
    return batch


@torch.no_grad()
def inpaint_batch(
    transformer,
    vqgan,
    images: torch.Tensor,
    holes: torch.Tensor,
    settings: InpaintSettings,
    image_ids: torch.Tensor | None = None,
    record_rows=(),
    patches: torch.Tensor | None = None,
) -> InpaintBatch:
    """Inpaint a batch: images (B,3,H,W) in [0,1] (holes may hold anything) and holes (B,H,W) bool.

    ``patches``: the code patches for known-pixel guidance. Without them (and guidance on) they are decoded from
    the VQGAN on every call (1,024 decodes): pass them when calling this in a loop, as :func:`inpaint_folder` does.
    """
    if patches is None and settings.pixel_guidance > 0:
        patches = vqgan_code_patches(vqgan)
    encoded = encode_inputs(vqgan, images, holes, settings)
    return decode_inputs(transformer, vqgan, images, holes, encoded, settings, image_ids, record_rows, patches)


# ---------------------------------------------------------------------------------------------------------
# Folders


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
    """(image, hole mask) pairs: lab masks from a folder (paired by sorted name), or generated masks."""

    def __init__(self, images_dir, masks_dir=None, mask_kind: str | None = None, mask_seed: int = 0, size: int = 64):
        self.files = list_images(images_dir, "image folder")
        self.size, self.mask_kind, self.mask_seed = size, mask_kind, mask_seed
        if (masks_dir is None) == (mask_kind is None):
            raise MaskgitError("give either --masks DIR (lab-format masks) or --mask-kind KIND")
        if mask_kind is not None:
            check_choice(mask_kind, MASK_KINDS, "--mask-kind")
        self.masks = None
        if masks_dir is not None:
            self.masks = list_images(masks_dir, "mask folder")
            check_pairs(self.files, self.masks, f"images in {images_dir}", f"masks in {masks_dir}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        image = load_image(self.files[i], self.size)
        if self.masks is not None:
            try:
                mask = load_mask(self.masks[i], self.size)
            except MaskgitError as e:
                raise MaskgitError(f"{e} (paired with image {self.files[i].name})") from None
        else:
            mask = generate_mask(self.mask_kind, mask_rng(self.mask_seed, i), size=self.size)
        return to_tensor(image), torch.from_numpy(mask == HOLE), i


def mask_tile(token_mask: torch.Tensor, size: int) -> np.ndarray:
    """Token mask (h,w) True = masked -> (size,size) uint8, white = known, black = still masked (the lab's)."""
    m = (~token_mask).to(torch.uint8).mul(255).cpu().numpy()
    k = size // m.shape[0]
    return m.repeat(k, 0).repeat(k, 1)


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
    num_workers: int = 0,
    code_patches: CodePatches | None = None,
    layout: str = "ours",
    overwrite: bool = False,
    any_vqgan: bool = False,
    num_samples: int = 1,
) -> InpaintSummary:
    """Inpaint a folder; writes the results, the per-step grids (see :class:`Layout`), ``overview.png`` and
    ``report.json`` under ``output``, which is written whole or not at all (:class:`FolderWriter`).

    ``transformer`` and ``vqgan`` are models or their weights files (:func:`prepare_models`; None: the shipped
    emoji64 weights). ``code_patches``:
    for known-pixel guidance, default those stored with the transformer file; else decoded from the VQGAN.
    ``grids``: all | none | N (the first N) | i,j,k; default the first 8 (``ours``) or all (``lab``).
    ``num_samples`` > 1: that many results per image from the random streams of seed, seed+1, ... (named
    ``<stem>_<k>.png``; the grids and the report's counts are sample 0's), and ``samples.png``, a contact sheet.
    """
    if num_samples < 1:
        raise MaskgitError(f"--num-samples {num_samples}: must be at least 1")
    from maskgit_cli.data.images import default_workers

    check_choice(layout, LAYOUTS, "--layout")
    transformer, vqgan = with_defaults(transformer, vqgan)
    paths = [images_dir, masks_dir] + [m for m in (transformer, vqgan) if isinstance(m, (str, Path))]
    out = check_output_folder(output, overwrite, paths)
    where = Layout(layout)
    device = torch.device(device)
    ready = prepare_models(transformer, vqgan, device, settings, code_patches, any_vqgan)
    transformer, vqgan, guide = ready.transformer, ready.vqgan, ready.guide
    size = vqgan.config.img_resolution
    data = InpaintInputs(images_dir, masks_dir, mask_kind, mask_seed, size)
    grid_rows = set(parse_grids(grids or ("all" if layout == "lab" else "8"), len(data)))
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=default_workers() if num_workers is None else num_workers,
    )
    per_image, overview, sheet = [], [], []
    start = time.perf_counter()
    with FolderWriter(out) as tmp, progress_bar(len(data), "inpaint", unit="img") as bar:
        for images, holes, ids in loader:
            images, holes = images.to(device), holes.to(device)
            rows = [r for r, i in enumerate(ids.tolist()) if i in grid_rows]
            patches = guide.patches if guide else None
            samples = []
            for k in range(num_samples):  # sample k: the random streams of seed + k
                s_k = (
                    replace(settings, decode=replace(settings.decode, seed=settings.decode.seed + k)) if k else settings
                )
                batch = inpaint_batch(
                    transformer, vqgan, images, holes, s_k, ids.to(device), rows if k == 0 else (), patches
                )
                samples.append((batch, to_uint8(batch.images)))
            res, results = samples[0]
            inputs = to_uint8(torch.where(holes[:, None].expand_as(images), GRAY / 255.0, images))
            for r, i in enumerate(ids.tolist()):
                stem = data.files[i].stem
                names = []
                for k, (_, pixels) in enumerate(samples):
                    names.append(where.result(i, stem, k if num_samples > 1 else None))
                    save_image(pixels[r], tmp / names[-1])
                per_image.append(
                    {
                        "name": Path(names[0]).name,
                        "input": data.files[i].name,
                        "tokens_generated": int(res.token_masks[r].sum()),
                        "still_masked": res.still_masked[r].tolist(),
                        **({"samples": [Path(n).name for n in names]} if num_samples > 1 else {}),
                    }
                )
                if num_samples > 1 and len(sheet) < 8:
                    sheet.append([inputs[r], *(pixels[r] for _, pixels in samples)])
                if len(overview) < 16:
                    overview.append((inputs[r], results[r]))
                if r in res.step_images:
                    masks = [[mask_tile(m, size) for m in res.step_masks[r]]]
                    save_grid(masks, tmp / where.mask_grid(i, stem), scale=2)
                    steps = list(to_uint8(torch.stack(res.step_images[r])))
                    tiles = [inputs[r], *steps] if layout == "lab" else [inputs[r], *steps, results[r]]
                    save_grid([tiles], tmp / where.image_grid(i, stem), scale=2)
            bar.advance(len(ids))
        seconds = time.perf_counter() - start
        pairs = [[a, b] for a, b in overview]
        save_grid([sum(pairs[k : k + 4], []) for k in range(0, len(pairs), 4)], tmp / "overview.png", scale=2)
        if sheet:  # input | sample 0 .. N-1, for the first 8 images
            save_grid(sheet, tmp / "samples.png", scale=2)
        settings_dict = {
            **asdict(settings),
            "images": str(images_dir),
            "masks": str(masks_dir) if masks_dir else None,
            "mask_kind": mask_kind,
            "mask_seed": mask_seed if mask_kind else None,
            "code_patches": guide.source if guide else None,
            "vqgan_mean": list(ready.mean),
            "vqgan_std": list(ready.std),
            "vqgan_sha256": ready.vqgan_sha256,
            "layout": layout,
            "grids": len(grid_rows),
            "num_samples": num_samples,
        }
        steps = max(len(p["still_masked"]) for p in per_image)
        mean_counts = [float(np.mean([p["still_masked"][s] for p in per_image])) for s in range(steps)]
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
