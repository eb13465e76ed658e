"""Every option's list of accepted values, in one place, without torch.

The CLI builds its choices from these tuples (so `--help` lists them and a bad value exits 2), and the library's
validators check against the same tuples (so Python callers get the same one-line errors). A test checks that
each library module uses these lists and not a copy.
"""

from __future__ import annotations

from maskgit_cli.errors import OptionError

DEVICES = ("auto", "cpu", "cuda")

# Autocast precisions of training and decoding: auto = bf16 where the hardware computes it natively (CUDA, CPUs with
# AVX512-BF16 or AMX), fp32 elsewhere (emulated bf16 is about 3x slower than fp32 there; docs/machines.md).
PRECISIONS = ("auto", "bf16", "fp32")
DECODE_PRECISIONS = PRECISIONS

# Mask schedules gamma(r) (docs/decoding.md, "Mask schedules"): canonical names, then the aliases the official
# code and the lab use. The formulas live in maskgit_cli.schedules.
SCHEDULES = ("cosine", "linear", "square", "cubic", "sqrt", "logarithm", "exp", "arccos")
SCHEDULE_ALIASES = {"uniform": "linear", "pow2": "square", "pow3": "cubic", "pow0.5": "sqrt", "log": "logarithm"}
SCHEDULE_NAMES = (*SCHEDULES, *SCHEDULE_ALIASES)

NORMALIZATIONS = ("train", "test")  # the VQGAN's statistics: its training set's, or the lab's test set's
SAMPLING = ("sample", "argmax")  # sample = the official decoder; argmax = the lab's choice
SAMPLERS = ("confidence", "halton")  # which tokens a decoding step keeps: the official rule, or Halton order
# How a confidence step ranks its draws: log p + noise (the official rule) or p + noise (the lab's starter code).
RANKINGS = ("logp", "p")
# How many tokens stay masked after a step: clamped = the official floor(N * gamma) clamped to [1, still - 1], the
# last step run filling all; floor = the lab's floor(N * gamma) without the clamp (docs/lab.md).
COUNT_RULES = ("clamped", "floor")
# How result pixels become bytes: even = round half to even (torch.round); half-up = floor(255 x + 0.5), as the lab's
# torchvision save_image writes them.
ROUNDINGS = ("even", "half-up")
TOKEN_RULES = ("any", "majority")  # pixel -> token rule: any = the lab's
BLENDS = ("poisson", "none")  # how composited holes meet the known pixels: Poisson blending, or pasted as decoded
# What fills composited holes: the decoded pixels pulled toward a smooth fill where the transformer was unsure, or
# the decoded pixels alone (sharp: the fill before the smooth prior).
FILLS = ("smooth-prior", "sharp")
MASK_KINDS = ("stroke", "box", "half", "outpaint")
FITS = ("auto", "crop", "resize", "none")  # other sizes: a window per group of holes, the whole image, refuse
ANIMATIONS = ("none", "gif", "webp")  # `maskgit inpaint --animation`: the formats Pillow writes animated
LAYOUTS = ("ours", "lab")  # inpaint's output names: images/ + steps/, or the lab's test_results/ + grids
FID_MODES = ("clean", "legacy_pytorch")
SWEEP_METRICS = ("auto", "fid", "psnr")
LOSS_ON = ("masked", "all")
QKV_ORDERS = ("qkv", "per_head")  # row order of a student's fused qkv weight

# Model presets (their configurations live with the models; a test checks that the names agree).
VQGAN_PRESET_NAMES = ("small", "local", "base", "lab", "tiny")
TRANSFORMER_PRESET_NAMES = ("small", "base", "lab", "tiny")


def check_choice(value: str, choices, option: str) -> str:
    """``value`` if it is one of ``choices``, else a one-line :class:`OptionError` naming ``option`` and the choices
    (a bad option value: the CLI exits 2)."""
    if value not in choices:
        raise OptionError(f"{option} {value}: expected one of {', '.join(choices)}")
    return value
