"""Compare maskgit's inpainting with classical inpainting on the same holes, per test set and per mask kind.

    python tools/compare_baselines.py --set emoji64 --set openmoji64 -o runs/compare

A set is ``emoji64`` or ``openmoji64`` (data/NAME), or ``NAME=DIR``: any folder with the lab's layout, test/ (the
ground truth), mask64/ (its masks) and masked_image/ (the images with gray holes); ``--images/--masks/--ref`` name
the three folders of one set instead. For every set and every mask kind (``--kind``, default all: ``lab``, the set's
own mask64/, and ``stroke``, ``box``, ``half``, ``outpaint``, one mask per image from maskgit_cli.data.mask_generator
with ``--mask-seed`` (default 2), written with the masked images to OUT/SET/KIND/) it fills the holes with

- maskgit: the shipped weights (``--model``: a model folder instead, or ``none``) with the default settings, in
  process through :class:`maskgit_cli.Inpainter`, the object behind `maskgit inpaint` (the same pixels). Several
  ``--model NAME=MODEL[,SETTING=VALUE...]`` give a row each, named NAME, with those inpaint settings changed (e.g.
  ``--model before=weights-old,fill=sharp --model after=default``: before and after, or an ablation, in one run);
- OpenCV's Telea and Navier-Stokes (``cv2.inpaint``, radius 3);
- scikit-image's biharmonic fill (``inpaint_biharmonic(..., channel_axis=-1)``, known pixels kept);
- with ``--true-tokens``, per model: its VQGAN's ceiling, each hole filled with the decode of the ground truth's own
  tokens (a transformer that predicts every token right), to tell what the transformer loses from what the VQGAN does;
- with ``--pred NAME=DIR`` (one set only, its lab masks): results made elsewhere;

writes them to OUT/SET/KIND/METHOD/ and scores each: PSNR/SSIM over the hole pixels and over whole images
(`maskgit score`), FD-pix8, and the seconds the fill took for the whole set on this machine. FD-pix8 is a Frechet
distance to the ground truth computed on 8x8 average-pooled RGB images (192 features): it stands in for FID where
the Inception weights are not available (as on this project's machines) and is not comparable to FID numbers.
It prints Markdown tables (per set, per set by mask kind, and the sets side by side) and writes every number to
OUT/compare.json (a flat list of rows, each with its set, kind and method).

OpenCV (``pip install opencv-python-headless``) and scikit-image are in the ``dev`` extra, not dependencies of
maskgit; without one, its rows are left out, with one line on stderr.

With ``--accuracy NAME=TRANSFORMER,VQGAN`` (repeatable, one set only) it also prints each model pair's masked-token
accuracy under the set's masks: the tokens the holes touch plus one ring (``--dilate 1``) are masked in the VQGAN's
tokens of the ground truth, and one forward pass of the transformer predicts them (argmax, no guidance): the number
`maskgit train` validates as ``inpaint_acc``.

Bad input is one line on stderr: exit 1 for a missing folder or file, 2 for a bad option value.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maskgit_cli.choices import MASK_KINDS  # noqa: E402
from maskgit_cli.data.images import list_images, load_image, save_image  # noqa: E402
from maskgit_cli.data.mask_generator import write_masks  # noqa: E402
from maskgit_cli.data.masks import HOLE, load_mask  # noqa: E402
from maskgit_cli.errors import MaskgitError, OptionError  # noqa: E402
from maskgit_cli.evaluation.score import finite_or_none  # noqa: E402

KNOWN_SETS = ("emoji64", "openmoji64")  # data/NAME, in the lab's layout
KINDS = ("lab", *MASK_KINDS)  # lab: the set's own mask64/
# Seed of the generated masks: neither emoji64's test masks (stroke, seed 0) nor its val masks (seed 1), so that
# the generated strokes are new ones.
MASK_SEED = 2
BATCH = 64  # images per maskgit call (inpaint's default --batch-size)
MASKGIT = "maskgit"
INPUT = "masked input (gray holes)"

# A filled image from a masked image: uint8 (H,W,3) image and (H,W) bool holes -> uint8 (H,W,3).
Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TestSet:
    """A set in the lab's layout: ground truth, masks and masked images, paired by sorted file name."""

    name: str
    ref: Path
    masks: Path
    images: Path


# --------------------------------------------------------------------------------------------------
# the classical fills


def _opencv(image: np.ndarray, holes: np.ndarray, flag: str, radius: int = 3) -> np.ndarray:
    import cv2

    bgr = np.ascontiguousarray(image[..., ::-1])
    filled = cv2.inpaint(bgr, holes.astype(np.uint8) * 255, radius, getattr(cv2, flag))
    return np.ascontiguousarray(filled[..., ::-1])


def telea(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """OpenCV's fast marching method (Telea 2004), radius 3."""
    return _opencv(image, holes, "INPAINT_TELEA")


def navier_stokes(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """OpenCV's Navier-Stokes based fill (Bertalmio et al. 2001), radius 3."""
    return _opencv(image, holes, "INPAINT_NS")


def biharmonic(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """scikit-image's biharmonic fill, all channels at once; the known pixels are the input's."""
    from skimage.restoration import inpaint_biharmonic

    filled = inpaint_biharmonic(image.astype(np.float64) / 255.0, holes, channel_axis=-1)
    result = np.clip(np.rint(filled * 255.0), 0, 255).astype(np.uint8)
    result[~holes] = image[~holes]
    return result


# method name -> (folder name, fill, the module it needs, how to install it)
CLASSICAL: dict[str, tuple[str, Fill, str, str]] = {
    "OpenCV Telea": ("telea", telea, "cv2", "pip install opencv-python-headless"),
    "OpenCV Navier-Stokes": ("navier_stokes", navier_stokes, "cv2", "pip install opencv-python-headless"),
    "scikit-image biharmonic": ("biharmonic", biharmonic, "skimage.restoration", "pip install scikit-image"),
}


def available_classical() -> dict[str, tuple[str, Fill]]:
    """The classical methods whose library imports; one stderr line per missing library, naming the rows left out."""
    import importlib

    found, missing = {}, {}
    for name, (folder, fill, module, install) in CLASSICAL.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.setdefault((module, install), []).append(name)
            continue
        found[name] = (folder, fill)
    for (module, install), names in missing.items():
        print(f"no {module.split('.')[0]} ({install}): the {' and '.join(names)} rows are left out", file=sys.stderr)
    return found


# --------------------------------------------------------------------------------------------------
# filling and scoring a folder


def fill_folder(fill_batch, images_dir: Path, masks_dir: Path, out: Path) -> float:
    """Fill every masked image of ``images_dir`` (paired with ``masks_dir`` by sorted name) into ``out`` (the input's
    stem, .png), :data:`BATCH` images per ``fill_batch(images, holes)`` call; returns the seconds it took."""
    start = time.perf_counter()
    files, masks = list_images(images_dir), list_images(masks_dir, "mask folder")
    if len(files) != len(masks):
        raise MaskgitError(f"{images_dir} holds {len(files)} images but {masks_dir} {len(masks)} masks")
    for i in range(0, len(files), BATCH):
        images = [load_image(f) for f in files[i : i + BATCH]]
        holes = [load_mask(m) == HOLE for m in masks[i : i + BATCH]]
        for path, filled in zip(files[i : i + BATCH], fill_batch(images, holes), strict=True):
            save_image(filled, out / (path.stem + ".png"))
    return time.perf_counter() - start


def per_image(fill: Fill):
    """A batch fill made of a one-image fill."""
    return lambda images, holes: [fill(x, h) for x, h in zip(images, holes, strict=True)]


def by_maskgit(pipe):
    """A batch fill by an :class:`~maskgit_cli.Inpainter` with its settings (one sample, as `maskgit inpaint`)."""
    return lambda images, holes: [r.image for r in pipe.fill(images, holes)]


def by_true_tokens(pipe):
    """The VQGAN's ceiling under ``pipe``'s model: every hole filled with the decode of the ground truth's own tokens
    (what a transformer that predicted every token right would give), composited as ``pipe``'s settings composite
    (no smooth prior: there is no uncertainty). It fills the ground-truth images themselves, so the tool runs it on a
    set's test/ folder, and only on images of the VQGAN's size."""
    import torch

    from maskgit_cli.data.images import to_tensor, to_uint8
    from maskgit_cli.decoding.inpaint import finish
    from maskgit_cli.runtime import vqgan_autocast

    vqgan, size = pipe.ready.vqgan, pipe.size

    def fill(images, holes):
        if any(x.shape[:2] != (size, size) for x in images):
            raise MaskgitError(f"--true-tokens: the model's VQGAN takes {size}x{size} images; this set's are not")
        x = to_tensor(np.stack(images)).to(pipe.device)
        h = torch.from_numpy(np.stack(holes)).to(pipe.device)
        with torch.no_grad(), vqgan_autocast(pipe.device, pipe.settings.precision):
            decoded = vqgan.decode(vqgan.encode(x)).float()
        return list(to_uint8(finish(decoded, x, h, pipe.settings).cpu()))

    return fill


def pixels8(x):
    """float32 (B,3,H,W) in [0,255] -> (B,192) features: 8x8 average-pooled RGB in [0,1]."""
    import torch.nn.functional as F

    return F.adaptive_avg_pool2d(x / 255.0, 8).flatten(1)


def score(folder: Path, ref: Path, masks: Path) -> dict:
    """Hole and whole-image PSNR/SSIM (`maskgit score`), FD-pix8 and the mean hole fraction of ``folder``."""
    from maskgit_cli.evaluation.fid import compute_fid
    from maskgit_cli.evaluation.score import score_folders

    s = score_folders(folder, ref, masks)
    fd = compute_fid(folder, ref, feature_extractor=pixels8, device="cpu", num_workers=0)["fid"]
    keys = ("psnr_hole", "ssim_hole", "psnr", "ssim", "hole_fraction", "count")
    return {**{k: s[k] for k in keys}, "fd_pix8": fd}


def token_accuracy(transformer_path: str, vqgan_path: str, ref: Path, masks: Path, dilate: int = 1) -> float:
    """Masked-token accuracy of a transformer under the masks, context from the ground truth's tokens (fp32)."""
    import torch

    from maskgit_cli.data.masks import token_mask_for
    from maskgit_cli.transformer.model import forbid_mask_token, mask_tokens
    from maskgit_cli.weights import load_model

    vqgan, transformer = load_model(vqgan_path, "vqgan").eval(), load_model(transformer_path, "transformer").eval()
    refs, holes = list_images(ref), list_images(masks)
    correct = total = 0
    with torch.no_grad():
        for i in range(0, len(refs), 64):
            x = torch.from_numpy(np.stack([load_image(f) for f in refs[i : i + 64]])).permute(0, 3, 1, 2) / 255.0
            h = torch.from_numpy(np.stack([load_mask(f) == HOLE for f in holes[i : i + 64]]))
            tokens = vqgan.encode(x.float()).flatten(1)
            masked = token_mask_for(h, vqgan.config.latent_resolution, dilate=dilate).flatten(1)
            mask_id = transformer.config.mask_token_id
            logits = forbid_mask_token(transformer(mask_tokens(tokens, masked, mask_id)).float(), mask_id)
            correct += int((logits.argmax(-1) == tokens)[masked].sum())
            total += int(masked.sum())
    return correct / max(total, 1)


# --------------------------------------------------------------------------------------------------
# sets, mask kinds and the run


def parse_set(spec: str) -> TestSet:
    """``--set NAME`` (a known set, data/NAME) or ``--set NAME=DIR`` (a folder in the lab's layout)."""
    name, eq, folder = spec.partition("=")
    if not eq:
        if spec not in KNOWN_SETS:
            raise OptionError(
                f"--set {spec}: not a known set ({', '.join(KNOWN_SETS)}); give NAME=DIR for a folder with test/, "
                "mask64/ and masked_image/"
            )
        folder = str(ROOT / "data" / spec)
    if not name or not folder:
        raise OptionError(f"--set {spec}: expected NAME or NAME=DIR")
    root = Path(folder)
    return TestSet(name, root / "test", root / "mask64", root / "masked_image")


def check_set(s: TestSet) -> None:
    """Every folder of the set exists and pairs one to one (one line naming the folder otherwise)."""
    counts = {folder: len(list_images(folder, f"set {s.name}: folder")) for folder in (s.ref, s.masks, s.images)}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{folder}: {n}" for folder, n in counts.items())
        raise MaskgitError(f"set {s.name}: its folders hold different numbers of images ({listed})")


def kind_masks(s: TestSet, kind: str, out: Path, seed: int) -> tuple[Path, Path]:
    """(masks, masked images) of the set for mask ``kind``: the set's own for ``lab``; otherwise one generated mask
    per ground-truth image (``mask_rng(seed, i)``), written with the masked images to ``out``/mask64 and
    ``out``/masked_image."""
    if kind == "lab":
        return s.masks, s.images
    write_masks(s.ref, out / "mask64", kind, seed, masked_out=out / "masked_image")
    return out / "mask64", out / "masked_image"


def parse_pairs(specs: list[str], option: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` option values as (name, value) pairs."""
    pairs = []
    for spec in specs:
        name, eq, value = spec.partition("=")
        if not (eq and name and value):
            raise OptionError(f"{option} {spec}: expected NAME=VALUE")
        pairs.append((name, value))
    return pairs


def parse_models(specs: list[str]) -> list[tuple[str, str, dict]]:
    """``--model`` values -> (row name, model, inpaint settings): ``default`` (the shipped weights), a model folder,
    or ``NAME=MODEL[,SETTING=VALUE...]`` (a row named NAME with those settings of `maskgit inpaint` changed, e.g.
    ``fill=sharp``); ``none`` alone: no maskgit row. One unnamed model is the row ``maskgit``."""
    from maskgit_cli.decoding.settings import InpaintSettings, option_fields

    if specs == ["none"]:
        return []
    if "none" in specs:
        raise OptionError("--model none: means no maskgit row, so it cannot go with other --model values")
    types = {f.name: str(f.type) for f in option_fields()}  # "int", "float | None", ...
    models = []
    for spec in specs:
        name, sep, rest = spec.partition("=") if "=" in spec.split(",", 1)[0] else ("", "", spec)
        if sep and not name:
            raise OptionError(f"--model {spec}: expected NAME=MODEL[,SETTING=VALUE...]")
        model, *pairs = rest.split(",")
        settings = {}
        for pair in pairs:
            key, eq, value = pair.partition("=")
            key = key.replace("-", "_")
            if not eq or key not in types:
                raise OptionError(f"--model {spec}: {pair!r} is not SETTING=VALUE with a setting of `maskgit inpaint`")
            try:
                settings[key] = _typed(value, types[key])
            except ValueError:
                raise OptionError(f"--model {spec}: {pair!r}: {key} takes {types[key]}") from None
        if not model:
            raise OptionError(f"--model {spec}: no model (default, or a model folder)")
        try:
            InpaintSettings.from_options(**settings)
        except MaskgitError as e:
            raise OptionError(f"--model {spec}: {e}") from None
        models.append((name or (MASKGIT if len(specs) == 1 else model), model, settings))
    names = [m[0] for m in models]
    if len(set(names)) < len(names):
        raise OptionError(f"--model: each row needs its own name, got {', '.join(names)}: give NAME=MODEL")
    return models


def _typed(value: str, kind: str):
    """``value`` as a setting of type ``kind`` (its annotation: "int", "float | None", "bool", "str") takes it;
    ValueError where it cannot."""
    if kind.endswith("| None") and value.lower() == "none":
        return None
    base = kind.split("|")[0].strip()
    if base == "bool":
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(value)
        return value.lower() in ("true", "1")
    return {"int": int, "float": float}.get(base, str)(value)


def load_maskgit(model: str, device: str, settings: dict | None = None):
    """The :class:`~maskgit_cli.Inpainter` of ``model`` (``default``: the shipped weights, otherwise a model folder)
    with the default settings but ``settings``."""
    from maskgit_cli import Inpainter

    return Inpainter.from_pretrained(None if model == "default" else model, device=device, **(settings or {}))


def checked_inputs(args) -> tuple[list[TestSet], list[tuple[str, str]], list[tuple[str, str]]]:
    """The sets, --pred and --accuracy pairs, every option and folder checked before anything is written."""
    args.models = parse_models(args.model or ["default"])
    sets = [parse_set(spec) for spec in args.set]
    if args.images or args.masks or args.ref:
        if not (args.images and args.masks and args.ref):
            raise OptionError("--images, --masks and --ref name one set together: give all three")
        sets.append(TestSet("given", args.ref, args.masks, args.images))
    if not sets:
        raise OptionError("no set to compare: give --set NAME (emoji64, openmoji64) or --set NAME=DIR")
    if len({s.name for s in sets}) < len(sets):
        raise OptionError(f"--set: each set needs its own name, got {', '.join(s.name for s in sets)}")
    preds, accuracy_specs = parse_pairs(args.pred, "--pred"), parse_pairs(args.accuracy, "--accuracy")
    if (preds or accuracy_specs) and len(sets) > 1:
        raise OptionError("--pred and --accuracy belong to one set's lab masks: give one set with them")
    for kind in args.kind:
        if kind not in KINDS:
            raise OptionError(f"--kind {kind}: use one of {', '.join(KINDS)}")
    if preds and "lab" not in args.kind:
        raise OptionError("--pred results are for the set's own masks: add --kind lab")
    for s in sets:
        check_set(s)
    for name, folder in preds:
        list_images(folder, f"--pred {name}: folder")
    return sets, preds, accuracy_specs


def run(args) -> dict:
    """Fill and score every set and kind; returns what compare.json holds."""
    sets, preds, accuracy_specs = checked_inputs(args)
    methods: dict[str, tuple[str, object, bool]] = {}  # name: (folder, batch fill, fills the ground truth)
    pipe = None
    for name, model, settings in args.models:
        pipe = load_maskgit(model, args.device, settings)
        folder = name if name == MASKGIT else f"maskgit-{_folder_name(name)}"
        methods[name] = (folder, by_maskgit(pipe), False)
        if args.true_tokens:
            methods[f"{name}: true tokens"] = (f"{folder}-true-tokens", by_true_tokens(pipe), True)
    for name, (folder, fill) in available_classical().items():
        methods[name] = (folder, per_image(fill), False)

    rows = []
    for s in sets:
        for kind in dict.fromkeys(args.kind):
            where = args.output / s.name / kind
            masks, images = kind_masks(s, kind, where, args.mask_seed)
            folders = {INPUT: (images, None)}
            for name, (folder, fill_batch, truth) in methods.items():
                inputs = s.ref if truth else images
                folders[name] = (where / folder, fill_folder(fill_batch, inputs, masks, where / folder))
            if kind == "lab":
                folders.update({name: (Path(folder), None) for name, folder in preds})
            for name, (folder, seconds) in folders.items():
                scores = score(folder, s.ref, masks)
                rows.append({"set": s.name, "kind": kind, "method": name, **scores, "seconds": seconds})
    accuracy = {}
    for name, files in accuracy_specs:
        transformer, _, vqgan = files.partition(",")
        accuracy[name] = token_accuracy(transformer, vqgan, sets[0].ref, sets[0].masks)
    return {
        "machine": machine(pipe),
        "models": [{"name": n, "model": m, "settings": o} for n, m, o in args.models],
        "mask_seed": args.mask_seed,
        "rows": rows,
        "token_accuracy": accuracy,
    }


def _folder_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def machine(pipe) -> str:
    """Where the seconds were measured: the CPU's name, its cores, and maskgit's device."""
    name = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = f", maskgit on {pipe.device}" if pipe is not None else ""
    return f"{name}, {os.cpu_count()} cores{device}"


# --------------------------------------------------------------------------------------------------
# tables


def _cell(row: dict) -> str:
    return f"{row['psnr_hole']:.2f} / {row['fd_pix8']:.4f}"


def tables(result: dict) -> str:
    """The Markdown tables of a run: per set (its own masks), per set by mask kind, and the sets side by side."""
    rows = result["rows"]
    sets = list(dict.fromkeys(r["set"] for r in rows))
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != INPUT]
    out = []
    for s in sets:
        mine = [r for r in rows if r["set"] == s]
        kinds = list(dict.fromkeys(r["kind"] for r in mine))
        first = [r for r in mine if r["kind"] == kinds[0]]
        out += [
            f"### {s}: {kinds[0]} masks ({first[0]['count']} images, {100 * first[0]['hole_fraction']:.1f}% holes)",
            "",
            "| method | hole PSNR (dB) | hole SSIM | PSNR (dB) | SSIM | FD-pix8 | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in first:
            seconds = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
            out.append(
                f"| {r['method']} | {r['psnr_hole']:.2f} | {r['ssim_hole']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} "
                f"| {r['fd_pix8']:.4f} | {seconds} |"
            )
        out.append("")
        if len(kinds) > 1:
            here = [m for m in methods if any(r["method"] == m for r in mine)]
            out += [
                f"### {s} by mask kind: hole PSNR (dB) / FD-pix8",
                "",
                "| mask kind | holes | " + " | ".join(here) + " |",
                "|---|---|" + "---|" * len(here),
            ]
            for kind in kinds:
                by = {r["method"]: r for r in mine if r["kind"] == kind}
                cells = [_cell(by[m]) if m in by else "" for m in here]
                out.append(f"| {kind} | {100 * by[INPUT]['hole_fraction']:.1f}% | " + " | ".join(cells) + " |")
            seconds = [sum(r["seconds"] or 0.0 for r in mine if r["method"] == m) for m in here]
            out += ["| seconds, all kinds | | " + " | ".join(f"{t:.1f}" for t in seconds) + " |", ""]
    if len(sets) > 1:
        out += [
            "### the sets side by side, their own masks: hole PSNR (dB) / FD-pix8",
            "",
            "| set | " + " | ".join(methods) + " |",
            "|---|" + "---|" * len(methods),
        ]
        for s in sets:
            kind = next(r["kind"] for r in rows if r["set"] == s)
            by = {r["method"]: r for r in rows if r["set"] == s and r["kind"] == kind}
            out.append(f"| {s} | " + " | ".join(_cell(by[m]) if m in by else "" for m in methods) + " |")
        out.append("")
    out.append(f"(seconds: the fill of the whole set, on {result['machine']})")
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--set", action="append", default=[], help="emoji64, openmoji64 or NAME=DIR in the lab layout (repeatable)"
    )
    ap.add_argument("--images", type=Path, help="one set's masked images (holes gray); with --masks and --ref")
    ap.add_argument("--masks", type=Path, help="one set's lab-format masks (0 = hole)")
    ap.add_argument("--ref", type=Path, help="one set's ground-truth images")
    ap.add_argument(
        "--kind", action="append", help=f"mask kinds to compare (repeatable; default all: {', '.join(KINDS)})"
    )
    ap.add_argument(
        "--mask-seed",
        type=int,
        default=MASK_SEED,
        help=f"seed of the generated masks (default {MASK_SEED}: emoji64's test masks are stroke seed 0, val seed 1)",
    )
    ap.add_argument(
        "--model",
        action="append",
        help="maskgit's model folder; 'default' (the default): the shipped weights; 'none': no row; repeatable as "
        "NAME=MODEL[,SETTING=VALUE...] (a row each, e.g. old=weights-old,fill=sharp)",
    )
    ap.add_argument(
        "--true-tokens",
        action="store_true",
        help="add a row per model: the holes filled with the decode of the ground truth's own tokens (a perfect "
        "transformer), what its VQGAN allows at best",
    )
    ap.add_argument("--device", default="auto", help="maskgit's device (auto = cuda if available, else cpu)")
    ap.add_argument("--pred", action="append", default=[], help="NAME=DIR of inpainted images (repeatable)")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--accuracy", action="append", default=[], help="NAME=TRANSFORMER,VQGAN (repeatable)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.kind = args.kind or list(KINDS)
    if args.mask_seed < 0:
        raise OptionError(f"--mask-seed {args.mask_seed}: must be non-negative")
    result = run(args)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "compare.json").write_text(json.dumps(finite_or_none(result), indent=2))
    print(tables(result))
    for name, acc in result["token_accuracy"].items():
        print(f"masked-token accuracy under these masks (--dilate 1, one pass, argmax), {name}: {acc:.4f}")


def cli(argv: list[str] | None = None) -> None:
    """:func:`main` as a command: a :class:`MaskgitError` is one line ``Error: ...`` on stderr and exit 1 (2 for an
    :class:`OptionError`, a bad option value), as `maskgit`'s commands do; ``MASKGIT_DEBUG=1`` shows the traceback."""
    try:
        main(argv)
    except MaskgitError as e:
        if os.environ.get("MASKGIT_DEBUG") == "1":
            raise
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, OptionError) else 1)


if __name__ == "__main__":
    cli()
