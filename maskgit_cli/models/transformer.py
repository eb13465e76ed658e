"""The bidirectional transformer of MaskGIT (stage 2), nanoGPT style, plus a converter for lab checkpoints.

One model class serves every preset:

* ``lab``: exactly the NYCU DLP lab's ``BidirectionalTransformer`` (REFERENCE §1.2): post-LN BERT blocks,
  dim 768, 15 layers, 16 heads, MLP 1536, LayerNorm eps 1e-12, 72,745,472 parameters. A student's
  checkpoint converts onto it with :func:`convert_lab_state_dict` / :func:`load_lab_checkpoint`.
* ``tiny`` (tests), ``small`` (2-core CPU), ``base`` (GPU): pre-LN variants of the same model.

Forward: ``logits = head(blocks(drop(emb_ln(tok_emb[idx] + pos_emb)))) @ tok_emb.weight.T + bias`` with
``head`` = Linear, GELU, LayerNorm (the lab's ``Token_Prediction``); logits have ``num_codebook_vectors + 1``
entries, the last one being the mask token, which sampling must exclude (:func:`logits_for_sampling`).

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
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from maskgit_cli.errors import MaskgitError


@dataclass
class TransformerConfig:
    num_image_tokens: int = 256  # REFERENCE §1.2: 16x16 latent grid
    num_codebook_vectors: int = 1024  # REFERENCE §1.2; the mask token id is this value
    dim: int = 768
    n_layers: int = 15
    n_heads: int = 16
    hidden_dim: int = 1536
    dropout: float = 0.1  # embedding, residual and MLP dropout (lab: 0.1 everywhere)
    attn_dropout: float = 0.1  # dropout on attention probabilities (lab: attn_drop=0.1)
    norm: str = "post"  # "post": lab's post-LN BERT blocks; "pre": pre-LN (GPT-2/nanoGPT) blocks
    layer_norm_eps: float = 1e-12  # REFERENCE §1.2 (BERT); 1e-5 for our pre-LN presets
    per_position_bias: bool = True  # output bias (num_image_tokens, vocab) as in the lab, else (vocab,)

    def __post_init__(self) -> None:
        if self.norm not in ("post", "pre"):
            raise MaskgitError(f"transformer norm must be 'post' or 'pre', got {self.norm!r}.")
        for name in ("num_image_tokens", "num_codebook_vectors", "dim", "n_layers", "n_heads", "hidden_dim"):
            if int(getattr(self, name)) < 1:
                raise MaskgitError(f"transformer {name} must be >= 1, got {getattr(self, name)}.")
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
    # REFERENCE §1.2 (lab config/MaskGit.yml): 72,745,472 parameters.
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
    # 2-core CPU: REFERENCE §5 measured a dim-256 / 4-layer pre-LN SDPA model at ~35 img/s in bf16 autocast.
    # 3.8M parameters.
    "small": TransformerConfig(
        dim=256,
        n_layers=4,
        n_heads=8,
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


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: fused qkv Linear, F.scaled_dot_product_attention, proj."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.attn_dropout = cfg.attn_dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, L, hd)
        k = k.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2)
        v = v.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, L, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.dim, cfg.hidden_dim)
        self.proj = nn.Linear(cfg.hidden_dim, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))  # exact (erf) GELU, as nn.GELU() in the lab


class Block(nn.Module):
    """post: x = ln1(x + drop(attn(x))); x = ln2(x + mlp(x))   (lab Encoder, REFERENCE §1.2)
    pre:  x = x + drop(attn(ln1(x)));   x = x + mlp(ln2(x))"""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.post = cfg.norm == "post"
        self.ln1 = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post:
            x = self.ln1(x + self.drop(self.attn(x)))
            return self.ln2(x + self.mlp(x))
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.mlp(self.ln2(x))


class TokenPrediction(nn.Module):
    """The lab's ``Token_Prediction``: Linear(dim, dim), GELU, LayerNorm (REFERENCE §1.2)."""

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
        self.drop = nn.Dropout(c.dropout)
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

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: (B, L) ids in [0, num_codebook_vectors] (the last = mask) -> logits (B, L, vocab)."""
        if idx.dim() != 2 or idx.shape[1] != self.config.num_image_tokens:
            raise MaskgitError(
                f"token grid of shape {tuple(idx.shape)} does not match the transformer's "
                f"num_image_tokens {self.config.num_image_tokens} (expected (batch, "
                f"{self.config.num_image_tokens}))."
            )
        x = self.drop(self.emb_ln(self.tok_emb(idx) + self.pos_emb))
        for block in self.blocks:
            x = block(x)
        h = self.head(self.ln_f(x))
        return F.linear(h, self.tok_emb.weight) + self.bias  # weight-tied output (lab)

    def num_params(self) -> int:
        """All parameters, embeddings included (tok_emb is also the output layer)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, training: bool = True) -> int:
        """Matmul FLOPs per token (PaLM / nanoGPT ``estimate_mfu`` style).

        forward = 2 * M + n_layers * 4 * L * dim, where M = matmul weights a token passes through
        (per block 4*dim^2 + 2*dim*hidden, plus head dim^2 and the tied output dim * vocab; embedding
        lookups, biases and norms are free) and 4*L*dim per layer counts QK^T and AV over L tokens.
        training = 3 x forward (backward ~ 2 x forward). LayerNorm/softmax/GELU are ignored.
        """
        c = self.config
        m = c.n_layers * (4 * c.dim * c.dim + 2 * c.dim * c.hidden_dim) + c.dim * c.dim + c.dim * c.vocab_size
        fwd = 2 * m + c.n_layers * 4 * c.num_image_tokens * c.dim
        return 3 * fwd if training else fwd

    def flops_per_image(self, training: bool = True) -> int:
        """:meth:`flops_per_token` times num_image_tokens (one image = one sequence)."""
        return self.flops_per_token(training) * self.config.num_image_tokens

    def logits_for_sampling(self, logits: torch.Tensor) -> torch.Tensor:
        return logits_for_sampling(logits, self.config.mask_token_id)


def logits_for_sampling(logits: torch.Tensor, mask_token_id: int) -> torch.Tensor:
    """A copy of ``logits`` with the mask token's logit set to -inf, so neither sampling nor argmax can
    ever return the mask id (its softmax probability is exactly 0)."""
    out = logits.clone()
    out[..., mask_token_id] = float("-inf")
    return out


# ---------------------------------------------------------------------------------------------------------
# Lab checkpoint conversion
#
# The lab template (NYCU DLP Lab3 "MaskGIT for image inpainting": ``models/VQGAN_Transformer/transformer.py``
# and ``modules/layers.py``, seen in many public student copies) fixes every key except the attention
# internals, which students write themselves (#TODO1):
#   tok_emb.weight, pos_emb, LN.{weight,bias}, bias, Token_Prediction.{0,2}.{weight,bias},
#   blocks.L.{LayerNorm1,LayerNorm2}.{weight,bias}, blocks.L.MLP.{0,2}.{weight,bias},
#   blocks.L.Attention.<student's names>     (Encoder: self.Attention = MultiHeadAttention(dim))
# Supported attention layouts (names matched case-insensitively, ignoring '_'; modules may be nested, e.g.
# Attention.attention.W_qkv, and wrapped in an nn.Sequential, e.g. W_o.0.weight):
#   1. fused qkv Linear (dim -> 3*dim, rows [q; k; v]): qkv, to_qkv, W_qkv, transfer_qkv, qkv_proj, ...
#      + an output Linear: proj, out_proj, out, projection, W_o, output_proj, linear_proj, out_linear, ...
#      A fused weight whose rows are grouped per head ([q_h, k_h, v_h] for each head, from
#      ``qkv.reshape(B, L, H, 3*hd)``) cannot be told apart by shape: pass fused_qkv_order="per_head".
#   2. separate q/k/v Linears: q, k, v / q_proj, ... / W_q, Wq, q_linear, linear_q, query_proj, to_q, ...
#   3. query/key/value (+ proj / out / output ...), same as 2.
#   4. nn.MultiheadAttention: <name>.in_proj_weight, <name>.in_proj_bias, <name>.out_proj.{weight,bias}
#      (and q_proj_weight/k_proj_weight/v_proj_weight when it was built with kdim/vdim).
#   5. a ModuleList of single heads (dome272/MaskGIT-pytorch style): heads.<h>.q/k/v Linear(dim, head_dim),
#      concatenated in head order, + an output Linear (projector, proj, ...).
# Missing q/k/v/out biases (bias=False) become zeros, which is exactly equivalent. Buffers that are not
# weights (scale, mask, tril) are ignored. The converter maps weights only: it cannot reproduce a student's
# attention *bugs* (e.g. a softmax over the wrong axis); the converted model computes standard attention.

_FIXED_KEYS = {
    "tok_emb.weight": "tok_emb.weight",
    "pos_emb": "pos_emb",
    "LN.weight": "emb_ln.weight",
    "LN.bias": "emb_ln.bias",
    "bias": "bias",
    "Token_Prediction.0.weight": "head.fc.weight",
    "Token_Prediction.0.bias": "head.fc.bias",
    "Token_Prediction.2.weight": "head.ln.weight",
    "Token_Prediction.2.bias": "head.ln.bias",
}
_BLOCK_KEYS = {
    "LayerNorm1.weight": "ln1.weight",
    "LayerNorm1.bias": "ln1.bias",
    "LayerNorm2.weight": "ln2.weight",
    "LayerNorm2.bias": "ln2.bias",
    "MLP.0.weight": "mlp.fc.weight",
    "MLP.0.bias": "mlp.fc.bias",
    "MLP.2.weight": "mlp.proj.weight",
    "MLP.2.bias": "mlp.proj.bias",
}
_IGNORED_BUFFERS = {"scale", "scalefactor", "tril", "mask", "attnmask", "causalmask"}
_SUFFIX = "(proj|projection|linear|layer|lin|fc|dense)?"
_QKV_RE = re.compile(rf"^(w|to|linear|transfer|project|proj|in)?qkv{_SUFFIX}$")
_ROLE_RES = {
    role: re.compile(rf"^(w|to|linear|project|proj|fc)?({alts}){_SUFFIX}$")
    for role, alts in (("q", "q|query|queries"), ("k", "k|key|keys"), ("v", "v|value|values"))
}
_OUT_NAMES = {
    "proj", "projection", "projector", "projout", "out", "output", "outproj", "outprojection", "outputproj",
    "outputprojection", "outlinear", "outputlinear", "outlayer", "outputlayer", "linearout", "linearproj",
    "linearoutput", "linear", "o", "oproj", "wo", "wout", "fcout", "fco", "cproj", "dense", "outputdense",
    "outfc", "lo", "combine", "combineheads", "merge",
}  # fmt: skip
_MAX_LISTED = 8


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


class _Problems:
    def __init__(self) -> None:
        self.unmapped: list[str] = []
        self.missing: list[str] = []
        self.shapes: list[str] = []
        self.other: list[str] = []

    def check(self, key: str, t: torch.Tensor, shape: tuple[int, ...]) -> bool:
        if tuple(t.shape) != tuple(shape):
            self.shapes.append(f"{key} {tuple(t.shape)} != {tuple(shape)}")
            return False
        return True

    def raise_if_any(self, what: str) -> None:
        parts = []
        if self.unmapped:
            parts.append(f"unmapped keys: {_listing(self.unmapped)}")
        if self.missing:
            parts.append(f"missing keys: {_listing(self.missing)}")
        if self.shapes:
            parts.append(f"wrong shapes: {_listing(self.shapes)}")
        parts += self.other
        if parts:
            raise MaskgitError(f"{what} does not match the lab transformer layout; " + "; ".join(parts) + ".")


def infer_lab_config(sd: dict[str, torch.Tensor], n_heads: int = 16) -> TransformerConfig:
    """The lab preset with the sizes read from a lab state dict (dim, layers, hidden, tokens, codebook).
    ``n_heads`` cannot be read from weights; the lab uses 16 (REFERENCE §1.2)."""
    try:
        vocab, dim = sd["tok_emb.weight"].shape
        num_tokens = _pos_emb(sd["pos_emb"]).shape[0]
        hidden = sd["blocks.0.MLP.0.weight"].shape[0]
    except (KeyError, ValueError) as e:
        found = _listing(sorted(sd))
        raise MaskgitError(
            f"not a lab transformer state dict (missing or malformed {e}); found keys: {found}."
        ) from None
    layers = 1 + max(int(k.split(".")[1]) for k in sd if re.match(r"^blocks\.\d+\.", k))
    bias = sd.get("bias")
    return get_preset(
        "lab",
        dim=int(dim),
        n_layers=layers,
        n_heads=n_heads,
        hidden_dim=int(hidden),
        num_image_tokens=int(num_tokens),
        num_codebook_vectors=int(vocab) - 1,
        per_position_bias=bias is None or bias.dim() == 2,
    )


def _pos_emb(t: torch.Tensor) -> torch.Tensor:
    return t[0] if t.dim() == 3 and t.shape[0] == 1 else t  # some students keep a leading batch dim


def _convert_attention(
    i: int,
    keys: dict[str, torch.Tensor],
    cfg: TransformerConfig,
    fused_qkv_order: str,
    problems: _Problems,
) -> dict[str, torch.Tensor]:
    """Map one block's attention parameters (keys relative to ``blocks.i.``) onto attn.qkv / attn.proj."""
    dim, hd = cfg.dim, cfg.head_dim
    # role -> head index (None = whole matrix) -> {"weight"/"bias": (full key, tensor)}
    found: dict[str, dict[int | None, dict[str, tuple[str, torch.Tensor]]]] = {}
    prefix = f"blocks.{i}."

    def add(role: str, head: int | None, param: str, key: str, t: torch.Tensor) -> None:
        slot = found.setdefault(role, {}).setdefault(head, {})
        if param in slot:
            problems.other.append(f"ambiguous attention keys {slot[param][0]} and {key}")
        slot[param] = (key, t)

    for rel, t in keys.items():
        key = prefix + rel
        parts = rel.split(".")
        last = parts[-1]
        if _norm(last) in _IGNORED_BUFFERS:
            continue
        if last in ("in_proj_weight", "in_proj_bias"):  # nn.MultiheadAttention
            add("qkv", None, last.rsplit("_", 1)[1], key, t)
            continue
        m = re.fullmatch(r"([qkv])_proj_weight", last)
        if m:  # nn.MultiheadAttention with kdim/vdim
            add(m.group(1), None, "weight", key, t)
            continue
        if last not in ("weight", "bias") or len(parts) < 2:
            problems.unmapped.append(key)
            continue
        mods = parts[:-1]
        while len(mods) > 1 and mods[-1].isdigit():  # nn.Sequential(Linear, Dropout) -> W_o.0.weight
            mods = mods[:-1]
        name = _norm(mods[-1])
        head = int(mods[-2]) if len(mods) >= 2 and mods[-2].isdigit() else None
        if _QKV_RE.match(name):
            role = "qkv"
        elif any(r.match(name) for r in _ROLE_RES.values()):
            role = next(ro for ro, r in _ROLE_RES.items() if r.match(name))
        elif name in _OUT_NAMES:
            role = "out"
        else:
            problems.unmapped.append(key)
            continue
        if head is not None and role not in ("q", "k", "v"):
            problems.unmapped.append(key)
            continue
        add(role, head, last, key, t)

    def whole(role: str, rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(weight (rows, dim), bias (rows,)) for a role, concatenating per-head pieces; None if absent."""
        pieces = found.get(role)
        if not pieces:
            return None
        if None in pieces and len(pieces) > 1:
            problems.other.append(f"block {i}: both whole and per-head {role} weights")
            return None
        heads = sorted(pieces, key=lambda h: -1 if h is None else h)
        if heads != [None] and heads != list(range(len(heads))):
            problems.other.append(f"block {i}: {role} heads are not numbered 0..{len(heads) - 1}")
            return None
        ws, bs = [], []
        piece_rows = rows if heads == [None] else rows // len(heads)
        if heads != [None] and piece_rows * len(heads) != rows:
            problems.other.append(f"block {i}: {len(heads)} {role} heads do not split dim {rows}")
            return None
        ok = True
        for h in heads:
            slot = pieces[h]
            if "weight" not in slot:
                bias_key = slot["bias"][0]  # a slot holds at least one entry
                problems.missing.append(bias_key[: -len("bias")] + "weight")
                ok = False
                continue
            key, w = slot["weight"]
            ok &= problems.check(key, w, (piece_rows, dim))
            ws.append(w)
            if "bias" in slot:
                key, b = slot["bias"]
                ok &= problems.check(key, b, (piece_rows,))
                bs.append(b)
            else:
                bs.append(torch.zeros(piece_rows, dtype=w.dtype))
        if not ok:
            return None
        return torch.cat(ws, 0), torch.cat(bs, 0)

    fused = whole("qkv", 3 * dim)
    separate = [whole(r, dim) for r in ("q", "k", "v")]
    out = whole("out", dim)
    result: dict[str, torch.Tensor] = {}
    if "qkv" in found and any(r in found for r in ("q", "k", "v")):
        problems.other.append(f"block {i}: both a fused qkv and separate q/k/v projections")
    elif "qkv" in found:
        if fused is not None:
            w, b = fused
            if fused_qkv_order == "per_head":  # rows [q_h, k_h, v_h] per head -> [q; k; v]
                w = w.view(cfg.n_heads, 3, hd, dim).transpose(0, 1).reshape(3 * dim, dim)
                b = b.view(cfg.n_heads, 3, hd).transpose(0, 1).reshape(3 * dim)
            result["attn.qkv.weight"], result["attn.qkv.bias"] = w, b
    elif any(r in found for r in ("q", "k", "v")):
        for role in ("q", "k", "v"):
            if role not in found:
                problems.missing.append(f"{prefix}Attention.<{role} projection>.weight")
        if all(s is not None for s in separate):
            result["attn.qkv.weight"] = torch.cat([s[0] for s in separate], 0)
            result["attn.qkv.bias"] = torch.cat([s[1] for s in separate], 0)
    else:
        problems.missing.append(f"{prefix}Attention.<qkv or q/k/v projections>.weight")
    if "out" not in found:
        problems.missing.append(f"{prefix}Attention.<output projection>.weight")
    elif out is not None:
        result["attn.proj.weight"], result["attn.proj.bias"] = out
    return {f"blocks.{i}.{k}": v for k, v in result.items()}


def convert_lab_state_dict(
    sd: dict[str, torch.Tensor],
    config: TransformerConfig | None = None,
    fused_qkv_order: str = "qkv",
    what: str = "transformer state dict",
) -> dict[str, torch.Tensor]:
    """Map a lab student's ``BidirectionalTransformer`` state dict onto our ``lab``-layout keys.

    ``sd`` must already be un-prefixed (see :func:`read_lab_state_dict`). ``config`` defaults to
    :func:`infer_lab_config`; it must be post-LN. Every tensor's shape is checked against ``config``; all
    unmapped keys, missing keys and wrong shapes are reported together in one MaskgitError. ``what``
    names the source in that message. ``fused_qkv_order``: "qkv" (rows [q; k; v]) or "per_head".
    """
    if fused_qkv_order not in ("qkv", "per_head"):
        raise MaskgitError(f"fused qkv order must be 'qkv' or 'per_head', got {fused_qkv_order!r}.")
    cfg = config if config is not None else infer_lab_config(sd)
    if cfg.norm != "post":
        raise MaskgitError("lab checkpoints need a post-LN transformer config (norm='post').")
    problems = _Problems()
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            problems.unmapped.append(f"{k} (not a tensor)")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    c = cfg
    expected: dict[str, tuple[int, ...]] = {
        "tok_emb.weight": (c.vocab_size, c.dim),
        "pos_emb": (c.num_image_tokens, c.dim),
        "emb_ln.weight": (c.dim,),
        "emb_ln.bias": (c.dim,),
        "bias": (c.num_image_tokens, c.vocab_size) if c.per_position_bias else (c.vocab_size,),
        "head.fc.weight": (c.dim, c.dim),
        "head.fc.bias": (c.dim,),
        "head.ln.weight": (c.dim,),
        "head.ln.bias": (c.dim,),
    }
    block_shapes = {
        "ln1.weight": (c.dim,),
        "ln1.bias": (c.dim,),
        "ln2.weight": (c.dim,),
        "ln2.bias": (c.dim,),
        "mlp.fc.weight": (c.hidden_dim, c.dim),
        "mlp.fc.bias": (c.hidden_dim,),
        "mlp.proj.weight": (c.dim, c.hidden_dim),
        "mlp.proj.bias": (c.dim,),
    }
    out: dict[str, torch.Tensor] = {}
    attn_keys: dict[int, dict[str, torch.Tensor]] = {i: {} for i in range(c.n_layers)}
    for k, t in sd.items():
        if k in _FIXED_KEYS:
            ours = _FIXED_KEYS[k]
            t = _pos_emb(t) if k == "pos_emb" else t
            if problems.check(k, t, expected[ours]):
                out[ours] = t
            continue
        m = re.match(r"^blocks\.(\d+)\.(.+)$", k)
        if not m or int(m.group(1)) >= c.n_layers:
            problems.unmapped.append(k)
            continue
        i, rel = int(m.group(1)), m.group(2)
        if rel in _BLOCK_KEYS:
            ours = _BLOCK_KEYS[rel]
            if problems.check(k, t, block_shapes[ours]):
                out[f"blocks.{i}.{ours}"] = t
        else:
            attn_keys[i][rel] = t
    for i in range(c.n_layers):
        out.update(_convert_attention(i, attn_keys[i], c, fused_qkv_order, problems))
    for k in _FIXED_KEYS:
        if k not in sd:
            problems.missing.append(k)
    for i in range(c.n_layers):
        for rel in _BLOCK_KEYS:
            if f"blocks.{i}.{rel}" not in sd:
                problems.missing.append(f"blocks.{i}.{rel}")
    problems.raise_if_any(what)
    return {k: v.detach().clone().float().contiguous() for k, v in out.items()}


def read_lab_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The bare transformer state dict of a checkpoint file (see :func:`maskgit_cli.convert.load_torch_state_dict`
    for the unwrapping); for a whole lab ``MaskGit`` state dict, keeps the ``transformer.*`` keys (dropping
    ``vqgan.*``) and strips that prefix."""
    from maskgit_cli.convert import load_torch_state_dict

    sd = load_torch_state_dict(path, "transformer checkpoint")
    if any(k.startswith("transformer.") for k in sd):
        sd = {
            k[len("transformer.") :] if k.startswith("transformer.") else k: v
            for k, v in sd.items()
            if not k.startswith("vqgan.")
        }
    return sd


def load_lab_checkpoint(
    path: str | Path,
    config: TransformerConfig | None = None,
    fused_qkv_order: str = "qkv",
    n_heads: int = 16,
) -> MaskGITTransformer:
    """Build a :class:`MaskGITTransformer` from a lab student's transformer checkpoint (eval mode, CPU).

    ``config`` defaults to the lab preset with sizes inferred from the file (``n_heads`` heads)."""
    sd = read_lab_state_dict(path)
    cfg = config if config is not None else infer_lab_config(sd, n_heads=n_heads)
    converted = convert_lab_state_dict(sd, cfg, fused_qkv_order=fused_qkv_order, what=f"checkpoint {path}")
    model = MaskGITTransformer(cfg)
    model.load_state_dict(converted, strict=True)
    return model.eval()
