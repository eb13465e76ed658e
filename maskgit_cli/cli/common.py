"""What every command shares: the app, the error boundary, output helpers, choices and option groups.

Options that several commands take are declared once here, as :class:`OptionGroup` s (the decoding options of
inpaint, sweep and serve, the training-loop options of train and train-vqgan, ...) or as single ``Annotated``
aliases. The decoding options are made from the settings' own fields (:mod:`maskgit_cli.decoding.settings`: name,
help, choices, default), and a default the help states comes from its dataclass (:func:`default_help`), so none is
written twice. Every list of accepted values comes from :mod:`maskgit_cli.choices`, which the library validates
against too. Nothing here imports torch: `maskgit --help` stays instant.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from maskgit_cli import choices
from maskgit_cli.decoding.settings import (
    LAB_OUTPUT,
    LAB_SETTINGS,
    OutputSettings,
    option_fields,
    option_help,
    setting_field,
    setting_owner,
)
from maskgit_cli.errors import MaskgitError, OptionError
from maskgit_cli.training.settings import TrainSettings

app = typer.Typer(
    name="maskgit",
    help="MaskGIT image inpainting end to end: VQGAN tokens, masked visual token training, iterative "
    "inpainting under a mask schedule, and FID.\n\nRun `maskgit COMMAND --help` for a command's options and examples.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
bench_app = typer.Typer(
    help="Speed benchmarks, reported as ratios measured in one run (achieved FLOP/s over the matmul peak).",
    no_args_is_help=True,
)

# Help panels, in pipeline order.
DATA = "Data"
STAGE1 = "Stage 1: VQGAN (images <-> token grids)"
STAGE2 = "Stage 2: transformer (masked visual token modeling)"
INPAINT = "Inpainting and scores"
FILES = "Files and speed"


_CHOICES: dict[tuple, type[StrEnum]] = {}  # each tuple's choice type (the last built, for two equal tuples)


def _choice(name: str, values) -> type[StrEnum]:
    """A Typer choice type built from one of :mod:`maskgit_cli.choices`' tuples (Typer lists and checks them)."""
    _CHOICES[tuple(values)] = StrEnum(name, {v: v for v in values})
    return _CHOICES[tuple(values)]


Device = _choice("Device", choices.DEVICES)
Precision = _choice("Precision", choices.PRECISIONS)
DecodePrecision = _choice("DecodePrecision", choices.DECODE_PRECISIONS)
Schedule = _choice("Schedule", choices.SCHEDULE_NAMES)
Sampling = _choice("Sampling", choices.SAMPLING)
Sampler = _choice("Sampler", choices.SAMPLERS)
Normalization = _choice("Normalization", choices.NORMALIZATIONS)
Layout = _choice("Layout", choices.LAYOUTS)
Animation = _choice("Animation", choices.ANIMATIONS)
Fit = _choice("Fit", choices.FITS)
TokenRule = _choice("TokenRule", choices.TOKEN_RULES)
Blend = _choice("Blend", choices.BLENDS)
Fill = _choice("Fill", choices.FILLS)
Ranking = _choice("Ranking", choices.RANKINGS)
CountRule = _choice("CountRule", choices.COUNT_RULES)
Rounding = _choice("Rounding", choices.ROUNDINGS)
MaskKind = _choice("MaskKind", choices.MASK_KINDS)
FidMode = _choice("FidMode", choices.FID_MODES)
SweepMetric = _choice("SweepMetric", choices.SWEEP_METRICS)
LossOn = _choice("LossOn", choices.LOSS_ON)
QkvOrder = _choice("QkvOrder", choices.QKV_ORDERS)
VQGANPreset = _choice("VQGANPreset", choices.VQGAN_PRESET_NAMES)
TransformerPreset = _choice("TransformerPreset", choices.TRANSFORMER_PRESET_NAMES)

DeviceOpt = Annotated[Device, typer.Option("--device", help="auto = cuda if available, else cpu.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout.")]


def command(name: str, panel: str | None = None, group: typer.Typer | None = None, **kwargs):
    """Register a command on ``group`` (default: the main app). A :class:`MaskgitError` becomes one line
    ``Error: ...`` and exit code 1 (2 for an :class:`OptionError`), an ``OSError`` one line naming the path; ``MASKGIT_DEBUG=1`` shows the
    traceback instead. Ctrl-C outside a training loop exits 130."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            debug = os.environ.get("MASKGIT_DEBUG") == "1"
            try:
                return fn(*args, **kw)
            except MaskgitError as e:
                if debug:
                    raise
                fail(str(e), 2 if isinstance(e, OptionError) else 1)
            except OSError as e:
                if debug:
                    raise
                where = f"{e.filename}: " if e.filename else ""
                fail(f"{where}{e.strerror or e}")
            except KeyboardInterrupt:
                if debug:
                    raise
                typer.echo("Interrupted.", err=True)
                raise typer.Exit(130) from None

        (group or app).command(name, rich_help_panel=panel, **kwargs)(wrapper)
        return fn

    return decorate


def fail(message: str, code: int = 1):
    """Print one ``Error: ...`` line on stderr and exit."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def out(text: str = "") -> None:
    """A result line on stdout."""
    typer.echo(text)


def print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def result(value, as_json: bool, text: str) -> None:
    """A command's result on stdout: ``value`` as JSON with --json, else ``text``."""
    if as_json:
        print_json(value)
    else:
        out(text)


def device(value) -> Any:
    """The torch device for a --device value (imports torch)."""
    from maskgit_cli.runtime import resolve_device

    return resolve_device(str(value))


def plain(value):
    """An option's value for the library: enum members become their strings."""
    return value.value if isinstance(value, StrEnum) else value


# ---------------------------------------------------------------------------------------------------------
# Option groups


class OptionGroup:
    """Options declared once and added to every command that takes them.

    ``options`` maps a parameter name to ``(Annotated[type, typer.Option(...)], default)``. ``@GROUP.add()`` on a
    command function replaces its parameter named like the group (e.g. ``decode``) by the group's options; the
    command then receives them as one dict (option values, enums as strings). ``help`` overrides per command the
    help of some options (e.g. a default that differs between trainers).
    """

    def __init__(self, name: str, options: dict[str, tuple[Any, Any]]):
        self.name, self.options = name, options

    def add(self, help: dict[str, str] | None = None, exclude: tuple[str, ...] = ()):
        help = help or {}

        def decorate(fn):
            sig = inspect.signature(fn, eval_str=True)
            params, group_params = [], []
            for name, (annotation, default) in self.options.items():
                if name in exclude:
                    continue
                if name in help:
                    info = copy.copy(annotation.__metadata__[0])
                    info.help = help[name]
                    annotation = Annotated[annotation.__origin__, info]
                default = inspect.Parameter.empty if default is ... else default
                kind = inspect.Parameter.KEYWORD_ONLY
                group_params.append(inspect.Parameter(name, kind, default=default, annotation=annotation))
            names = {p.name for p in group_params}
            for p in sig.parameters.values():
                if p.name == self.name:
                    params.extend(group_params)
                else:
                    params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
            if self.name not in sig.parameters:
                raise TypeError(f"{fn.__name__} has no parameter {self.name!r} for the option group")

            @functools.wraps(fn)
            def wrapper(**kwargs):
                values = {k: plain(kwargs.pop(k)) for k in list(kwargs) if k in names}
                return fn(**kwargs, **{self.name: values})

            wrapper.__signature__ = sig.replace(parameters=params)
            wrapper.__annotations__ = {p.name: p.annotation for p in params}
            del wrapper.__wrapped__  # Typer must read the new signature, not the function's own
            return wrapper

        return decorate


def given(values: dict[str, Any]) -> dict[str, Any]:
    """The options of a group that were given on the command line (not None): they override saved settings."""
    return {k: v for k, v in values.items() if v is not None}


def floats3(text: str | None, option: str) -> tuple[float, ...] | None:
    """``0.5,0.5,0.5`` -> (0.5, 0.5, 0.5) for per-channel options; one error line naming the option."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise MaskgitError(f"{option} {text!r}: expected comma-separated numbers, e.g. 0.5,0.5,0.5") from None
    if len(values) != 3:
        raise MaskgitError(f"{option} {text!r}: expected 3 values (R,G,B)")
    return values


def _opt(*decls: str, help: str, **kw) -> Any:
    return typer.Option(*decls, help=help, **kw)


# ---------------------------------------------------------------------------------------------------------
# Defaults in the help, and options made from dataclass fields


def shown_default(default: str, lab: str | None = None) -> str:
    """The help's ``[default: X]``, or ``[default: X; --lab: Y]``: the one place that writes it, for the defaults
    Typer cannot show itself (an option whose None means something, or whose value --lab changes)."""
    return f"\\[default: {default}" + ("" if lab is None else f"; --lab: {lab}") + "]"


def default_text(value, option: str = "") -> str:
    """A default as the help shows it: a switch by its flag (``composite``, ``no-composite``), a float short."""
    if isinstance(value, bool) and "/" in option:
        on, off = option.split("/")
        return (on if value else off).lstrip("-")
    return f"{value:g}" if isinstance(value, float) else str(value)


def field_default(cls, name: str) -> Any:
    """The default of the field ``name`` of the dataclass ``cls`` (its factory's value for a factory)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def default_help(
    cls, name: str, lab: dict[str, Any] | None = None, *, switch: str = "", none: str | None = None
) -> str:
    """The ``[default: ...]`` of the field ``name`` of the dataclass ``cls``, for any command's help: its default
    (for a None, what the field's ``default_help`` metadata, else ``none``, says it means), then its value in ``lab``
    where that differs. Switches show their flag when the field's ``option`` metadata, else ``switch``, names both
    (``--x/--no-x``)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    value, option = field_default(cls, name), f.metadata.get("option", switch)
    text = (f.metadata.get("default_help") or none) if value is None else None
    changed = lab is not None and name in lab and lab[name] != value
    return shown_default(text or default_text(value, option), default_text(lab[name], option) if changed else None)


def _choice_of(values) -> type[StrEnum]:
    """The Typer choice built from one of :mod:`maskgit_cli.choices`' tuples."""
    return _CHOICES[tuple(values)]


def setting_option(name: str) -> tuple[Any, Any]:
    """The command-line option of the inpainting setting ``name``, for an :class:`OptionGroup`, made from its field
    (:mod:`maskgit_cli.decoding.settings`: option name, help, choices, minimum, default). A setting that --lab
    changes, or whose default is None, is None on the command line (not given: the settings fill it in), and its
    help states the default; Typer shows the others'."""
    owner, meta = setting_owner(name), setting_field(name).metadata
    default = field_default(owner, name)
    kind = _choice_of(meta["choices"]) if meta["choices"] else get_type_hints(owner)[name]
    bounds = {} if meta["min"] is None else {"min": meta["min"]}
    if name in LAB_SETTINGS or default is None:
        info = _opt(meta["option"], help=f"{option_help(name)} {default_help(owner, name, LAB_SETTINGS)}", **bounds)
        return Annotated[kind | None, info], None
    info = _opt(meta["option"], help=option_help(name), **bounds)
    return Annotated[kind, info], kind(default) if meta["choices"] else default


InceptionOpt = Annotated[
    Path | None,
    typer.Option(
        "--inception",
        help="Inception weights file. " + shown_default("$MASKGIT_INCEPTION, else clean-fid's cache, else a download"),
    ),
]

# The schedule, T and sweet spot of inpaint (sweep takes lists of them, the page of serve its own).
STEPS = OptionGroup("steps", {name: setting_option(name) for name in ("schedule", "total_iter", "sweet_spot")})

# The decoding settings shared by every command that inpaints (inpaint, sweep, serve), made from the settings'
# fields (decoding/settings.py). Settings that --lab changes default to None (not given): the settings fill in the
# default, or the lab's value with --lab.
DECODE = OptionGroup(
    "decode",
    {
        **{f.name: setting_option(f.name) for f in option_fields() if f.name not in STEPS.options},
        "batch_size": (
            Annotated[
                int | None,
                _opt(
                    "--batch-size",
                    min=1,
                    help="Images decoded together: the tokens do not depend on it (a pixel may round one level "
                    f"differently in the VQGAN). {default_help(OutputSettings, 'batch_size', LAB_OUTPUT)}",
                ),
            ],
            None,
        ),
    },
)

# Where the images to inpaint, their masks and the weights come from (inpaint, sweep).
INPUTS = OptionGroup(
    "inputs",
    {
        "images": (
            Annotated[
                Path,
                _opt(
                    "--images",
                    help="Folder of (masked) images, e.g. the lab's masked_image/: PNG, JPEG, WebP, ... of any size "
                    "(inpaint --fit). Without --masks or --mask-kind, each image's transparent pixels are its holes.",
                ),
            ],
            ...,
        ),
        "masks": (
            Annotated[
                Path | None,
                _opt(
                    "--masks",
                    help="Lab-format masks (0 = hole, 255 = known; or PNGs whose alpha 0 = hole), each of its "
                    "image's size, paired with the images in sorted name order.",
                ),
            ],
            None,
        ),
        "mask_kind": (
            Annotated[
                MaskKind | None,
                _opt("--mask-kind", help="Instead of --masks: generate masks of this kind for any image folder."),
            ],
            None,
        ),
        "mask_seed": (Annotated[int, _opt("--mask-seed", min=0, help="Seed of the generated masks.")], 0),
        "transformer": (
            Annotated[
                Path | None,
                _opt(
                    "--transformer",
                    help="Transformer weights (.safetensors). " + shown_default("the shipped emoji64 weights"),
                ),
            ],
            None,
        ),
        "vqgan": (
            Annotated[
                Path | None,
                _opt(
                    "--vqgan",
                    help="VQGAN weights (.safetensors) the transformer was trained on. "
                    + shown_default("the shipped emoji64 VQGAN"),
                ),
            ],
            None,
        ),
        "any_vqgan": (
            Annotated[
                bool,
                _opt(
                    "--any-vqgan",
                    help="Use --vqgan even if the transformer file records another VQGAN (its tokens then mean "
                    "something else: results are poor).",
                ),
            ],
            False,
        ),
        "overwrite": (
            Annotated[
                bool,
                _opt(
                    "--overwrite",
                    help="Replace an output folder that holds results (whole, once the new ones are done).",
                ),
            ],
            False,
        ),
    },
)


def unset_option(kind, *decls: str, help: str, **kw) -> tuple[Any, None]:
    """An :class:`OptionGroup` entry whose default None means "not given" (the settings, or a run's, decide)."""
    return Annotated[kind | None, _opt(*decls, help=help, **kw)], None


# The training loop's settings, shared by the trainers. None = not given: the run's own setting when resuming, else
# the trainer's default (the help states those every trainer shares; each command adds its own with loop_help).
LOOP = OptionGroup(
    "loop",
    {
        "epochs": unset_option(int, "--epochs", min=1, help="Epochs."),
        "max_steps": unset_option(
            int, "--max-steps", min=1, help="Stop after this many optimizer steps (whichever comes first)."
        ),
        "batch_size": unset_option(int, "--batch-size", min=1, help="Images per step."),
        "lr": unset_option(float, "--lr", min=0.0, help="Peak learning rate (AdamW, warmup then cosine)."),
        "warmup_steps": unset_option(int, "--warmup-steps", min=0, help="Linear warmup steps."),
        "precision": unset_option(
            Precision,
            "--precision",
            help="bf16 autocast, fp32, or auto: bf16 where the hardware computes it natively (CUDA, CPUs with "
            "AVX512-BF16 or AMX), fp32 elsewhere (emulated bf16 is slower). "
            + default_help(TrainSettings, "precision"),
        ),
        "eval_every": unset_option(int, "--eval-every", min=0, help="Steps between validations; 0 = every epoch."),
        "save_every": unset_option(
            int, "--save-every", min=0, help="Steps between checkpoints (0 = at every validation)."
        ),
        "log_every": unset_option(
            int,
            "--log-every",
            min=1,
            help="Steps per metrics.jsonl record. " + default_help(TrainSettings, "log_every"),
        ),
        "stop_at": unset_option(
            int, "--stop-at", min=1, help="Stop after step N exactly as an interruption would (resume later)."
        ),
        "seed": unset_option(
            int,
            "--seed",
            help="Seed of the initial weights, data order and masks. " + default_help(TrainSettings, "seed"),
        ),
        "device": unset_option(Device, "--device", help="auto = cuda if available, else cpu."),
    },
)


def loop_help(config, **texts: str) -> dict[str, str]:
    """The help of the :data:`LOOP` options ``texts`` names, for the trainer whose settings class is ``config``: each
    text followed by that trainer's default (``LOOP.add(help=loop_help(...))``); epochs None: --max-steps decides."""
    none = {"epochs": "none, --max-steps decides"}
    return {name: f"{text} {default_help(config, name, none=none.get(name))}" for name, text in texts.items()}


ResumeOpt = Annotated[
    Path | None,
    typer.Option(
        "--resume", help="Continue the run in this folder exactly where it stopped (settings come from the run)."
    ),
]

# FID's options (fid, fid-stats).
FID = OptionGroup(
    "fid",
    {
        "mode": (
            Annotated[
                FidMode,
                _opt(
                    "--mode",
                    help="clean = clean-fid's Inception and anti-aliased resize (the default); legacy_pytorch = "
                    "pytorch-fid's network and resize, the mode comparable to the lab's FID numbers. Numbers of the "
                    "two modes differ.",
                ),
            ],
            FidMode.clean,
        ),
        "inception": (InceptionOpt, None),
        "batch_size": (Annotated[int, _opt("--batch-size", min=1, help="Images per Inception batch.")], 32),
        "workers": (
            Annotated[
                int | None,
                _opt("--workers", min=0, help="Image decoding/resizing processes. " + shown_default("by core count")),
            ],
            None,
        ),
        "device": (DeviceOpt, Device.auto),
    },
)
