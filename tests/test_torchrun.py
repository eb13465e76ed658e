"""`maskgit tokenize` and `maskgit inpaint` under torchrun, 2 CPU processes over gloo (issue 24 item 5): each rank
takes a shard of the files (rank r: files r, r + 2, ...), and rank 0 alone writes what a single-process run writes
and reports it."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from maskgit_cli.weights import read_metadata, read_tensors

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node 2 -m maskgit_cli ARGS` on this tree, one thread a process."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "maskgit_cli", *map(str, args)]  # fmt: skip
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    progress = {"MASKGIT_NO_PROGRESS": "0", "MASKGIT_PROGRESS_EVERY": "1000"}  # the end line only
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **progress}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)


@pytest.mark.slow
def test_tokenize_under_torchrun_writes_the_single_process_cache(tmp_path, make_images, tiny_vqgan_file, cli):
    """7 images (shards of 4 and 3), flips and masked copies: the same tensors and metadata as one process."""
    images = tmp_path / "images"
    make_images(images, 7)
    options = ("--vqgan", tiny_vqgan_file, "--flip", "--masked-copies", "2", "--workers", "0", "--device", "cpu")
    r = _torchrun("tokenize", images, "-o", tmp_path / "ddp.tokens", "--batch-size", "2", *options)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("wrote ") == 1 and "14 token grids 16x16 + 2 masked copies each from 7 images" in r.stdout
    progress = [line for line in r.stderr.splitlines() if line.startswith("tokenize")]
    assert len(progress) == 1 and progress[0].startswith("tokenize (rank 0 of 2): 4/4 img"), r.stderr[-3000:]
    one = cli("tokenize", images, "-o", tmp_path / "one.tokens", "--batch-size", "3", *options)
    assert one.exit_code == 0, one.output
    ours, theirs = read_tensors(tmp_path / "ddp.tokens"), read_tensors(tmp_path / "one.tokens")
    assert (
        sorted(ours)
        == sorted(theirs)
        == sorted(["tokens", "code_patch_sums", "code_patch_counts", "masked_tokens", "masked_holes"])
    )
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype and ours[name].equal(tensor), name
    assert read_metadata(tmp_path / "ddp.tokens") == read_metadata(tmp_path / "one.tokens")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.tokens", "images", "one.tokens", "vqgan.safetensors"]


@pytest.mark.slow
def test_inpaint_under_torchrun_writes_the_single_process_folder(
    tmp_path, make_test_set, tiny_transformer_file, tiny_vqgan_file, cli
):
    """7 images, two samples each, grids for all: the same files, bit for bit, and the same report.json but for
    its timing, as one process. Batches of one image in both: the decode's floats may depend on the batch's size on
    some CPUs (an AMD EPYC Zen 4 differs by a pixel level between batches of 2 and 3, in fp32 too), which is not what
    this test is about."""
    make_test_set(tmp_path, 7)
    options = ("--images", tmp_path / "masked_image", "--masks", tmp_path / "mask64", "--transformer",
               tiny_transformer_file, "--vqgan", tiny_vqgan_file, "--num-samples", "2", "--grids", "all",
               "--total-iter", "6", "--device", "cpu")  # fmt: skip
    warm = cli("inpaint", *options, "-o", tmp_path / "warm")  # caches the code patches: both runs then read them
    assert warm.exit_code == 0, warm.output
    r = _torchrun("inpaint", *options, "-o", tmp_path / "ddp", "--batch-size", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("inpainted 7 images into") == 1
    assert (
        [line for line in r.stderr.splitlines() if line.startswith("inpaint:")]
        == [line for line in r.stderr.splitlines() if line.startswith("inpaint: 7/7 img")]
        != []
    )
    one = cli("inpaint", *options, "-o", tmp_path / "one", "--batch-size", "1")
    assert one.exit_code == 0, one.output
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "ddp") for p in (tmp_path / "ddp").rglob("*") if p.is_file())
    assert len([f for f in files if f.parts[0] == "images"]) == 14
    for f in files:
        if f.name != "report.json":
            assert (tmp_path / "ddp" / f).read_bytes() == (tmp_path / "one" / f).read_bytes(), f
    reports = [json.loads((tmp_path / d / "report.json").read_text()) for d in ("ddp", "one")]
    for report in reports:
        report.pop("seconds")
    assert reports[0] == reports[1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.slow
def test_a_bad_file_in_one_shard_stops_every_rank_and_writes_nothing(
    tmp_path, make_test_set, tiny_transformer_file, tiny_vqgan_file
):
    """An unreadable image in rank 1's shard: every rank stops with its one-line error (rank 0 does not wait for
    rank 1), no results folder and no staging folder are left."""
    make_test_set(tmp_path, 5)
    (tmp_path / "masked_image" / "image_003.png").write_bytes(b"not a png")
    r = _torchrun("inpaint", "--images", tmp_path / "masked_image", "--masks", tmp_path / "mask64", "--transformer",
                  tiny_transformer_file, "--vqgan", tiny_vqgan_file, "-o", tmp_path / "out", "--batch-size", "2",
                  "--device", "cpu", "--grids", "none")  # fmt: skip
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    bad = f"Error: {tmp_path / 'masked_image' / 'image_003.png'}: not a readable image"
    assert errors and all(line.startswith(bad) for line in errors), r.stderr[-3000:]
    assert "Traceback" not in r.stderr.split("torch/distributed")[0]  # ours: none; torchrun's own report follows
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
