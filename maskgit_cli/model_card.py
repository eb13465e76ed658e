"""Model folders and model cards, without torch: what a model is, what it was trained on, and how well it did.

A *model folder* is the unit `maskgit fit` writes and `inpaint --model`, `serve --model`,
``Inpainter.from_pretrained`` and `maskgit info` read: ``vqgan.safetensors``, ``transformer.safetensors``,
``card.json`` (the model card as data) and ``README.md`` (the card for people, written from card.json). The card's
fields: ``name``; ``trained_on`` (``folder``, ``images``, ``files_sha256``: the sha256 of the sorted relative file
names joined by newlines, ``resolution``); ``resolution``, ``tokens`` ([h, w]), ``downsample``, ``codes``;
``stages`` (per stage: ``stage``, ``seconds``, ``images_per_second``, ``steps``, ``validation``, and
``stopped_by`` = "time budget" where `fit --time-budget` ended it before its steps); ``device``,
``created`` (ISO date), ``maskgit_version``, ``command`` and ``note``, the one line users see (on the page, in
report.json). A card may name other weights files (``files``: {"vqgan": ..., "transformer": ...}), as the shipped
``weights/`` folder does. `fit` also stores the card in the transformer file's metadata (key ``model_card``), so a
transformer file copied out of its folder still says what it knows.

A model is given as a folder, or as a Hugging Face Hub id (``ORG/NAME``) found in the local Hub cache
(``huggingface_hub.snapshot_download(..., local_files_only=True)``; a download only when asked for).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open

from maskgit_cli.errors import MaskgitError

CARD_FILE = "card.json"
README_FILE = "README.md"
FILES = {"vqgan": "vqgan.safetensors", "transformer": "transformer.safetensors"}  # a model folder's weights
CARD_KEY = "model_card"  # the transformer file's metadata key that holds the card (JSON)
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass
class ModelFolder:
    """A model folder: its two weights files and its card ({} when it has none)."""

    path: Path
    vqgan: Path
    transformer: Path
    card: dict[str, Any] = field(default_factory=dict)


def files_sha256(names: Iterable[str]) -> str:
    """The card's ``files_sha256``: the sha256 of the sorted relative file names, one per line."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with a card.json or both default weights files."""
    path = Path(path)
    return path.is_dir() and ((path / CARD_FILE).is_file() or all((path / f).is_file() for f in FILES.values()))


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    """The card.json of ``folder`` ({} when there is none); a card that is not a JSON object is one line."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_CARD_BYTES:
        raise MaskgitError(f"{path}: not a model card ({path.stat().st_size:,} bytes, at most {MAX_CARD_BYTES:,})")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise MaskgitError(f"{path}: not a model card (not UTF-8 text: {e.reason} at byte {e.start})") from None
    return _card_json(text, str(path))


# What each field of a card must hold where it is present (cards are untrusted: a folder or a file from anyone):
# "str", "int", "number", "dict" (of anything), or a nested schema: a dict of field -> kind, or a one-item list
# (a list of such items). Fields not named here are kept as they are and never read.
_STAGE = {"stage": "str", "seconds": "number", "images_per_second": "number", "steps": "int", "device": "str",
          "validation": "dict"}  # fmt: skip
CARD_SCHEMA: dict[str, Any] = {
    "name": "str",
    "note": "str",
    "files": {"vqgan": "file", "transformer": "file"},
    "trained_on": {"folder": "str", "images": "int", "files_sha256": "str", "resolution": "int"},
    "split": {"val_images": "int", "rule": "str"},
    "preset": "str",
    "sizing": "str",
    "time_budget_minutes": "number",
    "resolution": "int",
    "tokens": ["int"],
    "downsample": "int",
    "codes": "int",
    "stages": [_STAGE],
    "test": "dict",
    "device": "str",
    "created": "str",
    "maskgit_version": "str",
    "command": "str",
}
MAX_CARD_BYTES = 1 << 20  # a card is a few kilobytes
_KINDS = {"str": "a string", "int": "a whole number", "number": "a number", "dict": "a JSON object",
          "file": "a file name in the model folder"}  # fmt: skip


def _card_problem(value, kind, where: str) -> str | None:
    """Why ``value`` is not of ``kind`` (a name of :data:`_KINDS`, a dict schema or a one-item list), or None."""
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            return f"{where} must be a JSON object"
        for key, sub in kind.items():
            if value.get(key) is not None and (problem := _card_problem(value[key], sub, f"{where}.{key}")):
                return problem
        return None
    if isinstance(kind, list):
        if not isinstance(value, list):
            return f"{where} must be a list"
        return next((p for i, v in enumerate(value) if (p := _card_problem(v, kind[0], f"{where}[{i}]"))), None)
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        "dict": isinstance(value, dict),
        "file": isinstance(value, str) and value not in ("", ".", "..") and Path(value).name == value,
    }[kind]
    return None if ok else f"{where} must be {_KINDS[kind]}"


def _card_json(text: str, source: str) -> dict[str, Any]:
    """A card from untrusted JSON: not JSON, too large or deep, not an object, or a field of the wrong kind
    (:data:`CARD_SCHEMA`) is one line naming ``source``."""
    if len(text) > MAX_CARD_BYTES:
        raise MaskgitError(f"{source}: not a model card ({len(text):,} characters, at most {MAX_CARD_BYTES:,})")
    try:
        card = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise MaskgitError(f"{source}: not a model card (not valid JSON: {e})") from None
    if not isinstance(card, dict):
        raise MaskgitError(f"{source}: not a model card (expected a JSON object)")
    problem = _card_problem(card, CARD_SCHEMA, "card")
    if problem:
        raise MaskgitError(f"{source}: not a model card ({problem.removeprefix('card.')})")
    return card


def write_card(folder: str | os.PathLike, card: dict[str, Any]) -> None:
    """Write ``card`` as card.json and README.md into ``folder``, each file whole or not at all."""
    folder = Path(folder)
    _write_atomic(folder / CARD_FILE, json.dumps(card, indent=2) + "\n")
    _write_atomic(folder / README_FILE, card_readme(card))


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# Opening a model: a folder or a Hub id


def open_model_folder(path: str | os.PathLike) -> ModelFolder:
    """The model folder ``path`` (its card may name other weights files); one line when something is missing."""
    path = Path(path)
    if not path.is_dir():
        raise MaskgitError(f"--model {path}: no such folder")
    card = read_card(path)
    names = {**FILES, **(card.get("files") or {})}
    files = {kind: path / names[kind] for kind in FILES}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise MaskgitError(
            f"--model {path}: not a model folder (no {' or '.join(missing)}; `maskgit fit` makes model folders)"
        )
    return ModelFolder(path, files["vqgan"], files["transformer"], card)


def resolve_model(model: str | os.PathLike, cache_dir=None, download: bool = False) -> ModelFolder:
    """A model folder, or a Hugging Face Hub id (``ORG/NAME``) in the local Hub cache (``cache_dir``: the Hub's
    default cache when None); ``download``: fetch it from the Hub when the cache does not hold it."""
    path = Path(model)
    if path.exists() or not HUB_ID.fullmatch(str(model)):
        return open_model_folder(path)
    return open_model_folder(hub_snapshot(str(model), cache_dir, download))


def names_a_model(value) -> bool:
    """Whether ``value`` names a model (a folder, or a Hub id that is no local path) rather than a weights file."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    path, text = Path(value), str(value)
    return path.is_dir() or (not path.exists() and bool(HUB_ID.fullmatch(text)) and not text.endswith(".safetensors"))


def hub_snapshot(repo_id: str, cache_dir=None, download: bool = False) -> Path:
    """The folder of ``repo_id``'s files in the Hugging Face cache (through ``huggingface_hub``)."""
    try:
        from huggingface_hub import snapshot_download  # optional: installed with the web extra
    except ImportError:
        raise MaskgitError(
            f"{repo_id}: no such folder; a Hugging Face Hub id needs huggingface_hub (pip install 'maskgit-cli[web]')"
        ) from None
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=not download))
    except Exception as e:  # noqa: BLE001 - the Hub's errors are many (not cached, offline, no such repo)
        where = (
            "on the Hugging Face Hub"
            if download
            else (
                f"in the local Hugging Face cache (fetch it first: `hf download {repo_id}`; from Python: download=True)"
            )
        )
        raise MaskgitError(f"{repo_id}: no such folder, and not {where} ({type(e).__name__})") from None


def model_weights(model, transformer, vqgan) -> tuple[Any, Any]:
    """``(transformer, vqgan)`` from the options --model, --transformer and --vqgan (None: not given): the model
    folder's files, or the files given (the card is found from the transformer file: :func:`card_for`)."""
    if model is None:
        return transformer, vqgan
    if transformer is not None or vqgan is not None:
        raise MaskgitError("--model names both weights files: give --model alone, or --transformer and --vqgan")
    folder = resolve_model(model)
    return folder.transformer, folder.vqgan


def card_for(transformer) -> dict[str, Any]:
    """The card of a transformer weights file: its model folder's card.json when that names the file, else the
    card in its metadata; {} when it has none (or ``transformer`` is a model, not a file)."""
    if not isinstance(transformer, (str, os.PathLike)):
        return {}
    path = Path(transformer)
    card = read_card(path.parent) if path.parent.is_dir() else {}
    if card and (card.get("files") or FILES).get("transformer", FILES["transformer"]) == path.name:
        return card
    return card_in_metadata(path)


def card_in_metadata(path: Path) -> dict[str, Any]:
    """The card `fit` stored in a weights file's metadata ({} when none or unreadable)."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            text = (f.metadata() or {}).get(CARD_KEY)
    except Exception:  # noqa: BLE001 - a file that cannot be read has no card; loading it says why
        return {}
    return _card_json(text, f"{path} ({CARD_KEY})") if text else {}


def card_summary(card: dict[str, Any]) -> dict[str, Any] | None:
    """What report.json records of a card: its name and note (None without a card)."""
    return {"name": card.get("name"), "note": card.get("note")} if card else None


# ---------------------------------------------------------------------------------------------------------
# The card for people: `maskgit info MODEL` and README.md


def card_lines(card: dict[str, Any]) -> list[tuple[str, str]]:
    """The card as (label, text) lines, in the order people read it (fields the card lacks are left out)."""
    lines = []
    data = card.get("trained_on") or {}
    if data:
        digest = f", files sha256 {str(data['files_sha256'])[:12]}" if data.get("files_sha256") else ""
        lines.append(("trained on", f"{data.get('folder')}: {_count(data.get('images'))} images{digest}"))
    split = card.get("split") or {}
    if split:
        text = f"{_count(split.get('val_images'))} images: {split.get('rule')}"
        lines.append(("validated on", text))
    if card.get("preset"):
        budget = card.get("time_budget_minutes")
        text = f"preset {card['preset']}, {card.get('sizing')} sizing" + (f", {budget:g} min budget" if budget else "")
        lines.append(("settings", text))
    if card.get("resolution"):
        tokens = "x".join(str(t) for t in card.get("tokens") or [])
        parts = [f"{card['resolution']}x{card['resolution']} images", tokens and f"{tokens} tokens",
                 card.get("downsample") and f"downsample {card['downsample']}",
                 card.get("codes") and f"{_count(card['codes'])} codes"]  # fmt: skip
        lines.append(("model", ", ".join(p for p in parts if p)))
    for stage in card.get("stages") or []:
        lines.append((f"stage {stage.get('stage')}", stage_text(stage)))
    for key in ("test", "device", "created", "maskgit_version", "command"):
        if card.get(key):
            value = card[key]
            lines.append((key, _figures(value) if isinstance(value, dict) else str(value)))
    return lines


def stage_text(stage: dict[str, Any]) -> str:
    """One stage of a card: time, speed, steps, validation figures (and where it ran, when the card says)."""
    parts = [_duration(stage.get("seconds"))]
    if stage.get("images_per_second"):
        parts.append(f"{stage['images_per_second']:,.1f} img/s")
    if stage.get("steps"):
        parts.append(f"{_count(stage['steps'])} steps")
    if stage.get("stopped_by"):
        parts.append(f"stopped by the {stage['stopped_by']}")
    if stage.get("device"):
        parts.append(str(stage["device"]))
    validation = stage.get("validation") or {}
    return ", ".join(p for p in parts if p) + (f"; validation: {_figures(validation)}" if validation else "")


def card_readme(card: dict[str, Any]) -> str:
    """README.md of a model folder: the card as a page (title, note, the card's lines, how to use it)."""
    rows = "".join(f"| {label} | {text.replace('|', '/')} |\n" for label, text in card_lines(card))
    return (
        f"# {card.get('name', 'maskgit model')}\n\n{card.get('note', '')}\n\n| | |\n|---|---|\n{rows}\n"
        "## Use it\n\n```bash\nmaskgit inpaint --model THIS_FOLDER --images photos --mask-kind stroke -o out\n"
        "maskgit serve --model THIS_FOLDER\n```\n\n"
        '```python\nfrom maskgit_cli import Inpainter\n\npipe = Inpainter.from_pretrained("THIS_FOLDER")\n```\n\n'
        "The card as data: card.json.\n"
    )


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _figures(values: dict[str, Any]) -> str:
    """``psnr 28.49, ssim 0.936``: floats with 4 significant digits."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
