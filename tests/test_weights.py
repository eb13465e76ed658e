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


BAD_VQGAN_CONFIGS = [
    "not json {",
    "[1, 2]",
    '"a string"',
    "null",
    '{"enc_channels": 5}',
    '{"enc_channels": [128, "x"]}',
    '{"img_resolution": "x"}',
    '{"img_resolution": 64.5}',
    '{"beta": true}',
    '{"beta": NaN}',
    '{"latent_resolution": 0}',  # ZeroDivisionError inside the config's checks
    '{"img_resolution": 64, "latent_resolution": 32}',  # ValueError from __post_init__
    '{"mean": [0.5]}',
    '{"no_such_field": 1}',
]
BAD_TRANSFORMER_CONFIGS = [
    '{"norm": "middle"}',  # MaskgitError from __post_init__ (which does not name the file)
    '{"dim": 10, "n_heads": 3}',
    '{"dim": "768"}',
    '{"dropout": 2}',
    '{"per_position_bias": "yes"}',
]


@pytest.mark.parametrize(
    "kind, config", [("vqgan", c) for c in BAD_VQGAN_CONFIGS] + [("transformer", c) for c in BAD_TRANSFORMER_CONFIGS]
)
def test_invalid_config_metadata_is_one_error_naming_the_file(tmp_path, kind, config):
    path = tmp_path / "bad-config.safetensors"
    save_tensors(path, {"w": torch.zeros(2)}, {"kind": kind, "config": config})
    for load in (load_config, load_model):
        with pytest.raises(MaskgitError) as e:
            load(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value), config


def test_config_that_cannot_build_a_model_is_one_error(tmp_path, tiny_vqgan_file):
    cfg = dict(json.loads(read_metadata(tiny_vqgan_file)["config"]), latent_dim=-3)
    path = tmp_path / "negative.safetensors"
    save_tensors(path, {"w": torch.zeros(2)}, {"kind": "vqgan", "config": json.dumps(cfg)})
    with pytest.raises(MaskgitError, match="negative.safetensors: its vqgan config does not build a model"):
        load_model(path)


def test_bad_config_through_the_cli_is_one_line(tmp_path, image_dir, cli):
    path = tmp_path / "bad.safetensors"
    save_tensors(path, {"w": torch.zeros(2)}, {"kind": "vqgan", "config": '{"enc_channels": 5}'})
    r = cli("tokenize", image_dir, "--vqgan", path, "-o", tmp_path / "t.tokens", "--device", "cpu")
    assert r.exit_code == 1 and "Traceback" not in r.output and r.stderr.startswith("Error: ")
    assert len(r.stderr.strip().splitlines()) == 1 and "bad.safetensors" in r.stderr and "enc_channels" in r.stderr
    assert not (tmp_path / "t.tokens").exists()


def test_huge_config_is_refused_from_the_header_before_allocating(tmp_path, tiny_transformer, monkeypatch):
    import time

    import maskgit_cli.transformer.model as tm

    built_on = []

    class Spy(tm.MaskGITTransformer):
        def __init__(self, config):
            built_on.append(torch.empty(()).device.type)  # the default device while the model is built
            super().__init__(config)

    monkeypatch.setattr(tm, "MaskGITTransformer", Spy)
    cfg = dict(tiny_transformer.config.to_dict(), dim=4096, hidden_dim=16384)
    path = tmp_path / "huge.safetensors"
    save_tensors(path, tiny_transformer.state_dict(), {"kind": "transformer", "config": json.dumps(cfg)})
    start = time.perf_counter()
    with pytest.raises(MaskgitError) as e:
        load_model(path)
    assert time.perf_counter() - start < 5
    assert "huge.safetensors: weights do not match the model (mis-shaped: " in str(e.value)
    assert built_on == ["meta"]  # never built for real
    built_on.clear()
    save_model(tmp_path / "ok.safetensors", tiny_transformer, "transformer")
    loaded = load_model(tmp_path / "ok.safetensors")
    assert built_on == ["meta", "cpu"] and model_fingerprint(loaded) == model_fingerprint(tiny_transformer)


def test_huge_vqgan_channels_fail_fast(tmp_path, tiny_vqgan):
    cfg = json.loads(json.dumps(tiny_vqgan.config.__dict__))
    for key in ("enc_channels", "dec_channels"):
        cfg[key] = [100_000] * len(cfg[key])
    path = tmp_path / "wide.safetensors"
    save_tensors(path, tiny_vqgan.state_dict(), {"kind": "vqgan", "config": json.dumps(cfg)})
    with pytest.raises(MaskgitError, match="wide.safetensors: weights do not match the model"):
        load_model(path)


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path, tiny_vqgan):
    import os
    import time

    old = time.time() - 3600
    stale = tmp_path / ".m.safetensors.k1ll3d.tmp"
    fresh = tmp_path / ".m.safetensors.wr1t1ng.tmp"  # a concurrent writer's: must survive
    others = [tmp_path / ".other.safetensors.k1ll3d.tmp", tmp_path / ".m.safetensors.x.k1ll3d.tmp"]  # not ours
    for p in (stale, fresh, *others):
        p.write_bytes(b"partial")
    for p in (stale, *others):
        os.utime(p, (old, old))
    save_model(tmp_path / "m.safetensors", tiny_vqgan, "vqgan")
    assert not stale.exists() and fresh.exists() and all(p.exists() for p in others)
    assert load_model(tmp_path / "m.safetensors").config == tiny_vqgan.config


class PickledThing:
    """A class torch.load(weights_only=True) refuses to unpickle."""

    def __init__(self):
        self.value = 1


def test_unsafe_loading_is_never_suggested(tmp_path):
    from maskgit_cli.weights import load_torch_state_dict

    path = tmp_path / "object.pt"
    torch.save({"state_dict": PickledThing()}, path)
    with pytest.raises(MaskgitError) as e:
        load_torch_state_dict(path)
    msg = str(e.value)
    assert "object.pt" in msg and "not a plain state_dict that can be loaded safely" in msg and "\n" not in msg
    assert "PickledThing" in msg
    for advice in ("weights_only=False", "False", "trust", "safe_globals", "arbitrary code", "\x1b"):
        assert advice not in msg


def test_default_weights_are_found_in_a_checkout_and_missing_ones_named(monkeypatch):
    from pathlib import Path

    from maskgit_cli import weights

    root = Path(__file__).resolve().parents[1]
    assert weights.default_weights("vqgan") == root / "weights" / "vqgan-emoji64.safetensors"
    assert weights.default_weights("transformer") == root / "weights" / "maskgit-emoji64.safetensors"
    monkeypatch.setitem(weights.DEFAULT_WEIGHTS, "vqgan", "gone.safetensors")
    with pytest.raises(MaskgitError, match=r"default vqgan weights \(gone.safetensors\) .* pass --vqgan PATH"):
        weights.default_weights("vqgan")


# ---------------------------------------------------------------------------------------------------------
# A checkpoint archive that expands to far more than its size (issue 28, item 16)


def zip_bomb(path, declared: int, records: int = 1):
    """A zip laid out like torch.save's (``archive/...``) whose deflated records expand to ``declared`` bytes."""
    import zipfile

    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for i in range(records):
            with z.open(f"archive/data/{i}", "w", force_zip64=True) as f:
                for _ in range(declared // records // len(chunk)):
                    f.write(chunk)
        z.writestr("archive/data.pkl", b"")
    return path


def test_a_zip_bomb_checkpoint_is_refused_before_torch_reads_it(tmp_path, monkeypatch, cli):
    from maskgit_cli.weights import ARCHIVE_EXTRA, load_torch_state_dict

    path = zip_bomb(tmp_path / "VQGAN.pt", 3 * ARCHIVE_EXTRA)
    size = path.stat().st_size
    assert size < ARCHIVE_EXTRA // 100  # a few hundred kilobytes on disk
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load read the archive"))
    with pytest.raises(MaskgitError) as e:
        load_torch_state_dict(path, "VQGAN checkpoint")
    limit = 2 * size + ARCHIVE_EXTRA
    assert str(e.value) == (
        f"VQGAN checkpoint {path}: its records would expand to {3 * ARCHIVE_EXTRA:,} bytes from {size:,} on disk "
        f"(at most {limit:,}): not a checkpoint torch.save wrote"
    )
    r = cli("convert-vqgan", path, "-o", tmp_path / "out.safetensors")
    assert r.exit_code == 1 and r.stderr == f"Error: {e.value}\n" and not (tmp_path / "out.safetensors").exists()


def test_checkpoints_torch_saves_pass_the_archive_check(tmp_path, tiny_vqgan, monkeypatch):
    from maskgit_cli import weights

    path = tmp_path / "vqgan.pt"
    torch.save(tiny_vqgan.state_dict(), path)
    monkeypatch.setattr(weights, "ARCHIVE_EXTRA", 0)  # the slack alone: stored records add up to the file's size
    state = weights.load_torch_state_dict(path)
    assert state.keys() == tiny_vqgan.state_dict().keys()
    monkeypatch.setattr(weights, "ARCHIVE_MAX_RECORDS", 3)
    with pytest.raises(MaskgitError, match=r"vqgan.pt: a zip archive of \d+ records \(at most 3\)$"):
        weights.load_torch_state_dict(path)


# ---------------------------------------------------------------------------------------------------------
# Hostile metadata (issue 28: every file's metadata is untrusted)


def test_deeply_nested_metadata_is_shown_as_text_by_info(tmp_path, tiny_vqgan, cli):
    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / "deep.safetensors"
    save_model(path, tiny_vqgan, "vqgan", {"note": deep})
    assert describe(path)["note"] == deep
    r = cli("info", path)
    assert r.exit_code == 0 and "Traceback" not in r.output
    save_model(path, tiny_vqgan, "vqgan", {"config": deep})
    with pytest.raises(MaskgitError, match=r"deep.safetensors: invalid VQGANConfig in metadata: not valid JSON"):
        load_model(path)


@pytest.mark.parametrize(
    "kind,change,problem",
    [
        ("transformer", {"n_layers": 10**6}, "transformer n_layers must be at most 256, got 1000000."),
        ("transformer", {"dim": 10**9, "n_heads": 1}, "transformer dim must be at most 16384, got 1000000000."),
        ("vqgan", {"dec_res_blocks": 10**6}, "dec_res_blocks must have at most 64 blocks, got 1000000"),
        ("vqgan", {"enc_channels": [32] * 10**5}, "enc_channels must have at most 64 blocks, got 100000"),
    ],
)
def test_configs_of_absurd_sizes_are_refused_before_building(
    tmp_path, tiny_vqgan, tiny_transformer, kind, change, problem
):
    import time

    model = tiny_vqgan if kind == "vqgan" else tiny_transformer
    config = {**json.loads(json.dumps(model.config.__dict__)), **change}
    path = tmp_path / "absurd.safetensors"
    save_tensors(path, model.state_dict(), {"kind": kind, "config": json.dumps(config)})
    start = time.perf_counter()
    with pytest.raises(MaskgitError) as e:
        load_model(path)
    assert time.perf_counter() - start < 5
    assert str(e.value).startswith(f"{path}: invalid ") and str(e.value).endswith(problem)
