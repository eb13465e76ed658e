"""Benchmarks report consistent ratios (never timed assertions)."""

import json

import pytest


def test_bench_train_json(cli):
    r = cli("bench", "train", "--preset", "tiny", "--device", "cpu", "--batch-size", "4", "--steps", "1", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["preset"] == "tiny" and d["batch_size"] == 4 and d["images_per_second"] > 0
    assert d["achieved_tflops"] == pytest.approx(d["images_per_second"] * d["gflop_per_image"] / 1e3, rel=1e-6)
    assert d["mfu"] == pytest.approx(d["achieved_tflops"] / d["peak_tflops"], rel=1e-6)


def test_bench_inpaint_json(cli):
    r = cli(
        "bench",
        "inpaint",
        "--preset",
        "tiny",
        "--vqgan-preset",
        "tiny",
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--total-iter",
        "2",
        "--json",
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["images_per_second"] > 0 and d["decode_only_images_per_second"] > 0 and d["total_iter"] == 2


def test_bench_errors(cli):
    assert cli("bench", "train", "--preset", "huge", "--device", "cpu").exit_code == 2  # a bad option value
    assert cli("bench", "inpaint", "--vqgan-preset", "huge", "--device", "cpu").exit_code == 2
    assert cli("bench", "train", "--precision", "fp8").exit_code == 2


def test_bench_tokenize_json(cli, tmp_path, make_images):
    args = ["--vqgan-preset", "tiny", "--device", "cpu", "--batch-size", "4", "--workers", "0", "--json"]
    r = cli("bench", "tokenize", "--images", "6", *args)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(d) == {"device", "vqgan_preset", "batch_size", "images", "workers", "precision", "images_per_second",
                      "seconds"}  # fmt: skip
    assert d["images"] == 6 and d["vqgan_preset"] == "tiny" and d["precision"] == "fp32"
    assert d["images_per_second"] == pytest.approx(d["images"] / d["seconds"], rel=1e-6)
    make_images(tmp_path / "pngs", 5)
    d = json.loads(cli("bench", "tokenize", "--folder", tmp_path / "pngs", *args).stdout)
    assert d["images"] == 5  # the folder's images, not random ones
    r = cli("bench", "tokenize", "--folder", tmp_path / "nothing", "--device", "cpu")
    assert r.exit_code == 1 and "not a folder of images" in r.stderr
