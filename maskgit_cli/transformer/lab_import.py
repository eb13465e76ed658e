"""Import a lab student's transformer checkpoint (a .pt state dict) onto our ``lab`` preset.

The lab's key layout is fixed except inside the attention module, which students write themselves; the
layouts below are mapped (docs/lab.md, "The transformer checkpoint"). Every tensor's shape is checked, and all
unmapped keys, missing keys and wrong shapes are reported together in one error.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from maskgit_cli.choices import QKV_ORDERS, check_choice
from maskgit_cli.errors import MaskgitError
from maskgit_cli.transformer.model import MaskGITTransformer, TransformerConfig, get_preset
from maskgit_cli.vqgan.code_patches import stored_with
from maskgit_cli.vqgan.resolution import check_partners, tokens_text
from maskgit_cli.vqgan.tokens import load_token_cache
from maskgit_cli.weights import check_finite, load_model, load_torch_state_dict, save_model, token_fingerprint

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
    ``n_heads`` cannot be read from weights; the lab uses 16 (docs/lab.md, "The transformer checkpoint")."""
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
    """The bare transformer state dict of a checkpoint file (see :func:`maskgit_cli.weights.load_torch_state_dict`
    for the unwrapping); for a whole lab ``MaskGit`` state dict, keeps the ``transformer.*`` keys (dropping
    ``vqgan.*``) and strips that prefix."""
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
    check_finite(sd, f"checkpoint {path}")
    cfg = config if config is not None else infer_lab_config(sd, n_heads=n_heads)
    converted = convert_lab_state_dict(sd, cfg, fused_qkv_order=fused_qkv_order, what=f"checkpoint {path}")
    model = MaskGITTransformer(cfg)
    model.load_state_dict(converted, strict=True)
    return model.eval()


def convert_lab_transformer_file(
    checkpoint, output, n_heads: int = 16, fused_qkv_order: str = "qkv", tokens=None, vqgan=None
) -> dict:
    """`maskgit convert-transformer`: a student's checkpoint written as our model file. With ``tokens`` (a token cache
    of the training images) the file also stores every code's mean patch for known-pixel guidance and the VQGAN's
    token fingerprint; with ``vqgan`` (the VQGAN file the student trained on) it records that VQGAN's fingerprint,
    so that inpaint refuses another one. Returns a summary (``vqgan_sha256`` None: nothing recorded)."""
    check_choice(fused_qkv_order, QKV_ORDERS, "--qkv-order")
    aux, meta, cache = {}, {}, None
    if tokens is not None:
        cache = load_token_cache(tokens)
        if cache.patch_stats is None:
            raise MaskgitError(f"--tokens {tokens}: has no code patches (made by an older maskgit): re-run tokenize")
        aux, meta = stored_with(cache)
    model = load_lab_checkpoint(checkpoint, fused_qkv_order=fused_qkv_order, n_heads=n_heads)
    if vqgan is not None:
        meta["vqgan_sha256"] = _recorded_vqgan(vqgan, model, meta.get("vqgan_sha256"), tokens)
    if cache is not None and cache.num_codebook_vectors != model.config.num_codebook_vectors:
        raise MaskgitError(
            f"--tokens {tokens}: {cache.num_codebook_vectors} codes, but the checkpoint predicts "
            f"{model.config.num_codebook_vectors}"
        )
    if cache is not None and cache.grid[0] * cache.grid[1] != model.config.num_image_tokens:
        raise MaskgitError(
            f"--tokens {tokens}: {cache.grid[0]}x{cache.grid[1]} token grids, but the checkpoint expects "
            f"{tokens_text(model.config.num_image_tokens)}"
        )
    save_model(output, model, "transformer", meta, aux)
    return {
        "output": str(output),
        "parameters": model.num_params(),
        "code_patches": bool(aux),
        "vqgan_sha256": meta.get("vqgan_sha256"),
    }


def _recorded_vqgan(vqgan, model, from_tokens: str | None, tokens) -> str:
    """The token fingerprint of the ``--vqgan`` file, which must have the transformer's codes and agree with the token
    cache's fingerprint when both are given."""
    vq = load_model(vqgan, "vqgan")
    if vq.config.num_codebook_vectors != model.config.num_codebook_vectors:
        raise MaskgitError(
            f"--vqgan {vqgan}: {vq.config.num_codebook_vectors} codes, but the checkpoint predicts "
            f"{model.config.num_codebook_vectors}"
        )
    check_partners(model.config, vq.config)
    fingerprint = token_fingerprint(vq)
    if from_tokens is not None and from_tokens != fingerprint:
        raise MaskgitError(
            f"--tokens {tokens} was made with VQGAN {from_tokens[:12]}, but --vqgan {vqgan} is VQGAN "
            f"{fingerprint[:12]}: pass the VQGAN the student trained on"
        )
    return fingerprint
