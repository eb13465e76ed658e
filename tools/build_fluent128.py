#!/usr/bin/env python3
"""Build ``data/fluent128/``: a small 128x128 train/val/test set from Microsoft's Fluent Emoji Flat (docs/data.md,
"fluent128"), for ``maskgit fit --resolution 128``, its tests and docs/fit.md.

Source: the npm package ``@iconify-json/fluent-emoji-flat@1.2.6`` (MIT, Microsoft Corporation; the package's
``info.json``). It holds the SVGs in Iconify JSON: ``icons.json`` maps an icon name (``thumbs-up``,
``thumbs-up-dark``, ...) to the SVG ``body`` of a 32x32 viewBox; ``metadata.json`` lists the names per category.
The tarball is read directly with :mod:`tarfile`; nothing is extracted.

Usage (from the repository root)::

    (cd tools && npm pack @iconify-json/fluent-emoji-flat@1.2.6)   # once; or pass --fetch
    pip install resvg-py==0.5.0                                    # pinned, as for openmoji64
    python tools/build_fluent128.py [--tarball PATH] [--out data/fluent128] [--fetch]

Output::

    train/image_000.png ...         RGB 128x128, composited onto white (TRAIN_COUNT)
    val/image_000.png ...           validation images (VAL_COUNT), for fit's --val
    val_mask128/mask_000.png ...    one ``stroke`` mask per val image (seed VAL_MASK_SEED), for fit's --val-masks
    test/image_000.png ...          the test set's ground truth (TEST_COUNT)
    mask128/mask_000.png ...        one ``stroke`` mask per test image (seed MASK_SEED; 0 = hole, 255 = known)
    masked_image/image_000.png ...  the test images with the holes filled gray (128, 128, 128)
    LICENSE, README.md, manifest.json

Groups and split: skin-tone variants (``-light``, ``-medium-light``, ``-medium``, ``-medium-dark``, ``-dark`` after
a name that is itself an icon), mirrored ones (``-facing-right``) and the man/woman/person forms of one emoji
(``man-pilot``, ``pilot``, ``woman-pilot``) form one *group*, keyed by the name with those parts removed. The
candidates are the visible 32x32 icons; each group is represented by one image only, its member of smallest
``selection_key``, so no emoji is on two sides in any form. Groups are ordered by
``sha256(SELECT_SALT + ":" + group key)`` (hex, ties by key) and taken in that order, skipping a group whose image's
pixels equal an already taken one, into test/, then val/, then train/ until each is full. Numbering follows that
(pseudo-random) order, so any prefix of a split is a random sample.

Conversion: each icon's body is wrapped in ``<svg viewBox="0 0 32 32">``, rendered with resvg (the pinned renderer
of ``build_openmoji64``, system fonts off; no icon has text) at RENDER_SIZE x RENDER_SIZE (4 x 128), composited onto
white and resized to 128x128 with Pillow's Lanczos filter.
"""

from __future__ import annotations

import hashlib
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

sys.path.insert(0, str(REPO / "tools"))  # the other builders' helpers, shared rather than copied

from build_emoji64 import hash_written, is_previous_build, log, sha256_file, tarball_args  # noqa: E402
from build_openmoji64 import RENDERER, RENDERER_VERSION, _dump_manifest, conversion, load_renderer, rasterize  # noqa: E402

from maskgit_cli.data import mask_generator as masks  # noqa: E402

PACKAGE = "@iconify-json/fluent-emoji-flat"
VERSION = "1.2.6"
TARBALL_NAME = f"iconify-json-fluent-emoji-flat-{VERSION}.tgz"
TARBALL_SHA256 = "7d064769dee690815f823bc5bcc511d957198caf9f5edd8dd9c1aa48a6aeb175"
ICONS_MEMBER = "package/icons.json"
META_MEMBER = "package/metadata.json"
INFO_MEMBER = "package/info.json"
INFO_SHA256 = "9cd2f13e7039b1d1eeeef92af63b07701ba1b242aadc3c0957eae9c98dca7771"
DATASET = "fluent128"
MANIFEST_FORMAT = 1

VIEWBOX = 32
SIZE = 128
RENDER_SIZE = 512  # 4 x 128
TEST_COUNT, VAL_COUNT, TRAIN_COUNT = 100, 100, 800
SPLITS = (("test", TEST_COUNT), ("val", VAL_COUNT), ("train", TRAIN_COUNT))
SELECT_SALT = "fluent128-select-seed-0"
TONES = ("medium-dark", "medium-light", "dark", "light", "medium")  # longest first
GENDER = re.compile(r"^(man|woman|person)-|-(man|woman|person)$")
MIRROR = "-facing-right"
MASK_KIND = "stroke"
MASK_SEED = 0  # test masks (mask128/)
VAL_MASK_SEED = 1  # val masks (val_mask128/), other masks than the test's
MASKS = f"mask{SIZE}"
VAL_MASKS = f"val_mask{SIZE}"

DEFAULT_OUT = REPO / "data" / DATASET


def selection_key(text: str) -> tuple[str, str]:
    """Sort key: (sha256(SELECT_SALT + ":" + text) in hex, text)."""
    return hashlib.sha256(f"{SELECT_SALT}:{text}".encode()).hexdigest(), text


def base_name(name: str, icons: dict) -> str:
    """The name without a skin-tone suffix (only when what is left is an icon too: not ``traffic-light``)."""
    for tone in TONES:
        if name.endswith("-" + tone) and name[: -len(tone) - 1] in icons:
            return name[: -len(tone) - 1]
    return name


def group_key(name: str, icons: dict) -> str:
    """The emoji a name is a form of: skin tone, ``-facing-right`` and man/woman/person removed."""
    key = base_name(name, icons)
    key = key.removesuffix(MIRROR)
    return GENDER.sub("", key) or key


def render(resvg_py, body: str) -> Image.Image:
    """An Iconify body -> RGB SIZE^2: wrap in a 32x32 viewBox, render RENDER_SIZE^2, onto white, Lanczos to SIZE."""
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{RENDER_SIZE}" height="{RENDER_SIZE}" '
        f'viewBox="0 0 {VIEWBOX} {VIEWBOX}">{body}</svg>'
    )
    return rasterize(resvg_py, svg, RENDER_SIZE, SIZE)


def read_package(tar: tarfile.TarFile) -> tuple[dict, dict, dict]:
    """(icons, category of each name, info) from the tarball; refuses an info.json other than the pinned one."""
    info_bytes = tar.extractfile(INFO_MEMBER).read()
    if hashlib.sha256(info_bytes).hexdigest() != INFO_SHA256:
        raise SystemExit(f"error: {INFO_MEMBER} is not the one this build expects (its license statement).")
    info = json.loads(info_bytes)
    data = json.loads(tar.extractfile(ICONS_MEMBER).read())
    if (data.get("width"), data.get("height")) != (VIEWBOX, VIEWBOX):
        raise SystemExit(f"error: {ICONS_MEMBER} is not {VIEWBOX}x{VIEWBOX}.")
    category = {}
    for cat, names in json.loads(tar.extractfile(META_MEMBER).read())["categories"].items():
        for name in names:
            category.setdefault(name, cat)
    return data["icons"], category, info


def candidate_groups(icons: dict) -> tuple[dict[str, list[str]], Counter]:
    """Group key -> the visible 32x32 icons of that group; and how many icons were left out, by reason."""
    left_out: Counter = Counter()
    groups: dict[str, list[str]] = {}
    for name, icon in icons.items():
        if icon.get("hidden"):
            left_out["hidden"] += 1
        elif icon.get("width", VIEWBOX) != VIEWBOX or icon.get("height", VIEWBOX) != VIEWBOX:
            left_out["not 32x32"] += 1
        elif re.search(r"<(text|image|foreignObject)\b", icon["body"]):
            raise SystemExit(f"error: icon {name} has text or an embedded image, which this build does not render.")
        else:
            groups.setdefault(group_key(name, icons), []).append(name)
    return groups, left_out


def select(icons: dict, groups: dict[str, list[str]], resvg_py) -> tuple[dict[str, list], list]:
    """Walk the groups in selection order, render each group's image, skip pixel duplicates, fill the splits."""
    taken: dict[str, list] = {split: [] for split, _ in SPLITS}
    wanted = [split for split, count in SPLITS for _ in range(count)]
    skipped: list[list[str]] = []  # [skipped icon, the taken icon with the same pixels]
    first_of: dict[str, str] = {}
    for key in sorted(groups, key=selection_key):
        if len(first_of) == len(wanted):
            break
        members = sorted(groups[key], key=selection_key)
        name = members[0]
        image = render(resvg_py, icons[name]["body"])
        digest = hashlib.sha256(np.asarray(image).tobytes()).hexdigest()
        if digest in first_of:
            skipped.append([name, first_of[digest]])
            log(f"skipped {name}: the same pixels as {first_of[digest]}")
            continue
        split = wanted[len(first_of)]
        first_of[digest] = name
        body_sha = hashlib.sha256(icons[name]["body"].encode("utf-8")).hexdigest()
        taken[split].append(({"icon": name, "group": key, "members": len(members), "body_sha256": body_sha}, image))
    if len(first_of) < len(wanted):
        raise SystemExit(f"error: only {len(first_of)} distinct groups, fewer than {len(wanted)}.")
    return taken, skipped


def license_text(info: dict) -> str:
    lic, author = info["license"], info["author"]
    return LICENSE.format(
        package=PACKAGE,
        version=VERSION,
        title=lic["title"],
        spdx=lic["spdx"],
        url=lic["url"],
        author=author["name"],
        author_url=author["url"],
        info=json.dumps({"author": author, "license": lic}, indent=2),
    )


def build(tarball: Path, out: Path) -> dict:
    tar_sha = sha256_file(tarball)
    if tar_sha != TARBALL_SHA256:
        raise SystemExit(
            f"error: {tarball} has sha256 {tar_sha}, expected {TARBALL_SHA256} ({PACKAGE}@{VERSION}); "
            f"re-download it with: npm pack {PACKAGE}@{VERSION}"
        )
    resvg_py = load_renderer()
    with tarfile.open(tarball, "r:gz") as tar:
        icons, category, info = read_package(tar)
    groups, left_out = candidate_groups(icons)
    taken, skipped = select(icons, groups, resvg_py)

    out = out.resolve()
    if out.exists() and any(out.iterdir()) and not is_previous_build(out, DATASET):
        raise SystemExit(f"error: {out} exists and is not a {DATASET} build (no matching manifest.json).")
    stage = out.with_name(out.name + ".building")
    if stage.exists():
        shutil.rmtree(stage)

    files: dict[str, dict] = {}
    for split, _ in SPLITS:
        (stage / split).mkdir(parents=True)
        for i, (row, image) in enumerate(taken[split]):
            rel = f"{split}/image_{i:03d}.png"
            image.save(stage / rel, **masks.PNG_OPTIONS)
            files[rel] = {**row, "category": category.get(row["icon"], "")}
    summaries = {
        "test": masks.write_masks(
            stage / "test", stage / MASKS, MASK_KIND, MASK_SEED, masked_out=stage / "masked_image"
        ),
        "val": masks.write_masks(stage / "val", stage / VAL_MASKS, MASK_KIND, VAL_MASK_SEED),
    }
    for i, (row, _) in enumerate(taken["test"]):
        files[f"{MASKS}/{masks.mask_name(i, TEST_COUNT)}"] = {"icon": row["icon"]}
        files[f"masked_image/image_{i:03d}.png"] = {"icon": row["icon"]}
    for i, (row, _) in enumerate(taken["val"]):
        files[f"{VAL_MASKS}/{masks.mask_name(i, VAL_COUNT)}"] = {"icon": row["icon"]}

    hash_written(stage, files)

    counts = {split: count for split, count in SPLITS}
    counts.update({MASKS: TEST_COUNT, "masked_image": TEST_COUNT, VAL_MASKS: VAL_COUNT, "groups": len(groups)})
    categories = {
        split: dict(sorted(Counter(category.get(row["icon"], "") for row, _ in taken[split]).items()))
        for split, _ in SPLITS
    }
    manifest = {
        "dataset": DATASET,
        "format": MANIFEST_FORMAT,
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "tarball": TARBALL_NAME,
            "tarball_sha256": tar_sha,
            "images": ICONS_MEMBER[len("package/") :],
            "metadata": META_MEMBER[len("package/") :],
            "license": info["license"]["spdx"],
            "author": info["author"]["name"],
        },
        "selection": {
            "rule": "candidates: visible 32x32 icons, grouped by name without skin tone, -facing-right and "
            "man/woman/person; one image per group (its member of smallest sha256(salt:name)); groups ordered "
            "by sha256(salt:group key) hex, then key; taken in order, skipping pixel duplicates of a taken image, "
            "into test, val, train until full",
            "salt": SELECT_SALT,
            "counts": {split: count for split, count in SPLITS},
            "tones": list(TONES),
            "left_out": dict(sorted(left_out.items())),
            "skipped_duplicates": skipped,
            "categories": categories,
        },
        "conversion": conversion(RENDER_SIZE, f"0 0 {VIEWBOX} {VIEWBOX}"),
        "image_size": [SIZE, SIZE],
        "masks": {
            MASKS: {"kind": MASK_KIND, "seed": MASK_SEED, "images": "test"},
            VAL_MASKS: {"kind": MASK_KIND, "seed": VAL_MASK_SEED, "images": "val"},
            "rng": "numpy default_rng([seed, index])",
        },
        "pixel_hash": "sha256 of the decoded pixels: numpy.asarray(PIL image).tobytes(), mode as listed",
        "counts": counts,
        "files": files,
    }
    (stage / "manifest.json").write_text(_dump_manifest(manifest), encoding="utf-8")
    (stage / "LICENSE").write_text(license_text(info), encoding="utf-8")
    hole = summaries["test"]["hole_fraction"]
    readme = README.format(
        package=PACKAGE,
        version=VERSION,
        tarball=TARBALL_NAME,
        sha=tar_sha,
        n_icons=len(icons),
        n_groups=len(groups),
        left_out=", ".join(f"{n} {k}" for k, n in sorted(left_out.items())),
        salt=SELECT_SALT,
        n_skipped=len(skipped),
        renderer=RENDERER,
        renderer_version=RENDERER_VERSION,
        render_size=RENDER_SIZE,
        kind=MASK_KIND,
        seed=MASK_SEED,
        val_seed=VAL_MASK_SEED,
        hole_mean=hole["mean"] * 100,
        hole_min=hole["min"] * 100,
        hole_max=hole["max"] * 100,
        pillow=PIL.__version__,
        numpy=np.__version__,
        n_test=TEST_COUNT,
        n_val=VAL_COUNT,
        n_train=TRAIN_COUNT,
        masks_dir=MASKS,
        val_masks_dir=VAL_MASKS,
    )
    (stage / "README.md").write_text(readme, encoding="utf-8")

    if out.exists():
        shutil.rmtree(out)
    stage.replace(out)
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = tarball_args(__doc__, argv, DEFAULT_OUT, PACKAGE, VERSION, TARBALL_NAME)
    if args is None:
        return 1
    manifest = build(args.tarball, args.out)
    c = manifest["counts"]
    log(
        f"wrote {args.out}: train {c['train']}, val {c['val']}, test {c['test']} (of {c['groups']} groups; "
        f"{len(manifest['selection']['skipped_duplicates'])} duplicates skipped)"
    )
    return 0


LICENSE = """\
The images in this folder are rendered from the SVGs of Fluent Emoji Flat by {author} ({author_url}),
as distributed in the npm package {package}@{version}.

License: {title} (SPDX: {spdx}), {url}

The package ships no license text of its own; its info.json states the author and the license as follows
(copied verbatim):

{info}

The license, as published by microsoft/fluentui-emoji (its LICENSE file: the standard MIT text with Microsoft's
copyright line; the package itself ships no copy, so it is reproduced here as the license requires). It applies to
these images, which are a rendering (raster, composited onto white, resized to 128x128) of that material, with
masks added:

MIT License

Copyright (c) Microsoft Corporation.

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

README = """\
# fluent128: a small 128x128 data set for `maskgit fit`

{n_train} training, {n_val} validation and {n_test} test images, 128x128 RGB, rendered from Microsoft's
[Fluent Emoji](https://github.com/microsoft/fluentui-emoji) (the flat style), with stroke masks for the
validation and test images. It is the data of the tests and of docs/fit.md: a model of your own at 128x128 with
`maskgit fit --resolution 128 --downsample 8` (docs/data.md, "fluent128").

## Attribution and license

Fluent Emoji by Microsoft Corporation, MIT license (see `LICENSE`: the package's license statement and the MIT text).
Source: the npm package `{package}@{version}` (Iconify JSON of the SVGs). The images here are a rendering of those
SVGs (raster, onto white, 128x128), with masks added; this README and `manifest.json` were generated by
`tools/build_fluent128.py`.

## Provenance

- Source: npm `{package}@{version}`, tarball `{tarball}`, sha256 `{sha}`
  (get it with `cd tools && npm pack {package}@{version}`).
- Command: `python tools/build_fluent128.py` (defaults: `--tarball tools/{tarball} --out data/fluent128`);
  built with {renderer} {renderer_version} (pinned; the build refuses another version), Pillow {pillow},
  numpy {numpy}.
- Candidates: the visible 32x32 icons of `icons.json` ({n_icons} icons; left out: {left_out}).
- Groups: skin-tone variants (`-light`, `-medium-light`, `-medium`, `-medium-dark`, `-dark`), mirrored ones
  (`-facing-right`) and the man/woman/person forms of one emoji form one group ({n_groups} groups). Each group is
  represented by one image only, so no emoji appears in two splits in any form.
- Selection: the groups ordered by `sha256("{salt}:" + group key)` (hex digest, ties by key) and taken in that order
  into `test/`, then `val/`, then `train/`; a group whose image's pixels equal a taken image's is skipped
  ({n_skipped} skipped, listed in `manifest.json`). Images are numbered in that order, so any prefix of a split
  is a random sample.
- Conversion: each icon's SVG body in a `0 0 32 32` viewBox, rendered with resvg at {render_size}x{render_size}
  with transparency, composited onto white, resized to 128x128 with Pillow's Lanczos filter, saved as RGB PNG.
- Masks: one `{kind}` mask per image from `maskgit_cli.data.mask_generator.write_masks` with
  `numpy.random.default_rng([seed, index])`: seed {seed} for `{masks_dir}/` (test; hole fraction mean
  {hole_mean:.1f}%, min {hole_min:.1f}%, max {hole_max:.1f}%), seed {val_seed} for `{val_masks_dir}/` (val).
- `manifest.json` lists every PNG with the sha256 of its decoded pixels (`numpy.asarray(image).tobytes()`), its
  mode, and its source icon (name, group, category, sha256 of the SVG body).

## Contents

| folder | files | content |
| --- | --- | --- |
| `train/` | {n_train} | `image_000.png` ...: RGB 128x128 |
| `val/` | {n_val} | `image_000.png` ...: RGB 128x128 (`maskgit fit --val`) |
| `{val_masks_dir}/` | {n_val} | `mask_000.png` ...: 0 = hole, 255 = known (`maskgit fit --val-masks`) |
| `test/` | {n_test} | `image_000.png` ...: RGB 128x128 ground truth |
| `{masks_dir}/` | {n_test} | `mask_000.png` ...: 0 = hole, 255 = known |
| `masked_image/` | {n_test} | `image_000.png` ...: the test images, holes filled gray (128, 128, 128) |

Pairing is by sorted file name: `masked_image/image_007.png` goes with `{masks_dir}/mask_007.png` and
`test/image_007.png`.
"""

if __name__ == "__main__":
    sys.exit(main())
