"""The inpainting settings are the one home of each decoding option: they turn into `maskgit inpaint` arguments that
the real CLI parses back into the same settings, and into one flat dict."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from maskgit_cli.decoding.settings import (
    LAB_SETTINGS,
    OPTION_ORDER,
    DecodeSettings,
    InpaintSettings,
    option_args,
    option_fields,
)
from maskgit_cli.errors import MaskgitError, OptionError

# A value other than the default (and, where --lab sets one, other than the lab's) for every option.
OTHER = {
    "lab": True,
    "sampler": "halton",
    "schedule": "square",
    "total_iter": 12,
    "sweet_spot": 5,
    "normalization": "test",
    "sampling": "argmax",
    "ranking": "p",
    "counts": "floor",
    "token_mask": "majority",
    "dilate": 2,
    "pixel_guidance": 12.5,
    "precision": "bf16",
    "choice_temperature": 2.25,
    "temperature": 0.123456789,  # not short: written exactly all the same
    "seed": 7,
    "composite": False,
    "blend": "none",
    "fill": "sharp",
    "draws": 3,
    "rounding": "half-up",
}
LAB_OTHER = {"normalization": "train", "sampling": "sample", "composite": True, "blend": "poisson", "dilate": 1,
             "pixel_guidance": 3.0, "temperature": 0.75, "ranking": "logp", "counts": "clamped",
             "precision": "auto", "rounding": "even", "fill": "smooth-prior", "draws": 2}  # fmt: skip


def test_every_option_is_covered_here_and_in_the_order():
    names = [f.name for f in option_fields()]
    assert sorted(names) == sorted(OTHER) == sorted(OPTION_ORDER)
    assert names == list(OPTION_ORDER)
    assert set(LAB_SETTINGS) <= set(names)


@pytest.fixture
def parse(cli, monkeypatch, tmp_path):
    """``parse(*args)``: the InpaintSettings the real `maskgit inpaint` command makes of ``args`` (it stops there)."""
    from maskgit_cli.decoding import folders

    made = []

    def capture(transformer, vqgan, images, output, settings, **kw):
        made.append(settings)
        raise MaskgitError("parsed")

    monkeypatch.setattr(folders, "inpaint_folder", capture)

    def run(*args) -> InpaintSettings:
        r = cli("inpaint", "--images", tmp_path, "--mask-kind", "box", "-o", tmp_path / "out", *args)
        assert r.stderr == "Error: parsed\n", r.output
        return made.pop()

    return run


def _round_trip(parse, settings: InpaintSettings) -> None:
    args = settings.to_args()
    assert parse(*args) == settings, args


@pytest.mark.parametrize("name", sorted(OTHER))
def test_one_setting_round_trips_through_the_cli(parse, name):
    values = {name: OTHER[name]}
    if name == "sweet_spot":
        values["total_iter"] = 8  # a sweet spot is at most T
    settings = InpaintSettings.from_options(**values)
    assert settings != InpaintSettings()
    _round_trip(parse, settings)


def test_all_settings_round_trip_through_the_cli(parse):
    _round_trip(parse, InpaintSettings.from_options(**OTHER))
    lab = InpaintSettings.from_options(**{**OTHER, **LAB_OTHER})
    assert lab.lab and all(lab.option(k) != v for k, v in LAB_SETTINGS.items())
    _round_trip(parse, lab)
    assert parse() == InpaintSettings() and InpaintSettings().to_args() == []
    lab_defaults = InpaintSettings.from_options(lab=True)
    assert parse("--lab") == lab_defaults and lab_defaults.to_args() == ["--lab"]


def test_args_state_what_differs_from_the_base_and_what_is_kept():
    s = InpaintSettings.from_options(blend="none", pixel_guidance=20.0, seed=3)
    assert s.to_args() == ["--pixel-guidance", "20", "--seed", "3", "--blend", "none"]
    assert s.to_args(keep=("schedule", "total_iter")) == [
        *("--schedule", "cosine", "--total-iter", "8", "--pixel-guidance", "20", "--seed", "3", "--blend", "none")
    ]
    assert s.to_args(base=s) == []
    lab = InpaintSettings.from_options(lab=True, dilate=1)
    assert lab.to_args() == ["--lab", "--dilate", "1"]
    assert option_args("composite", False) == ["--no-composite"] and option_args("dilate", None) == []


def test_flat_is_what_from_options_takes():
    s = InpaintSettings.from_options(**OTHER)
    flat = s.flat()
    assert flat["blend"] == "none" and flat["schedule"] == "square" and "decode" not in flat
    assert InpaintSettings.from_options(**flat) == s
    assert set(flat) == {f.name for f in option_fields()}


def test_settings_check_their_values_with_the_option_names():
    with pytest.raises(MaskgitError, match="--sampler bogus: expected one of confidence, halton"):
        DecodeSettings(sampler="bogus")
    with pytest.raises(MaskgitError, match="--blend bogus: expected one of poisson, none"):
        InpaintSettings(blend="bogus")
    with pytest.raises(MaskgitError, match="--fill blurry: expected one of smooth-prior, sharp"):
        InpaintSettings(fill="blurry")
    with pytest.raises(MaskgitError, match="--sweet-spot 9: must be between 1 and --total-iter"):
        DecodeSettings(sweet_spot=9)
    with pytest.raises(MaskgitError, match="--draws 65: must be between 1 and 64"):
        InpaintSettings(draws=65)


def test_a_misspelt_setting_is_one_line_with_the_nearest_name(tiny_vqgan, tiny_transformer):
    from maskgit_cli import Inpainter

    with pytest.raises(OptionError, match=r"^drawz: not an inpainting setting \(did you mean draws\?\)$"):
        InpaintSettings.from_options(drawz=2)
    with pytest.raises(OptionError, match=r"^zzz: not an inpainting setting; the settings are: lab, sampler, "):
        InpaintSettings.from_options(zzz=1)
    pipe = Inpainter(tiny_transformer, tiny_vqgan, device="cpu", pixel_guidance=0)
    image, holes = np.zeros((64, 64, 3), np.uint8), np.ones((64, 64), bool)
    with pytest.raises(OptionError, match=r"^shedule: not an inpainting setting \(did you mean schedule\?\)$"):
        pipe(image, holes=holes, shedule="square")  # a call's settings too
    with pytest.raises(OptionError, match=r"^temprature: not an inpainting setting \(did you mean temperature\?\)$"):
        Inpainter(tiny_transformer, tiny_vqgan, device="cpu", temprature=0.5)


def test_the_settings_module_does_not_import_torch():
    code = "import sys, maskgit_cli.decoding.settings; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
