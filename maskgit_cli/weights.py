"""Weights I/O: every model file is safetensors with its config in the metadata.

Metadata keys of a model file: ``format=pt``, ``kind`` (vqgan | transformer), ``config`` (JSON of the
model's dataclass config, enough to rebuild it) and ``maskgit_version``. Tensors whose names start with
``aux.`` are not weights (strict loading skips them): a transformer file may carry ``aux.code_patches`` for
known-pixel guidance (``guidance.py``) and then also records ``vqgan_sha256``. Token caches (see ``tokens.py``)
use the same container with ``kind=tokens``.

All writes are atomic: the file is written next to its destination under a temporary name and renamed
into place, so an interrupted write never leaves a half-written file or damages the previous one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import math
import os
import re
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from maskgit_cli._version import __version__
from maskgit_cli.errors import MaskgitError, require_file

AUX_PREFIX = "aux."  # tensors stored beside the weights, not part of the model's state dict

# kind -> (module, config dataclass, model class); imported only when a file of that kind is loaded.
MODEL_KINDS = {
    "vqgan": ("maskgit_cli.vqgan.model", "VQGANConfig", "VQGAN"),
    "transformer": ("maskgit_cli.transformer.model", "TransformerConfig", "MaskGITTransformer"),
}


DEFAULT_WEIGHTS = {"vqgan": "vqgan-emoji64.safetensors", "transformer": "maskgit-emoji64.safetensors"}


def default_weights(kind: str) -> Path:
    """The shipped emoji64 weights file of ``kind``: ``weights/`` of a checkout, or the copy installed inside the
    package (``maskgit_cli/default_weights/``, put there by ``pip install .``)."""
    name = DEFAULT_WEIGHTS[kind]
    here = Path(__file__).resolve().parent
    for folder in (here.parent / "weights", here / "default_weights"):
        if (folder / name).is_file():
            return folder / name
    raise MaskgitError(
        f"the default {kind} weights ({name}) are neither in this checkout's weights/ nor installed with the "
        f"package; pass --{kind} PATH"
    )


def _classes(kind: str) -> tuple[type, type]:
    module, config_cls, model_cls = MODEL_KINDS[kind]
    mod = importlib.import_module(module)
    return getattr(mod, config_cls), getattr(mod, model_cls)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it.

    Temporaries that killed writers left beside ``path`` are deleted first (:func:`remove_stale_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


STALE_TMP_SECONDS = 60.0  # a temporary file of atomic_path untouched this long was left by a killed writer


def remove_stale_temporaries(path: str | os.PathLike, max_age: float = STALE_TMP_SECONDS) -> list[Path]:
    """Delete the ``.{name}.*.tmp`` files beside ``path`` that :func:`atomic_path` left when its process was killed
    (SIGKILL skips the clean-up), if older than ``max_age`` seconds: a concurrent writer's fresh one is kept.
    Returns the files deleted; files that vanish or cannot be deleted meanwhile are left alone."""
    path = Path(path)
    # mkstemp's random part has no dot: `.m.x.RANDOM.tmp` belongs to `m.x`, not to `m`
    ours, removed, now = re.compile(rf"\.{re.escape(path.name)}\.[^.]+\.tmp"), [], time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if not ours.fullmatch(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > max_age:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Atomically write tensors + string metadata as safetensors."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "maskgit_version": __version__, **metadata})


def config_to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def _expected_type(f: dataclasses.Field) -> Any:
    """The default value of a config field (its type is what the JSON must hold), or MISSING."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _type_problem(default: Any, value: Any) -> str | None:
    """Why ``value`` (from JSON) cannot stand where ``default`` stands, or None."""
    if default is dataclasses.MISSING or default is None:
        return None
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        want = "a finite number"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a string"
    elif isinstance(default, (tuple, list)):
        if not isinstance(value, list):
            return f"must be a list, got {json.dumps(value)[:60]}"
        for item in value if default else ():
            problem = _type_problem(default[0], item)
            if problem:
                return f"items {problem.replace('must be', 'must each be', 1)}"
        return None
    else:
        return None
    return None if ok else f"must be {want}, got {json.dumps(value)[:60]}"


def config_from_json(cls: type, text: str, source: str = "config"):
    """Rebuild a dataclass config from untrusted JSON: any problem (not JSON, not an object, unknown fields, values
    of the wrong type, values the config refuses) is one MaskgitError naming ``source``."""
    what = f"{source}: invalid {cls.__name__} in metadata"
    try:
        values = json.loads(text)
    except (ValueError, TypeError, RecursionError) as e:
        raise MaskgitError(f"{what}: not valid JSON ({e})") from None
    if not isinstance(values, dict):
        raise MaskgitError(f"{what}: expected a JSON object, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise MaskgitError(f"{source}: unknown {cls.__name__} fields {unknown} (written by a newer maskgit?)")
    for name, value in values.items():
        problem = _type_problem(_expected_type(fields[name]), value)
        if problem:
            raise MaskgitError(f"{what}: {name} {problem}")
    try:
        return cls(**values)
    except Exception as e:  # noqa: BLE001 - __post_init__ checks raise ValueError, MaskgitError, ...
        raise MaskgitError(f"{what}: {e}") from None


def save_model(
    path,
    model: torch.nn.Module,
    kind: str,
    extra_metadata: dict[str, str] | None = None,
    aux: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save ``model`` (which has a ``.config`` dataclass) as a self-describing safetensors file, with ``aux``
    tensors (names starting with ``aux.``) beside the weights."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    if any(not k.startswith(AUX_PREFIX) for k in aux or {}):
        raise ValueError(f"aux tensor names must start with {AUX_PREFIX!r}")
    state = {**model.state_dict(), **(aux or {})}
    save_tensors(path, state, {"kind": kind, "config": config_to_json(model.config), **(extra_metadata or {})})


def read_metadata(path, expected: str = "a safetensors file") -> dict[str, str]:
    """The metadata of a safetensors file, with one-line errors for missing or corrupt files (``expected``: what
    the error for a folder says the path should be)."""
    path = Path(path)
    require_file(path, expected=expected)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise MaskgitError(f"{path}: not a readable safetensors file ({e})") from None


def read_tensors(path, keep: Callable[[str], bool] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; with ``keep``, only those whose name it accepts (the others are not read)."""
    path = Path(path)
    read_metadata(path)  # existence/format errors first
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys() if keep is None or keep(k)}
    except (SafetensorError, OSError, ValueError) as e:
        raise MaskgitError(f"{path}: not a readable safetensors file ({e})") from None


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes: the identity of a set of weights, whatever metadata."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # reshape(-1): logical order whatever the memory layout (e.g. a channels-last 1x1 convolution)
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    return tensors_fingerprint(model.state_dict())


def token_fingerprint(vqgan: torch.nn.Module, own: str | None = None) -> str:
    """The identity of a VQGAN's *tokens*, which token caches, transformer files and code patches record: its own
    fingerprint (``own``, when already computed), or the source's for a VQGAN whose decoder alone was fine-tuned
    (``config.tokens_of``, set by `maskgit tune-decoder`: the same encoder and codebook give the same tokens)."""
    return vqgan.config.tokens_of or own or model_fingerprint(vqgan)


def load_config(path, kind: str | None = None):
    """(kind, config) of a model file, without loading its tensors."""
    role = {"vqgan": "VQGAN", "transformer": "transformer"}.get(kind, "model")
    meta = read_metadata(path, f"a {role} weights file (.safetensors)")
    file_kind = meta.get("kind")
    if file_kind not in MODEL_KINDS:
        what = f"kind {file_kind!r}" if file_kind else "no 'kind' metadata"
        raise MaskgitError(f"{path}: not a maskgit model file ({what}); expected one of {sorted(MODEL_KINDS)}")
    if kind is not None and file_kind != kind:
        raise MaskgitError(f"{path}: is a {file_kind} file, expected a {kind} file")
    if "config" not in meta:
        raise MaskgitError(f"{path}: has no 'config' metadata")
    return file_kind, config_from_json(_classes(file_kind)[0], meta["config"], str(path))


def read_aux_tensors(path) -> dict[str, torch.Tensor]:
    """The tensors of a model file that are not weights (names starting with ``aux.``), e.g. code patches."""
    return read_tensors(path, keep=lambda k: k.startswith(AUX_PREFIX))


def load_model(path, kind: str | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model from its file alone, load its weights strictly, and return it in eval mode.

    The config is first built on the ``meta`` device (no memory) and its tensor names and shapes compared with the
    file's header, so a config claiming a huge model is refused before anything is allocated.
    """
    file_kind, config = load_config(path, kind)
    model_cls = _classes(file_kind)[1]
    try:
        with torch.device("meta"):
            skeleton = model_cls(config)
    except Exception as e:  # noqa: BLE001 - a config that passed its checks but cannot build a model
        raise MaskgitError(f"{path}: its {file_kind} config does not build a model ({type(e).__name__}: {e})") from None
    check_state_shapes(
        {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, read_shapes(path, keep=_is_weight), str(path)
    )
    del skeleton
    model = model_cls(config)
    load_state_dict_strict(model, read_tensors(path, keep=_is_weight), str(path))
    return model.to(device).eval()


def _is_weight(name: str) -> bool:
    return not name.startswith(AUX_PREFIX)


def read_shapes(path, keep: Callable[[str], bool] | None = None) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, without reading the tensors."""
    path = Path(path)
    read_metadata(path)  # existence/format errors first
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if keep is None or keep(k)}
    except (SafetensorError, OSError, ValueError) as e:
        raise MaskgitError(f"{path}: not a readable safetensors file ({e})") from None


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key, or a weight that is NaN or
    infinite, is one MaskgitError naming them."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_state_shapes(expected, {k: tuple(v.shape) for k, v in state.items()}, source)
    check_finite(state, source)
    model.load_state_dict(state, strict=True)


def check_finite(tensors: dict[str, torch.Tensor], source: str, what: str = "weights") -> None:
    """Refuse floating-point tensors holding NaN or an infinity, in one line naming the first few (a model with one
    NaN weight computes NaN logits, from which no code can be drawn)."""
    bad = []
    for name, t in tensors.items():
        if t.is_floating_point() or t.is_complex():
            n = int(t.numel() - torch.isfinite(t).sum())
            if n:
                bad.append(f"{name} ({n} of {t.numel()} values)")
    if bad:
        shown = ", ".join(bad[:4]) + (f", ... ({len(bad)} tensors in all)" if len(bad) > 4 else "")
        raise MaskgitError(f"{source}: {what} with NaN or infinite values: {shown}")


def check_state_shapes(expected: dict[str, tuple], given: dict[str, tuple], source: str) -> None:
    """Names and shapes of a model's state dict (``expected``) against a file's (``given``): any missing, unexpected
    or mis-shaped key is one MaskgitError listing them."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(given[k])} != {tuple(expected[k])}"
        for k in set(expected) & set(given)
        if tuple(given[k]) != tuple(expected[k])
    )
    if missing or unexpected or misshaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise MaskgitError(f"{source}: weights do not match the model ({'; '.join(parts)})")


def describe(path) -> dict[str, Any]:
    """What `maskgit info` prints: kind, metadata (configs parsed) and a tensor summary."""
    meta = read_metadata(path)
    info: dict[str, Any] = {
        "path": str(path),
        "kind": meta.get("kind", "unknown"),
        "maskgit_version": meta.get("maskgit_version"),
    }
    for key, value in sorted(meta.items()):
        if key in ("kind", "maskgit_version", "format"):
            continue
        try:
            info[key] = json.loads(value) if value[:1] in "[{" else value
        except (ValueError, RecursionError):  # untrusted metadata: shown as the string it is
            info[key] = value
    tensors = []
    total = 0
    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            sl = f.get_slice(name)
            shape = list(sl.get_shape())
            n = 1
            for s in shape:
                n *= s
            total += n
            tensors.append({"name": name, "dtype": sl.get_dtype(), "shape": shape})
    info["num_tensors"] = len(tensors)
    info["num_elements"] = total
    info["tensors"] = tensors
    return info


# ---------------------------------------------------------------------------------------------------------
# PyTorch checkpoints (.pt) of the lab's code, read without unpickling objects

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "transformer")
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile


# torch's advice to load unsafely (weights_only=False, allowlisting globals "if you trust" the file) is never repeated
_UNSAFE_ADVICE = re.compile(
    r"weights_only|trust|safe_globals|allowlist|arbitrary code|can still be loaded|two options|documentation", re.I
)


def _load_failure(e: Exception) -> str:
    """What went wrong in ``torch.load(weights_only=True)``, in one short phrase without torch's advice."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    found = re.search(r"GLOBAL ([\w.<>]+)", text)
    if found:
        return f"it holds a pickled Python object ({found.group(1)}), not only tensors"
    text = text.split("WeightsUnpickler error:", 1)[-1]
    sentences = [p.strip() for p in re.split(r"(?<=\.)\s+|\n", text) if p.strip()]
    kept = [p for p in sentences if not _UNSAFE_ADVICE.search(p)]
    detail = kept[0].rstrip(".")[:200] if kept else ""
    return f"{type(e).__name__}: {detail}" if detail else type(e).__name__


# What a checkpoint archive may expand to: torch.save stores its records uncompressed, so their declared sizes add
# up to about the file's size; a zip whose records claim more (a zip bomb) is refused before torch.load reads it.
ARCHIVE_SLACK = 2.0  # times the file's size ...
ARCHIVE_EXTRA = 64 << 20  # ... plus this many bytes
ARCHIVE_MAX_RECORDS = 100_000  # a state dict has one record per tensor storage, and a few more


def check_archive_size(path, what: str = "checkpoint") -> None:
    """Refuse, in one line, a zip archive (PyTorch's checkpoint format) whose records declare more bytes than
    ``ARCHIVE_SLACK`` x its size + ``ARCHIVE_EXTRA``, or more than ``ARCHIVE_MAX_RECORDS`` records, or whose directory
    cannot be read. Reads the zip's central directory only; a file that is not a zip is left to the loader."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise MaskgitError(f"{what} {path}: not a readable zip archive ({e})") from None
    if len(records) > ARCHIVE_MAX_RECORDS:
        raise MaskgitError(f"{what} {path}: a zip archive of {len(records)} records (at most {ARCHIVE_MAX_RECORDS})")
    declared = sum(r.file_size for r in records)
    limit = int(ARCHIVE_SLACK * size) + ARCHIVE_EXTRA
    if declared > limit:
        raise MaskgitError(
            f"{what} {path}: its records would expand to {declared:,} bytes from {size:,} on disk (at most "
            f"{limit:,}): not a checkpoint torch.save wrote"
        )


def load_torch_state_dict(path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` of a state_dict: never unpickles arbitrary objects.

    Unwraps ``{"state_dict"|"model_state_dict"|"model"|"transformer": sd}`` (two levels deep) and strips
    ``module.`` / ``_orig_mod.`` key prefixes. Errors name the file.
    """
    path = Path(path)
    require_file(path, what)
    check_archive_size(path, what)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (UnpicklingError, KeyError, RuntimeError, EOFError, ...)
        raise MaskgitError(
            f"{what} {path}: not a loadable PyTorch checkpoint with torch.load(weights_only=True), i.e. not a plain "
            f"state_dict that can be loaded safely ({_load_failure(e)}); save model.state_dict(), not the model object"
        ) from None
    for _ in range(2):  # e.g. {"model": {"state_dict": ...}}
        if isinstance(obj, dict):
            obj = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), obj)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MaskgitError(f"{what} {path}: expected a state_dict (a dict of tensors)")
    state = {}
    for key, value in obj.items():
        key = str(key)
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        state[key] = value
    return state
