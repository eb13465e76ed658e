"""The transformer trainer's settings (`maskgit train`), without torch.

:class:`TrainConfig` extends :class:`~maskgit_cli.training.settings.TrainSettings` and redeclares the loop fields
whose default differs. The CLI reads its defaults for its help (`maskgit --help` must not import torch); making one
checks the preset and the mask ratio against the model's presets and the schedules, which import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from maskgit_cli.choices import LOSS_ON, check_choice
from maskgit_cli.errors import MaskgitError
from maskgit_cli.training.settings import TrainSettings, at_least_one


@dataclass
class TrainConfig(TrainSettings):
    """All hyper-parameters of a transformer training run (saved to runs/NAME/config.json)."""

    preset: str = "small"
    epochs: int | None = 40
    batch_size: int = 64  # global batch (split across ranks under torchrun)
    lr: float = 4e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    accum_grad: int = 1  # micro-batches per optimizer step (batch_size is split into them)
    mask_ratio: str = "cosine"
    loss_on: str = "masked"  # masked | all
    label_smoothing: float = 0.1
    dropout: float | None = None  # None = the preset's
    compile: bool = False
    ema: float = 0.0  # EMA decay of the weights (0 = off)
    dilate: int = 1  # token-mask rings for --val-masks and masked copies (as `maskgit inpaint --dilate`)
    copies_ratio: float = 0.0  # share of the grids trained on a masked copy (tokenize --masked-copies)
    # share of the grids whose masked tokens are a hole users draw (stroke, box, half, outpaint: data/mask_generator)
    # instead of the mask ratio's random positions; 0 = the paper's random masks only
    shaped_masks: float = 0.0
    val_batch_size: int = 256

    def __post_init__(self) -> None:
        # both import torch: made settings only, not `--help`
        from maskgit_cli.schedules import parse_mask_ratio
        from maskgit_cli.transformer.model import PRESETS

        if self.preset not in PRESETS:
            raise MaskgitError(f"--preset {self.preset}: expected one of {', '.join(PRESETS)}")
        super().__post_init__()
        check_choice(self.loss_on, LOSS_ON, "--loss-on")
        parse_mask_ratio(self.mask_ratio)
        at_least_one(self, "accum_grad")
        if self.batch_size % self.accum_grad:
            raise MaskgitError(f"--batch-size {self.batch_size} is not divisible by --accum-grad {self.accum_grad}")
        if not 0 <= self.ema < 1:
            raise MaskgitError(f"--ema {self.ema}: expected a decay in [0, 1), e.g. 0.999")
        if not 0 <= self.copies_ratio <= 1:
            raise MaskgitError(f"--copies-ratio {self.copies_ratio}: expected a share in [0, 1]")
        if not 0 <= self.shaped_masks <= 1:
            raise MaskgitError(f"--shaped-masks {self.shaped_masks}: expected a share in [0, 1]")
