"""The inpainting settings, the one home of each decoding option's default, check and help; without torch.

:class:`DecodeSettings` (the decoding loop: schedule, T, sweet spot, sampler, sampling, seed) and
:class:`InpaintSettings` (everything around it: token rule, guidance, draws averaged, compositing, precision,
normalization) declare per field its option name, help text and accepted values (:func:`setting`). The CLI builds its
decoding options from them (:mod:`maskgit_cli.cli.common`), and settings turn themselves back into command-line
arguments (:meth:`InpaintSettings.to_args`, sweep's "run it" line) and into one flat dict
(:meth:`InpaintSettings.flat`), so no other module restates them. :data:`LAB_SETTINGS` are the lab's inference
(``--lab``).

Nothing here imports torch (`maskgit --help` reads these fields); making a :class:`DecodeSettings` does, through
:mod:`maskgit_cli.schedules`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import Any

from maskgit_cli.choices import (
    BLENDS,
    COUNT_RULES,
    DECODE_PRECISIONS,
    FILLS,
    NORMALIZATIONS,
    RANKINGS,
    ROUNDINGS,
    SAMPLERS,
    SAMPLING,
    SCHEDULE_NAMES,
    TOKEN_RULES,
    check_choice,
)
from maskgit_cli.errors import MaskgitError, OptionError

MAX_DRAWS = 64  # --draws: a draw's number goes into its random streams' keys (inpaint.draw_ids)


def setting(default, option: str, help: str, *, choices=None, min=None, default_help: str | None = None) -> Any:
    """A settings field that knows its command-line option: ``option`` (``--x``, or ``--x/--no-x`` for a switch),
    ``help``, ``choices`` (a tuple of :mod:`maskgit_cli.choices`), ``min`` (the CLI refuses less, exit 2) and
    ``default_help``: what a None default means, for the help (e.g. "T" for the sweet spot)."""
    meta = {"option": option, "help": help, "choices": choices, "min": min, "default_help": default_help}
    return field(default=default, metadata=meta)


def _check_choice(settings, name: str) -> None:
    """The field ``name`` of ``settings`` is one of its declared choices (one line naming the option otherwise)."""
    meta = next(f for f in fields(settings) if f.name == name).metadata
    check_choice(getattr(settings, name), meta["choices"], meta["option"])


@dataclass
class DecodeSettings:
    schedule: str = setting(
        "cosine",
        "--schedule",
        "Mask schedule gamma(r) (official formulas; logarithm = the official 'log').",
        choices=SCHEDULE_NAMES,
    )
    total_iter: int = setting(8, "--total-iter", "T: the schedule's number of steps, r = (t+1)/T.", min=1)
    # steps actually run (the lab's meaning); None = total_iter
    sweet_spot: int | None = setting(
        None,
        "--sweet-spot",
        "Steps actually run (the lab's meaning). After the last one every still-masked token is filled.",
        min=1,
        default_help="T",
    )
    # docs/decoding.md, "The decoding rule"
    choice_temperature: float = setting(
        4.5, "--choice-temperature", "Gumbel noise on the confidences, annealed by (1 - r).", min=0.0
    )
    sampling: str = setting("sample", "--sampling", "sample (official) or argmax (the lab's choice).", choices=SAMPLING)
    # Softmax temperature of the draws (and of the confidence that ranks them): 1 = the official rule, lower
    # sharpens p towards argmax; 0.5, chosen on emoji64's validation set (docs/decoding.md, "Sampling temperature").
    # With sampling="argmax" it still scales the probabilities that rank the draws.
    temperature: float = setting(
        0.5,
        "--temperature",
        "Softmax temperature of the drawn codes and of the probabilities that rank them: 1 = the official rule, "
        "lower draws closer to the most likely code (argmax is the limit). With --sampling argmax it still "
        "sharpens the ranking's probabilities.",
    )
    seed: int = setting(0, "--seed", "Random seed (results are reproducible for a given seed).")
    # which tokens each step keeps: confidence (the official rule) or halton
    sampler: str = setting(
        "confidence",
        "--sampler",
        "Which drawn tokens each step keeps: confidence (the official rule: the most confident, under --schedule) "
        "or halton (a fixed Halton order over the grid, arccos count; the schedule and --choice-temperature play "
        "no part).",
        choices=SAMPLERS,
    )

    # docs/lab.md, "One step: the lab's rule beside the official one"
    ranking: str = setting(
        "logp",
        "--ranking",
        "What ranks a step's draws: logp (the official rule: log p + noise) or p (the lab's starter code: p + "
        "noise, in float32).",
        choices=RANKINGS,
    )
    counts: str = setting(
        "clamped",
        "--counts",
        "Tokens still masked after a step: clamped (the official rule: floor(N * gamma) clamped to [1, still masked "
        "- 1], all filled by the last step) or floor (the lab's: floor(N * gamma), no clamp; the count after the "
        "last step shows it too, its draws still fill every token).",
        choices=COUNT_RULES,
    )

    def __post_init__(self) -> None:
        from maskgit_cli.schedules import canonical_schedule  # imports torch: made settings only, not `--help`

        self.schedule = canonical_schedule(self.schedule)
        if self.total_iter < 1:
            raise MaskgitError(f"--total-iter {self.total_iter}: must be at least 1")
        if self.sweet_spot is not None and not 1 <= self.sweet_spot <= self.total_iter:
            raise MaskgitError(
                f"--sweet-spot {self.sweet_spot}: must be between 1 and --total-iter ({self.total_iter})"
            )
        _check_choice(self, "sampling")
        _check_choice(self, "sampler")
        _check_choice(self, "ranking")
        _check_choice(self, "counts")
        if not 0 < self.temperature < math.inf:
            raise MaskgitError(f"--temperature {self.temperature}: must be a finite number > 0 (1 = official)")
        if not 0 <= self.choice_temperature < math.inf:
            raise MaskgitError(f"--choice-temperature {self.choice_temperature}: must be a finite number >= 0")

    @property
    def steps(self) -> int:
        return self.total_iter if self.sweet_spot is None else self.sweet_spot


@dataclass
class InpaintSettings:
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    token_mask: str = setting(
        "any",
        "--token-mask",
        "Pixel -> token rule: any (the lab's: a token is regenerated if any of its pixels is a hole) or majority.",
        choices=TOKEN_RULES,
    )
    # Extra rings of regenerated tokens around the holes (0 = the lab's rule); None = as far as the gray fill reaches
    # the VQGAN's tokens (:func:`maskgit_cli.decoding.inpaint.auto_dilate`).
    dilate: int | None = setting(
        None,
        "--dilate",
        "Also regenerate K rings of tokens around the holes (tokens the gray fill reached). 0 = the lab's rule.",
        min=0,
        default_help="as far as the fill reaches the VQGAN's tokens: 0 for a local encoder such as the default "
        "weights', 1 for an image-wide one such as the lab's",
    )
    composite: bool = setting(
        True,
        "--composite/--no-composite",
        "Paste the known input pixels back over the result. The lab's FID numbers were made without compositing.",
    )
    # With composite: "poisson" blends the holes into the known pixels (blend.py, Poisson image editing); "none"
    # pastes them as decoded.
    blend: str = setting(
        "poisson",
        "--blend",
        "With --composite, how the holes meet the known pixels: poisson (Poisson image editing: the decoded holes "
        "shifted by the smooth field that makes them continuous with the known pixels at their edge; +0.65 dB in the "
        "validation holes) or none (pasted as decoded).",
        choices=BLENDS,
    )
    # With composite: "smooth-prior" pulls the holes toward a biharmonic fill of the known pixels where the
    # transformer's draws were unsure (blend.smooth_prior; docs/decoding.md, "A smooth prior where the model is
    # unsure"); "sharp" keeps the decoded pixels alone (with draws=1 the fill before it, bit for bit).
    fill: str = setting(
        "smooth-prior",
        "--fill",
        "With --composite, what fills the holes: smooth-prior (the decoded pixels mixed with a smooth biharmonic "
        "fill of the known pixels, the more the less sure the transformer's draw was, by each token's code's "
        "probability; chosen on the training styles' validation sets, docs/decoding.md) or sharp (the decoded "
        "pixels alone; with --draws 1 the fill before the prior, bit for bit).",
        choices=FILLS,
    )
    # Samples of the holes averaged into one result (inpaint.decode_inputs): 4, chosen on the training styles'
    # validation sets (docs/decoding.md, "Several draws, averaged"); 1 = one draw, the fill before it.
    draws: int = setting(
        4,
        "--draws",
        "Decode K samples of the holes at once (K independent random streams) and average their pixels: the mean "
        "of several plausible fills is nearer the truth than any one of them (4 draws: +0.11 to +0.24 dB in the "
        "test holes of six emoji styles, for K times the decoding work). The smooth prior then weighs by their mean "
        "confidence. 1 = one draw, as before. The per-step pictures show the first draw.",
        min=1,
    )
    # Known-pixel guidance strength (guidance.py): 0 = off, the lab's decoding. 50 = a 0.1 standard deviation.
    pixel_guidance: float = setting(
        50.0,
        "--pixel-guidance",
        "Let the known pixels inside each regenerated token weigh in on its code: logits -= W * squared distance "
        "(RGB in \\[0,1]) between those pixels and each code's mean patch (stored by `maskgit train`, else decoded "
        "from the VQGAN). 0 = off, the lab's decoding.",
        min=0.0,
    )
    # The transformer's autocast: "auto" (bf16 where the hardware computes it natively: CUDA, CPUs with AVX512-BF16
    # or AMX, about twice as fast as fp32 there; fp32 elsewhere, where bf16 is emulated and slower), bf16 or fp32.
    # The VQGAN runs in bf16 on CUDA and fp32 on CPU, except with fp32: everything in fp32 (runtime.vqgan_autocast).
    precision: str = setting(
        "auto",
        "--precision",
        "The transformer's autocast: auto (bf16 where the hardware computes it natively: CUDA, CPUs with "
        "AVX512-BF16 or AMX; fp32 elsewhere, where bf16 is emulated and slower), bf16 or fp32. fp32 also runs the "
        "VQGAN in fp32 on CUDA (otherwise bf16 there; always fp32 on a CPU). Batching does not change the decoded "
        "tokens in either (tested on CPU).",
        choices=DECODE_PRECISIONS,
    )
    # The VQGAN's statistics for encoding the inputs and de-normalizing the outputs: "train" (its own) or "test"
    # (the lab's test-set statistics, as the lab's inference; docs/lab.md, "Normalization").
    normalization: str = setting(
        "train",
        "--normalization",
        "The VQGAN's statistics for encoding the inputs and de-normalizing the results: train (its own) or test "
        "(the lab's test-set statistics, recorded by convert-vqgan; the lab's inference).",
        choices=NORMALIZATIONS,
    )
    rounding: str = setting(
        "even",
        "--rounding",
        "How result pixels become bytes: even (round half to even) or half-up (floor(255 x + 0.5), as the lab's "
        "torchvision save_image).",
        choices=ROUNDINGS,
    )
    # made from --lab (LAB_SETTINGS, then what was given): recorded, and sweep's run-it line says so
    lab: bool = setting(
        False,
        "--lab",
        "The lab's inference exactly: {lab} and (inpaint) the lab's output names, grids for every image. Any of "
        "these can still be given.",
    )

    def __post_init__(self) -> None:
        _check_choice(self, "precision")
        _check_choice(self, "token_mask")
        _check_choice(self, "normalization")
        _check_choice(self, "blend")
        _check_choice(self, "fill")
        _check_choice(self, "rounding")
        if not 1 <= self.draws <= MAX_DRAWS:
            raise MaskgitError(f"--draws {self.draws}: must be between 1 and {MAX_DRAWS}")
        if self.dilate is not None and self.dilate < 0:
            raise MaskgitError(f"--dilate {self.dilate}: must be >= 0")
        if not 0 <= self.pixel_guidance < math.inf:
            raise MaskgitError(
                f"--pixel-guidance {self.pixel_guidance}: must be a finite number >= 0 (0 turns guidance off)"
            )

    def option(self, name: str):
        """A setting by its option name, wherever it lives (here or in the DecodeSettings)."""
        return getattr(self, name) if name in {f.name for f in fields(self)} else getattr(self.decode, name)

    @classmethod
    def from_options(cls, lab: bool = False, **options) -> InpaintSettings:
        """Settings from flat option values, as the CLI and the Python API take them. Options that are None are
        not given: they take the default, or with ``lab`` the lab's inference (:data:`LAB_SETTINGS`)."""
        known = [f.name for f in option_fields()]
        for name in options:
            if name not in known:  # a misspelt keyword of Inpainter(...), pipe(..., draws=2) or from_pretrained
                near = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {near[0]}?)" if near else f"; the settings are: {', '.join(known)}"
                raise OptionError(f"{name}: not an inpainting setting{hint}")
        given = {**(LAB_SETTINGS if lab else {}), **{k: v for k, v in options.items() if v is not None}}
        decode_fields = [f.name for f in fields(DecodeSettings)]
        decode = DecodeSettings(**{k: given.pop(k) for k in decode_fields if k in given})
        return cls(decode, **given, lab=lab)

    def flat(self) -> dict[str, Any]:
        """The settings as one flat dict of option values (what :meth:`from_options` takes back)."""
        options = {k: v for k, v in asdict(self).items() if k != "decode"}
        return {**options, **asdict(self.decode)}

    def to_args(self, base: InpaintSettings | None = None, keep: tuple[str, ...] = ()) -> list[str]:
        """These settings as `maskgit inpaint` arguments, in :data:`OPTION_ORDER`: every setting that differs from
        ``base``, and those named in ``keep`` even where they do not. Without ``base``, the arguments that make
        these settings from nothing: ``--lab`` when they are the lab's, then what differs from its defaults.
        A None (the sweet spot's T, the automatic ``--dilate``) cannot be written and is left out."""
        if base is None:
            base = replace(InpaintSettings.from_options(lab=self.lab), lab=False)
        args: list[str] = []
        for f in option_fields():
            value = self.option(f.name)
            if f.name in keep or value != base.option(f.name):
                args += option_args(f.name, value)
        return args


# The lab's inference exactly (docs/lab.md, "The lab's inference"): inputs encoded and outputs de-normalized with
# the lab's test-set statistics, the most likely code at every step (softmax at temperature 1) ranked by p + noise,
# floor(N * gamma) still masked after each step with no clamp, fp32 everywhere, pixels rounded half up (save_image),
# no compositing, the any-pixel token rule alone, no guidance. `--lab` sets these; any of them can still be given.
LAB_SETTINGS = {
    "normalization": "test",
    "sampling": "argmax",
    "temperature": 1.0,
    "ranking": "p",
    "counts": "floor",
    "precision": "fp32",
    "rounding": "half-up",
    "composite": False,
    "blend": "none",
    "fill": "sharp",
    "draws": 1,
    "dilate": 0,
    "pixel_guidance": 0.0,
}

# The order in which a command line states the settings (sweep's "run it" line, the decoding options' help).
OPTION_ORDER = (
    "lab",
    "sampler",
    "schedule",
    "total_iter",
    "sweet_spot",
    "normalization",
    "sampling",
    "ranking",
    "counts",
    "token_mask",
    "dilate",
    "pixel_guidance",
    "precision",
    "choice_temperature",
    "temperature",
    "seed",
    "composite",
    "blend",
    "fill",
    "draws",
    "rounding",
)


def option_fields() -> list[Field]:
    """Every settings field that is a command-line option, in :data:`OPTION_ORDER` (a field missing from the order
    comes last: none is ever left out)."""
    found = [f for cls in (InpaintSettings, DecodeSettings) for f in fields(cls) if "option" in f.metadata]
    rank = {name: i for i, name in enumerate(OPTION_ORDER)}
    return sorted(found, key=lambda f: rank.get(f.name, len(rank)))


def setting_owner(name: str) -> type:
    """The settings class whose field is the option ``name``: :class:`InpaintSettings` or :class:`DecodeSettings`."""
    return InpaintSettings if name in {f.name for f in fields(InpaintSettings)} else DecodeSettings


def setting_field(name: str) -> Field:
    """The settings field of the option ``name`` (e.g. ``"dilate"``, ``"total_iter"``)."""
    for f in option_fields():
        if f.name == name:
            return f
    raise KeyError(name)


def arg_value(value) -> str:
    """An option's value as the command line writes it: floats short (``50``, ``0.5``) where that is exact."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def option_args(name: str, value) -> list[str]:
    """The arguments that set the option ``name`` to ``value``: ``["--dilate", "1"]``, ``["--no-composite"]``,
    ``["--lab"]``; none for a None or an unset flag."""
    decl = setting_field(name).metadata["option"]
    if isinstance(value, bool):
        on, _, off = decl.partition("/")
        return [on] if value else [off] if off else []
    return [] if value is None else [decl, arg_value(value)]


def option_help(name: str) -> str:
    """The help of the option ``name``; ``--lab``'s lists what it sets (:data:`LAB_SETTINGS`)."""
    lab = " ".join(arg for k, v in LAB_SETTINGS.items() for arg in option_args(k, v))
    return setting_field(name).metadata["help"].replace("{lab}", lab)


@dataclass(frozen=True)
class OutputSettings:
    """How `maskgit inpaint` lays out its output folder (:class:`maskgit_cli.decoding.folders.Layout`)."""

    layout: str = "ours"  # ours: images/, steps/; lab: the lab's test_results/, mask_scheduling/, imga/
    grids: str = "8"  # the images that get per-step grids: all, none, the first N, or indices i,j,k
    animation: str = "none"  # none, gif or webp: an animation of the steps beside the grids (decoding/replay.py)
    # Images inpainted together. The tokens do not depend on it; the VQGAN's convolutions may round a pixel one level
    # differently in another batch size, so --lab runs the lab's batch of one (docs/lab.md).
    batch_size: int = 64


# --lab writes the lab's layout, with grids for every image (the grids follow the layout: `--layout lab` alone too),
# one image at a time as the lab's loop.
LAB_OUTPUT = {"layout": "lab", "grids": "all", "batch_size": 1}
