"""`maskgit tune-decoder`: the decoder learns, the tokens stay; exact resume; the tuned VQGAN stands in for its source
wherever its tokens are checked (tokenize, train, inpaint)."""

import json

import pytest
import torch

from maskgit_cli.errors import MaskgitError
from maskgit_cli.vqgan.train import evaluate_vqgan, load_images_uint8
from maskgit_cli.vqgan.tune_decoder import TuneDecoderConfig, encode_all, tune_decoder
from maskgit_cli.weights import load_model, model_fingerprint, read_metadata, read_tensors, token_fingerprint


def cfg(**kw):
    base = dict(max_steps=8, batch_size=4, lr=3e-3, warmup_steps=1, eval_every=4, log_every=2, device="cpu")
    return TuneDecoderConfig(**{**base, **kw})


def test_tuning_lowers_the_loss_and_keeps_every_token(tmp_path, make_images, tiny_vqgan_file):
    make_images(tmp_path / "train", 8)
    make_images(tmp_path / "val", 4, seed=1)
    s = tune_decoder(
        tiny_vqgan_file, tmp_path / "train", tmp_path / "val", tmp_path / "run", cfg(max_steps=24, eval_every=12)
    )
    assert s["status"] == "finished" and s["step"] == 24
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    l2 = [r["l2"] for r in records if r["kind"] == "train"]
    assert l2[-1] < 0.75 * l2[0]  # the decoder learns
    psnr = [r["psnr"] for r in records if r["kind"] == "val"]
    assert len(psnr) == 2 and s["best_psnr"] == max(psnr)
    source = load_model(tiny_vqgan_file, "vqgan")
    val = load_images_uint8(tmp_path / "val", 64, False, "val")[0]
    assert s["source_psnr"] == evaluate_vqgan(source, val, 128, torch.device("cpu"))["psnr"] < s["best_psnr"]

    tuned = load_model(tmp_path / "run" / "best.safetensors", "vqgan")
    changed = set()
    for name, value in source.state_dict().items():
        if torch.equal(tuned.state_dict()[name], value):
            continue
        changed.add(name.split(".")[0])
    assert changed == {"decoder", "post_quant_conv"}  # encoder, quant_conv and codebook frozen
    images = (torch.rand(5, 3, 64, 64) * 255).to(torch.uint8)
    assert torch.equal(encode_all(tuned, images, flip=True), encode_all(source, images, flip=True))
    assert tuned.config.tokens_of == model_fingerprint(source) == token_fingerprint(tuned) != model_fingerprint(tuned)
    assert read_metadata(tmp_path / "run" / "best.safetensors")["trainer"] == "tune-decoder"


def test_resume_is_exact(tmp_path, make_images, tiny_vqgan_file):
    make_images(tmp_path / "train", 8)
    tune_decoder(tiny_vqgan_file, tmp_path / "train", None, tmp_path / "a", cfg())
    tune_decoder(tiny_vqgan_file, tmp_path / "train", None, tmp_path / "b", cfg(stop_at=3))
    tune_decoder(tiny_vqgan_file, tmp_path / "train", None, tmp_path / "b", cfg(), resume=True)
    a, b = read_tensors(tmp_path / "a" / "last.safetensors"), read_tensors(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tuning_a_tuned_vqgan_keeps_the_first_source(tmp_path, make_images, tiny_vqgan_file):
    make_images(tmp_path / "train", 4)
    tune_decoder(tiny_vqgan_file, tmp_path / "train", None, tmp_path / "a", cfg(max_steps=2))
    tune_decoder(tmp_path / "a" / "last.safetensors", tmp_path / "train", None, tmp_path / "b", cfg(max_steps=2))
    twice = load_model(tmp_path / "b" / "last.safetensors", "vqgan")
    assert token_fingerprint(twice) == model_fingerprint(load_model(tiny_vqgan_file, "vqgan"))


def test_bad_loss_weights_are_refused():
    with pytest.raises(MaskgitError, match="--l1-weight 0.0 / --l2-weight 0.0"):
        TuneDecoderConfig(l1_weight=0.0, l2_weight=0.0)


def test_the_tuned_vqgan_stands_in_for_its_source(cli, image_dir, tiny_vqgan, tiny_vqgan_file, tmp_path):
    # a transformer trained on the source's tokens ...
    cache = tmp_path / "train.tokens"
    assert cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", cache, "--device", "cpu").exit_code == 0
    run = tmp_path / "transformer"
    r = cli("train", cache, "-o", run, "--preset", "tiny", "--max-steps", "2", "--batch-size", "4", "--device", "cpu")
    assert r.exit_code == 0, r.output
    # ... and the source's decoder tuned from the command line
    r = cli("tune-decoder", image_dir, "--vqgan", tiny_vqgan_file, "--val", image_dir, "-o", tmp_path / "tuned",
            "--max-steps", "2", "--batch-size", "4", "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output
    tuned = tmp_path / "tuned" / "best.safetensors"  # with --val: the best validation PSNR
    assert f"weights: {tuned}" in r.stdout and "(the source VQGAN: " in r.stdout

    # tokenize: the same tokens, recorded under the same identity
    again = tmp_path / "tuned.tokens"
    assert cli("tokenize", image_dir, "--vqgan", tuned, "-o", again, "--device", "cpu").exit_code == 0
    assert torch.equal(read_tensors(again)["tokens"], read_tensors(cache)["tokens"])
    assert read_metadata(again)["vqgan_sha256"] == read_metadata(cache)["vqgan_sha256"]

    # inpaint: accepted without --any-vqgan, code patches of the training images used; the report names the tuned file
    masks = tmp_path / "masks"
    assert cli("masks", image_dir, "-o", masks, "--kind", "stroke").exit_code == 0
    args = ["inpaint", "--images", image_dir, "--masks", masks, "--transformer", run / "last.safetensors"]
    r = cli(*args, "--vqgan", tuned, "-o", tmp_path / "out", "--grids", "0", "--device", "cpu")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["settings"]["code_patches"] == "training images"
    assert report["settings"]["vqgan_sha256"] == model_fingerprint(load_model(tuned, "vqgan"))


def test_the_command_names_what_is_missing(cli, image_dir, tmp_path):
    r = cli("tune-decoder", image_dir, "-o", tmp_path / "run")
    assert r.exit_code == 1 and "--vqgan FILE" in r.stderr and not (tmp_path / "run").exists()
    r = cli("tune-decoder", image_dir, "--vqgan", tmp_path / "missing.safetensors", "-o", tmp_path / "run")
    assert r.exit_code == 1 and "missing.safetensors" in r.stderr
