#!/usr/bin/env python3
"""Build one more emoji artwork style at 64x64 (docs/data.md; issue 25, "more styles in training"): the training
styles ``data/blob64/`` and ``data/fluent64/``, held out by base emoji exactly as ``data/emoji64/``, and the
check-only styles ``data/twemoji64/`` and ``data/emojione64/`` (never trained on, never used to choose settings).

Sources (Iconify JSON packages on npm: ``icons.json`` maps an icon name such as ``grinning-face`` to an SVG body;
the tarball is read directly with :mod:`tarfile`, nothing is extracted)::

    --style blob      @iconify-json/noto-v1@1.2.5            Noto Emoji v1, the "blob" artwork (Apache-2.0, Google)
    --style fluent    @iconify-json/fluent-emoji-flat@1.2.6  Fluent Emoji Flat (MIT, Microsoft)
    --style twemoji   @iconify-json/twemoji@1.2.5            Twemoji (CC BY 4.0, Twitter)
    --style emojione  @iconify-json/emojione@1.2.3           Emoji One 2.3 (CC BY 4.0, Emoji One)

Usage (from the repository root)::

    (cd tools && npm pack @iconify-json/noto-v1@1.2.5 @iconify-json/twemoji@1.2.5)   # once; or pass --fetch
    pip install resvg-py==0.5.0                                  # pinned, as for openmoji64
    python tools/build_styles64.py --style blob [--tarball PATH] [--out data/blob64] [--fetch]

Which emoji an icon is: its code points, from the package's own ``chars.json`` (code points -> icon name) or, for
the packages without one (noto-v1, emojione), from twemoji's (the same Iconify naming; so those styles also need
``tools/iconify-json-twemoji-1.2.5.tgz``). Icons without code points (``digit-one``, ...) are left out. An icon's
*base emoji* is emoji64's: ``data/emoji64/manifest.json`` gives, for every emoji64 image (code points without
``fe0f``), its base emoji and split; an icon whose code points are not in emoji64 is looked up again without
skin-tone modifiers, and if still unknown is its own base, split by emoji64's rule (``build_emoji64.split_of_group``,
the same salted hash) on its code points.

Training styles: only base forms (skin-tone variants are left out, for the repository's size); every base emoji
goes to the split it has in emoji64, so no emoji is on two sides in any style.
Icons with identical pixels are merged as in emoji64 (``merge_identical``); when a merged group spans splits (two
emoji drawn alike, on different sides in emoji64), only its images on the most held-out side (test, then val) are
kept and the others are dropped, so neither an emoji nor identical pixels cross a split. Output::

    train/ val/ test/               RGB 64x64 on white, numbered in sorted icon-name order
    val_mask64/                     one stroke mask per val image (emoji64's val seed)
    mask64/ masked_image/           one stroke mask per test image (emoji64's test seed), the masked test images

Check-only styles (openmoji64's layout: ``test/``, ``mask64/``, ``masked_image/``): candidates are the icons whose
base emoji is in emoji64's *test* split; base forms first, then skin-tone variants, each in salted-hash order of the
icon name; pixel duplicates of a taken image are skipped; COUNT are taken (fewer if the style has fewer).

Conversion: each icon's body in its viewBox, rendered with resvg (the pinned renderer of ``build_openmoji64``,
system fonts off) at RENDER_SIZE x RENDER_SIZE, composited onto white, resized to 64x64 with Lanczos. The build is
deterministic and ``manifest.json`` records the SHA-256 of every file's decoded pixels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "tools"))  # the other builders' helpers, shared rather than copied

import build_fluent128  # noqa: E402
from build_emoji64 import (  # noqa: E402
    APACHE_2_0,
    APACHE_2_0_SHA256,
    MASK_KIND,
    MASK_SEED,
    VAL_MASK_SEED,
    check_disjoint_pixels,
    fetch_tarball,
    hash_written,
    index_name,
    is_previous_build,
    log,
    merge_identical,
    sha256_file,
    split_of_group,
    tarball_args,
)
from build_openmoji64 import RENDERER, RENDERER_VERSION, _dump_manifest, conversion, load_renderer, rasterize  # noqa: E402

from maskgit_cli.data import mask_generator as masks  # noqa: E402

SIZE = 64
RENDER_SIZE = 256  # 4 x 64
COUNT = 200  # images of a check-only style
MANIFEST_FORMAT = 1
EMOJI64_MANIFEST = REPO / "data" / "emoji64" / "manifest.json"
SKIN_TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}
SIDES = ("test", "val", "train")  # most held-out first


@dataclass(frozen=True)
class Style:
    """One npm package of emoji artwork and what the build makes of it."""

    key: str
    dataset: str
    package: str
    version: str
    tarball_sha256: str
    artwork: str  # how the README names the artwork
    check_only: bool  # never trained on: test/ only, base emoji from emoji64's test split

    @property
    def tarball_name(self) -> str:
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


STYLES = {
    s.key: s
    for s in (
        Style("blob", "blob64", "@iconify-json/noto-v1", "1.2.5",
              "2bf62c26c2c2884aa99e90aec942cdaee17a5921f05690694f4978ad4b017c37",
              'Noto Emoji v1 (the "blob" artwork of Android 7)', False),
        Style("fluent", "fluent64", "@iconify-json/fluent-emoji-flat", "1.2.6",
              build_fluent128.TARBALL_SHA256, "Fluent Emoji Flat", False),
        Style("twemoji", "twemoji64", "@iconify-json/twemoji", "1.2.5",
              "19046dff7d8707ce96212ec86468b36ac5f8e60409629dd13f809265c6d0ebb7", "Twemoji", True),
        Style("emojione", "emojione64", "@iconify-json/emojione", "1.2.3",
              "26a14f44284407e8bcde91799388dca2bfd91dbcd55a97f425524a1c5b73610e", "Emoji One 2.3", True),
    )
}  # fmt: skip
NAMES = STYLES["twemoji"]  # whose chars.json names the icons of packages without one


@dataclass(frozen=True)
class Emoji:
    """Which emoji an icon is: its code points (no fe0f), its base emoji (emoji64's image name) and its split."""

    codepoints: str
    base: str
    split: str
    in_emoji64: bool
    variant: bool  # a skin-tone (or other) variant of its base, not the base form


def normalize(codepoints: str) -> str:
    """``1F636-200D-1F32B-FE0F`` or ``2764-fe0f.png`` -> ``1f636-200d-1f32b`` / ``2764``: fe0f is presentation only."""
    return "-".join(p for p in codepoints.lower().removesuffix(".png").split("-") if p != "fe0f")


def emoji64_sides(path: Path = EMOJI64_MANIFEST) -> dict[str, tuple[str, str]]:
    """Normalized code points of every emoji64 image -> (its base emoji's image name, its split)."""
    files = json.loads(path.read_text(encoding="utf-8"))["files"]
    return {
        normalize(entry["source"]): (entry["base"], rel.split("/")[0])
        for rel, entry in files.items()
        if rel.split("/")[0] in ("train", "val", "test")
    }


def emoji_of(codepoints: str, sides: dict[str, tuple[str, str]]) -> Emoji:
    """An icon's emoji: as in emoji64, or (not there) its base without skin tones, else its own emoji64-rule split."""
    cp = normalize(codepoints)
    toneless = "-".join(p for p in cp.split("-") if p not in SKIN_TONES)
    for key in (cp, toneless):
        if key in sides:
            base, split = sides[key]
            return Emoji(cp, base, split, True, normalize(base) != cp)
    base = f"{toneless}.png"
    return Emoji(cp, base, split_of_group(base), False, toneless != cp)


def read_json(tarball: Path, member: str) -> dict | None:
    with tarfile.open(tarball, "r:gz") as tar:
        try:
            return json.loads(tar.extractfile(f"package/{member}").read())
        except KeyError:
            return None


def check_tarball(tarball: Path, style: Style) -> None:
    sha = sha256_file(tarball)
    if sha != style.tarball_sha256:
        raise SystemExit(
            f"error: {tarball} has sha256 {sha}, expected {style.tarball_sha256} ({style.package}@{style.version}); "
            f"re-download it with: npm pack {style.package}@{style.version}"
        )


def codepoints_by_name(tarball: Path, names_tarball: Path) -> tuple[dict[str, str], str]:
    """Icon name -> code points, from the package's chars.json or else twemoji's; and which package named them."""
    chars = read_json(tarball, "chars.json")
    source = tarball
    if not chars:
        if not names_tarball.is_file():
            raise SystemExit(
                f"error: {names_tarball} not found; this style's icons are named by twemoji's chars.json. Get it "
                f"with: cd {names_tarball.parent} && npm pack {NAMES.package}@{NAMES.version}"
            )
        check_tarball(names_tarball, NAMES)
        chars, source = read_json(names_tarball, "chars.json"), names_tarball
    by_name: dict[str, str] = {}
    for cp in sorted(chars):  # a name listed twice (fe0f or not) keeps its smallest code points
        by_name.setdefault(chars[cp], cp)
    return by_name, source.name


def render(resvg_py, icon: dict, width: int, height: int) -> Image.Image:
    """An Iconify icon -> RGB 64x64: its body in its viewBox, RENDER_SIZE^2, onto white, Lanczos to 64."""
    box = f"{icon.get('left', 0)} {icon.get('top', 0)} {icon.get('width', width)} {icon.get('height', height)}"
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{RENDER_SIZE}" height="{RENDER_SIZE}" '
        f'viewBox="{box}">{icon["body"]}</svg>'
    )
    return rasterize(resvg_py, svg, RENDER_SIZE, SIZE)


def candidates(data: dict, by_name: dict[str, str], sides: dict) -> tuple[dict[str, Emoji], Counter]:
    """The visible, named icons with their emoji; and how many icons were left out, by reason."""
    left_out: Counter = Counter()
    found: dict[str, Emoji] = {}
    for name in sorted(data["icons"]):
        icon = data["icons"][name]
        if icon.get("hidden"):
            left_out["hidden"] += 1
        elif name not in by_name:
            left_out["no code points"] += 1
        elif re.search(r"<(text|image|foreignObject)\b", icon["body"]):
            raise SystemExit(f"error: icon {name} has text or an embedded image, which this build does not render.")
        else:
            found[name] = emoji_of(by_name[name], sides)
    return found, left_out


def selection_key(style: Style, name: str) -> tuple[str, str]:
    return hashlib.sha256(f"{style.dataset}-select-seed-0:{name}".encode()).hexdigest(), name


def split_training(images: dict[str, Image.Image], emoji: dict[str, Emoji]) -> tuple[dict[str, list[str]], list]:
    """Icon names per split (each at its base emoji's emoji64 side), and the dropped [icon, side, kept side] rows of
    merged pixel-identical groups that span sides (kept: the group's most held-out side)."""
    group_of = merge_identical(images, {n: e.base for n, e in emoji.items()})
    sides_of_group: dict[str, set[str]] = {}
    for e in emoji.values():
        sides_of_group.setdefault(group_of[e.base], set()).add(e.split)
    sources: dict[str, list[str]] = {side: [] for side in SIDES}
    dropped = []
    for name in sorted(images):
        e = emoji[name]
        kept = next(s for s in SIDES if s in sides_of_group[group_of[e.base]])
        if e.split == kept:
            sources[e.split].append(name)
        else:
            dropped.append([name, e.split, kept])
            log(f"dropped {name} ({e.split}): the same pixels as an image in {kept}")
    check_disjoint_pixels(images, sources)
    return sources, dropped


def select_check(style: Style, images_of, emoji: dict[str, Emoji]) -> tuple[list[str], list]:
    """Check-only: icons of emoji64's test emoji, base forms first, in salted order, skipping pixel duplicates."""
    order = sorted(
        (n for n, e in emoji.items() if e.in_emoji64 and e.split == "test"),
        key=lambda n: (emoji[n].variant, selection_key(style, n)),
    )
    taken, skipped, first_of = [], [], {}
    for name in order:
        digest = hashlib.sha256(np.asarray(images_of(name)).tobytes()).hexdigest()
        if digest in first_of:
            skipped.append([name, first_of[digest]])
            continue
        first_of[digest] = name
        taken.append(name)
        if len(taken) == COUNT:
            break
    return taken, skipped


def license_text(style: Style, info: dict) -> str:
    """The LICENSE to ship: the package's license statement, then the license (text, or for CC BY 4.0 its URI)."""
    lic, author = info["license"], info["author"]
    head = LICENSE_HEAD.format(
        artwork=style.artwork,
        author=author["name"],
        author_url=author["url"],
        package=style.package,
        version=style.version,
        title=lic["title"],
        spdx=lic["spdx"],
        url=lic["url"],
        info=json.dumps({"author": author, "license": lic}, indent=2),
    )
    if lic["spdx"] == "Apache-2.0":
        if hashlib.sha256(APACHE_2_0.encode()).hexdigest() != APACHE_2_0_SHA256:
            raise SystemExit("error: the embedded Apache-2.0 text in tools/build_emoji64.py was altered.")
        return head + "\nThe license (Apache License 2.0):\n" + APACHE_2_0
    if lic["spdx"] == "MIT":  # the MIT text that build_fluent128 ships for the same artwork
        return head + "\n" + build_fluent128.LICENSE[build_fluent128.LICENSE.index("MIT License") :]
    if lic["spdx"] == "CC-BY-4.0":
        return head + CC_BY_4_0
    raise SystemExit(f"error: {style.package}@{style.version} has license {lic['spdx']}, unknown to this build.")


def write_split(stage: Path, split: str, names: list[str], images_of, emoji: dict, rows: dict, files: dict) -> None:
    (stage / split).mkdir(parents=True)
    for i, name in enumerate(names):
        rel = f"{split}/{index_name('image_', i, len(names), 5 if split == 'train' else 3)}"  # as emoji64
        images_of(name).save(stage / rel, **masks.PNG_OPTIONS)
        e = emoji[name]
        files[rel] = {"icon": name, "codepoints": e.codepoints, "base": e.base, **rows[name]}


def build(style: Style, tarball: Path, names_tarball: Path, out: Path) -> dict:
    check_tarball(tarball, style)
    resvg_py = load_renderer()
    data = read_json(tarball, "icons.json")
    info = read_json(tarball, "info.json")
    by_name, named_by = codepoints_by_name(tarball, names_tarball)
    emoji, left_out = candidates(data, by_name, emoji64_sides())
    width, height = data.get("width", 16), data.get("height", 16)
    cache: dict[str, Image.Image] = {}

    def images_of(name: str) -> Image.Image:
        if name not in cache:
            cache[name] = render(resvg_py, data["icons"][name], width, height)
        return cache[name]

    if not style.check_only:  # the repository's size budget (README_TRAIN, "Size")
        left_out["skin-tone variant"] = sum(1 for e in emoji.values() if e.variant)
        emoji = {n: e for n, e in emoji.items() if not e.variant}
    rows = {n: {"body_sha256": hashlib.sha256(data["icons"][n]["body"].encode()).hexdigest()} for n in emoji}
    if style.check_only:
        taken, skipped = select_check(style, images_of, emoji)
        sources, extra = {"test": taken}, {"skipped_duplicates": skipped}
    else:
        sources, dropped = split_training({n: images_of(n) for n in emoji}, emoji)
        extra = {"dropped_duplicates": dropped}

    out = out.resolve()
    if out.exists() and any(out.iterdir()) and not is_previous_build(out, style.dataset):
        raise SystemExit(f"error: {out} exists and is not a {style.dataset} build (no matching manifest.json).")
    stage = out.with_name(out.name + ".building")
    if stage.exists():
        shutil.rmtree(stage)
    files: dict[str, dict] = {}
    for split, names in sources.items():
        write_split(stage, split, names, images_of, emoji, rows, files)
    mask_sets = [("test", "mask64", MASK_SEED, stage / "masked_image")]
    if not style.check_only:
        mask_sets.append(("val", "val_mask64", VAL_MASK_SEED, None))
    summaries = {}
    for split, folder, seed, masked in mask_sets:
        summaries[split] = masks.write_masks(stage / split, stage / folder, MASK_KIND, seed, masked_out=masked)
        n = len(sources[split])
        for i, name in enumerate(sources[split]):
            files[f"{folder}/{masks.mask_name(i, n)}"] = {"icon": name}
            if masked is not None:
                files[f"masked_image/{index_name('image_', i, n, 3)}"] = {"icon": name}

    hash_written(stage, files)

    counts = {split: len(names) for split, names in sources.items()}
    counts.update({folder: len(sources[split]) for split, folder, _, _ in mask_sets})
    counts["masked_image"] = len(sources["test"])
    counts.update({f"base_emoji_{s}": len({emoji[n].base for n in names}) for s, names in sources.items()})
    counts["candidates"] = len(emoji)
    counts["not_in_emoji64"] = sum(1 for n in emoji if not emoji[n].in_emoji64)
    manifest = {
        "dataset": style.dataset,
        "format": MANIFEST_FORMAT,
        "role": "check only: never trained on, never used to choose settings" if style.check_only else "training",
        "source": {
            "package": style.package,
            "version": style.version,
            "tarball": style.tarball_name,
            "tarball_sha256": style.tarball_sha256,
            "images": "icons.json",
            "codepoints": f"chars.json of {named_by}",
            "license": info["license"]["spdx"],
            "author": info["author"]["name"],
        },
        "emoji": {
            "base_and_split": "data/emoji64/manifest.json: code points without fe0f -> base emoji and split; else "
            "without skin tones; else its own base, split by emoji64's rule (build_emoji64.split_of_group)",
            "left_out": dict(sorted(left_out.items())),
            **extra,
        },
        "conversion": conversion(RENDER_SIZE, f"0 0 {width} {height} (or the icon's own)"),
        "image_size": [SIZE, SIZE],
        "masks": {
            **{folder: {"kind": MASK_KIND, "seed": seed, "images": split} for split, folder, seed, _ in mask_sets},
            "rng": "numpy default_rng([seed, index])",
        },
        "pixel_hash": "sha256 of the decoded pixels: numpy.asarray(PIL image).tobytes(), mode as listed",
        "counts": counts,
        "files": files,
    }
    (stage / "manifest.json").write_text(_dump_manifest(manifest), encoding="utf-8")
    (stage / "LICENSE").write_text(license_text(style, info), encoding="utf-8")
    (stage / "README.md").write_text(readme(style, manifest, summaries, named_by), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    stage.replace(out)
    return manifest


def readme(style: Style, manifest: dict, summaries: dict, named_by: str) -> str:
    c, lic, hole = manifest["counts"], manifest["source"], summaries["test"]["hole_fraction"]
    fields = {
        "dataset": style.dataset,
        "style": style.key,
        "artwork": style.artwork,
        "author": lic["author"],
        "license": lic["license"],
        "package": style.package,
        "version": style.version,
        "tarball": style.tarball_name,
        "sha": style.tarball_sha256,
        "named_by": named_by,
        "left_out": ", ".join(f"{n} {k}" for k, n in manifest["emoji"]["left_out"].items()) or "none",
        "renderer": RENDERER,
        "renderer_version": RENDERER_VERSION,
        "render_size": RENDER_SIZE,
        "kind": MASK_KIND,
        "seed": MASK_SEED,
        "val_seed": VAL_MASK_SEED,
        "hole_mean": hole["mean"] * 100,
        "hole_min": hole["min"] * 100,
        "hole_max": hole["max"] * 100,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "count": COUNT,
        "n_dropped": len(manifest["emoji"].get("dropped_duplicates", [])),
        "n_skipped": len(manifest["emoji"].get("skipped_duplicates", [])),
        **c,
    }
    body = README_CHECK if style.check_only else README_TRAIN
    return (README_HEAD + body + README_TAIL).format(**fields)


def main(argv: list[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False, usage="%(prog)s --style STYLE [--names-tarball PATH] ...")
    pre.add_argument("--style", choices=sorted(STYLES), help="the set to build (data/STYLE64)")
    pre.add_argument("--names-tarball", type=Path, help=f"default: tools/{NAMES.tarball_name} beside --tarball")
    known, rest = pre.parse_known_args(argv)
    if known.style is None:
        if not {"-h", "--help"} & set(rest):
            pre.error(f"--style is required: one of {', '.join(STYLES)}")
        print(pre.format_help())  # then the options every builder shares, below
    style = STYLES[known.style or "blob"]
    args = tarball_args(__doc__, rest, REPO / "data" / style.dataset, style.package, style.version, style.tarball_name)
    if args is None:
        return 1
    names_tarball = known.names_tarball or args.tarball.parent / NAMES.tarball_name
    if args.fetch and not names_tarball.is_file() and not read_json(args.tarball, "chars.json"):
        fetch_tarball(names_tarball, NAMES.package, NAMES.version, NAMES.tarball_name)
    manifest = build(style, args.tarball, names_tarball, args.out)
    c = manifest["counts"]
    log(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    return 0


LICENSE_HEAD = """\
The images in this folder are rendered from the SVGs of {artwork} by {author} ({author_url}),
as distributed in the npm package {package}@{version}.

License: {title} (SPDX: {spdx}), {url}

The package ships no license text of its own; its info.json states the author and the license as follows
(copied verbatim):

{info}

Changes: the SVGs were rendered to raster, composited onto white and resized to 64x64; masks and masked copies
were added (tools/build_styles64.py).
"""

CC_BY_4_0 = """
The license is the Creative Commons Attribution 4.0 International Public License (CC BY 4.0). Its legal code is
at https://creativecommons.org/licenses/by/4.0/legalcode (section 3(a)(1)(C) allows its URI in place of its
text). Attribution, as section 3(a)(1) asks: the creator and the source are named above; the images were modified
as stated above; no warranty is given (section 5).
"""

README_HEAD = """\
# {dataset}: {artwork} at 64x64

"""

README_TRAIN = """\
A training style beside emoji64 (issue 25): {train} training, {val} validation and {test} test images, 64x64 RGB,
of {artwork}, with stroke masks for the validation and test images, in emoji64's layout. Train on it together with
emoji64 (`maskgit fit data/emoji64/train data/{dataset}/train ...`). Every base emoji is on the side it has in
emoji64, so no emoji (in any form or style) is in two splits of emoji64, blob64 and fluent64 together.

## Attribution and license

{artwork} by {author}, {license} (see `LICENSE`: the package's license statement and the license).
Source: the npm package `{package}@{version}` (Iconify JSON of the SVGs). The images here are a rendering of those
SVGs (raster, onto white, 64x64), with masks added; this README and `manifest.json` were generated by
`tools/build_styles64.py --style {style}`.

## Provenance

- Source: npm `{package}@{version}`, tarball `{tarball}`, sha256 `{sha}`
  (get it with `cd tools && npm pack {package}@{version}`).
- Command: `python tools/build_styles64.py --style {style}` (defaults: `--tarball tools/{tarball}
  --out data/{dataset}`); built with {renderer} {renderer_version} (pinned), Pillow {pillow}, numpy {numpy}.
- Emoji: each icon's code points from `chars.json` of `{named_by}`; icons left out: {left_out}. Its base emoji and
  split are emoji64's (`data/emoji64/manifest.json`; {not_in_emoji64} icons are not in emoji64 and are split by
  emoji64's salted-hash rule on their code points). Base emoji: {base_emoji_train} train, {base_emoji_val} val,
  {base_emoji_test} test.
- Identical pixels: merged into one group as in emoji64; {n_dropped} images whose group spans splits were dropped
  from the less held-out side (listed in `manifest.json`). No two splits share an image's pixels.
- Size: skin-tone variants are left out (in the count above): they repeat their base emoji's artwork in another
  skin colour, and with them fluent64 would take 20 MB on disk (`du -sh`; 12 MB of file bytes) and blob64 15 MB
  (8.9 MB), more than the ~12 MB a data set may add to the repository.
- Conversion: each icon's SVG body in its viewBox, rendered with resvg at {render_size}x{render_size}, composited
  onto white, resized to 64x64 with Pillow's Lanczos filter, saved as RGB PNG. Numbered in sorted icon-name order.
- Masks: `{kind}` masks from `maskgit_cli.data.mask_generator.write_masks` with `numpy.random.default_rng([seed,
  index])`, emoji64's seeds: {seed} for `mask64/` (test; holes mean {hole_mean:.1f}%, min {hole_min:.1f}%, max
  {hole_max:.1f}%), {val_seed} for `val_mask64/` (val).

## Contents

| folder | files | content |
| --- | --- | --- |
| `train/` | {train} | RGB 64x64 training images |
| `val/` | {val} | RGB 64x64 validation images (`maskgit fit --val`) |
| `val_mask64/` | {val_mask64} | `mask_000.png` ...: 0 = hole, 255 = known (`maskgit fit --val-masks`) |
| `test/` | {test} | RGB 64x64 ground truth, only reported |
| `mask64/` | {mask64} | `mask_000.png` ...: 0 = hole, 255 = known |
| `masked_image/` | {masked_image} | the test images, holes filled gray (128, 128, 128) |
"""

README_CHECK = """\
A check-only style (issue 25): {test} emoji of {artwork}, 64x64 RGB, with stroke masks, in openmoji64's layout.
Never train on it and never choose settings on it: it measures how fills do on a style the model has not seen.
Every image's base emoji is in emoji64's *test* split, so neither the style nor the content was trained on.

## Attribution and license

{artwork} by {author}, {license} (see `LICENSE`). Source: the npm package `{package}@{version}` (Iconify JSON of
the SVGs). The images here are a rendering of those SVGs (raster, onto white, 64x64), with masks added; this README
and `manifest.json` were generated by `tools/build_styles64.py --style {style}`.

## Provenance

- Source: npm `{package}@{version}`, tarball `{tarball}`, sha256 `{sha}`
  (get it with `cd tools && npm pack {package}@{version}`).
- Command: `python tools/build_styles64.py --style {style}` (defaults: `--tarball tools/{tarball}
  --out data/{dataset}`); built with {renderer} {renderer_version} (pinned), Pillow {pillow}, numpy {numpy}.
- Emoji: each icon's code points from `chars.json` of `{named_by}`; icons left out: {left_out}. Candidates: the
  icons whose base emoji is in emoji64's test split (`data/emoji64/manifest.json`); base forms first, then skin-tone
  variants, each ordered by `sha256("{dataset}-select-seed-0:" + icon name)`; pixel duplicates of a taken image
  skipped ({n_skipped}); up to {count} taken: {test} ({base_emoji_test} base emoji). Numbered in that order.
- Conversion: each icon's SVG body in its viewBox, rendered with resvg at {render_size}x{render_size}, composited
  onto white, resized to 64x64 with Pillow's Lanczos filter, saved as RGB PNG.
- Masks: `{kind}` masks, seed {seed} as emoji64's test masks (mask i of both sets is the same mask; holes mean
  {hole_mean:.1f}%, min {hole_min:.1f}%, max {hole_max:.1f}%).

## Contents

| folder | files | content |
| --- | --- | --- |
| `test/` | {test} | RGB 64x64 ground truth |
| `mask64/` | {mask64} | `mask_000.png` ...: 0 = hole, 255 = known |
| `masked_image/` | {masked_image} | the test images, holes filled gray (128, 128, 128) |
"""

README_TAIL = """
`manifest.json` lists every PNG with the sha256 of its decoded pixels (`numpy.asarray(image).tobytes()`), its mode,
and its icon (name, code points, base emoji, sha256 of the SVG body). Pairing is by sorted file name:
`masked_image/image_007.png` goes with `mask64/mask_007.png` and `test/image_007.png`.
"""

if __name__ == "__main__":
    sys.exit(main())
