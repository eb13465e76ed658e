"""MaskGIT transformer: presets, shapes, SDPA, sampling helper and FLOPs."""

import math
from dataclasses import replace as replace_cfg

import pytest
import torch
import torch.nn.functional as F

from maskgit_cli.errors import MaskgitError
from maskgit_cli.transformer.model import (
    PRESETS,
    MaskGITTransformer,
    TransformerConfig,
    forbid_mask_token,
    get_preset,
    mask_tokens,
)

# docs/lab.md, "The transformer checkpoint", counted by hand: per block 4 x Linear(768, 768) attention
# + MLP 768->1536->768 + 2 LayerNorms; plus tok_emb (1025, 768), pos_emb (256, 768), the embedding LayerNorm,
# Token_Prediction (Linear + LayerNorm) and bias (256, 1025).
LAB_BLOCK = 4 * (768 * 768 + 768) + (768 * 1536 + 1536) + (1536 * 768 + 768) + 2 * 2 * 768
LAB_PARAMS = 15 * LAB_BLOCK + 1025 * 768 + 256 * 768 + 2 * 768 + (768 * 768 + 768 + 2 * 768) + 256 * 1025
assert LAB_PARAMS == 72_745_472


@pytest.fixture(scope="module")
def lab_meta():
    with torch.device("meta"):  # the only lab-size instance in this file; no memory, no init cost
        return MaskGITTransformer(PRESETS["lab"])


def test_lab_preset_param_count(lab_meta):
    assert lab_meta.num_params() == LAB_PARAMS == 72_745_472
    c = lab_meta.config
    assert (c.dim, c.n_layers, c.n_heads, c.hidden_dim, c.norm, c.layer_norm_eps) == (
        768,
        15,
        16,
        1536,
        "post",
        1e-12,
    )
    assert c.mask_token_id == 1024 and c.vocab_size == 1025 and c.head_dim == 48
    sd = lab_meta.state_dict()
    assert sd["tok_emb.weight"].shape == (1025, 768)
    assert sd["pos_emb"].shape == (256, 768)
    assert sd["bias"].shape == (256, 1025)
    assert sd["blocks.14.attn.qkv.weight"].shape == (3 * 768, 768)
    assert not any(k.startswith("ln_f") for k in sd)  # post-LN: Token_Prediction's LayerNorm is the last norm


def test_lab_state_dict_keys(lab_meta):
    per_block = {
        "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "ln1.weight", "ln1.bias",
        "ln2.weight", "ln2.bias", "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias",
    }  # fmt: skip
    want = {"tok_emb.weight", "pos_emb", "emb_ln.weight", "emb_ln.bias", "bias"}
    want |= {"head.fc.weight", "head.fc.bias", "head.ln.weight", "head.ln.bias"}
    want |= {f"blocks.{i}.{k}" for i in range(15) for k in per_block}
    assert set(lab_meta.state_dict()) == want


def test_other_presets_sizes():
    sizes = {}
    for name in ("tiny", "small", "base"):
        with torch.device("meta"):
            sizes[name] = MaskGITTransformer(PRESETS[name]).num_params()
        assert PRESETS[name].norm == "pre"
    assert 80_000 <= sizes["tiny"] <= 130_000
    assert PRESETS["small"].dim == 256 and 4 <= PRESETS["small"].n_layers <= 6
    assert 3_000_000 <= sizes["small"] <= 6_000_000
    assert PRESETS["base"].dim == 512 and PRESETS["base"].n_layers == 8
    assert 24_000_000 <= sizes["base"] <= 28_000_000


def test_config_validation_and_presets():
    with pytest.raises(MaskgitError, match="divisible"):
        TransformerConfig(dim=30, n_heads=4)
    with pytest.raises(MaskgitError, match="norm"):
        TransformerConfig(norm="sandwich")
    with pytest.raises(MaskgitError, match="tiny"):
        get_preset("huge")
    c = get_preset("small", n_layers=6)
    assert c.n_layers == 6 and PRESETS["small"].n_layers == 4  # a copy: the preset is unchanged
    assert TransformerConfig.from_dict(c.to_dict()) == c
    with pytest.raises(MaskgitError, match="bogus"):
        TransformerConfig.from_dict({**c.to_dict(), "bogus": 1})


def test_forward_shapes_and_backward():
    torch.manual_seed(0)
    m = MaskGITTransformer(PRESETS["tiny"])
    idx = torch.randint(0, 1025, (3, 256))
    logits = m(idx)
    assert logits.shape == (3, 256, 1025) and logits.dtype == torch.float32
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None for p in m.parameters())
    with pytest.raises(MaskgitError, match="num_image_tokens"):
        m(idx[:, :100])


def test_post_ln_tiny_forward():
    cfg = TransformerConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, num_image_tokens=16,
                            num_codebook_vectors=20)  # fmt: skip
    m = MaskGITTransformer(cfg).eval()
    assert m(torch.randint(0, 21, (2, 16))).shape == (2, 16, 21)


def test_sdpa_equals_naive_attention():
    torch.manual_seed(0)
    m = MaskGITTransformer(PRESETS["tiny"]).eval()
    attn = m.blocks[0].attn
    x = torch.randn(2, 256, 48)
    H, hd = 4, 12
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).split(48, dim=2)
    q, k, v = (t.view(2, 256, H, hd).transpose(1, 2) for t in (q, k, v))
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)  # no causal mask: bidirectional
    y = (w @ v).transpose(1, 2).reshape(2, 256, 48)
    want = F.linear(y, attn.proj.weight, attn.proj.bias)
    torch.testing.assert_close(attn(x), want, atol=1e-5, rtol=1e-4)


def _attention_errors(fn, seed=0, shape=(2, 4, 256, 64)):
    """Mean absolute errors of fn(q, k, v)'s output and q/k/v gradients (bf16 inputs) against float64 attention."""
    g = torch.Generator().manual_seed(seed)
    q, k, v, do = (torch.randn(shape, generator=g).bfloat16() for _ in range(4))
    ref = [t.double().requires_grad_() for t in (q, k, v)]
    want = torch.softmax(ref[0] @ ref[1].transpose(-1, -2) / math.sqrt(shape[-1]), -1) @ ref[2]
    want.backward(do.double())
    got_in = [t.clone().requires_grad_() for t in (q, k, v)]
    got = fn(*got_in)
    assert got.dtype == torch.bfloat16
    got.backward(do)
    pairs = [(got, want)] + [(a.grad, b.grad) for a, b in zip(got_in, ref)]
    return [(a.double() - b).abs().mean().item() for a, b in pairs]


def test_matmul_attention_is_as_exact_as_the_fused_kernel():
    from maskgit_cli.transformer.model import MatmulAttention

    for seed in range(2):
        mine = _attention_errors(MatmulAttention.apply, seed)
        fused = _attention_errors(F.scaled_dot_product_attention, seed)
        # output, dq, dk, dv: bf16 rounding only (an error in the formula would be 100x larger), and within 1.5x
        # of the errors of SDPA's own bf16 CPU kernel
        for a, b in zip(mine, fused):
            assert a < 0.01 and a < 1.5 * b + 1e-4, (mine, fused)


def test_matmul_attention_is_used_for_bf16_cpu_training_without_amx(monkeypatch):
    import maskgit_cli.runtime as runtime
    from maskgit_cli.transformer.model import _use_matmul_attention, cpu_prefers_matmul_attention

    for flags, prefers in (
        ({"avx512f", "avx512_bf16"}, True),  # AMD EPYC Zen 4/5
        ({"avx512_bf16", "amx_bf16", "amx_tile"}, False),  # Intel Xeon with AMX: SDPA's kernels are faster
        ({"avx2"}, False),
    ):
        monkeypatch.setattr(runtime, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert cpu_prefers_matmul_attention() is prefers
        assert MaskGITTransformer(PRESETS["tiny"]).blocks[0].attn.cpu_prefers_matmul is prefers
    q = torch.zeros(1, 1, 4, 8, dtype=torch.bfloat16, requires_grad=True)
    assert _use_matmul_attention(q, True) and not _use_matmul_attention(q, False)
    assert not _use_matmul_attention(q.detach(), True)  # inference: SDPA
    with torch.no_grad():
        assert not _use_matmul_attention(q, True)
    assert not _use_matmul_attention(q.detach().float().requires_grad_(), True)  # fp32: SDPA


def test_a_bf16_training_step_with_matmul_attention_is_as_close_to_fp32_as_with_sdpa(monkeypatch):
    import maskgit_cli.transformer.model as model

    calls = []
    real_apply = model.MatmulAttention.apply
    monkeypatch.setattr(model.MatmulAttention, "apply", lambda *a: calls.append(1) or real_apply(*a))
    torch.manual_seed(0)
    m = MaskGITTransformer(replace_cfg(PRESETS["tiny"], n_heads=2)).train()
    idx = torch.randint(0, m.config.vocab_size, (4, 256))
    grads = {}
    for name, precision, use in (("fp32", "fp32", False), ("sdpa", "bf16", False), ("matmul", "bf16", True)):
        monkeypatch.setattr(model, "_use_matmul_attention", lambda *args, use=use: use)
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = m(idx).float().logsumexp(-1).mean()
        loss.backward()
        grads[name] = torch.cat([p.grad.flatten() for p in m.parameters()])
    assert len(calls) == m.config.n_layers  # the matmul run used it in every layer, the others not
    err = {k: ((grads[k] - grads["fp32"]).norm() / grads["fp32"].norm()).item() for k in ("sdpa", "matmul")}
    assert err["matmul"] < 0.1 and err["matmul"] < 1.5 * err["sdpa"], err


def test_mask_token_never_sampled():
    torch.manual_seed(0)
    m = MaskGITTransformer(PRESETS["tiny"]).eval()
    with torch.no_grad():
        logits = m(torch.full((2, 256), 1024))
    logits[..., 1024] = 1e4  # the model would love to predict the mask token
    safe = forbid_mask_token(logits.clone(), m.config.mask_token_id)
    assert logits[0, 0, 1024] == 1e4 and safe[0, 0, 1024] == float("-inf")
    probs = safe.softmax(-1)
    assert (probs[..., 1024] == 0).all()
    assert (safe.argmax(-1) != 1024).all()
    samples = torch.multinomial(probs.view(-1, 1025), 50, replacement=True)
    assert (samples != 1024).all()


def test_mask_tokens_puts_the_mask_id_exactly_where_masked():
    tokens = torch.arange(12).view(2, 6)
    masked = torch.tensor([[True, False, False, True, False, False], [False] * 6])
    out = mask_tokens(tokens, masked, 1024)
    assert out.tolist() == [[1024, 1, 2, 1024, 4, 5], [6, 7, 8, 9, 10, 11]]
    assert tokens[0, 0] == 0  # the input is not changed


def test_flops_formula():
    m = MaskGITTransformer(PRESETS["tiny"])
    d, h, n_layers, L, V = 48, 96, 2, 256, 1025
    matmul_params = n_layers * (4 * d * d + 2 * d * h) + d * d + d * V
    fwd = 2 * matmul_params + n_layers * 4 * L * d
    assert m.flops_per_token(training=False) == fwd
    assert m.flops_per_token() == 3 * fwd
    assert m.flops_per_image() == 3 * fwd * L
    assert m.flops_per_image(training=False) == fwd * L
    # Training predicts the masked positions only: the head's products count for that share of the tokens.
    head = d * d + d * V
    assert m.flops_per_token(training=False, predicted=0.5) == round(fwd - 2 * head * 0.5)
    assert m.flops_per_token(predicted=0.0) == 3 * (fwd - 2 * head)


@pytest.mark.parametrize("per_position_bias", [True, False])
def test_forward_where_equals_the_full_logits_at_those_positions(per_position_bias):
    from maskgit_cli.transformer.model import ROW_BUCKET

    torch.manual_seed(0)
    m = MaskGITTransformer(get_preset("tiny", per_position_bias=per_position_bias)).eval()
    with torch.no_grad():
        m.bias.normal_()  # a bias that differs per position catches a row paired with the wrong position
    idx = torch.randint(0, 1024, (3, 256))
    where = torch.rand(3, 256) < 0.3
    where[1] = False  # a row without any masked position
    n = int(where.sum())
    assert n % ROW_BUCKET != 0  # so the padding is exercised
    with torch.no_grad():
        part = m(idx, where=where)
        full = m(idx)
    assert part.shape == (n, 1025)
    torch.testing.assert_close(part, full[where], rtol=1e-5, atol=1e-5)


def test_padded_rows_are_the_masked_positions_then_unmasked_ones():
    from maskgit_cli.transformer.model import ROW_BUCKET, _padded_rows

    where = torch.zeros(4, 256, dtype=torch.bool)
    where[0, [3, 7]] = True
    where[2, 5] = True
    rows, n = _padded_rows(where)
    assert n == 3 and len(rows) == ROW_BUCKET and len(set(rows.tolist())) == ROW_BUCKET
    assert rows[:3].tolist() == [3, 7, 2 * 256 + 5]
    assert not where.flatten()[rows[3:]].any()
    assert len(_padded_rows(torch.ones(2, 256, dtype=torch.bool))[0]) == 512  # never more than all positions
    full = torch.ones(1, 300, dtype=torch.bool)
    assert _padded_rows(full)[0].tolist() == list(range(300))


def test_fast_dropout_matches_nn_dropout_semantics():
    from maskgit_cli.transformer.model import Dropout

    drop = Dropout(0.1)
    x = torch.ones(64, 256, 257, requires_grad=True)  # odd element count: the two-per-draw split has a tail
    torch.manual_seed(1)
    y = drop(x)
    zero = y == 0
    assert abs(zero.float().mean().item() - 0.1) < 0.003
    torch.testing.assert_close(y[~zero], torch.full_like(y[~zero], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * mask * s)/dx = mask * s
    torch.manual_seed(1)
    assert torch.equal(drop(x), y)  # seeded by the default generator: runs and resumes repeat
    # both 15-bit halves of each 31-bit draw are uniform: every second element is dropped at the same rate
    assert abs(zero.flatten()[1::2].float().mean().item() - 0.1) < 0.004
    assert drop.eval()(x) is x
    assert Dropout(0.0).train()(x) is x
