"""Import the lab's checkpoints (plain PyTorch state_dicts in .pt files) into our safetensors models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import yaml

from maskgit_cli.errors import MaskgitError, require_file
from maskgit_cli.vqgan.model import LAB_TEST_MEAN, LAB_TEST_STD, VQGAN, VQGANConfig
from maskgit_cli.weights import (
    check_state_shapes,
    load_state_dict_strict,
    load_torch_state_dict,
    model_fingerprint,
    save_model,
)

# VQGAN.yml `model_param` keys we read (docs/lab.md, "The VQGAN checkpoint"), each with what it must be: a whole
# number or a list of them in a range, or a finite number (beta). Anything else in the file is ignored. The maxima
# are far above any VQGAN this tool runs (the lab's: 3 channels, widths up to 512, 256 latent dims, 64x64 images,
# 1,024 codes) and keep a hostile file from building a model of many gigabytes.
_YML_FIELDS: dict[str, tuple[str, int, int]] = {
    "image_channels": ("int", 1, 4),
    "enc_channels": ("ints", 1, 4096),
    "dec_channels": ("ints", 1, 4096),
    "latent_dim": ("int", 1, 4096),
    "img_resolution": ("int", 8, 1024),
    "latent_resolution": ("int", 1, 1024),
    "num_codebook_vectors": ("int", 2, 32768),  # token caches hold int16 ids
    "beta": ("number", 0, 1000),
}
_MAX_STAGES = 16  # channel widths in enc_channels / dec_channels
_MAX_YML_BYTES = 1 << 20  # the lab's VQGAN.yml is well under 1 KiB


def _yml_problem(kind: str, low: int, high: int, value) -> str | None:
    """Why ``value`` (from YAML) cannot be this field, or None."""

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high

    if kind == "int":
        return None if whole(value) else f"must be a whole number from {low} to {high}"
    if kind == "ints":
        ok = isinstance(value, list) and 1 <= len(value) <= _MAX_STAGES and all(whole(v) for v in value)
        return None if ok else f"must be a list of 1 to {_MAX_STAGES} whole numbers from {low} to {high}"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high  # NaN fails
    return None if ok else f"must be a number from {low} to {high}"


def read_vqgan_yml(path) -> VQGANConfig:
    """The lab's VQGAN.yml (`model_param` section) -> VQGANConfig with the lab's other structural defaults.

    Every field is checked (type, range, a sane maximum) and the model is built on the ``meta`` device (no memory)
    before the config is returned: any problem is one line naming the file and the field."""
    path = Path(path)
    require_file(path)
    if path.stat().st_size > _MAX_YML_BYTES:
        raise MaskgitError(f"{path}: {path.stat().st_size} bytes, not a VQGAN.yml (at most {_MAX_YML_BYTES})")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise MaskgitError(
            f"{path}: not valid YAML ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    params = doc.get("model_param", doc) if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise MaskgitError(f"{path}: expected a mapping with a 'model_param' section")
    values = {k: params[k] for k in _YML_FIELDS if k in params}
    for name, value in values.items():
        problem = _yml_problem(*_YML_FIELDS[name], value)
        if problem:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise MaskgitError(f"{path}: model_param.{name} {problem}, got {shown}")
    try:
        config = VQGANConfig(**values)
    except (TypeError, ValueError) as e:
        raise MaskgitError(f"{path}: invalid VQGAN config ({e})") from None
    try:
        with torch.device("meta"):
            VQGAN(config)
    except Exception as e:  # noqa: BLE001 - sizes that pass their checks but do not fit together
        raise MaskgitError(f"{path}: its sizes do not build a VQGAN ({type(e).__name__}: {e})") from None
    return config


def convert_lab_vqgan(pt_path, yml_path=None, mean=None, std=None, test_mean=None, test_std=None) -> VQGAN:
    """Build a VQGAN from the lab's ``VQGAN.pt`` (+ ``VQGAN.yml``), strictly: every key and shape must match.

    The file records both of the lab's statistics (docs/lab.md, "Normalization"): its train mean/std (used by
    default) and its test mean/std (``--normalization test``, as the lab's inference); pass ``mean``/``std`` and
    ``test_mean``/``test_std`` to override them.
    """
    config = read_vqgan_yml(yml_path) if yml_path is not None else VQGANConfig()
    config = dataclasses.replace(
        config,
        mean=tuple(mean or config.mean),
        std=tuple(std or config.std),
        test_mean=tuple(test_mean or LAB_TEST_MEAN),
        test_std=tuple(test_std or LAB_TEST_STD),
    )
    state = load_torch_state_dict(pt_path, "VQGAN checkpoint")
    with torch.device("meta"):  # names and shapes first: a model is built only for a checkpoint that fits it
        expected = {k: tuple(v.shape) for k, v in VQGAN(config).state_dict().items()}
    check_state_shapes(expected, {k: tuple(v.shape) for k, v in state.items()}, str(pt_path))
    model = VQGAN(config)
    load_state_dict_strict(model, state, str(pt_path))
    return model.eval()


def convert_lab_vqgan_file(pt_path, output, yml_path=None, mean=None, std=None, test_mean=None, test_std=None) -> dict:
    """`maskgit convert-vqgan`: :func:`convert_lab_vqgan`, written to ``output`` as a model file; returns a summary."""
    model = convert_lab_vqgan(pt_path, yml_path, mean, std, test_mean, test_std)
    save_model(output, model, "vqgan")
    return {
        "output": str(output),
        "parameters": model.num_params(),
        "vqgan_sha256": model_fingerprint(model),
        "mean": list(model.config.mean),
        "std": list(model.config.std),
        "test_mean": list(model.config.test_mean),
        "test_std": list(model.config.test_std),
    }
