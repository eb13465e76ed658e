#!/usr/bin/env python3
"""Build ``data/openmoji64/``: a small out-of-domain inpainting test set from OpenMoji (docs/data.md, "openmoji64").

Source: the npm package ``openmoji@17.0.0`` (CC BY-SA 4.0). It ships no PNGs, only SVGs (``color/svg/*.svg``,
4495 files, viewBox 72x72; ``black/svg`` are the line-art variants) and ``data/openmoji.csv`` (one row per SVG:
hexcode, group, skin tone, author, ...). The tarball is read directly with :mod:`tarfile`; nothing is extracted.

Usage (from the repository root)::

    (cd tools && npm pack openmoji@17.0.0)   # once; or pass --fetch
    pip install resvg-py==0.5.0              # the SVG renderer (a self-contained wheel), pinned for exact rebuilds
    python tools/build_openmoji64.py [--tarball PATH] [--out data/openmoji64] [--fetch]

Output, in the lab's layout (docs/data.md, "The lab's files"), for testing only (no train/val)::

    test/image_000.png ...          RGB 64x64 ground truth, composited onto white
    mask64/mask_000.png ...         one ``stroke`` mask per image (0 = hole, 255 = known), seed 0 as emoji64's test
    masked_image/image_000.png ...  the images with the holes filled gray (128, 128, 128)
    LICENSE, README.md, manifest.json

Selection rule: the candidates are the color SVGs of Unicode emoji without a skin tone: rows of ``openmoji.csv``
with an empty ``skintone`` whose ``group`` is none of EXCLUDED_GROUPS (OpenMoji's own non-Unicode icons
``extras-openmoji``, the non-emoji symbols ``extras-unicode``, and the skin/hair swatches of ``component``);
flags are kept, as in emoji64. They are ordered by ``sha256(SELECT_SALT + ":" + file name)`` (hex, ties by name)
and taken in that order, skipping an image whose pixels equal an already taken one, until COUNT are taken. They
are numbered in that (pseudo-random) order, so any prefix of the set is a random sample.

Conversion: each SVG is rendered with resvg (``resvg_py.svg_to_bytes``, system fonts off; the candidates have no
text) at RENDER_SIZE x RENDER_SIZE (9 x 64) over its whole 72x72 viewBox, composited onto white, and resized to
64x64 with Pillow's Lanczos filter.

The build is deterministic: the selection is a salted hash, the renderer's version is pinned (the build refuses
another), masks come from ``maskgit_cli.data.mask_generator`` with a fixed seed, PNGs are written with fixed Pillow
options, and ``manifest.json`` records the SHA-256 of every file's decoded pixels.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import io
import json
import re
import shutil
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "tools"))  # the emoji64 builder's helpers, shared rather than copied

from build_emoji64 import hash_written, is_previous_build, log, sha256_file, tarball_args  # noqa: E402

from maskgit_cli.data import mask_generator as masks  # noqa: E402
from maskgit_cli.data.images import to_rgb  # noqa: E402

PACKAGE = "openmoji"
VERSION = "17.0.0"
TARBALL_NAME = f"{PACKAGE}-{VERSION}.tgz"
TARBALL_SHA256 = "55ee7d13485dec86e9f38c1f3a645a13382d33ff97c0cd845ee824b0aef45e68"
SVG_PREFIX = "package/color/svg/"
CSV_MEMBER = "package/data/openmoji.csv"
LICENSE_MEMBER = "package/LICENSE.txt"
LICENSE_SHA256 = "5e436ff8ffbb77d8607220e9bce20c8915d860010feeb6c1ebef5a85688e9b39"  # CC BY-SA 4.0 legal code
DATASET = "openmoji64"
MANIFEST_FORMAT = 1

RENDERER = "resvg-py"
RENDERER_VERSION = "0.5.0"
RENDER_SIZE = 576  # 9 x 64
SIZE = 64
COUNT = 200
SELECT_SALT = "openmoji64-select-seed-0"
EXCLUDED_GROUPS = ("component", "extras-openmoji", "extras-unicode")
MASK_KIND = "stroke"
MASK_SEED = 0  # as emoji64's test masks: mask i of both sets is the same mask

DEFAULT_OUT = REPO / "data" / DATASET


def selection_key(file_name: str) -> tuple[str, str]:
    """Sort key of the selection: (sha256(SELECT_SALT + ":" + file name) in hex, file name)."""
    return hashlib.sha256(f"{SELECT_SALT}:{file_name}".encode()).hexdigest(), file_name


def load_renderer():
    """``resvg_py`` at the pinned version, or exit with how to get it."""
    try:
        import resvg_py
    except ImportError:
        raise SystemExit(
            f"error: the SVG renderer is missing; install it with: pip install {RENDERER}=={RENDERER_VERSION}"
        ) from None
    version = importlib.metadata.version(RENDERER)
    if version != RENDERER_VERSION:
        raise SystemExit(
            f"error: {RENDERER} {version} is installed; this build is pinned to {RENDERER_VERSION} so that a "
            f"rebuild reproduces the committed pixels: pip install {RENDERER}=={RENDERER_VERSION}"
        )
    return resvg_py


def render(resvg_py, svg: str) -> Image.Image:
    """An OpenMoji SVG -> RGB 64x64 (:func:`rasterize` at RENDER_SIZE^2)."""
    return rasterize(resvg_py, svg, RENDER_SIZE, SIZE)


def conversion(render_size: int, viewbox: str) -> dict:
    """How :func:`rasterize` made the pixels, as a manifest records it (``viewbox``: what part of the SVG it drew)."""
    return {
        "renderer": f"{RENDERER}=={RENDERER_VERSION} (resvg), skip_system_fonts",
        "render_size": [render_size, render_size],
        "viewbox": viewbox,
        "background": "white",
        "resize": "PIL.Image.Resampling.LANCZOS",
    }


def rasterize(resvg_py, svg: str, render_size: int, size: int) -> Image.Image:
    """SVG text -> RGB size^2, as every emoji build makes its pixels: resvg renders render_size^2 (the whole viewBox),
    composited onto white, Lanczos down to size."""
    png = resvg_py.svg_to_bytes(svg_string=svg, width=render_size, height=render_size, skip_system_fonts=True)
    with Image.open(io.BytesIO(bytes(png))) as img:
        img.load()
        if img.size != (render_size, render_size):
            raise SystemExit(f"error: internal: resvg rendered {img.size}, not {render_size}x{render_size}.")
        rgb = to_rgb(img)
    return rgb.resize((size, size), Image.Resampling.LANCZOS)


def read_candidates(tar: tarfile.TarFile) -> tuple[list[dict], Counter]:
    """The rows of ``openmoji.csv`` that the selection may take (no skin tone, group not excluded), each with its
    ``file`` name; and how many rows were left out, by reason."""
    rows = list(csv.DictReader(io.TextIOWrapper(tar.extractfile(CSV_MEMBER), encoding="utf-8")))
    svgs = {m.name[len(SVG_PREFIX) :] for m in tar.getmembers() if m.isfile() and m.name.startswith(SVG_PREFIX)}
    left_out: Counter = Counter()
    candidates = []
    for row in rows:
        file_name = f"{row['hexcode']}.svg"
        if file_name not in svgs:
            raise SystemExit(f"error: {CSV_MEMBER} lists {row['hexcode']}, but {SVG_PREFIX}{file_name} is missing.")
        if row["group"] in EXCLUDED_GROUPS:
            left_out[f"group {row['group']}"] += 1
        elif row["skintone"]:
            left_out["skin-tone variant"] += 1
        else:
            candidates.append({**row, "file": file_name})
    listed = {f"{row['hexcode']}.svg" for row in rows}
    if svgs - listed:
        raise SystemExit(f"error: {len(svgs - listed)} SVGs are not in {CSV_MEMBER}, e.g. {sorted(svgs - listed)[0]}.")
    return candidates, left_out


def select(tar: tarfile.TarFile, candidates: list[dict], resvg_py) -> tuple[list[tuple[dict, Image.Image]], list]:
    """Walk the candidates in ``selection_key`` order, render each, skip pixel duplicates, stop at COUNT."""
    taken: list[tuple[dict, Image.Image]] = []
    skipped: list[list[str]] = []  # [skipped file, the taken file with the same pixels]
    first_of: dict[str, str] = {}
    for row in sorted(candidates, key=lambda r: selection_key(r["file"])):
        svg = tar.extractfile(SVG_PREFIX + row["file"]).read().decode("utf-8")
        if re.search(r"<(text|image|foreignObject)\b", svg):
            raise SystemExit(f"error: {row['file']} has text or an embedded image, which this build does not render.")
        image = render(resvg_py, svg)
        digest = hashlib.sha256(np.asarray(image).tobytes()).hexdigest()
        if digest in first_of:
            skipped.append([row["file"], first_of[digest]])
            log(f"skipped {row['file']}: the same pixels as {first_of[digest]}")
            continue
        first_of[digest] = row["file"]
        row["source_sha256"] = hashlib.sha256(svg.encode("utf-8")).hexdigest()
        taken.append((row, image))
        if len(taken) == COUNT:
            break
    if len(taken) < COUNT:
        raise SystemExit(f"error: only {len(taken)} distinct candidates, fewer than {COUNT}.")
    return taken, skipped


def license_text(tar: tarfile.TarFile) -> str:
    text = tar.extractfile(LICENSE_MEMBER).read().decode("utf-8")
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != LICENSE_SHA256 or not text.startswith(
        "Attribution-ShareAlike 4.0 International"
    ):
        raise SystemExit(f"error: {LICENSE_MEMBER} is not the CC BY-SA 4.0 text this build expects.")
    return text


def build(tarball: Path, out: Path) -> dict:
    tar_sha = sha256_file(tarball)
    if tar_sha != TARBALL_SHA256:
        raise SystemExit(
            f"error: {tarball} has sha256 {tar_sha}, expected {TARBALL_SHA256} ({PACKAGE}@{VERSION}); "
            f"re-download it with: npm pack {PACKAGE}@{VERSION}"
        )
    resvg_py = load_renderer()
    with tarfile.open(tarball, "r:gz") as tar:
        candidates, left_out = read_candidates(tar)
        taken, skipped = select(tar, candidates, resvg_py)
        cc_by_sa = license_text(tar)

    out = out.resolve()
    if out.exists() and any(out.iterdir()) and not is_previous_build(out, DATASET):
        raise SystemExit(f"error: {out} exists and is not an {DATASET} build (no matching manifest.json).")
    stage = out.with_name(out.name + ".building")
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "test").mkdir(parents=True)

    files: dict[str, dict[str, str]] = {}
    sources: dict[str, dict[str, str]] = {}
    for i, (row, image) in enumerate(taken):
        rel = f"test/image_{i:03d}.png"
        image.save(stage / rel, **masks.PNG_OPTIONS)
        sources[rel] = {
            "source": SVG_PREFIX[len("package/") :] + row["file"],
            "source_sha256": row["source_sha256"],
            "annotation": row["annotation"],
            "group": row["group"],
            "author": row["openmoji_author"],
        }
        files[rel] = sources[rel]
    summary = masks.write_masks(
        stage / "test", stage / "mask64", MASK_KIND, MASK_SEED, masked_out=stage / "masked_image"
    )
    for i in range(len(taken)):
        src = sources[f"test/image_{i:03d}.png"]
        files[f"mask64/{masks.mask_name(i, len(taken))}"] = {"source": src["source"]}
        files[f"masked_image/image_{i:03d}.png"] = {"source": src["source"]}

    hash_written(stage, files)

    groups = Counter(row["group"] for row, _ in taken)
    authors = Counter(row["openmoji_author"] for row, _ in taken)
    counts = {"test": len(taken), "mask64": len(taken), "masked_image": len(taken), "candidates": len(candidates)}
    manifest = {
        "dataset": DATASET,
        "format": MANIFEST_FORMAT,
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "tarball": TARBALL_NAME,
            "tarball_sha256": tar_sha,
            "images": f"{SVG_PREFIX[len('package/') :]}*.svg",
            "metadata": CSV_MEMBER[len("package/") :],
            "license": "CC BY-SA 4.0",
        },
        "selection": {
            "rule": "candidates: openmoji.csv rows with empty skintone and group not in excluded_groups; "
            "order by sha256(salt:file name) hex, then file name; take in order, skipping pixel duplicates "
            "of a taken image, until count",
            "salt": SELECT_SALT,
            "count": COUNT,
            "excluded_groups": list(EXCLUDED_GROUPS),
            "left_out": dict(sorted(left_out.items())),
            "skipped_duplicates": skipped,
            "groups": dict(sorted(groups.items())),
        },
        "conversion": conversion(RENDER_SIZE, "whole (0 0 72 72)"),
        "image_size": [SIZE, SIZE],
        "masks": {"kind": MASK_KIND, "seed": MASK_SEED, "rng": "numpy default_rng([seed, index])"},
        "pixel_hash": "sha256 of the decoded pixels: numpy.asarray(PIL image).tobytes(), mode as listed",
        "counts": counts,
        "files": files,
    }
    (stage / "manifest.json").write_text(_dump_manifest(manifest), encoding="utf-8")
    (stage / "LICENSE").write_text(cc_by_sa, encoding="utf-8")
    readme = README.format(
        package=PACKAGE,
        version=VERSION,
        tarball=TARBALL_NAME,
        sha=tar_sha,
        n_candidates=len(candidates),
        n_skin=left_out["skin-tone variant"],
        excluded=", ".join(f"`{g}`" for g in EXCLUDED_GROUPS),
        n_excluded=sum(v for k, v in left_out.items() if k.startswith("group ")),
        salt=SELECT_SALT,
        count=COUNT,
        n_skipped=len(skipped),
        groups=", ".join(f"{g} {n}" for g, n in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))),
        authors=", ".join(f"{a} ({n})" for a, n in sorted(authors.items(), key=lambda kv: (-kv[1], kv[0]))),
        renderer=RENDERER,
        renderer_version=RENDERER_VERSION,
        render_size=RENDER_SIZE,
        kind=MASK_KIND,
        seed=MASK_SEED,
        hole_mean=summary["hole_fraction"]["mean"] * 100,
        hole_min=summary["hole_fraction"]["min"] * 100,
        hole_max=summary["hole_fraction"]["max"] * 100,
        pillow=PIL.__version__,
        numpy=np.__version__,
        n=len(taken),
    )
    (stage / "README.md").write_text(readme, encoding="utf-8")

    if out.exists():
        shutil.rmtree(out)
    stage.replace(out)
    return manifest


def _dump_manifest(manifest: dict) -> str:
    """Readable, diff-friendly JSON: one line per file entry."""
    head = {k: v for k, v in manifest.items() if k != "files"}
    lines = json.dumps(head, indent=2, ensure_ascii=False)[:-2].rstrip() + ',\n  "files": {\n'
    entries = [
        f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in sorted(manifest["files"].items())
    ]
    return lines + ",\n".join(entries) + "\n  }\n}\n"


def main(argv: list[str] | None = None) -> int:
    args = tarball_args(__doc__, argv, DEFAULT_OUT, PACKAGE, VERSION, TARBALL_NAME)
    if args is None:
        return 1
    manifest = build(args.tarball, args.out)
    c = manifest["counts"]
    log(
        f"wrote {args.out}: test {c['test']}, mask64 {c['mask64']}, masked_image {c['masked_image']} "
        f"(of {c['candidates']} candidates; {len(manifest['selection']['skipped_duplicates'])} duplicates skipped)"
    )
    return 0


README = """\
# openmoji64: an out-of-domain inpainting test set in the lab's layout

{n} emoji of another artwork style than emoji64's Noto Emoji, as 64x64 RGB images with stroke masks, in the layout of
the NYCU "MaskGIT for image inpainting" lab data (`masked_image/`, `mask64/`; here plus `test/` with the ground
truth). It is only a test set (no `train/`, no `val/`): nothing of `maskgit` is trained or selected on it. It
measures how the default weights (trained on emoji64) do out of domain, e.g. against OpenCV's Telea with
`tools/compare_baselines.py` (docs/data.md, "openmoji64 (out of domain)").

## Attribution and license

All emojis designed by [OpenMoji](https://openmoji.org/) – the open-source emoji and icon project.
License: [CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/).

- Title: "OpenMoji – the open-source emoji and icon project" (https://openmoji.org), by Benedikt Groß,
  Daniel Utz and the OpenMoji contributors (https://openmoji.org/about/#authors--team).
- License: Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0),
  https://creativecommons.org/licenses/by-sa/4.0/; the legal code, as shipped in the package (`LICENSE.txt`),
  is in `LICENSE`.
- Designers of the {n} emoji used here (`openmoji_author` in the package's `data/openmoji.csv`; each file's designer
  is listed under `author` in `manifest.json`): {authors}.
- Source: the SVGs in `color/svg/` of the npm package `{package}@{version}` (https://github.com/hfg-gmuend/openmoji).
- Changes made (CC BY-SA 4.0, section 3(a)(1)(B)): a selection of the emoji was rendered from SVG to raster,
  composited onto a white background, downscaled to 64x64 pixels and saved as 8-bit RGB PNG (`test/`); masks
  were added (`mask64/`), and `masked_image/` has the pixels under each mask replaced by gray (128, 128, 128).
  This README and `manifest.json` were generated by `tools/build_openmoji64.py`.
- This adapted material (the images, masks and masked images in this folder) is licensed under the same license,
  CC BY-SA 4.0 (section 3(b)). No warranties are given.

## Provenance

- Source: npm `{package}@{version}`, tarball `{tarball}`, sha256 `{sha}`
  (get it with `cd tools && npm pack {package}@{version}`).
- Command: `python tools/build_openmoji64.py` (defaults: `--tarball tools/{tarball} --out data/openmoji64`);
  built with {renderer} {renderer_version} (pinned; the build refuses another version), Pillow {pillow},
  numpy {numpy}.
- Candidates: the {n_candidates} rows of `data/openmoji.csv` (one per color SVG) without a skin tone and outside
  the groups {excluded}; left out: {n_skin} skin-tone variants and {n_excluded} emoji of those groups (OpenMoji's own
  icons, non-emoji Unicode symbols, skin and hair swatches). Flags are candidates, as in emoji64.
- Selection: the candidates ordered by `sha256("{salt}:" + SVG file name)` (hex digest, ties by file name), taken
  in that order until {count} are taken; a candidate whose pixels (after the conversion below) equal an already
  taken image's is skipped ({n_skipped} skipped, listed under `selection.skipped_duplicates` in `manifest.json`).
  Images are numbered in that order, so any prefix is a random sample. Groups taken: {groups}.
- Conversion: each SVG rendered with resvg ({renderer} {renderer_version}, system fonts off; no candidate has text)
  over its whole 72x72 viewBox at {render_size}x{render_size} with transparency, composited onto white, resized to
  64x64 with Pillow's Lanczos filter, saved as RGB PNG. OpenMoji draws inside a padded 72x72 grid with black
  outlines, so its emoji look smaller and lined compared with emoji64's.
- Masks: one `{kind}` mask per image from `maskgit_cli.data.mask_generator.generate_mask` with the generator
  `numpy.random.default_rng([{seed}, index])` (seed {seed}, as emoji64's test masks, so `mask64/mask_007.png` here
  equals emoji64's), i.e. `maskgit_cli.data.mask_generator.write_masks(test, mask64, "{kind}", {seed},
  masked_out=masked_image)`. Free-form brush strokes, hole fraction in [15%, 40%]
  (here mean {hole_mean:.1f}%, min {hole_min:.1f}%, max {hole_max:.1f}%).
- `manifest.json` lists every PNG with the sha256 of its decoded pixels (`numpy.asarray(image).tobytes()`), its mode,
  its source SVG (with the SVG's sha256, annotation, group and designer).

## Contents

| folder | files | content |
| --- | --- | --- |
| `test/` | {n} | `image_000.png` ...: RGB 64x64 ground truth |
| `mask64/` | {n} | `mask_000.png` ...: 8-bit grayscale, 0 = hole to inpaint, 255 = known |
| `masked_image/` | {n} | `image_000.png` ...: the test images, holes filled gray (128, 128, 128) |

Pairing is by sorted file name, as in the lab: `masked_image/image_007.png` goes with `mask64/mask_007.png`
and `test/image_007.png`.
"""

if __name__ == "__main__":
    sys.exit(main())
