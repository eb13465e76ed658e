"""Import the lab's checkpoints (plain PyTorch state_dicts in .pt files) into our safetensors models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .errors import MaskgitError
from .models.vqgan import VQGAN, VQGANConfig
from .weights import load_state_dict_strict

# VQGAN.yml `model_param` keys we read (REFERENCE §1.1); anything else in the file is ignored.
_YML_KEYS = (
    "image_channels",
    "enc_channels",
    "dec_channels",
    "latent_dim",
    "img_resolution",
    "latent_resolution",
    "num_codebook_vectors",
    "beta",
)


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


def read_vqgan_yml(path) -> VQGANConfig:
    """The lab's VQGAN.yml (`model_param` section) -> VQGANConfig with the lab's other structural defaults."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MaskgitError(f"{path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise MaskgitError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    params = doc.get("model_param", doc) if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise MaskgitError(f"{path}: expected a mapping with a 'model_param' section")
    values = {k: params[k] for k in _YML_KEYS if k in params}
    try:
        return VQGANConfig(**values)
    except (TypeError, ValueError) as e:
        raise MaskgitError(f"{path}: invalid VQGAN config ({e})") from None


def convert_lab_vqgan(pt_path, yml_path=None, mean=None, std=None) -> VQGAN:
    """Build a VQGAN from the lab's ``VQGAN.pt`` (+ ``VQGAN.yml``), strictly: every key and shape must match.

    The lab normalizes with its train mean/std (REFERENCE §1.1); pass ``mean``/``std`` to override.
    """
    config = read_vqgan_yml(yml_path) if yml_path is not None else VQGANConfig()
    if mean is not None or std is not None:
        config = dataclasses.replace(config, mean=tuple(mean or config.mean), std=tuple(std or config.std))
    model = VQGAN(config)
    load_state_dict_strict(model, load_torch_state_dict(pt_path, "VQGAN checkpoint"), str(pt_path))
    return model.eval()
