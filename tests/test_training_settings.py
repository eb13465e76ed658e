"""The trainers' shared settings (`TrainSettings`): every trainer's config.json keeps its keys and defaults (runs
started before the shared base resume after it), and the shared checks say the same for every trainer."""

import json

import pytest

from maskgit_cli.errors import MaskgitError
from maskgit_cli.training.run import config_dict
from maskgit_cli.training.settings import TrainSettings
from maskgit_cli.transformer.train import TrainConfig
from maskgit_cli.vqgan.robust import RobustConfig
from maskgit_cli.vqgan.train import TrainVQGANConfig
from maskgit_cli.vqgan.tune_decoder import TuneDecoderConfig

TRAINERS = [TrainVQGANConfig, RobustConfig, TuneDecoderConfig, TrainConfig]

LOOP = {"device": "auto", "eval_every": 0, "grad_clip": 1.0, "log_every": 10, "min_lr_ratio": 0.1,
        "precision": "auto", "save_every": 0, "seed": 0, "stop_at": None}  # fmt: skip
VQGAN = {**LOOP, "batch_size": 16, "betas": [0.9, 0.99], "flip": True, "resize": False, "val_batch_size": 128,
         "weight_decay": 0.0}  # fmt: skip
# config.json's "train" of each trainer's defaults, as written before the settings had a shared base
DEFAULTS = {
    TrainVQGANConfig: {
        **VQGAN,
        "beta": None,
        "codebook_decay": 0.99,
        "dead_code_threshold": 0.5,
        "disc_channels": 32,
        "disc_layers": 2,
        "disc_lr": None,
        "epochs": 30,
        "gan_adaptive": True,
        "gan_start": None,
        "gan_weight": 0.1,
        "l1_weight": 1.0,
        "l2_weight": 1.0,
        "lr": 0.0005,
        "max_steps": None,
        "preset": "local",
        "restart_every": 50,
        "warmup_steps": 200,
        # since --resolution/--downsample (None = 64 and 4): a run written without them still resumes
        # (tests/test_resolution.py)
        "resolution": None,
        "downsample": None,
    },
    RobustConfig: {
        **VQGAN,
        "dilate": 1,
        "epochs": None,
        "hole_blind": True,
        "lr": 0.0001,
        "mask_seed": 0,
        "masked_weight": 1.0,
        "max_steps": 2000,
        "warmup_steps": 100,
    },
    TuneDecoderConfig: {
        **VQGAN,
        "epochs": None,
        "l1_weight": 1.0,
        "l2_weight": 1.0,
        "lr": 0.0005,
        "max_steps": 2000,
        "warmup_steps": 50,
    },
    TrainConfig: {
        **LOOP,
        "accum_grad": 1,
        "batch_size": 64,
        "betas": [0.9, 0.95],
        "compile": False,
        "copies_ratio": 0.0,
        "dilate": 1,
        "dropout": None,
        "ema": 0.0,
        "epochs": 40,
        "label_smoothing": 0.1,
        "loss_on": "masked",
        "lr": 0.0004,
        "mask_ratio": "cosine",
        "max_steps": None,
        "preset": "small",
        "shaped_masks": 0.0,
        "val_batch_size": 256,
        "warmup_steps": 200,
        "weight_decay": 0.05,
    },
}


@pytest.mark.parametrize("config_cls", TRAINERS, ids=lambda c: c.__name__)
def test_config_json_keeps_every_key_and_default(config_cls):
    assert issubclass(config_cls, TrainSettings)
    saved = config_dict(config_cls())
    assert json.dumps(saved, sort_keys=True) == json.dumps(DEFAULTS[config_cls], sort_keys=True)
    again = config_cls(**saved)  # what resume does with config.json: lists become tuples, the same settings
    assert again == config_cls() and again.betas == tuple(DEFAULTS[config_cls]["betas"])


@pytest.mark.parametrize("config_cls", TRAINERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "bad,message",
    [
        ({"lr": 0}, "--lr must be positive, got 0"),
        ({"precision": "fp16"}, "--precision fp16: expected one of auto, bf16, fp32"),
        ({"batch_size": 0}, "--batch-size must be at least 1, got 0"),
        ({"log_every": 0}, "--log-every must be at least 1, got 0"),
        ({"val_batch_size": 0}, "--val-batch-size must be at least 1, got 0"),
    ],
)
def test_the_shared_checks_say_the_same_for_every_trainer(config_cls, bad, message):
    with pytest.raises(MaskgitError) as e:
        config_cls(**bad)
    assert str(e.value) == message


def test_each_trainer_keeps_its_own_checks():
    with pytest.raises(MaskgitError, match="--preset nope: expected one of"):
        TrainVQGANConfig(preset="nope")
    with pytest.raises(MaskgitError, match="restart_every must be at least 1"):
        TrainVQGANConfig(restart_every=0)
    with pytest.raises(MaskgitError, match="--dilate -1: must be >= 0"):
        RobustConfig(dilate=-1)
    with pytest.raises(MaskgitError, match="--l1-weight 0.0 / --l2-weight 0.0"):
        TuneDecoderConfig(l1_weight=0.0, l2_weight=0.0)
    with pytest.raises(MaskgitError, match="--accum-grad must be at least 1"):
        TrainConfig(accum_grad=0)
    with pytest.raises(MaskgitError, match="--batch-size 6 is not divisible by --accum-grad 4"):
        TrainConfig(batch_size=6, accum_grad=4)
