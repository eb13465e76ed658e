"""Model files (safetensors with JSON metadata): round trip, kinds, strict loading, atomic writes, fingerprints."""

import json

import pytest
import torch

from maskgit_cli.errors import MaskgitError
from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS
from maskgit_cli.weights import (
    describe,
    load_config,
    load_model,
    model_fingerprint,
    read_metadata,
    save_model,
    save_tensors,
)


def test_round_trip_rebuilds_model_from_file_alone(tiny_vqgan, tiny_vqgan_file):
    meta = read_metadata(tiny_vqgan_file)
    assert meta["format"] == "pt" and meta["kind"] == "vqgan" and meta["maskgit_version"]
    assert json.loads(meta["config"])["num_codebook_vectors"] == 64
    loaded = load_model(tiny_vqgan_file, "vqgan")
    assert loaded.config == tiny_vqgan.config
    assert model_fingerprint(loaded) == model_fingerprint(tiny_vqgan)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded.encode(x), tiny_vqgan.encode(x))


def test_wrong_kind_is_an_error(tiny_vqgan_file):
    with pytest.raises(MaskgitError, match="is a vqgan file, expected a transformer file"):
        load_model(tiny_vqgan_file, "transformer")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(MaskgitError, match="no such file"):
        load_model(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(MaskgitError, match="bad.safetensors: not a readable safetensors file"):
        load_model(bad)


def test_file_without_kind_is_rejected(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_tensors(path, {"w": torch.zeros(2)}, {})
    with pytest.raises(MaskgitError, match="not a maskgit model file"):
        load_config(path)


def test_strict_loading_lists_bad_keys(tmp_path, tiny_vqgan):
    state = tiny_vqgan.state_dict()
    state.pop("quant_conv.bias")
    state["extra.weight"] = torch.zeros(1)
    state["codebook.embedding.weight"] = torch.zeros(3, 3)
    path = tmp_path / "broken.safetensors"
    save_tensors(path, state, {"kind": "vqgan", "config": json.dumps(VQGAN_PRESETS["tiny"].__dict__)})
    with pytest.raises(MaskgitError) as e:
        load_model(path)
    msg = str(e.value)
    assert "missing: quant_conv.bias" in msg and "unexpected: extra.weight" in msg
    assert "mis-shaped: codebook.embedding.weight (3, 3) != (64, 32)" in msg


def test_atomic_write_keeps_previous_file_on_failure(tmp_path, tiny_vqgan, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_model(path, tiny_vqgan, "vqgan")
    before = path.read_bytes()

    import maskgit_cli.weights as w

    def boom(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(w, "save_file", boom)
    with pytest.raises(OSError):
        save_model(path, VQGAN(VQGAN_PRESETS["tiny"]), "vqgan")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_describe_summarises_tensors(tiny_vqgan_file):
    info = describe(tiny_vqgan_file)
    assert info["kind"] == "vqgan"
    assert info["config"]["latent_dim"] == 32
    names = {t["name"]: t for t in info["tensors"]}
    assert names["codebook.embedding.weight"]["shape"] == [64, 32]
    assert info["num_elements"] == sum(p.numel() for p in VQGAN(VQGAN_PRESETS["tiny"]).state_dict().values())


def test_written_files_get_the_usual_permissions(tmp_path, tiny_vqgan):
    import os

    save_model(tmp_path / "m.safetensors", tiny_vqgan, "vqgan")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


def test_fingerprint_ignores_the_memory_layout(tiny_vqgan):
    import torch

    from maskgit_cli.weights import model_fingerprint

    before = model_fingerprint(tiny_vqgan)
    tiny_vqgan.to(memory_format=torch.channels_last)  # 1x1 convolutions get strides that view() rejects
    assert model_fingerprint(tiny_vqgan) == before
    with torch.no_grad():
        tiny_vqgan.codebook.embedding.weight[0, 0] += 1
    assert model_fingerprint(tiny_vqgan) != before
