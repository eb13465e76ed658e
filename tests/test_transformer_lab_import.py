"""Lab transformer checkpoints (`maskgit convert-transformer`): every attention layout a student may have written
converts to identical logits; wrapped checkpoints, inferred sizes, and one-line errors for keys that do not fit."""

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from maskgit_cli.errors import MaskgitError
from maskgit_cli.transformer.lab_import import (
    convert_lab_state_dict,
    infer_lab_config,
    load_lab_checkpoint,
    read_lab_state_dict,
)
from maskgit_cli.transformer.model import MaskGITTransformer, TransformerConfig, get_preset

# Small stand-ins for students' code: the lab template around a student's attention (docs/lab.md, "The transformer
# checkpoint"), with plain (non-SDPA) attention math.

DIM, HEADS, HIDDEN, TOKENS, CODES, LAYERS = 32, 4, 64, 16, 20, 2
HD = DIM // HEADS
CFG = TransformerConfig(
    dim=DIM, n_layers=LAYERS, n_heads=HEADS, hidden_dim=HIDDEN, num_image_tokens=TOKENS,
    num_codebook_vectors=CODES,
)  # fmt: skip


def _attend(q, k, v):
    B, L, _ = q.shape
    q, k, v = (t.reshape(B, L, HEADS, HD).transpose(1, 2) for t in (q, k, v))
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(HD), dim=-1)
    return (w @ v).transpose(1, 2).reshape(B, L, DIM)


class FusedAttention(nn.Module):
    """qkv Linear + output Linear; optional names, bias, Sequential output, nesting and per-head row order."""

    def __init__(self, qkv="qkv", out="proj", qkv_bias=True, seq_out=False, nest=False, per_head=False):
        super().__init__()
        self.names, self.nest, self.per_head = (qkv, out), nest, per_head
        holder = nn.Module() if nest else self
        setattr(holder, qkv, nn.Linear(DIM, 3 * DIM, bias=qkv_bias))
        if nest:
            self.attention = holder
        out_layer = nn.Linear(DIM, DIM)
        setattr(self, out, nn.Sequential(out_layer, nn.Dropout(0.1)) if seq_out else out_layer)

    def forward(self, x):
        holder = self.attention if self.nest else self
        qkv = getattr(holder, self.names[0])(x)
        B, L, _ = x.shape
        if self.per_head:  # qkv.reshape(B, L, H, 3*hd) then chunk: rows grouped per head
            q, k, v = (t.reshape(B, L, DIM) for t in qkv.reshape(B, L, HEADS, 3 * HD).chunk(3, dim=-1))
        else:
            q, k, v = qkv.chunk(3, dim=-1)
        return getattr(self, self.names[1])(_attend(q, k, v))


class SeparateAttention(nn.Module):
    def __init__(self, q="q_proj", k="k_proj", v="v_proj", out="out_proj", qkv_bias=True):
        super().__init__()
        self.names = (q, k, v, out)
        for n in (q, k, v):
            setattr(self, n, nn.Linear(DIM, DIM, bias=qkv_bias))
        setattr(self, out, nn.Linear(DIM, DIM))

    def forward(self, x):
        q, k, v = (getattr(self, n)(x) for n in self.names[:3])
        return getattr(self, self.names[3])(_attend(q, k, v))


class TorchMHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(DIM, HEADS, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


class PerHeadAttention(nn.Module):
    """dome272/MaskGIT-pytorch style: a ModuleList of single heads, each q/k/v Linear(dim, head_dim)."""

    def __init__(self):
        super().__init__()
        self.heads = nn.ModuleList()
        for _ in range(HEADS):
            h = nn.Module()
            h.q, h.k, h.v = nn.Linear(DIM, HD), nn.Linear(DIM, HD), nn.Linear(DIM, HD)
            self.heads.append(h)
        self.projector = nn.Linear(DIM, DIM)

    def forward(self, x):
        outs = []
        for h in self.heads:
            q, k, v = h.q(x), h.k(x), h.v(x)
            w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(HD), dim=-1)
            outs.append(w @ v)
        return self.projector(torch.cat(outs, -1))


class LabEncoder(nn.Module):
    def __init__(self, make_attention):
        super().__init__()
        self.Attention = make_attention()
        self.LayerNorm1 = nn.LayerNorm(DIM, eps=1e-12)
        self.LayerNorm2 = nn.LayerNorm(DIM, eps=1e-12)
        self.MLP = nn.Sequential(nn.Linear(DIM, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, DIM), nn.Dropout(0.1))
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        x = self.LayerNorm1(x + self.dropout(self.Attention(x)))
        return self.LayerNorm2(x + self.MLP(x))


class LabTransformer(nn.Module):
    def __init__(self, make_attention):
        super().__init__()
        self.tok_emb = nn.Embedding(CODES + 1, DIM)
        self.pos_emb = nn.Parameter(torch.zeros(TOKENS, DIM))
        self.blocks = nn.Sequential(*[LabEncoder(make_attention) for _ in range(LAYERS)])
        self.Token_Prediction = nn.Sequential(nn.Linear(DIM, DIM), nn.GELU(), nn.LayerNorm(DIM, eps=1e-12))
        self.LN = nn.LayerNorm(DIM, eps=1e-12)
        self.drop = nn.Dropout(0.1)
        self.bias = nn.Parameter(torch.zeros(TOKENS, CODES + 1))
        with torch.no_grad():  # every tensor random, so any mix-up shows in the logits
            for p in self.parameters():
                p.normal_(0, 0.3)

    def forward(self, x):
        h = self.drop(self.LN(self.tok_emb(x) + self.pos_emb))
        h = self.Token_Prediction(self.blocks(h))
        return h @ self.tok_emb.weight.T + self.bias


LAYOUTS = {
    "qkv+proj": (lambda: FusedAttention(), "qkv"),
    "to_qkv(no bias)+W_o.0": (lambda: FusedAttention("to_qkv", "W_o", qkv_bias=False, seq_out=True), "qkv"),
    "nested W_qkv per-head rows": (
        lambda: FusedAttention("W_qkv", "linear_proj", nest=True, per_head=True),
        "per_head",
    ),
    "q_proj/k_proj/v_proj/out_proj": (lambda: SeparateAttention(), "qkv"),
    "Wq/Wk/Wv(no bias)/out": (lambda: SeparateAttention("Wq", "Wk", "Wv", "out", qkv_bias=False), "qkv"),
    "query/key/value/proj": (lambda: SeparateAttention("query", "key", "value", "proj"), "qkv"),
    "W_q/W_k/W_v/W_o": (lambda: SeparateAttention("W_q", "W_k", "W_v", "W_o"), "qkv"),
    "nn.MultiheadAttention": (lambda: TorchMHA(), "qkv"),
    "per-head ModuleList": (lambda: PerHeadAttention(), "qkv"),
}


def _source(layout, seed=0):
    torch.manual_seed(seed)
    return LabTransformer(LAYOUTS[layout][0]).eval()


def _assert_same_logits(src, ours):
    idx = torch.randint(0, CODES + 1, (3, TOKENS), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), src(idx), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_convert_layout_gives_identical_logits(layout):
    src = _source(layout)
    sd = convert_lab_state_dict(src.state_dict(), CFG, fused_qkv_order=LAYOUTS[layout][1])
    ours = MaskGITTransformer(CFG).eval()
    ours.load_state_dict(sd, strict=True)
    _assert_same_logits(src, ours)


def test_fused_order_matters():
    src = _source("nested W_qkv per-head rows")
    ours = MaskGITTransformer(CFG).eval()
    ours.load_state_dict(convert_lab_state_dict(src.state_dict(), CFG, fused_qkv_order="qkv"))
    idx = torch.randint(0, CODES + 1, (2, TOKENS))
    with torch.no_grad():
        assert not torch.allclose(ours(idx), src(idx), atol=1e-3)


def test_load_lab_checkpoint_wrappers(tmp_path):
    src = _source("qkv+proj")
    sd = src.state_dict()
    whole_maskgit = {"transformer." + k: v for k, v in sd.items()}
    whole_maskgit["vqgan.codebook.embedding.weight"] = torch.zeros(4, 2)
    wrapped = {
        "raw.pt": sd,
        "state_dict.pt": {"state_dict": sd, "epoch": 3},
        "ddp_model.pt": {"model": {"module." + k: v for k, v in sd.items()}},
        "maskgit.pt": whole_maskgit,
    }
    for name, obj in wrapped.items():
        torch.save(obj, tmp_path / name)
        assert set(read_lab_state_dict(tmp_path / name)) == set(sd), name
        _assert_same_logits(src, load_lab_checkpoint(tmp_path / name, config=CFG))
    # sizes inferred from the file; heads given (weights cannot tell)
    model = load_lab_checkpoint(tmp_path / "raw.pt", n_heads=HEADS)
    assert model.config == CFG and not model.training
    _assert_same_logits(src, model)
    assert infer_lab_config(sd, n_heads=HEADS) == CFG


def test_load_errors(tmp_path):
    with pytest.raises(MaskgitError, match="no such file"):
        load_lab_checkpoint(tmp_path / "nope.pt")
    torch.save(_source("qkv+proj"), tmp_path / "pickled_module.pt")  # a whole nn.Module, not a state dict
    with pytest.raises(MaskgitError, match="weights_only"):
        load_lab_checkpoint(tmp_path / "pickled_module.pt")
    torch.save({"tok": 1}, tmp_path / "junk.pt")
    with pytest.raises(MaskgitError, match="junk.pt: expected a state_dict"):
        load_lab_checkpoint(tmp_path / "junk.pt")


def test_unmapped_and_missing_keys_are_listed():
    sd = dict(_source("qkv+proj").state_dict())
    sd["blocks.0.Attention.rotary.weight"] = torch.zeros(DIM)
    sd["classifier.weight"] = torch.zeros(3, DIM)
    sd["blocks.7.MLP.0.weight"] = torch.zeros(HIDDEN, DIM)  # beyond n_layers
    del sd["LN.weight"], sd["blocks.1.MLP.0.bias"], sd["blocks.1.Attention.proj.weight"]
    with pytest.raises(MaskgitError) as e:
        convert_lab_state_dict(sd, CFG)
    msg = str(e.value)
    assert "\n" not in msg
    for key in ("blocks.0.Attention.rotary.weight", "classifier.weight", "blocks.7.MLP.0.weight"):
        assert key in msg.split("missing keys")[0]
    missing = msg.split("missing keys")[1]
    assert "LN.weight" in missing and "blocks.1.MLP.0.bias" in missing and "blocks.1.Attention" in missing


def test_wrong_shapes_are_listed():
    sd = dict(_source("q_proj/k_proj/v_proj/out_proj").state_dict())
    sd["pos_emb"] = torch.zeros(TOKENS + 1, DIM)
    sd["blocks.1.Attention.k_proj.weight"] = torch.zeros(DIM, DIM + 2)
    with pytest.raises(MaskgitError) as e:
        convert_lab_state_dict(sd, CFG)
    msg = str(e.value)
    assert "wrong shapes" in msg and "pos_emb (17, 32) != (16, 32)" in msg
    assert "blocks.1.Attention.k_proj.weight (32, 34) != (32, 32)" in msg


def test_ambiguous_attention_and_long_lists():
    sd = dict(_source("qkv+proj").state_dict())
    sd["blocks.0.Attention.q.weight"] = torch.zeros(DIM, DIM)
    with pytest.raises(MaskgitError, match="both a fused qkv and separate"):
        convert_lab_state_dict(sd, CFG)
    many = {f"extra.{i}": torch.zeros(1) for i in range(30)}
    with pytest.raises(MaskgitError, match=r"\+22 more"):
        convert_lab_state_dict({**_source("qkv+proj").state_dict(), **many}, CFG)
    with pytest.raises(MaskgitError, match="post-LN"):
        convert_lab_state_dict(_source("qkv+proj").state_dict(), get_preset("tiny"))


def test_convert_cli_stores_code_patches(tmp_path, cli):
    from maskgit_cli.vqgan.code_patches import PatchStats, read_code_patches, to_patches
    from maskgit_cli.vqgan.tokens import save_token_cache
    from maskgit_cli.weights import load_model

    torch.save(_source("qkv+proj").state_dict(), tmp_path / "epoch_best.pt")
    tokens = torch.randint(0, CODES, (2, 4, 4))
    images = torch.rand(2, 3, 16, 16)

    def cache(path, codes, stats=True):
        s = PatchStats(codes, 3, 4)
        s.add(images, tokens)
        save_token_cache(path, tokens, ["a.png", "b.png"], "ab" * 32, "{}", 16, codes, False, s if stats else None)
        return path

    out = tmp_path / "t.safetensors"
    r = cli("convert-transformer", tmp_path / "epoch_best.pt", "-o", out, "--heads", HEADS,
            "--tokens", cache(tmp_path / "c.tokens", CODES))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "with code patches" in r.stdout
    patches = read_code_patches(out)
    assert patches.vqgan_sha256 == "ab" * 32 and patches.patches.shape == (CODES, 3, 4, 4)
    k = int(tokens[0, 0, 0])
    under_k = to_patches(images, 4)[tokens.view(2, 16) == k]  # (n,48): the pixels under code k
    torch.testing.assert_close(patches.patches[k].flatten(), under_k.mean(0))
    _assert_same_logits(_source("qkv+proj"), load_model(out, "transformer"))
    r = cli("convert-transformer", tmp_path / "epoch_best.pt", "-o", out, "--heads", HEADS, "--json",
            "--tokens", tmp_path / "c.tokens")  # fmt: skip
    info = json.loads(r.stdout)
    assert info == {"output": str(out), "parameters": load_model(out).num_params(), "code_patches": True,
                    "vqgan_sha256": "ab" * 32}  # fmt: skip
    r = cli("convert-transformer", tmp_path / "epoch_best.pt", "-o", tmp_path / "x.safetensors", "--heads", HEADS,
            "--tokens", cache(tmp_path / "c64.tokens", 64))  # fmt: skip
    assert r.exit_code == 1 and "64 codes, but the checkpoint predicts 20" in r.stderr
    r = cli("convert-transformer", tmp_path / "epoch_best.pt", "-o", tmp_path / "y.safetensors", "--heads", HEADS,
            "--tokens", cache(tmp_path / "old.tokens", CODES, stats=False))  # fmt: skip
    assert r.exit_code == 1 and "has no code patches" in r.stderr
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


def test_convert_records_the_vqgan_or_warns(tmp_path, cli):
    """A transformer converted with --vqgan records that VQGAN (inpaint then refuses another one); without --vqgan or
    --tokens nothing is recorded, and the command says so."""
    from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS, vqgan_preset
    from maskgit_cli.weights import model_fingerprint, read_metadata, save_model

    torch.save(_source("qkv+proj").state_dict(), tmp_path / "epoch_best.pt")
    torch.manual_seed(0)
    vqgan = VQGAN(replace(vqgan_preset("tiny", 32, 8), num_codebook_vectors=CODES))  # 4x4 tokens, as the checkpoint
    save_model(tmp_path / "vq.safetensors", vqgan, "vqgan")
    out = tmp_path / "t.safetensors"
    r = cli("convert-transformer", tmp_path / "epoch_best.pt", "-o", out, "--heads", HEADS,
            "--vqgan", tmp_path / "vq.safetensors")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert read_metadata(out)["vqgan_sha256"] == model_fingerprint(vqgan) and "warning" not in r.stderr
    r = cli("convert-transformer", tmp_path / "epoch_best.pt", "-o", tmp_path / "u.safetensors", "--heads", HEADS)
    assert r.exit_code == 0 and "warning: no VQGAN recorded (pass --vqgan or --tokens)" in r.stderr
    save_model(tmp_path / "vq64.safetensors", VQGAN(VQGAN_PRESETS["tiny"]), "vqgan")
    r = cli("convert-transformer", tmp_path / "epoch_best.pt", "-o", tmp_path / "w.safetensors", "--heads", HEADS,
            "--vqgan", tmp_path / "vq64.safetensors")  # fmt: skip
    assert r.exit_code == 1 and "64 codes, but the checkpoint predicts 20" in r.stderr
    save_model(
        tmp_path / "vq16.safetensors", VQGAN(replace(VQGAN_PRESETS["tiny"], num_codebook_vectors=CODES)), "vqgan"
    )
    r = cli("convert-transformer", tmp_path / "epoch_best.pt", "-o", tmp_path / "w.safetensors", "--heads", HEADS,
            "--vqgan", tmp_path / "vq16.safetensors")  # fmt: skip
    assert r.exit_code == 1 and "the transformer expects 4x4 tokens (16) but the VQGAN makes 16x16" in r.stderr
    assert not (tmp_path / "w.safetensors").exists()
