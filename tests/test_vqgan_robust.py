"""`maskgit robust-vqgan`: the encoder learns to keep the context tokens; exact resume; the exported VQGAN."""

import json

import torch

from maskgit_cli.vqgan.robust import RobustConfig, mask_bank, measure_context_fidelity, robust_vqgan, step_holes
from maskgit_cli.weights import load_model, read_metadata, read_tensors


def cfg(**kw):
    base = dict(max_steps=8, batch_size=4, lr=3e-3, warmup_steps=1, eval_every=4, log_every=2, device="cpu")
    return RobustConfig(**{**base, **kw})


def test_fine_tuning_raises_context_fidelity_and_keeps_the_decoder(tmp_path, make_images, tiny_vqgan_file):
    make_images(tmp_path / "train", 8)
    make_images(tmp_path / "val", 4, seed=1)
    s = robust_vqgan(
        tiny_vqgan_file, tmp_path / "train", tmp_path / "val", tmp_path / "run", cfg(max_steps=24, eval_every=24)
    )
    assert s["status"] == "finished" and s["step"] == 24
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    masked = [r["masked"] for r in records if r["kind"] == "train"]
    assert masked[-1] < masked[0]  # the masked context moves toward the clean codes
    student = load_model(tmp_path / "run" / "best.safetensors", "vqgan")
    teacher = load_model(tiny_vqgan_file, "vqgan")
    assert student.config.hole_blind and not teacher.config.hole_blind
    for name, value in teacher.state_dict().items():
        if not name.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(student.state_dict()[name], value), name  # codebook and decoder frozen
    meta = read_metadata(tmp_path / "run" / "best.safetensors")
    assert meta["trainer"] == "robust-vqgan" and len(meta["teacher_sha256"]) == 64


def test_resume_is_exact(tmp_path, make_images, tiny_vqgan_file):
    make_images(tmp_path / "train", 8)
    robust_vqgan(tiny_vqgan_file, tmp_path / "train", None, tmp_path / "a", cfg())
    robust_vqgan(tiny_vqgan_file, tmp_path / "train", None, tmp_path / "b", cfg(stop_at=3))
    robust_vqgan(tiny_vqgan_file, tmp_path / "train", None, tmp_path / "b", cfg(), resume=True)
    a, b = read_tensors(tmp_path / "a" / "last.safetensors"), read_tensors(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fidelity_is_one_when_holes_change_nothing(tiny_vqgan):
    images = (torch.rand(3, 3, 64, 64) * 255).to(torch.uint8)
    bank = mask_bank(0, 5, 64)
    assert torch.equal(bank, mask_bank(0, 5, 64))  # a pure function of (seed, n)
    holes = step_holes(bank, 1, 3)
    assert holes.any() and torch.equal(holes, bank[[3, 4, 0]])  # taken in turn, around the bank
    none = torch.zeros_like(holes)
    fidelity, kept = measure_context_fidelity(tiny_vqgan, tiny_vqgan, images, none)
    assert fidelity == 1.0 and kept == 1.0
    fidelity, kept = measure_context_fidelity(tiny_vqgan, tiny_vqgan, images, holes)
    assert 0 <= fidelity < 1 and kept == 1.0
