"""The VQGAN trainers' settings (`train-vqgan`, `robust-vqgan`, `tune-decoder`), without torch.

Each extends :class:`~maskgit_cli.training.settings.TrainSettings` and redeclares the loop fields whose default
differs. The CLI reads their defaults for its help (`maskgit --help` must not import torch); making one checks the
preset against the models' (:data:`~maskgit_cli.vqgan.model.VQGAN_PRESETS`), which imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from maskgit_cli.errors import MaskgitError
from maskgit_cli.training.settings import TrainSettings
from maskgit_cli.vqgan.resolution import DEFAULT_DOWNSAMPLE, DEFAULT_RESOLUTION, check_resolution


@dataclass
class VQGANTrainSettings(TrainSettings):
    """What every VQGAN trainer (train-vqgan, robust-vqgan, tune-decoder) adds to the loop's settings: how it
    takes its images."""

    flip: bool = True  # random horizontal flips
    resize: bool = False  # resize images of another size instead of failing


@dataclass
class TrainVQGANConfig(VQGANTrainSettings):
    """All hyper-parameters of a VQGAN training run (saved to runs/NAME/config.json)."""

    preset: str = "local"  # a VQGAN_PRESETS name
    # The images' side R and the pixels f of a token's side (the token grid is R/f); None = 64 and 4, the lab's
    # (None, not the number, so that runs saved before these settings existed resume as they were).
    resolution: int | None = field(default=None, metadata={"default_help": str(DEFAULT_RESOLUTION)})
    downsample: int | None = field(default=None, metadata={"default_help": str(DEFAULT_DOWNSAMPLE)})
    epochs: int | None = 30
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    beta: float | None = None  # commitment weight; None = the preset's (0.25)
    codebook_decay: float = 0.99  # EMA decay of the codebook
    dead_code_threshold: float = 0.5  # EMA uses per batch below which a code is restarted
    restart_every: int = 50  # steps between dead-code restarts
    gan_start: int | None = None  # step at which the adversarial loss starts; None = no GAN
    gan_weight: float = 0.1
    gan_adaptive: bool = True  # scale the GAN term by |grad rec| / |grad gan| at the last decoder layer
    disc_channels: int = 32
    disc_layers: int = 2
    disc_lr: float | None = None  # None = lr

    def __post_init__(self) -> None:
        from maskgit_cli.vqgan.model import VQGAN_PRESETS  # imports torch: made settings only, not `--help`

        if self.preset not in VQGAN_PRESETS:
            raise MaskgitError(f"--preset {self.preset}: expected one of {', '.join(VQGAN_PRESETS)}")
        super().__post_init__()
        if self.restart_every < 1:
            raise MaskgitError(f"restart_every must be at least 1, got {self.restart_every}")
        check_resolution(*self.size)

    @property
    def size(self) -> tuple[int, int]:
        """(resolution, downsample), the defaults filled in: :func:`~maskgit_cli.vqgan.model.vqgan_preset`'s."""
        return (self.resolution or DEFAULT_RESOLUTION, self.downsample or DEFAULT_DOWNSAMPLE)


@dataclass
class FineTuneSettings(VQGANTrainSettings):
    """A fine-tuner's settings (robust-vqgan, tune-decoder): --max-steps decides its length."""

    epochs: int | None = None
    max_steps: int | None = 2000


@dataclass
class RobustConfig(FineTuneSettings):
    """All settings of a `robust-vqgan` run (saved to runs/NAME/config.json)."""

    lr: float = 1e-4
    warmup_steps: int = 100
    masked_weight: float = 1.0  # weight of the masked-context term against the clean term
    dilate: int = 1  # rings around the holes' tokens that are regenerated anyway (inpaint's --dilate)
    hole_blind: bool = True  # encode masked images hole-blind (and record it in the exported config)
    mask_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dilate < 0:
            raise MaskgitError(f"--dilate {self.dilate}: must be >= 0")


@dataclass
class TuneDecoderConfig(FineTuneSettings):
    """All settings of a `tune-decoder` run (saved to runs/NAME/config.json)."""

    warmup_steps: int = 50
    l1_weight: float = 1.0
    l2_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.l1_weight < 0 or self.l2_weight < 0 or self.l1_weight + self.l2_weight == 0:
            raise MaskgitError(
                f"--l1-weight {self.l1_weight} / --l2-weight {self.l2_weight}: must be >= 0 and not both 0"
            )
