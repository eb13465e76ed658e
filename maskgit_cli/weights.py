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
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from maskgit_cli import __version__
from maskgit_cli.errors import MaskgitError

AUX_PREFIX = "aux."  # tensors stored beside the weights, not part of the model's state dict

# kind -> (module, config dataclass, model class); imported only when a file of that kind is loaded.
MODEL_KINDS = {
    "vqgan": ("maskgit_cli.vqgan.model", "VQGANConfig", "VQGAN"),
    "transformer": ("maskgit_cli.transformer.model", "TransformerConfig", "MaskGITTransformer"),
}


def _classes(kind: str) -> tuple[type, type]:
    import importlib

    module, config_cls, model_cls = MODEL_KINDS[kind]
    mod = importlib.import_module(module)
    return getattr(mod, config_cls), getattr(mod, model_cls)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def config_from_json(cls: type, text: str, source: str = "config"):
    """Rebuild a dataclass config; unknown or invalid fields raise MaskgitError naming ``source``."""
    try:
        values = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise MaskgitError(f"{source}: unknown {cls.__name__} fields {unknown} (written by a newer maskgit?)")
        return cls(**values)
    except MaskgitError:
        raise
    except (ValueError, TypeError) as e:
        raise MaskgitError(f"{source}: invalid {cls.__name__} in metadata: {e}") from None


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


def read_metadata(path) -> dict[str, str]:
    """The metadata of a safetensors file, with one-line errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise MaskgitError(f"{path}: no such file")
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


def load_config(path, kind: str | None = None):
    """(kind, config) of a model file, without loading its tensors."""
    meta = read_metadata(path)
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
    """Rebuild a model from its file alone, load its weights strictly, and return it in eval mode."""
    file_kind, config = load_config(path, kind)
    model = _classes(file_kind)[1](config)
    load_state_dict_strict(model, read_tensors(path, keep=lambda k: not k.startswith(AUX_PREFIX)), str(path))
    return model.to(device).eval()


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is one MaskgitError listing them."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or misshaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise MaskgitError(f"{source}: weights do not match the model ({'; '.join(parts)})")
    model.load_state_dict(state, strict=True)


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
        except ValueError:
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


def load_torch_state_dict(path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` of a state_dict: never unpickles arbitrary objects.

    Unwraps ``{"state_dict"|"model_state_dict"|"model"|"transformer": sd}`` (two levels deep) and strips
    ``module.`` / ``_orig_mod.`` key prefixes. Errors name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MaskgitError(f"{what} {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (UnpicklingError, KeyError, RuntimeError, EOFError, ...)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise MaskgitError(
            f"{what} {path}: not a loadable PyTorch checkpoint with torch.load(weights_only=True) "
            f"({first}); save model.state_dict(), not the model object"
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
