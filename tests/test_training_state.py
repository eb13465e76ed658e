"""Training state files: any state (optimizer, RNGs, numbers, tuples) packed into safetensors without pickle, and
crash-safe saves that keep the previous checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors import safe_open

from maskgit_cli import weights
from maskgit_cli.training.optim import make_adamw
from maskgit_cli.training.state import Checkpointer, capture_rng, restore_rng


def test_pack_round_trip_without_pickle(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    opt = make_adamw(model, 1e-3, weight_decay=0.1)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    rng = capture_rng()
    state = {
        "opt": opt.state_dict(),
        "rng": rng,
        "tuple": (1, 2.5, None, "x"),
        "ints": {3: [1, 2], "a": True},
        "np": np.arange(5, dtype=np.uint32),
        "inf": float("inf"),
        "g": torch.Generator().manual_seed(3).get_state(),
    }
    ck = Checkpointer(tmp_path / "state.safetensors")
    ck.save(state, step=7)
    with safe_open(str(ck.path), framework="pt") as f:  # a plain safetensors file: no pickle anywhere
        meta = f.metadata()
    assert meta["kind"] == "training-state" and meta["step"] == "7"
    json.loads(meta["structure"])
    back = ck.load()
    assert back["tuple"] == (1, 2.5, None, "x") and back["ints"] == {3: [1, 2], "a": True}
    assert back["np"].dtype == np.uint32 and (back["np"] == np.arange(5)).all() and back["inf"] == float("inf")
    assert back["opt"]["param_groups"] == opt.state_dict()["param_groups"]  # tuples (betas) stay tuples
    for k, v in opt.state_dict()["state"].items():
        for name, t in v.items():
            assert torch.equal(back["opt"]["state"][k][name], t)
    opt2 = make_adamw(model, 1e-3, weight_decay=0.1)
    opt2.load_state_dict(back["opt"])  # the optimizer accepts it
    torch.rand(3)
    restore_rng(back["rng"])
    a = (torch.rand(3), np.random.rand(), __import__("random").random())
    restore_rng(rng)
    assert torch.equal(a[0], torch.rand(3)) and a[1] == np.random.rand() and a[2] == __import__("random").random()
    with pytest.raises(TypeError, match="without pickle"):
        ck.save({"bad": object()}, step=1)


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch, fit_toy):
    _, run, _ = fit_toy(tmp_path, "a", max_steps=10)
    before = run.state.read_bytes()
    before_last = run.last.read_bytes()
    real_save = weights.save_file

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(weights, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        fit_toy(tmp_path, "b", max_steps=10)
    with pytest.raises(OSError, match="disk full"):
        Checkpointer(run.state).save({"x": torch.zeros(3)}, step=99)
    monkeypatch.setattr(weights, "save_file", real_save)
    assert run.state.read_bytes() == before and run.last.read_bytes() == before_last
    assert Checkpointer(run.state).load()["loop"]["step"] == 10
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]  # no temporary files left


@pytest.mark.parametrize(
    "structure",
    ["[" * 100_000 + "]" * 100_000, '{"__tensor__": "gone"}', '{"__dict__": 5}', '{"__ndarray__": "t", "dtype": "zz"}'],
)
def test_a_hostile_state_structure_is_one_line(tmp_path, structure):
    """A state file's metadata is untrusted (issue 28): whatever its structure holds, loading it is one line."""
    from maskgit_cli.errors import MaskgitError

    ck = Checkpointer(tmp_path / "state.safetensors")
    ck.save({"t": torch.zeros(2)}, step=1)
    meta = dict(weights.read_metadata(ck.path))
    weights.save_tensors(ck.path, weights.read_tensors(ck.path), {**meta, "structure": structure})
    with pytest.raises(MaskgitError) as e:
        ck.load()
    assert str(e.value).startswith(f"{ck.path}: training state structure is invalid (") and "\n" not in str(e.value)
