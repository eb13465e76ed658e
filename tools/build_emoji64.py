#!/usr/bin/env python3
"""Build ``data/emoji64/``: a small lab-format inpainting data set from Noto Emoji (docs/data.md, "emoji64").

Source: the npm package ``emoji-datasource-google@16.0.0`` (``img/google/64/*.png``, 3786 PNGs, 64x64,
RGBA/LA/P; ``emoji.json`` lists 1911 base emoji with their ``skin_variations``). The tarball is read directly
with :mod:`tarfile`; nothing is extracted to disk.

Usage (from the repository root)::

    (cd tools && npm pack emoji-datasource-google@16.0.0)   # once; or pass --fetch
    python tools/build_emoji64.py [--tarball PATH] [--out data/emoji64] [--fetch]

Output, in the lab's layout (docs/data.md, "The lab's files")::

    train/image_00000.png ...       RGB 64x64, composited onto white
    val/image_000.png ...           validation images (held out of training; for model selection)
    val_mask64/mask_000.png ...     one ``stroke`` mask per val image (seed VAL_MASK_SEED)
    val_masked_image/image_000.png  val images with the holes filled gray (128, 128, 128)
    test/image_000.png ...          the ground truth of the inpainting test set (only reported)
    mask64/mask_000.png ...         one ``stroke`` mask per test image (0 = hole, 255 = known)
    masked_image/image_000.png      test images with the holes filled gray (128, 128, 128)
    LICENSE, README.md, manifest.json

Split rule (issue #11 D): the split is by *group*, never by single image. A group starts as a base emoji with its
skin-tone variants (``skin_variations`` in ``emoji.json``); groups that contain pixel-identical images (the same
SHA-256 of the RGB pixels after the white compositing below, e.g. flags that share artwork under different code
points) are merged (union-find), so identical pixels never sit on two sides. A whole group goes to the split that
``split_of_group`` gives for its smallest base image name (a group that merged nothing keeps its base's side):
``test/`` iff its hash fraction is below TEST_FRACTION, ``val/`` (issue #13, honest validation) iff it is in
[TEST_FRACTION, TEST_FRACTION + VAL_FRACTION), else ``train/``. Adding ``val/`` left ``test/`` and its masks as they
were; the build checks that no two splits share an image's pixels.

The build is deterministic: the split is a salted SHA-256 of each group's smallest base image name, masks come from
``maskgit_cli.data.mask_generator`` with a fixed seed, PNGs are written with fixed Pillow options (no timestamps), and
``manifest.json`` records the SHA-256 of every file's decoded pixels so a rebuild can be verified whatever the
PNG compressor version.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(REPO))

from maskgit_cli.data import mask_generator as masks  # noqa: E402
from maskgit_cli.data.images import to_rgb  # noqa: E402

PACKAGE = "emoji-datasource-google"
VERSION = "16.0.0"
TARBALL_NAME = f"{PACKAGE}-{VERSION}.tgz"
TARBALL_SHA256 = "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438"
IMG_PREFIX = "package/img/google/64/"
DATASET = "emoji64"
MANIFEST_FORMAT = 1

SIZE = 64
SPLIT_SALT = "emoji64-split-seed-0"  # the split's fixed "seed"
TEST_FRACTION = 0.10
VAL_FRACTION = 0.08  # of all groups: about 10% of the non-test images
MASK_KIND = "stroke"
MASK_SEED = 0  # test masks (mask64/)
VAL_MASK_SEED = 1  # val masks (val_mask64/): other masks than the test's
SPLITS = ("train", "val", "test")

DEFAULT_OUT = REPO / "data" / DATASET


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pixel_sha256(path: Path) -> tuple[str, str]:
    """(mode, sha256 of the decoded pixel bytes) of an image file: independent of the PNG encoder."""
    with Image.open(path) as img:
        img.load()
        return img.mode, hashlib.sha256(np.asarray(img).tobytes()).hexdigest()


def hash_fraction(base_image: str) -> float:
    """The first 8 bytes of sha256(SPLIT_SALT + ":" + base_image), as a big-endian int / 2**64, in [0, 1)."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{base_image}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_written(stage: Path, files: dict[str, dict]) -> None:
    """Add each written PNG's pixel hash and mode to its manifest entry (``files``: path under ``stage`` -> entry),
    after checking that the PNGs on disk are exactly the manifest's."""
    on_disk = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*.png"))
    if on_disk != sorted(files):
        raise SystemExit("error: internal: written files do not match the manifest.")
    for rel in sorted(files):
        mode, digest = pixel_sha256(stage / rel)
        files[rel] = {"sha256_pixels": digest, "mode": mode, **files[rel]}


def split_of_group(base_image: str) -> str:
    """Split rule: a group (a base emoji with its skin-tone variants, merged with every group that shares
    identical pixels; see ``merge_identical``) goes, by the ``hash_fraction`` f of its smallest base image name, to
    "test" iff f < TEST_FRACTION, to "val" iff TEST_FRACTION <= f < TEST_FRACTION + VAL_FRACTION, else to "train"."""
    f = hash_fraction(base_image)
    if f < TEST_FRACTION:
        return "test"
    return "val" if f < TEST_FRACTION + VAL_FRACTION else "train"


def check_disjoint_pixels(images: dict[str, Image.Image], sources: dict[str, list[str]]) -> None:
    """Fail unless no two splits hold images with the same RGB pixels (``merge_identical`` guarantees it)."""
    seen: dict[str, tuple[str, str]] = {}  # pixel hash -> (split, source) of its first image
    for split, names in sources.items():
        for name in names:
            digest = hashlib.sha256(np.asarray(images[name]).tobytes()).hexdigest()
            first = seen.setdefault(digest, (split, name))
            if first[0] != split:
                raise SystemExit(f"error: internal: {first[1]} ({first[0]}) and {name} ({split}) have equal pixels.")


def merge_identical(images: dict[str, Image.Image], base_of: dict[str, str]) -> dict[str, str]:
    """Map every base image name to its group's key: union-find over the base groups, joined whenever two images
    (of any groups) have the same decoded RGB pixels; the key is the group's smallest base image name."""
    parent = {b: b for b in base_of.values()}

    def find(b: str) -> str:
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        return b

    first_base: dict[str, str] = {}  # pixel hash -> base of the first image (in sorted name order) with it
    for name in sorted(images):
        digest = hashlib.sha256(np.asarray(images[name]).tobytes()).hexdigest()
        other = first_base.setdefault(digest, base_of[name])
        a, b = find(other), find(base_of[name])
        if a != b:
            parent[max(a, b)] = min(a, b)  # the root is always the group's smallest base name
    return {b: find(b) for b in parent}


def index_name(prefix: str, index: int, count: int, min_digits: int) -> str:
    digits = max(min_digits, len(str(max(count - 1, 0))))
    return f"{prefix}{index:0{digits}d}.png"


def fetch_tarball(dest: Path, package: str = PACKAGE, version: str = VERSION, name: str = TARBALL_NAME) -> None:
    """Run ``npm pack PACKAGE@VERSION`` in the tarball's folder (``name``: the file npm writes)."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("error: --fetch needs npm on PATH (https://nodejs.org); or get the tarball by hand.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    log(f"running: npm pack {package}@{version}  (in {dest.parent})")
    subprocess.run([npm, "pack", f"{package}@{version}"], cwd=dest.parent, check=True)
    packed = dest.parent / name
    if packed != dest and packed.exists():
        packed.replace(dest)


def read_groups(tar: tarfile.TarFile, png_names: set[str]) -> dict[str, str]:
    """Map every image file name to the image name of its base emoji (skin-tone variants -> their base)."""
    entries = json.load(tar.extractfile("package/emoji.json"))
    base_of: dict[str, str] = {}
    for entry in entries:
        base = entry["image"]
        base_of.setdefault(base, base)
        for variant in (entry.get("skin_variations") or {}).values():
            base_of[variant["image"]] = base
    for name in png_names - base_of.keys():  # not in emoji.json (does not happen for 16.0.0): its own group
        base_of[name] = name
    return {name: base_of[name] for name in png_names}


def load_images(tar: tarfile.TarFile) -> dict[str, Image.Image]:
    """Decode every ``img/google/64/*.png`` and composite it onto white as RGB 64x64."""
    images: dict[str, Image.Image] = {}
    for member in tar.getmembers():
        if not (member.isfile() and member.name.startswith(IMG_PREFIX) and member.name.endswith(".png")):
            continue
        name = member.name[len(IMG_PREFIX) :]
        with Image.open(io.BytesIO(tar.extractfile(member).read())) as img:
            img.load()
            if img.size != (SIZE, SIZE):
                raise SystemExit(f"error: {member.name} is {img.size[0]}x{img.size[1]}, not {SIZE}x{SIZE}.")
            images[name] = to_rgb(img)
    return images


def license_text(tar: tarfile.TarFile) -> tuple[str, str]:
    """(Apache-2.0 text to ship, first line of the tarball's own LICENSE)."""
    own = tar.extractfile("package/LICENSE").read().decode("utf-8")
    first = own.strip().splitlines()[0].strip()
    if "Apache License" in own and "Version 2.0" in own:
        return own, first
    # emoji-datasource's LICENSE is the MIT license of the emoji-data project itself; the Google images are
    # Noto Emoji, Apache-2.0 (package README), so ship the standard Apache-2.0 text.
    text = APACHE_2_0
    if hashlib.sha256(text.encode()).hexdigest() != APACHE_2_0_SHA256:
        raise SystemExit("error: the embedded Apache-2.0 text in tools/build_emoji64.py was altered.")
    return text, first


def build(tarball: Path, out: Path) -> dict:
    tar_sha = sha256_file(tarball)
    if tar_sha != TARBALL_SHA256:
        raise SystemExit(
            f"error: {tarball} has sha256 {tar_sha}, expected {TARBALL_SHA256} ({PACKAGE}@{VERSION}); "
            f"re-download it with: npm pack {PACKAGE}@{VERSION}"
        )
    with tarfile.open(tarball, "r:gz") as tar:
        images = load_images(tar)
        base_of = read_groups(tar, set(images))
        apache, own_license_first_line = license_text(tar)
        own_license = tar.extractfile("package/LICENSE").read().decode("utf-8").strip()

    bases = sorted(set(base_of.values()))
    group_of = merge_identical(images, base_of)
    split_of = {b: split_of_group(group_of[b]) for b in bases}
    merged = sorted(
        members
        for members in (sorted(b for b in bases if group_of[b] == key) for key in sorted(set(group_of.values())))
        if len(members) > 1
    )
    sources = {split: sorted(n for n in images if split_of[base_of[n]] == split) for split in SPLITS}
    check_disjoint_pixels(images, sources)

    # build into a staging folder next to the output, then swap it in
    out = out.resolve()
    if out.exists() and any(out.iterdir()) and not is_previous_build(out):
        raise SystemExit(f"error: {out} exists and is not an {DATASET} build (no matching manifest.json).")
    stage = out.with_name(out.name + ".building")
    if stage.exists():
        shutil.rmtree(stage)
    for sub in SPLITS:
        (stage / sub).mkdir(parents=True)

    files: dict[str, dict[str, str]] = {}
    for split in SPLITS:
        for i, src in enumerate(sources[split]):
            rel = f"{split}/{index_name('image_', i, len(sources[split]), 5 if split == 'train' else 3)}"
            images[src].save(stage / rel, **masks.PNG_OPTIONS)
            files[rel] = {"source": src, "base": base_of[src]}
    summaries = {}
    # (images, masks, masked images, mask seed): test first, so its masks are written exactly as before val existed
    for split, mask_dir, masked_dir, seed in (
        ("test", "mask64", "masked_image", MASK_SEED),
        ("val", "val_mask64", "val_masked_image", VAL_MASK_SEED),
    ):
        summaries[split] = masks.write_masks(
            stage / split, stage / mask_dir, MASK_KIND, seed, masked_out=stage / masked_dir
        )
        n = len(sources[split])
        for i, src in enumerate(sources[split]):
            files[f"{mask_dir}/{masks.mask_name(i, n)}"] = {"source": src, "base": base_of[src]}
            files[f"{masked_dir}/{index_name('image_', i, n, 3)}"] = {"source": src, "base": base_of[src]}

    hash_written(stage, files)

    counts = {
        "train": len(sources["train"]),
        "val": len(sources["val"]),
        "test": len(sources["test"]),
        "mask64": len(sources["test"]),
        "masked_image": len(sources["test"]),
        "val_mask64": len(sources["val"]),
        "val_masked_image": len(sources["val"]),
        **{f"base_emoji_{split}": sum(1 for b in bases if split_of[b] == split) for split in SPLITS},
        **{f"groups_{split}": len({group_of[b] for b in bases if split_of[b] == split}) for split in SPLITS},
    }
    manifest = {
        "dataset": DATASET,
        "format": MANIFEST_FORMAT,
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "tarball": TARBALL_NAME,
            "tarball_sha256": tar_sha,
            "images": f"{IMG_PREFIX[len('package/') :]}*.png",
        },
        "image_size": [SIZE, SIZE],
        "background": "white",
        "split": {
            "rule": "f = sha256(salt:group)[:8] / 2**64; test iff f < test_fraction; "
            "val iff test_fraction <= f < test_fraction + val_fraction; else train",
            "salt": SPLIT_SALT,
            "group": "base emoji + skin-tone variants, merged when any images have identical RGB pixels; "
            "key = the smallest base image name",
            "merged_groups": merged,
        },
        "split_test_fraction": TEST_FRACTION,
        "split_val_fraction": VAL_FRACTION,
        "masks": {
            "kind": MASK_KIND,
            "seed": MASK_SEED,
            "val_seed": VAL_MASK_SEED,
            "rng": "numpy default_rng([seed, index])",
        },
        "pixel_hash": "sha256 of the decoded pixels: numpy.asarray(PIL image).tobytes(), mode as listed",
        "counts": counts,
        "files": files,
    }
    (stage / "manifest.json").write_text(_dump_manifest(manifest), encoding="utf-8")
    (stage / "LICENSE").write_text(apache, encoding="utf-8")
    readme = README.format(
        package=PACKAGE,
        version=VERSION,
        tarball=TARBALL_NAME,
        sha=tar_sha,
        n_images=len(images),
        n_bases=len(bases),
        n_variants=len(images) - len(bases),
        salt=SPLIT_SALT,
        frac=TEST_FRACTION,
        val_frac=VAL_FRACTION,
        val_end=round(TEST_FRACTION + VAL_FRACTION, 6),
        n_merged=len(merged),
        n_merged_bases=sum(len(m) for m in merged),
        kind=MASK_KIND,
        seed=MASK_SEED,
        val_seed=VAL_MASK_SEED,
        hole_mean=summaries["test"]["hole_fraction"]["mean"] * 100,
        hole_min=summaries["test"]["hole_fraction"]["min"] * 100,
        hole_max=summaries["test"]["hole_fraction"]["max"] * 100,
        val_hole_mean=summaries["val"]["hole_fraction"]["mean"] * 100,
        val_hole_min=summaries["val"]["hole_fraction"]["min"] * 100,
        val_hole_max=summaries["val"]["hole_fraction"]["max"] * 100,
        own_license_first_line=own_license_first_line,
        own_license=own_license,
        pillow=PIL.__version__,
        numpy=np.__version__,
        **counts,
    )
    (stage / "README.md").write_text(readme, encoding="utf-8")

    if out.exists():
        shutil.rmtree(out)
    stage.replace(out)
    return manifest


def is_previous_build(out: Path, dataset: str = DATASET) -> bool:
    """Whether ``out`` holds an earlier build of ``dataset`` (its manifest.json says so), which a rebuild replaces."""
    try:
        return json.loads((out / "manifest.json").read_text(encoding="utf-8")).get("dataset") == dataset
    except (OSError, ValueError, AttributeError):
        return False


def _dump_manifest(manifest: dict) -> str:
    """Readable, diff-friendly JSON: one line per file entry."""
    head = {k: v for k, v in manifest.items() if k != "files"}
    lines = json.dumps(head, indent=2, sort_keys=False)[:-2].rstrip() + ',\n  "files": {\n'
    entries = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(manifest["files"].items())]
    return lines + ",\n".join(entries) + "\n  }\n}\n"


def tarball_args(
    doc: str,
    argv: list[str] | None,
    default_out: Path,
    package: str = PACKAGE,
    version: str = VERSION,
    name: str = TARBALL_NAME,
) -> argparse.Namespace | None:
    """A builder's command line (--tarball, --out, --fetch), the tarball fetched with --fetch; None (after saying
    how to get it) when the tarball is missing."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, default=REPO / "tools" / name, help=f"tools/{name}")
    parser.add_argument("--out", type=Path, default=default_out, help=f"default: data/{default_out.name}")
    parser.add_argument("--fetch", action="store_true", help="run `npm pack` when the tarball is missing")
    args = parser.parse_args(argv)
    if not args.tarball.is_file() and args.fetch:
        fetch_tarball(args.tarball, package, version, name)
    if not args.tarball.is_file():
        log(
            f"error: tarball {args.tarball} not found. Get it with:\n"
            f"    cd {args.tarball.parent} && npm pack {package}@{version}\n"
            f"or rerun with --fetch (needs npm and network access)."
        )
        return None
    return args


def main(argv: list[str] | None = None) -> int:
    args = tarball_args(__doc__, argv, DEFAULT_OUT)
    if args is None:
        return 1
    manifest = build(args.tarball, args.out)
    c = manifest["counts"]
    log(
        f"wrote {args.out}: train {c['train']}, val {c['val']}, test {c['test']}, mask64 {c['mask64']}, "
        f"masked_image {c['masked_image']}, val_mask64 {c['val_mask64']} "
        f"(base emoji {c['base_emoji_train']} / {c['base_emoji_val']} / {c['base_emoji_test']})"
    )
    return 0


README = """\
# emoji64: a small inpainting data set in the lab's layout

64x64 RGB emoji images in the layout of the NYCU "MaskGIT for image inpainting" lab data
(`train/`, `masked_image/`, `mask64/`; here plus `test/` with the ground truth and a validation split `val/` with
its own masks), small enough to ship with `maskgit` for demos and tests.

`val/` is held out of the training emoji for model selection: the default weights (`weights/`) are selected and
stopped early on `val/` (`val_mask64/` for the transformer) and only reported on `test/`.

## Attribution and license

The images are Google's **Noto Emoji** (https://github.com/googlefonts/noto-emoji), licensed under the
**Apache License 2.0**; its full text is in `LICENSE`. They were taken from the `img/google/64/` folder of the
npm package `{package}@{version}` (the emoji-data project by Cal Henderson, https://github.com/iamcal/emoji-data),
whose README states: "Android/Google/Noto images, are available under the Apache License 2.0".

Changes made to the images (Apache-2.0 section 4(b)): each image was alpha-composited onto a white background
and saved as an 8-bit RGB PNG; `masked_image/` and `val_masked_image/` also have the pixels under the mask replaced
by gray (128). `mask64/` and `val_mask64/` (the masks), this README and `manifest.json` were generated by
`tools/build_emoji64.py`.

The package's own `LICENSE` file is not the images' license: it is the license of the emoji-data project
("{own_license_first_line}"), which covers its code and `emoji.json` metadata. From that metadata we use only
the grouping of skin-tone variants and the image file names listed in `manifest.json`. Its notice:

```
{own_license}
```

## Provenance

- Source: npm `{package}@{version}`, tarball `{tarball}`, sha256 `{sha}`
  (get it with `cd tools && npm pack {package}@{version}`).
- Command: `python tools/build_emoji64.py` (defaults: `--tarball tools/{tarball} --out data/emoji64`);
  built with Pillow {pillow}, numpy {numpy}.
- Input: all {n_images} PNGs of `img/google/64/` ({n_bases} base emoji + {n_variants} skin-tone variants,
  grouped by `skin_variations` in `emoji.json`).
- Conversion: composite RGBA/LA/P onto white, RGB, 64x64 (the source size; no resizing).
- Split by group, so neither skin-tone variants nor identical pixels cross it: a group is a base emoji with its
  skin-tone variants, and groups that hold pixel-identical images (same sha256 of the RGB pixels after the
  conversion above, e.g. flags sharing artwork under different code points) are merged into one (union-find;
  here {n_merged} merged groups of {n_merged_bases} base emoji, listed under `split.merged_groups` in
  `manifest.json`). Let f be the first 8 bytes of `sha256("{salt}:" + the group's smallest base image file
  name)`, read as a big-endian integer divided by 2**64. The group goes to `test/` iff f < {frac}, to `val/` iff
  {frac} <= f < {val_end} (val fraction {val_frac}), else to `train/`; so a group that merged nothing keeps the side
  of its base emoji ({groups_train} groups in `train/`, {groups_val} in `val/`, {groups_test} in `test/`). No two
  splits share an image's pixels (the build checks it). Adding `val/` changed nothing in `test/`, `mask64/` and
  `masked_image/`; `train/` lost the val groups and was renumbered. Within each split the images are numbered in
  sorted source-file-name order.
- Masks: one `{kind}` mask per test image from `maskgit_cli.data.mask_generator.generate_mask` with the generator
  `numpy.random.default_rng([{seed}, index])` (seed {seed}), i.e.
  `maskgit_cli.data.mask_generator.write_masks(test, mask64, "{kind}", {seed}, masked_out=masked_image)`.
  Free-form brush strokes, hole fraction kept in [15%, 40%]
  (here mean {hole_mean:.1f}%, min {hole_min:.1f}%, max {hole_max:.1f}%).
  The val masks are drawn the same way with seed {val_seed}:
  `write_masks(val, val_mask64, "{kind}", {val_seed}, masked_out=val_masked_image)`
  (holes: mean {val_hole_mean:.1f}%, min {val_hole_min:.1f}%, max {val_hole_max:.1f}%).
- `manifest.json` lists every PNG with the sha256 of its decoded pixels (`numpy.asarray(image).tobytes()`),
  its mode, and its source emoji file (and base emoji). A rebuild is verified by comparing manifests, not PNG
  bytes (those depend on the zlib version).

## Contents

| folder | files | content |
| --- | --- | --- |
| `train/` | {train} | `image_00000.png` ...: RGB 64x64 training images ({base_emoji_train} base emoji) |
| `val/` | {val} | `image_000.png` ...: RGB 64x64 validation images, for model selection ({base_emoji_val} base emoji) |
| `val_mask64/` | {val_mask64} | `mask_000.png` ...: the val images' masks (seed {val_seed}), as in `mask64/` |
| `val_masked_image/` | {val_masked_image} | `image_000.png` ...: val images, holes filled gray (128, 128, 128) |
| `test/` | {test} | `image_000.png` ...: RGB 64x64 ground truth, only reported ({base_emoji_test} base emoji) |
| `mask64/` | {mask64} | `mask_000.png` ...: 8-bit grayscale, 0 = hole to inpaint, 255 = known |
| `masked_image/` | {masked_image} | `image_000.png` ...: test images, holes filled gray (128, 128, 128) |

Pairing is by sorted file name, as in the lab: `masked_image/image_007.png` goes with `mask64/mask_007.png`
and `test/image_007.png`; likewise `val_masked_image/`, `val_mask64/` and `val/`.
"""

APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
APACHE_2_0 = """
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/

   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION

   1. Definitions.

      "License" shall mean the terms and conditions for use, reproduction,
      and distribution as defined by Sections 1 through 9 of this document.

      "Licensor" shall mean the copyright owner or entity authorized by
      the copyright owner that is granting the License.

      "Legal Entity" shall mean the union of the acting entity and all
      other entities that control, are controlled by, or are under common
      control with that entity. For the purposes of this definition,
      "control" means (i) the power, direct or indirect, to cause the
      direction or management of such entity, whether by contract or
      otherwise, or (ii) ownership of fifty percent (50%) or more of the
      outstanding shares, or (iii) beneficial ownership of such entity.

      "You" (or "Your") shall mean an individual or Legal Entity
      exercising permissions granted by this License.

      "Source" form shall mean the preferred form for making modifications,
      including but not limited to software source code, documentation
      source, and configuration files.

      "Object" form shall mean any form resulting from mechanical
      transformation or translation of a Source form, including but
      not limited to compiled object code, generated documentation,
      and conversions to other media types.

      "Work" shall mean the work of authorship, whether in Source or
      Object form, made available under the License, as indicated by a
      copyright notice that is included in or attached to the work
      (an example is provided in the Appendix below).

      "Derivative Works" shall mean any work, whether in Source or Object
      form, that is based on (or derived from) the Work and for which the
      editorial revisions, annotations, elaborations, or other modifications
      represent, as a whole, an original work of authorship. For the purposes
      of this License, Derivative Works shall not include works that remain
      separable from, or merely link (or bind by name) to the interfaces of,
      the Work and Derivative Works thereof.

      "Contribution" shall mean any work of authorship, including
      the original version of the Work and any modifications or additions
      to that Work or Derivative Works thereof, that is intentionally
      submitted to Licensor for inclusion in the Work by the copyright owner
      or by an individual or Legal Entity authorized to submit on behalf of
      the copyright owner. For the purposes of this definition, "submitted"
      means any form of electronic, verbal, or written communication sent
      to the Licensor or its representatives, including but not limited to
      communication on electronic mailing lists, source code control systems,
      and issue tracking systems that are managed by, or on behalf of, the
      Licensor for the purpose of discussing and improving the Work, but
      excluding communication that is conspicuously marked or otherwise
      designated in writing by the copyright owner as "Not a Contribution."

      "Contributor" shall mean Licensor and any individual or Legal Entity
      on behalf of whom a Contribution has been received by Licensor and
      subsequently incorporated within the Work.

   2. Grant of Copyright License. Subject to the terms and conditions of
      this License, each Contributor hereby grants to You a perpetual,
      worldwide, non-exclusive, no-charge, royalty-free, irrevocable
      copyright license to reproduce, prepare Derivative Works of,
      publicly display, publicly perform, sublicense, and distribute the
      Work and such Derivative Works in Source or Object form.

   3. Grant of Patent License. Subject to the terms and conditions of
      this License, each Contributor hereby grants to You a perpetual,
      worldwide, non-exclusive, no-charge, royalty-free, irrevocable
      (except as stated in this section) patent license to make, have made,
      use, offer to sell, sell, import, and otherwise transfer the Work,
      where such license applies only to those patent claims licensable
      by such Contributor that are necessarily infringed by their
      Contribution(s) alone or by combination of their Contribution(s)
      with the Work to which such Contribution(s) was submitted. If You
      institute patent litigation against any entity (including a
      cross-claim or counterclaim in a lawsuit) alleging that the Work
      or a Contribution incorporated within the Work constitutes direct
      or contributory patent infringement, then any patent licenses
      granted to You under this License for that Work shall terminate
      as of the date such litigation is filed.

   4. Redistribution. You may reproduce and distribute copies of the
      Work or Derivative Works thereof in any medium, with or without
      modifications, and in Source or Object form, provided that You
      meet the following conditions:

      (a) You must give any other recipients of the Work or
          Derivative Works a copy of this License; and

      (b) You must cause any modified files to carry prominent notices
          stating that You changed the files; and

      (c) You must retain, in the Source form of any Derivative Works
          that You distribute, all copyright, patent, trademark, and
          attribution notices from the Source form of the Work,
          excluding those notices that do not pertain to any part of
          the Derivative Works; and

      (d) If the Work includes a "NOTICE" text file as part of its
          distribution, then any Derivative Works that You distribute must
          include a readable copy of the attribution notices contained
          within such NOTICE file, excluding those notices that do not
          pertain to any part of the Derivative Works, in at least one
          of the following places: within a NOTICE text file distributed
          as part of the Derivative Works; within the Source form or
          documentation, if provided along with the Derivative Works; or,
          within a display generated by the Derivative Works, if and
          wherever such third-party notices normally appear. The contents
          of the NOTICE file are for informational purposes only and
          do not modify the License. You may add Your own attribution
          notices within Derivative Works that You distribute, alongside
          or as an addendum to the NOTICE text from the Work, provided
          that such additional attribution notices cannot be construed
          as modifying the License.

      You may add Your own copyright statement to Your modifications and
      may provide additional or different license terms and conditions
      for use, reproduction, or distribution of Your modifications, or
      for any such Derivative Works as a whole, provided Your use,
      reproduction, and distribution of the Work otherwise complies with
      the conditions stated in this License.

   5. Submission of Contributions. Unless You explicitly state otherwise,
      any Contribution intentionally submitted for inclusion in the Work
      by You to the Licensor shall be under the terms and conditions of
      this License, without any additional terms or conditions.
      Notwithstanding the above, nothing herein shall supersede or modify
      the terms of any separate license agreement you may have executed
      with Licensor regarding such Contributions.

   6. Trademarks. This License does not grant permission to use the trade
      names, trademarks, service marks, or product names of the Licensor,
      except as required for reasonable and customary use in describing the
      origin of the Work and reproducing the content of the NOTICE file.

   7. Disclaimer of Warranty. Unless required by applicable law or
      agreed to in writing, Licensor provides the Work (and each
      Contributor provides its Contributions) on an "AS IS" BASIS,
      WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or
      implied, including, without limitation, any warranties or conditions
      of TITLE, NON-INFRINGEMENT, MERCHANTABILITY, or FITNESS FOR A
      PARTICULAR PURPOSE. You are solely responsible for determining the
      appropriateness of using or redistributing the Work and assume any
      risks associated with Your exercise of permissions under this License.

   8. Limitation of Liability. In no event and under no legal theory,
      whether in tort (including negligence), contract, or otherwise,
      unless required by applicable law (such as deliberate and grossly
      negligent acts) or agreed to in writing, shall any Contributor be
      liable to You for damages, including any direct, indirect, special,
      incidental, or consequential damages of any character arising as a
      result of this License or out of the use or inability to use the
      Work (including but not limited to damages for loss of goodwill,
      work stoppage, computer failure or malfunction, or any and all
      other commercial damages or losses), even if such Contributor
      has been advised of the possibility of such damages.

   9. Accepting Warranty or Additional Liability. While redistributing
      the Work or Derivative Works thereof, You may choose to offer,
      and charge a fee for, acceptance of support, warranty, indemnity,
      or other liability obligations and/or rights consistent with this
      License. However, in accepting such obligations, You may act only
      on Your own behalf and on Your sole responsibility, not on behalf
      of any other Contributor, and only if You agree to indemnify,
      defend, and hold each Contributor harmless for any liability
      incurred by, or claims asserted against, such Contributor by reason
      of your accepting any such warranty or additional liability.

   END OF TERMS AND CONDITIONS

   APPENDIX: How to apply the Apache License to your work.

      To apply the Apache License to your work, attach the following
      boilerplate notice, with the fields enclosed by brackets "[]"
      replaced with your own identifying information. (Don't include
      the brackets!)  The text should be enclosed in the appropriate
      comment syntax for the file format. We also recommend that a
      file or class name and description of purpose be included on the
      same "printed page" as the copyright notice for easier
      identification within third-party archives.

   Copyright [yyyy] [name of copyright owner]

   Licensed under the Apache License, Version 2.0 (the "License");
   you may not use this file except in compliance with the License.
   You may obtain a copy of the License at

       http://www.apache.org/licenses/LICENSE-2.0

   Unless required by applicable law or agreed to in writing, software
   distributed under the License is distributed on an "AS IS" BASIS,
   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
   See the License for the specific language governing permissions and
   limitations under the License.
"""

if __name__ == "__main__":
    sys.exit(main())
