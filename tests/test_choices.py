"""choices.py is the one list of every option's values: the CLI's choices and the library's tables agree with it."""

import subprocess
import sys

import pytest

from maskgit_cli import choices


def test_choices_module_does_not_import_torch():
    code = "import sys, maskgit_cli.choices; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_library_tables_agree_with_the_choices():
    from maskgit_cli.data.mask_generator import _GENERATORS
    from maskgit_cli.evaluation.inception import INCEPTION_FILES
    from maskgit_cli.schedules import FORMULAS, canonical_schedule
    from maskgit_cli.transformer.model import PRESETS
    from maskgit_cli.vqgan.model import VQGAN_PRESETS

    assert tuple(FORMULAS) == choices.SCHEDULES
    assert all(canonical_schedule(alias) == name for alias, name in choices.SCHEDULE_ALIASES.items())
    assert set(_GENERATORS) == set(choices.MASK_KINDS)
    assert set(INCEPTION_FILES) == set(choices.FID_MODES)
    assert set(PRESETS) == set(choices.TRANSFORMER_PRESET_NAMES)
    assert set(VQGAN_PRESETS) == set(choices.VQGAN_PRESET_NAMES)


def test_cli_choices_are_the_library_choices():
    from maskgit_cli.cli import common

    pairs = {
        common.Device: choices.DEVICES,
        common.Precision: choices.PRECISIONS,
        common.DecodePrecision: choices.DECODE_PRECISIONS,
        common.Schedule: choices.SCHEDULE_NAMES,
        common.Sampling: choices.SAMPLING,
        common.Sampler: choices.SAMPLERS,
        common.Animation: choices.ANIMATIONS,
        common.TokenRule: choices.TOKEN_RULES,
        common.MaskKind: choices.MASK_KINDS,
        common.Fit: choices.FITS,
        common.FidMode: choices.FID_MODES,
        common.SweepMetric: choices.SWEEP_METRICS,
        common.LossOn: choices.LOSS_ON,
        common.QkvOrder: choices.QKV_ORDERS,
        common.VQGANPreset: choices.VQGAN_PRESET_NAMES,
        common.TransformerPreset: choices.TRANSFORMER_PRESET_NAMES,
    }
    for enum, values in pairs.items():
        assert tuple(m.value for m in enum) == tuple(values), enum


@pytest.mark.parametrize(
    "check",
    [
        lambda v: __import__("maskgit_cli.decoding.decode", fromlist=["x"]).DecodeSettings(sampling=v),
        lambda v: __import__("maskgit_cli.decoding.decode", fromlist=["x"]).DecodeSettings(sampler=v),
        lambda v: __import__("maskgit_cli.decoding.inpaint", fromlist=["x"]).InpaintSettings(token_mask=v),
        lambda v: __import__("maskgit_cli.decoding.inpaint", fromlist=["x"]).InpaintSettings(precision=v),
        lambda v: __import__("maskgit_cli.runtime", fromlist=["x"]).resolve_device(v),
        lambda v: __import__("maskgit_cli.transformer.train", fromlist=["x"]).TrainConfig(loss_on=v),
        lambda v: __import__("maskgit_cli.transformer.train", fromlist=["x"]).TrainConfig(precision=v),
    ],
)
def test_library_validators_name_the_option_and_its_choices(check):
    from maskgit_cli.errors import OptionError

    with pytest.raises(OptionError, match="expected one of"):  # a bad option value: the CLI exits 2
        check("bogus")


def _inpaint_and_sweep(cli, tmp_path, name):
    """`inpaint --schedule NAME` and `sweep --schedules NAME` on weights files that do not exist."""
    common = ("--images", tmp_path / "none", "--transformer", "t", "--vqgan", "v", "-o", tmp_path / "o")
    return cli("inpaint", "--schedule", name, *common), cli("sweep", "--schedules", name, "--ref", tmp_path, *common)


@pytest.mark.parametrize("name", choices.SCHEDULE_NAMES)
def test_inpaint_and_sweep_accept_the_same_schedule_names(cli, name, tmp_path):
    # A name is accepted when the command gets past it and fails later, on the missing weights file.
    for r in _inpaint_and_sweep(cli, tmp_path, name):
        assert r.exit_code == 1, r.output
        assert r.stderr in ("Error: t: no such file\n", "Error: v: no such file\n"), r.stderr


def test_an_unknown_schedule_is_refused_by_both(cli, tmp_path):
    a, b = _inpaint_and_sweep(cli, tmp_path, "bogus")
    assert a.exit_code == 2 and "bogus" in a.stderr
    assert b.exit_code == 2 and "unknown schedule 'bogus'" in b.stderr
