"""Import the lab's checkpoints (plain PyTorch state_dicts in .pt files) into our safetensors models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from maskgit_cli.errors import MaskgitError, require_file
from maskgit_cli.vqgan.model import LAB_TEST_MEAN, LAB_TEST_STD, VQGAN, VQGANConfig
from maskgit_cli.weights import load_state_dict_strict, load_torch_state_dict, model_fingerprint, save_model

# VQGAN.yml `model_param` keys we read (docs/lab.md, "The VQGAN checkpoint"); anything else in the file is ignored.
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


def read_vqgan_yml(path) -> VQGANConfig:
    """The lab's VQGAN.yml (`model_param` section) -> VQGANConfig with the lab's other structural defaults."""
    path = Path(path)
    require_file(path)
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
    model = VQGAN(config)
    load_state_dict_strict(model, load_torch_state_dict(pt_path, "VQGAN checkpoint"), str(pt_path))
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
