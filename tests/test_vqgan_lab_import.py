"""Importing the lab's VQGAN.pt (`maskgit convert-vqgan`): its VQGAN.yml, strict checks, and tokens equal to a
direct nearest-code search."""

import json

import numpy as np
import pytest
import torch

from maskgit_cli.errors import MaskgitError
from maskgit_cli.vqgan.lab_import import convert_lab_vqgan, read_vqgan_yml
from maskgit_cli.vqgan.model import LAB_TRAIN_MEAN, LAB_TRAIN_STD, VQGAN, VQGANConfig
from maskgit_cli.vqgan.tokens import load_token_cache
from maskgit_cli.weights import load_model, model_fingerprint

# The lab's block layout (docs/lab.md, "The VQGAN checkpoint") with narrower channels, so the test runs in a second.
NARROW = dict(
    enc_channels=[32, 32, 32, 64, 64, 64], dec_channels=[32, 32, 64, 64, 64], latent_dim=32, num_codebook_vectors=128
)


def write_lab_files(tmp_path, params: dict, seed: int = 0):
    """A lab-style VQGAN.pt (plain state_dict via torch.save) and VQGAN.yml with `model_param`."""
    torch.manual_seed(seed)
    model = VQGAN(VQGANConfig(**params))
    with torch.no_grad():  # spread the codes so that nearest-code search is not degenerate
        model.codebook.embedding.weight.normal_()
    pt, yml = tmp_path / "VQGAN.pt", tmp_path / "VQGAN.yml"
    torch.save(model.state_dict(), pt)
    lines = ["model_param:", "  image_channels: 3", "  img_resolution: 64", "  latent_resolution: 16", "  beta: 0.25"]
    lines += [f"  {k}: {v}" for k, v in params.items()]
    yml.write_text("\n".join(lines) + "\n")
    return model, pt, yml


def direct_tokens(model, images01):
    """Nearest code by torch.cdist, independent of the model's own search."""
    with torch.no_grad():
        z = model.quant_conv(model.encoder(model.normalize(images01)))
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        return torch.cdist(flat, model.codebook.embedding.weight).argmin(1).reshape(b, h, w)


def test_yml_is_read(tmp_path):
    _, _, yml = write_lab_files(tmp_path, NARROW)
    cfg = read_vqgan_yml(yml)
    assert cfg.enc_channels == (32, 32, 32, 64, 64, 64) and cfg.num_codebook_vectors == 128
    assert cfg.mean == LAB_TRAIN_MEAN


def test_convert_then_tokenize_equals_direct_nearest_code(tmp_path, cli, make_images):
    source, pt, yml = write_lab_files(tmp_path, NARROW)
    out = tmp_path / "lab-vqgan.safetensors"
    r = cli("convert-vqgan", pt, "--config", yml, "-o", out)
    assert r.exit_code == 0, r.output
    converted = load_model(out, "vqgan")
    assert converted.config.mean == LAB_TRAIN_MEAN
    for k, v in source.state_dict().items():
        assert torch.equal(converted.state_dict()[k], v), k

    images = make_images(tmp_path / "cats", 5)
    r = cli(
        "tokenize",
        tmp_path / "cats",
        "--vqgan",
        out,
        "-o",
        tmp_path / "cats.tokens",
        "--device",
        "cpu",
        "--batch-size",
        "2",
    )
    assert r.exit_code == 0, r.output
    cache = load_token_cache(tmp_path / "cats.tokens")
    from PIL import Image

    batch = torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in images])).permute(0, 3, 1, 2) / 255.0
    expected = direct_tokens(source, batch)
    assert torch.equal(cache.tokens, expected)
    assert len(set(expected.flatten().tolist())) > 1


def test_custom_mean_std(tmp_path, cli):
    _, pt, yml = write_lab_files(tmp_path, NARROW)
    out = tmp_path / "v.safetensors"
    r = cli("convert-vqgan", pt, "--config", yml, "-o", out, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25")
    assert r.exit_code == 0, r.output
    assert load_model(out).config.std == (0.25, 0.25, 0.25)
    r = cli("convert-vqgan", pt, "--config", yml, "-o", out, "--mean", "0.5,x")
    assert r.exit_code == 1 and "--mean" in r.stderr
    r = cli("convert-vqgan", pt, "--config", yml, "-o", out, "--mean", "0.4,0.4,0.4", "--json")
    info = json.loads(r.stdout)
    assert info["output"] == str(out) and info["mean"] == [0.4, 0.4, 0.4] and info["std"] == list(LAB_TRAIN_STD)
    assert info["vqgan_sha256"] == model_fingerprint(load_model(out)) and info["parameters"] > 0


def test_mismatched_checkpoint_lists_keys(tmp_path, cli):
    model, pt, yml = write_lab_files(tmp_path, NARROW)
    sd = model.state_dict()
    sd.pop("encoder.model.0.bias")
    sd["encoder.model.99.weight"] = torch.zeros(1)
    sd["codebook.embedding.weight"] = torch.zeros(7, 32)
    torch.save(sd, pt)
    out = tmp_path / "out.safetensors"
    r = cli("convert-vqgan", pt, "--config", yml, "-o", out)
    assert r.exit_code == 1
    line = r.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("Error: ")
    assert "missing: encoder.model.0.bias" in line and "unexpected: encoder.model.99.weight" in line
    assert "mis-shaped: codebook.embedding.weight (7, 32) != (128, 32)" in line
    assert not out.exists()


def test_checkpoint_without_yml_uses_lab_architecture(tmp_path):
    _, pt, _ = write_lab_files(tmp_path, NARROW)
    with pytest.raises(MaskgitError, match="mis-shaped"):
        convert_lab_vqgan(pt)


def test_not_a_checkpoint(tmp_path, cli):
    bad = tmp_path / "VQGAN.pt"
    bad.write_text("hello")
    r = cli("convert-vqgan", bad, "-o", tmp_path / "x.safetensors")
    assert r.exit_code == 1 and "VQGAN.pt: not a loadable PyTorch checkpoint" in r.stderr
    r = cli("convert-vqgan", tmp_path / "missing.pt", "-o", tmp_path / "x.safetensors")
    assert r.exit_code == 1 and "missing.pt: no such file" in r.stderr


class Evil:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": Evil()}, path)
    with pytest.raises(MaskgitError, match="not a loadable PyTorch checkpoint"):
        convert_lab_vqgan(path)


@pytest.mark.slow
def test_full_size_lab_checkpoint(tmp_path, cli, make_images):
    """The real lab size: 315 tensors, 70,775,299 parameters, loaded strictly; tokens equal the direct search."""
    params = dict(
        enc_channels=[128, 128, 128, 256, 256, 512],
        dec_channels=[128, 128, 256, 256, 512],
        latent_dim=256,
        num_codebook_vectors=1024,
    )
    source, pt, yml = write_lab_files(tmp_path, params)
    assert sum(p.numel() for p in source.parameters()) == 70_775_299
    out = tmp_path / "lab.safetensors"
    assert cli("convert-vqgan", pt, "--config", yml, "-o", out).exit_code == 0
    images = make_images(tmp_path / "cats", 2)
    assert (
        cli("tokenize", tmp_path / "cats", "--vqgan", out, "-o", tmp_path / "t.tokens", "--device", "cpu").exit_code
        == 0
    )
    from PIL import Image

    batch = torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in images])).permute(0, 3, 1, 2) / 255.0
    assert torch.equal(load_token_cache(tmp_path / "t.tokens").tokens, direct_tokens(source, batch))


# ---------------------------------------------------------------------------------------------------------
# A hostile VQGAN.yml (issue 28, item 12): one line naming the file and the field, before any model is built


@pytest.mark.parametrize(
    "field,value,problem",
    [
        ("latent_dim", "100000000", "must be a whole number from 1 to 4096, got 100000000"),
        ("latent_dim", "-3", "must be a whole number from 1 to 4096, got -3"),
        ("num_codebook_vectors", "0", "must be a whole number from 2 to 32768, got 0"),
        ("num_codebook_vectors", "1.0e+9", "must be a whole number from 2 to 32768, got 1000000000.0"),
        ("img_resolution", '"64"', "must be a whole number from 8 to 1024, got '64'"),
        ("image_channels", "true", "must be a whole number from 1 to 4, got True"),
        ("enc_channels", "[32, -32, 32]", "must be a list of 1 to 16 whole numbers from 1 to 4096, got [32, -32, 32]"),
        ("enc_channels", "[]", "must be a list of 1 to 16 whole numbers from 1 to 4096, got []"),
        ("dec_channels", "[" + ", ".join(["32"] * 100) + "]", "must be a list of 1 to 16 whole numbers from 1 to 4096"),
        ("dec_channels", "{a: 1}", "must be a list of 1 to 16 whole numbers from 1 to 4096, got {'a': 1}"),
        ("beta", ".nan", "must be a number from 0 to 1000, got nan"),
        ("beta", "-1", "must be a number from 0 to 1000, got -1"),
    ],
)
def test_bad_yml_fields_are_one_line_naming_the_file_and_field(tmp_path, cli, monkeypatch, field, value, problem):
    import maskgit_cli.vqgan.lab_import as lab_import

    _, pt, yml = write_lab_files(tmp_path, NARROW)
    lines = [line for line in yml.read_text().splitlines() if not line.startswith(f"  {field}:")]
    yml.write_text("\n".join([*lines, f"  {field}: {value}"]) + "\n")
    monkeypatch.setattr(lab_import, "VQGAN", lambda *a: pytest.fail("a model was built"))
    out = tmp_path / "out.safetensors"
    r = cli("convert-vqgan", pt, "--config", yml, "-o", out)
    assert r.exit_code == 1 and not out.exists()
    assert r.stderr.startswith(f"Error: {yml}: model_param.{field} {problem}") and r.stderr.count("\n") == 1


def test_sizes_in_range_that_do_not_fit_the_checkpoint_build_no_model(tmp_path, cli, monkeypatch):
    """The largest sizes the checks allow: the checkpoint's shapes are compared on the meta device, nothing is
    allocated (a real VQGAN of these sizes would take tens of gigabytes)."""
    import maskgit_cli.vqgan.lab_import as lab_import

    _, pt, yml = write_lab_files(tmp_path, NARROW)
    yml.write_text(
        "model_param:\n  enc_channels: [4096, 4096, 4096, 4096, 4096, 4096]\n  dec_channels: [4096, 4096, 4096, 4096, "
        "4096]\n  latent_dim: 4096\n  num_codebook_vectors: 32768\n"
    )
    built_on = []
    real = lab_import.VQGAN

    def spy(config):
        built_on.append(torch.empty(()).device.type)
        return real(config)

    monkeypatch.setattr(lab_import, "VQGAN", spy)
    r = cli("convert-vqgan", pt, "--config", yml, "-o", tmp_path / "out.safetensors")
    assert r.exit_code == 1 and "weights do not match the model (missing: " not in r.stderr
    assert r.stderr.startswith(f"Error: {pt}: weights do not match the model (") and r.stderr.count("\n") == 1
    assert set(built_on) == {"meta"}


@pytest.mark.parametrize(
    "text,problem",
    [
        ("model_param: [1, 2]\n", "expected a mapping with a 'model_param' section"),
        ("model_param:\n  latent_resolution: 48\n", "invalid VQGAN config (img_resolution/latent_resolution must be"),
        ("a: &a [1]\n" + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")), None),
        ("x" * (2 << 20), "bytes, not a VQGAN.yml (at most 1048576)"),
        ("model_param: " + "[" * 5000 + "]" * 5000 + "\n", "not valid YAML"),
    ],
)
def test_malformed_ymls_are_one_line(tmp_path, text, problem):
    yml = tmp_path / "VQGAN.yml"
    yml.write_text(text)
    if problem is None:  # an alias bomb with no model_param: the lab's defaults, read at once
        assert read_vqgan_yml(yml) == VQGANConfig()
        return
    with pytest.raises(MaskgitError) as e:
        read_vqgan_yml(yml)
    assert str(e.value).startswith(f"{yml}: ") and problem in str(e.value) and "\n" not in str(e.value)


def test_a_nan_weight_in_the_checkpoint_is_one_line_naming_it(tmp_path, cli):
    model, pt, yml = write_lab_files(tmp_path, NARROW)
    sd = model.state_dict()
    sd["decoder.model.0.weight"][0, 0, 0, 0] = float("inf")
    torch.save(sd, pt)
    r = cli("convert-vqgan", pt, "--config", yml, "-o", tmp_path / "out.safetensors")
    assert r.exit_code == 1 and not (tmp_path / "out.safetensors").exists()
    n = sd["decoder.model.0.weight"].numel()
    assert r.stderr == f"Error: {pt}: weights with NaN or infinite values: decoder.model.0.weight (1 of {n} values)\n"
