"""The bidirectional transformer of MaskGIT (stage 2), nanoGPT style, plus a converter for lab checkpoints.

One model class serves every preset:

* ``lab``: exactly the NYCU DLP lab's ``BidirectionalTransformer`` (docs/lab.md, "The transformer checkpoint"):
  post-LN BERT blocks, dim 768, 15 layers, 16 heads, MLP 1536, LayerNorm eps 1e-12, 72,745,472 parameters. A student's
  checkpoint converts onto it with :func:`convert_lab_state_dict` / :func:`load_lab_checkpoint`.
* ``tiny`` (tests), ``small`` (2-core CPU), ``base`` (GPU): pre-LN variants of the same model.

Forward: ``logits = head(blocks(drop(emb_ln(tok_emb[idx] + pos_emb)))) @ tok_emb.weight.T + bias`` with
``head`` = Linear, GELU, LayerNorm (the lab's ``Token_Prediction``); logits have ``num_codebook_vectors + 1``
entries, the last one being the mask token, which sampling must exclude (:func:`forbid_mask_token`).

State-dict keys (``L`` = block index; shapes for the lab preset; right: the lab checkpoint's key):

    tok_emb.weight                  (1025, 768)   tok_emb.weight
    pos_emb                         (256, 768)    pos_emb
    emb_ln.{weight,bias}            (768,)        LN.*
    blocks.L.attn.qkv.weight/bias   (2304, 768)   blocks.L.Attention.* (students' names vary, see below)
    blocks.L.attn.proj.weight/bias  (768, 768)    blocks.L.Attention.*
    blocks.L.ln1.{weight,bias}      (768,)        blocks.L.LayerNorm1.*
    blocks.L.mlp.fc.weight/bias     (1536, 768)   blocks.L.MLP.0.*
    blocks.L.mlp.proj.weight/bias   (768, 1536)   blocks.L.MLP.2.*
    blocks.L.ln2.{weight,bias}      (768,)        blocks.L.LayerNorm2.*
    ln_f.{weight,bias}              (dim,)        - (pre-LN presets only)
    head.fc.weight/bias             (768, 768)    Token_Prediction.0.*
    head.ln.{weight,bias}           (768,)        Token_Prediction.2.*
    bias                            (256, 1025)   bias   ((1025,) when per_position_bias is False)

Within ``attn.qkv`` the rows are q, k, v (each ``dim`` rows), and within each of them head ``h`` owns rows
``h*head_dim:(h+1)*head_dim`` (the ``reshape(B, L, 3, H, hd)`` convention of nanoGPT, timm and
nn.MultiheadAttention).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from maskgit_cli import runtime
from maskgit_cli.errors import MaskgitError

# The largest sizes a config may ask for, far above any model this tool trains or converts (the lab's: 256 tokens,
# 1,024 codes, dim 768, 15 layers, 16 heads, hidden 1,536): a file's metadata is untrusted, and a config of a million
# layers would take minutes to build even on the meta device before its tensors are compared with the file's.
CONFIG_MAXIMA = {
    "num_image_tokens": 128 * 128,  # 512x512 images, 4x4-pixel tokens
    "num_codebook_vectors": 32768,  # token caches hold int16 ids
    "dim": 16384,
    "n_layers": 256,
    "n_heads": 1024,
    "hidden_dim": 65536,
}


@dataclass
class TransformerConfig:
    num_image_tokens: int = 256  # the VQGAN's token grid h*w (16x16 for the lab's); sizes pos_emb
    num_codebook_vectors: int = 1024  # the mask token id is this value
    dim: int = 768
    n_layers: int = 15
    n_heads: int = 16
    hidden_dim: int = 1536
    dropout: float = 0.1  # embedding, residual and MLP dropout (lab: 0.1 everywhere)
    attn_dropout: float = 0.1  # dropout on attention probabilities (lab: attn_drop=0.1)
    norm: str = "post"  # "post": lab's post-LN BERT blocks; "pre": pre-LN (GPT-2/nanoGPT) blocks
    layer_norm_eps: float = 1e-12  # the lab's (BERT); 1e-5 for our pre-LN presets
    per_position_bias: bool = True  # output bias (num_image_tokens, vocab) as in the lab, else (vocab,)

    def __post_init__(self) -> None:
        if self.norm not in ("post", "pre"):
            raise MaskgitError(f"transformer norm must be 'post' or 'pre', got {self.norm!r}.")
        for name in ("num_image_tokens", "num_codebook_vectors", "dim", "n_layers", "n_heads", "hidden_dim"):
            if int(getattr(self, name)) < 1:
                raise MaskgitError(f"transformer {name} must be >= 1, got {getattr(self, name)}.")
            if int(getattr(self, name)) > CONFIG_MAXIMA[name]:
                raise MaskgitError(
                    f"transformer {name} must be at most {CONFIG_MAXIMA[name]}, got {getattr(self, name)}."
                )
        if self.dim % self.n_heads:
            raise MaskgitError(f"transformer dim {self.dim} is not divisible by n_heads {self.n_heads}.")
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise MaskgitError(f"transformer {name} must be in [0, 1), got {getattr(self, name)}.")

    @property
    def mask_token_id(self) -> int:
        return self.num_codebook_vectors

    @property
    def vocab_size(self) -> int:
        """Input/output vocabulary: the codebook plus the mask token."""
        return self.num_codebook_vectors + 1

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise MaskgitError(f"unknown transformer config keys: {', '.join(unknown)}.")
        return cls(**d)


PRESETS: dict[str, TransformerConfig] = {
    # docs/lab.md, "The transformer checkpoint" (MaskGit.yml): 72,745,472 parameters.
    "lab": TransformerConfig(),
    # For tests: ~103k parameters, a (vocab,) output bias so the per-position bias does not dominate.
    "tiny": TransformerConfig(
        dim=48,
        n_layers=2,
        n_heads=4,
        hidden_dim=96,
        dropout=0.0,
        attn_dropout=0.0,
        norm="pre",
        layer_norm_eps=1e-5,
        per_position_bias=False,
    ),
    # 2-core CPU, 3.8M parameters. 4 heads of 64, not 8 of 32: the CPU's attention kernels run at a fraction of the
    # matmul peak with head_dim 32, and a training step is 1.2x faster with 64 (docs/machines.md, "Training on a CPU").
    "small": TransformerConfig(
        dim=256,
        n_layers=4,
        n_heads=4,
        hidden_dim=1024,
        dropout=0.1,
        attn_dropout=0.0,
        norm="pre",
        layer_norm_eps=1e-5,
    ),
    # GPU: 26.4M parameters.
    "base": TransformerConfig(
        dim=512,
        n_layers=8,
        n_heads=8,
        hidden_dim=2048,
        dropout=0.1,
        attn_dropout=0.0,
        norm="pre",
        layer_norm_eps=1e-5,
    ),
}


def get_preset(name: str, **overrides: Any) -> TransformerConfig:
    """A copy of preset ``name`` with ``overrides`` applied; MaskgitError for an unknown preset."""
    if name not in PRESETS:
        raise MaskgitError(f"unknown transformer preset {name!r}; valid presets: {', '.join(PRESETS)}.")
    return replace(PRESETS[name], **overrides)


# ---------------------------------------------------------------------------------------------------------
# Model


class Dropout(nn.Module):
    """Dropout with the same semantics as ``nn.Dropout`` (zero each element with probability ``p`` in training,
    scale the rest by 1/(1-p)), and its random bits drawn 3x faster on a CPU: ``bernoulli_`` spends about 10 ms
    per (32, 256, 256) tensor on the CPU's generator, a tenth of a `small` training step; here one 31-bit draw
    (``int32.random_``) gives two 15-bit uniforms, and an element is kept when its uniform is at least
    ``round(p * 2**15)`` (so p is rounded to a multiple of 2**-15: 0.1 -> 0.100006). Seeded by the default
    generator as ``nn.Dropout``, so seeded runs and resumes stay exact. Other devices use ``F.dropout``.
    docs/machines.md, "Training on a CPU"."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        bits = torch.empty((n + 1) // 2, dtype=torch.int32).random_().view(torch.int16)[:n].view(x.shape)
        keep = (bits & 0x7FFF) >= round(self.p * 2**15)  # the sign bit of every second int16 is always 0
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MatmulAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(hd)) v for bf16 (B, H, L, hd) tensors from a few batched matmuls, rounded as
    FlashAttention-2 rounds: the scores S = q k^T and dP = dO v^T in fp32 from the exact bf16 inputs, the softmax
    in fp32, P and dS rounded to bf16 for the P v, P^T dO, dS k and dS^T q products; backward
    dS = P * (dP - rowsum(dO * O)). It keeps P (fp32, B*H*L*L) for the backward instead of recomputing it.

    Why: on CPUs whose bf16 comes from AVX512-BF16 (AMD EPYC), the fused CPU kernel of
    ``scaled_dot_product_attention`` spends about 55 ms per `small` layer (batch 32) on forward + backward, this
    about 40 ms (docs/machines.md, "Training on the AMD Zen 5 kind"). Used only where :func:`_use_matmul_attention`
    says so; dropout on the attention probabilities is not supported (SDPA then)."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # Every pass over a (B, H, L, L) tensor costs more than the small (B, H, L, hd) ones: the scale is applied
        # to q (and to dO in the backward), and P's bf16 copy is kept for the backward.
        with torch.autocast("cpu", enabled=False):
            p = torch.matmul(q.float() * q.shape[-1] ** -0.5, k.float().transpose(-1, -2)).softmax(-1)
            p_bf16 = p.to(v.dtype)
            o = torch.matmul(p_bf16, v)
        ctx.save_for_backward(q, k, v, p, p_bf16, o)
        return o

    @staticmethod
    def backward(ctx, do: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v, p, p_bf16, o = ctx.saved_tensors
        with torch.autocast("cpu", enabled=False):
            do = do.to(v.dtype)
            dv = torch.matmul(p_bf16.transpose(-1, -2), do)
            do_scaled = do.float() * q.shape[-1] ** -0.5  # dS = P * (dP - rowsum(dO * O)) * scale
            dp = torch.matmul(do_scaled, v.float().transpose(-1, -2))
            delta = (do_scaled * o.float()).sum(-1, keepdim=True)
            ds = dp.sub_(delta).mul_(p).to(q.dtype)
            return torch.matmul(ds, k), torch.matmul(ds.transpose(-1, -2), q), dv


def cpu_prefers_matmul_attention() -> bool:
    """Is this a CPU where :class:`MatmulAttention` trains faster than SDPA: AVX512-BF16 and no AMX (AMD EPYC), the
    kind where it was measured faster. With AMX (Intel Xeon) SDPA's own kernels are faster (docs/machines.md)."""
    flags = runtime.cpu_flags()
    return "avx512_bf16" in flags and "amx_bf16" not in flags


def _use_matmul_attention(q: torch.Tensor, cpu_prefers: bool) -> bool:
    """:class:`MatmulAttention` instead of SDPA: bf16 training on a CPU that prefers it; inference (no gradient)
    keeps SDPA everywhere."""
    return (
        cpu_prefers
        and q.device.type == "cpu"
        and q.dtype == torch.bfloat16
        and torch.is_grad_enabled()
        and q.requires_grad
    )


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: fused qkv Linear, F.scaled_dot_product_attention (MatmulAttention
    for bf16 training on AVX512-BF16 CPUs without AMX), proj."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.attn_dropout = cfg.attn_dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.cpu_prefers_matmul = cpu_prefers_matmul_attention()  # read once: torch.compile then sees a constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, L, hd)
        k = k.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2)
        v = v.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2)
        dropout = self.attn_dropout if self.training else 0.0
        if dropout == 0.0 and _use_matmul_attention(q, self.cpu_prefers_matmul):
            y = MatmulAttention.apply(q, k, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, L, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.dim, cfg.hidden_dim)
        self.proj = nn.Linear(cfg.hidden_dim, cfg.dim)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))  # exact (erf) GELU, as nn.GELU() in the lab


class Block(nn.Module):
    """post: x = ln1(x + drop(attn(x))); x = ln2(x + mlp(x))   (lab Encoder, docs/lab.md, "The transformer checkpoint")
    pre:  x = x + drop(attn(ln1(x)));   x = x + mlp(ln2(x))"""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.post = cfg.norm == "post"
        self.ln1 = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post:
            x = self.ln1(x + self.drop(self.attn(x)))
            return self.ln2(x + self.mlp(x))
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.mlp(self.ln2(x))


class TokenPrediction(nn.Module):
    """The lab's ``Token_Prediction``: Linear(dim, dim), GELU, LayerNorm (docs/lab.md, "The transformer checkpoint")."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.dim, cfg.dim)
        self.ln = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(F.gelu(self.fc(x)))


class MaskGITTransformer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.dim)
        self.pos_emb = nn.Parameter(torch.zeros(c.num_image_tokens, c.dim))
        self.emb_ln = nn.LayerNorm(c.dim, eps=c.layer_norm_eps)  # lab: LN + Dropout on the input embedding
        self.drop = Dropout(c.dropout)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.n_layers)])
        # Pre-LN leaves the residual stream un-normalised: add the usual final LayerNorm.
        self.ln_f = nn.LayerNorm(c.dim, eps=c.layer_norm_eps) if c.norm == "pre" else nn.Identity()
        self.head = TokenPrediction(c)
        bias_shape = (c.num_image_tokens, c.vocab_size) if c.per_position_bias else (c.vocab_size,)
        self.bias = nn.Parameter(torch.zeros(bias_shape))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """BERT/nanoGPT init: Linear and Embedding weights N(0, 0.02), biases 0, LayerNorm 1/0,
        pos_emb trunc_normal(0, 0.02) (lab). Pre-LN presets scale the residual output projections by
        1/sqrt(2 * n_layers) (GPT-2/nanoGPT)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_emb, mean=0.0, std=0.02)
        nn.init.zeros_(self.bias)
        if self.config.norm == "pre":
            std = 0.02 / math.sqrt(2 * self.config.n_layers)
            for block in self.blocks:
                nn.init.normal_(block.attn.proj.weight, mean=0.0, std=std)
                nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=std)

    def forward(self, idx: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        """idx: (B, L) ids in [0, num_codebook_vectors] (the last = mask) -> logits (B, L, vocab).

        With ``where`` (a (B, L) bool mask), only the logits of those positions: (where.sum(), vocab), rows in
        the order of ``idx[where]``. Training needs no others (its loss is on the masked positions), and the
        output layer over all 256 positions (a 33 MB float tensor at batch 32) is the largest activation of
        a CPU step."""
        if idx.dim() != 2 or idx.shape[1] != self.config.num_image_tokens:
            raise MaskgitError(
                f"token grid of shape {tuple(idx.shape)} does not match the transformer's "
                f"num_image_tokens {self.config.num_image_tokens} (expected (batch, "
                f"{self.config.num_image_tokens}))."
            )
        x = self.drop(self.emb_ln(self.tok_emb(idx) + self.pos_emb))
        for block in self.blocks:
            x = block(x)
        bias = self.bias
        if where is not None:
            rows, n = _padded_rows(where)
            x = x.flatten(0, 1).index_select(0, rows)  # index_select: its backward is 4x faster than x[where]'s
            if self.config.per_position_bias:
                bias = bias.index_select(0, rows % where.shape[1])  # each row's position
        h = self.head(self.ln_f(x))
        logits = F.linear(h, self.tok_emb.weight) + bias  # weight-tied output (lab)
        return logits if where is None else logits[:n]

    def num_params(self) -> int:
        """All parameters, embeddings included (tok_emb is also the output layer)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, training: bool = True, predicted: float = 1.0) -> int:
        """Matmul FLOPs per token (PaLM / nanoGPT ``estimate_mfu`` style).

        forward = 2 * M + n_layers * 4 * L * dim, where M = matmul weights a token passes through
        (per block 4*dim^2 + 2*dim*hidden, plus head dim^2 and the tied output dim * vocab; embedding
        lookups, biases and norms are free) and 4*L*dim per layer counts QK^T and AV over L tokens.
        ``predicted``: the share of tokens that go through the head (training's ``forward(idx, where)``
        predicts the masked ones only). training = 3 x forward (backward ~ 2 x forward).
        LayerNorm/softmax/GELU are ignored.
        """
        c = self.config
        blocks = c.n_layers * (4 * c.dim * c.dim + 2 * c.dim * c.hidden_dim)
        head = c.dim * c.dim + c.dim * c.vocab_size
        fwd = 2 * (blocks + predicted * head) + c.n_layers * 4 * c.num_image_tokens * c.dim
        return round(3 * fwd if training else fwd)

    def flops_per_image(self, training: bool = True, predicted: float = 1.0) -> int:
        """:meth:`flops_per_token` times num_image_tokens (one image = one sequence)."""
        return self.flops_per_token(training, predicted) * self.config.num_image_tokens


ROW_BUCKET = 512


@torch.compiler.disable  # data-dependent sizes: a silent graph break under torch.compile
def _padded_rows(where: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(rows, n): the flat indices of the n True positions of ``where`` (B, L), in order, padded with the first
    False ones to a multiple of ROW_BUCKET rows. oneDNN compiles a CPU matmul kernel for every new shape (about
    10 ms each for the head's products), and the number of masked positions changes every step; with buckets the
    head sees at most B * L / ROW_BUCKET shapes, each compiled once."""
    flat = where.flatten()
    rows = flat.nonzero().squeeze(1)
    n = len(rows)
    target = min(-(-n // ROW_BUCKET) * ROW_BUCKET, len(flat))
    if target > n:
        rows = torch.cat([rows, (~flat).nonzero().squeeze(1)[: target - n]])
    return rows, n


def mask_tokens(tokens: torch.Tensor, masked: torch.Tensor, mask_token_id: int) -> torch.Tensor:
    """The transformer's input: ``tokens`` with the mask id at the ``masked`` positions (same shapes)."""
    return torch.where(masked, torch.full_like(tokens, mask_token_id), tokens)


def forbid_mask_token(logits: torch.Tensor, mask_token_id: int) -> torch.Tensor:
    """Set the mask token's logit to -inf in place (and return ``logits``): neither sampling nor argmax can then
    return the mask id (its softmax probability is exactly 0)."""
    logits[..., mask_token_id] = float("-inf")
    return logits
