"""VQGAN (stage 1): R x R images <-> (R/f) x (R/f) grids of codebook indices (the lab's: 64x64 <-> 16x16).

The module tree and parameter names follow the lab's checkpoint (docs/lab.md, "The VQGAN checkpoint";
dome272/VQGAN-pytorch lineage) so that the lab's ``VQGAN.pt`` loads with ``strict=True``. Channel lists, block
counts and the positions of the down/up-sampling steps come from :class:`VQGANConfig`, so the same classes also
build our smaller presets, at any resolution (:func:`vqgan_preset`).

Images enter :meth:`VQGAN.encode` as floats in [0, 1] and leave :meth:`VQGAN.decode` the same way;
the normalization (mean/std) the network was trained with is part of the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from maskgit_cli.choices import NORMALIZATIONS, check_choice
from maskgit_cli.data.inputs import holes_gray
from maskgit_cli.errors import MaskgitError
from maskgit_cli.vqgan.resolution import DEFAULT_DOWNSAMPLE, DEFAULT_RESOLUTION, scale_preset

# docs/lab.md, "Normalization": torchvision Normalize statistics of the lab's cat-face training set.
LAB_TRAIN_MEAN = (0.4816, 0.4324, 0.3845)
LAB_TRAIN_STD = (0.2602, 0.2518, 0.2537)
LAB_TEST_MEAN = (0.4868, 0.4341, 0.3844)
LAB_TEST_STD = (0.2620, 0.2527, 0.2543)


MAX_BLOCKS = 64  # residual blocks per step, channel steps: far above any preset's (3, 6), and quick to build


@dataclass
class VQGANConfig:
    """Everything needed to rebuild a VQGAN. Defaults are the lab's ``VQGAN.yml`` (docs/lab.md, "The VQGAN
    checkpoint")."""

    image_channels: int = 3
    enc_channels: tuple[int, ...] = (128, 128, 128, 256, 256, 512)
    dec_channels: tuple[int, ...] = (128, 128, 256, 256, 512)
    latent_dim: int = 256
    img_resolution: int = 64
    latent_resolution: int = 16
    num_codebook_vectors: int = 1024
    beta: float = 0.25
    # Residual blocks per channel step, and where the resolution changes (after which step index).
    enc_res_blocks: int = 2
    dec_res_blocks: int = 3
    enc_downsample_after: tuple[int, ...] = (2, 4)
    dec_upsample_after: tuple[int, ...] = (0, 2)
    attn_resolutions: tuple[int, ...] = (16,)
    # Normalization applied inside encode() and undone inside decode().
    mean: tuple[float, ...] = field(default=LAB_TRAIN_MEAN)
    std: tuple[float, ...] = field(default=LAB_TRAIN_STD)
    # The lab's test-set statistics, which its inference used instead (docs/lab.md, "Normalization"); None for VQGANs
    # without such statistics. `--normalization test` selects them.
    test_mean: tuple[float, ...] | None = None
    test_std: tuple[float, ...] | None = None
    # Images with holes are encoded hole-blind (:meth:`VQGAN.encode_masked`): set by `maskgit robust-vqgan`, whose
    # encoder was fine-tuned that way. False (the lab's, and every VQGAN trained from scratch) encodes as trained.
    hole_blind: bool = False
    # The encoder. None: the lab's convolutional encoder above (GroupNorm statistics and self-attention over the
    # whole image: every token depends on every pixel). k >= 0: the local encoder (:class:`LocalEncoder`): a token
    # is a function of its own patch and the k rings of patches around it only, so filling a hole changes no
    # token more than k tokens away from it (docs/decoding.md, "A tokenizer that keeps the context"). It has
    # ``local_blocks`` per-token MLP blocks of width ``local_dim``; the decoder is the same either way.
    encoder_reach: int | None = None
    local_dim: int = 256
    local_blocks: int = 4
    # The fingerprint of the VQGAN whose tokens these are, when that is another file: `maskgit tune-decoder` trains
    # only the decoder, so its output encodes exactly as its source did and a transformer trained on the source's
    # tokens stays valid (:func:`maskgit_cli.weights.token_fingerprint`). None: tokens of its own.
    tokens_of: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "enc_channels",
            "dec_channels",
            "enc_downsample_after",
            "dec_upsample_after",
            "attn_resolutions",
            "mean",
            "std",
        ):
            setattr(self, name, tuple(getattr(self, name)))
        for name in ("test_mean", "test_std"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(getattr(self, name)))
        factor = self.img_resolution // self.latent_resolution
        n_steps = int(math.log2(factor)) if factor >= 1 else -1
        if factor < 1 or 2**n_steps != factor or self.img_resolution % self.latent_resolution:
            raise ValueError(
                f"img_resolution/latent_resolution must be a power of two, got "
                f"{self.img_resolution}/{self.latent_resolution}"
            )
        if len(self.enc_downsample_after) != n_steps or len(self.dec_upsample_after) != n_steps:
            raise ValueError(
                f"{self.img_resolution}->{self.latent_resolution} needs {n_steps} down/up-sampling "
                f"steps, got enc_downsample_after={self.enc_downsample_after}, "
                f"dec_upsample_after={self.dec_upsample_after}"
            )
        if len(self.mean) != self.image_channels or len(self.std) != self.image_channels:
            raise ValueError("mean and std need one value per image channel")
        if (self.test_mean is None) != (self.test_std is None):
            raise ValueError("test_mean and test_std go together")
        if self.encoder_reach is not None and self.encoder_reach < 0:
            raise ValueError(f"encoder_reach must be None or >= 0, got {self.encoder_reach}")
        if self.local_dim < 1 or self.local_blocks < 0:
            raise ValueError(f"local_dim must be >= 1 and local_blocks >= 0, got {self.local_dim}, {self.local_blocks}")
        for name in ("enc_res_blocks", "dec_res_blocks", "local_blocks", "enc_channels", "dec_channels"):
            value = getattr(self, name)
            count = len(value) if isinstance(value, tuple) else value
            if count > MAX_BLOCKS:  # an untrusted file's config: refused before a model is built
                raise ValueError(f"{name} must have at most {MAX_BLOCKS} blocks, got {count}")
        if self.test_mean is not None and (
            len(self.test_mean) != self.image_channels or len(self.test_std) != self.image_channels
        ):
            raise ValueError("test_mean and test_std need one value per image channel")

    def normalization(self, which: str = "train") -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) for ``which``: "train" (what the network was trained with) or "test" (the lab's test-set
        statistics, as the lab's inference used them)."""
        check_choice(which, NORMALIZATIONS, "--normalization")
        if which == "train":
            return self.mean, self.std
        if self.test_mean is None:
            raise MaskgitError(
                "--normalization test: this VQGAN records no test-set statistics (a VQGAN converted from the lab's "
                "VQGAN.pt with `maskgit convert-vqgan` does); use --normalization train"
            )
        return self.test_mean, self.test_std

    @property
    def tokens_per_image(self) -> int:
        return self.latent_resolution**2


# Presets. `lab` is the lab's VQGAN exactly (docs/lab.md, "The VQGAN checkpoint": 70,775,299 parameters). `base`
# is sized like our reference pipeline's ~10M-parameter GPU model; `small` is narrow enough to train on a 2-core
# CPU; `local` is `small` with the local encoder (tokens see their own patch only: holes change no other token;
# the default weights'); `tiny` is for tests.
VQGAN_PRESETS: dict[str, VQGANConfig] = {
    "lab": VQGANConfig(test_mean=LAB_TEST_MEAN, test_std=LAB_TEST_STD),
    "base": VQGANConfig(
        enc_channels=(64, 64, 128, 128, 256),
        dec_channels=(64, 128, 128, 256),
        latent_dim=64,
        enc_res_blocks=1,
        dec_res_blocks=2,
        enc_downsample_after=(1, 3),
        dec_upsample_after=(0, 2),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
    "small": VQGANConfig(
        enc_channels=(32, 64, 64, 128),
        dec_channels=(64, 64, 128),
        latent_dim=64,
        enc_res_blocks=1,
        dec_res_blocks=1,
        enc_downsample_after=(0, 2),
        dec_upsample_after=(0, 1),
        attn_resolutions=(),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
    "local": VQGANConfig(
        dec_channels=(64, 64, 128),
        latent_dim=64,
        dec_res_blocks=1,
        dec_upsample_after=(0, 1),
        attn_resolutions=(),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        encoder_reach=0,
    ),
    "tiny": VQGANConfig(
        enc_channels=(32, 32, 32),
        dec_channels=(32, 32),
        latent_dim=32,
        num_codebook_vectors=64,
        enc_res_blocks=1,
        dec_res_blocks=1,
        enc_downsample_after=(0, 1),
        dec_upsample_after=(0, 1),
        attn_resolutions=(16,),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
}


def vqgan_preset(name: str, resolution: int = DEFAULT_RESOLUTION, downsample: int = DEFAULT_DOWNSAMPLE) -> VQGANConfig:
    """Preset ``name`` for ``resolution`` x ``resolution`` images and tokens of ``downsample`` x ``downsample``
    pixels (:func:`~maskgit_cli.vqgan.resolution.scale_preset`); the defaults give ``VQGAN_PRESETS[name]``."""
    if name not in VQGAN_PRESETS:
        raise MaskgitError(f"--preset {name}: expected one of {', '.join(VQGAN_PRESETS)}")
    return scale_preset(VQGAN_PRESETS[name], resolution, downsample)


class GroupNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.gn = nn.GroupNorm(
            num_groups=32 if channels % 32 == 0 else math.gcd(32, channels),
            num_channels=channels,
            eps=1e-6,
            affine=True,
        )

    def forward(self, x, known: torch.Tensor | None = None):
        """``known`` (B,1,h,w) bool: take the statistics over the known positions only (the encoder's
        hole-blind mode, :meth:`VQGAN.encode`), so what fills the holes does not shift every feature."""
        if known is None:
            return self.gn(x)
        gn = self.gn
        b, c, h, w = x.shape
        g = gn.num_groups
        xf = x.float().view(b, g, c // g, h * w)
        m = known.float().view(b, 1, 1, h * w)
        count = m.sum(-1, keepdim=True).clamp_min(1) * (c // g)
        mean = (xf * m).sum((-1, -2), keepdim=True) / count
        var = (((xf - mean) ** 2) * m).sum((-1, -2), keepdim=True) / count
        y = ((xf - mean) / torch.sqrt(var + gn.eps)).view(b, c, h, w).to(x.dtype)
        return y * gn.weight.view(1, c, 1, 1) + gn.bias.view(1, c, 1, 1)


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.block = nn.Sequential(
            GroupNorm(in_channels),
            Swish(),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1),
            GroupNorm(out_channels),
            Swish(),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
        )
        if in_channels != out_channels:
            self.channel_up = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x, known: torch.Tensor | None = None):
        shortcut = self.channel_up(x) if self.in_channels != self.out_channels else x
        if known is None:
            return shortcut + self.block(x)
        h = x
        for layer in self.block:
            h = layer(h, known) if isinstance(layer, GroupNorm) else layer(h)
        return shortcut + h


class UpSampleBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownSampleBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class NonLocalBlock(nn.Module):
    """Single-head self-attention over all H*W positions (docs/lab.md, "The VQGAN checkpoint"), computed with SDPA."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(channels)
        self.q = nn.Conv2d(channels, channels, 1, 1, 0)
        self.k = nn.Conv2d(channels, channels, 1, 1, 0)
        self.v = nn.Conv2d(channels, channels, 1, 1, 0)
        self.proj_out = nn.Conv2d(channels, channels, 1, 1, 0)

    def forward(self, x, known: torch.Tensor | None = None):
        """``known`` (B,1,h,w) bool: attend to the known positions only (and normalize by their statistics)."""
        b, c, h, w = x.shape
        h_ = self.norm(x, known)
        q, k, v = (conv(h_).reshape(b, 1, c, h * w).transpose(2, 3) for conv in (self.q, self.k, self.v))
        mask = None if known is None else known.view(b, 1, 1, h * w)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # softmax(q k^T / sqrt(c)) v, one head
        a = a.transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(a)


class Encoder(nn.Module):
    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        ch = cfg.enc_channels
        resolution = cfg.img_resolution
        layers: list[nn.Module] = [nn.Conv2d(cfg.image_channels, ch[0], 3, 1, 1)]
        for i in range(len(ch) - 1):
            in_ch = ch[i]
            for _ in range(cfg.enc_res_blocks):
                layers.append(ResidualBlock(in_ch, ch[i + 1]))
                in_ch = ch[i + 1]
                if resolution in cfg.attn_resolutions:
                    layers.append(NonLocalBlock(in_ch))
            if i in cfg.enc_downsample_after:
                layers.append(DownSampleBlock(ch[i + 1]))
                resolution //= 2
        layers += [
            ResidualBlock(ch[-1], ch[-1]),
            NonLocalBlock(ch[-1]),
            ResidualBlock(ch[-1], ch[-1]),
            GroupNorm(ch[-1]),
            Swish(),
            nn.Conv2d(ch[-1], cfg.latent_dim, 3, 1, 1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x, known: torch.Tensor | None = None):
        """``known`` (B,1,H,W) bool, the known pixels: normalization statistics and attention keys then come from
        positions whose pixels are all known (a min-pool of the mask at each resolution; all positions where none
        is), so the holes' fill reaches only the features whose convolutions overlap it."""
        if known is None:
            return self.model(x)
        for layer in self.model:
            if isinstance(layer, (GroupNorm, ResidualBlock, NonLocalBlock)):
                x = layer(x, _known_at(known, x.shape[-1]))
            else:
                x = layer(x)
        return x


class TokenMLP(nn.Module):
    """x + fc2(gelu(fc1(norm(x)))) on (B, tokens, dim): each token on its own."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class LocalEncoder(nn.Module):
    """The local encoder (``VQGANConfig.encoder_reach`` = k): the image cut into its token patches (pixel unshuffle),
    one (2k+1)x(2k+1) convolution over the patch grid, then per-token MLP blocks. A token's latent is a function of
    the pixels of its patch and of the k rings of patches around it, nothing else: no statistics over the image, no
    attention (docs/decoding.md, "A tokenizer that keeps the context")."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        patch = cfg.img_resolution // cfg.latent_resolution
        k = cfg.encoder_reach
        self.patch = patch
        self.embed = nn.Conv2d(cfg.image_channels * patch * patch, cfg.local_dim, 2 * k + 1, 1, k)
        self.blocks = nn.Sequential(*[TokenMLP(cfg.local_dim) for _ in range(cfg.local_blocks)])
        self.norm = nn.LayerNorm(cfg.local_dim)
        self.out = nn.Linear(cfg.local_dim, cfg.latent_dim)

    def forward(self, x, known: torch.Tensor | None = None):
        """``known`` is accepted and ignored: no token sees beyond its reach, so there is nothing to be blind to."""
        h = self.embed(F.pixel_unshuffle(x, self.patch))  # (B, local_dim, h, w)
        b, _, lh, lw = h.shape
        h = self.out(self.norm(self.blocks(h.flatten(2).transpose(1, 2))))  # (B, h*w, latent_dim)
        return h.transpose(1, 2).reshape(b, -1, lh, lw).contiguous()


def _known_at(known: torch.Tensor, size: int) -> torch.Tensor:
    """The pixel mask (B,1,H,W) bool at a feature resolution: a position is known if all its pixels are; an image
    with no such position counts as all known (its statistics then come from everything, as without a mask)."""
    k = known.shape[-1] // size
    m = known.bool() if k == 1 else (-F.max_pool2d(-known.float(), k)) > 0.5  # min-pool: all pixels known
    none = ~m.flatten(1).any(1)
    return m | none.view(-1, 1, 1, 1)


class Decoder(nn.Module):
    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        ch = tuple(reversed(cfg.dec_channels))
        in_ch = ch[0]
        resolution = cfg.latent_resolution
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.latent_dim, in_ch, 3, 1, 1),
            ResidualBlock(in_ch, in_ch),
            NonLocalBlock(in_ch),
            ResidualBlock(in_ch, in_ch),
        ]
        for i, out_ch in enumerate(ch):
            for _ in range(cfg.dec_res_blocks):
                layers.append(ResidualBlock(in_ch, out_ch))
                in_ch = out_ch
                if resolution in cfg.attn_resolutions:
                    layers.append(NonLocalBlock(in_ch))
            if i in cfg.dec_upsample_after:
                layers.append(UpSampleBlock(in_ch))
                resolution *= 2
        # No Swish before the last conv (docs/lab.md, "The VQGAN checkpoint").
        layers += [GroupNorm(in_ch), nn.Conv2d(in_ch, cfg.image_channels, 3, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class Codebook(nn.Module):
    """Nearest-code vector quantizer; parameter `embedding.weight` (num_codebook_vectors, latent_dim)."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.num_codebook_vectors, cfg.latent_dim)
        self.embedding.weight.data.uniform_(-1.0 / cfg.num_codebook_vectors, 1.0 / cfg.num_codebook_vectors)

    @torch.autocast("cuda", enabled=False)
    @torch.autocast("cpu", enabled=False)
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices (B,h,w) of the nearest code to each latent vector of z (B,C,h,w), in fp32.

        Distances |z|^2 + |e|^2 - 2 z.e over the b,h,w-ordered flattened latents (docs/lab.md, "The VQGAN
        checkpoint"); argmin takes the first index on ties, like the lab.
        """
        b, c, h, w = z.shape
        z_flat = z.float().permute(0, 2, 3, 1).reshape(-1, c)
        e = self.embedding.weight.float()
        d = (z_flat**2).sum(1, keepdim=True) + (e**2).sum(1) - 2 * z_flat @ e.t()
        return d.argmin(dim=1).reshape(b, h, w)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for indices (B,h,w) -> latents (B,C,h,w)."""
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()


class VQGAN(nn.Module):
    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config) if config.encoder_reach is None else LocalEncoder(config)
        self.decoder = Decoder(config)
        self.codebook = Codebook(config)
        self.quant_conv = nn.Conv2d(config.latent_dim, config.latent_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.latent_dim, config.latent_dim, 1)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def use_normalization(self, which: str = "train") -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Encode and decode with the config's "train" or "test" statistics (see :meth:`VQGANConfig.normalization`);
        returns the (mean, std) now in use."""
        mean, std = self.config.normalization(which)
        self.mean.copy_(torch.tensor(mean).view(1, -1, 1, 1))
        self.std.copy_(torch.tensor(std).view(1, -1, 1, 1))
        return mean, std

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def encode_latents(self, images: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0,1] (B,3,H,W) -> pre-quantization latents (B,latent_dim,h,w); ``known``: see :meth:`encode`."""
        mask = None if known is None else known.view(len(images), 1, *images.shape[-2:])
        return self.quant_conv(self.encoder(self.normalize(images), mask))

    @torch.no_grad()
    def encode(self, images: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0,1] (B,3,H,W) -> codebook indices (B,h,w), int64. ``known`` (B,H,W) bool, the known pixels
        of images with holes: the encoder's normalization statistics and attention then ignore the holes
        (hole-blind encoding, docs/decoding.md "Training on what inpainting sees"); None encodes as trained."""
        return self.codebook.nearest(self.encode_latents(images, known))

    @torch.no_grad()
    def encode_masked(self, images: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
        """The codes of images (B,3,H,W) in [0,1] with holes (B,H,W) bool, as inpainting encodes them: holes filled
        gray, hole-blind when the config says so. The one home of this rule (inpaint, tokenize --masked-copies and
        robust-vqgan use it)."""
        known = ~holes if self.config.hole_blind else None
        return self.encode(holes_gray(images, holes), known)

    def decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantized latents -> images in normalized space (what the lab's decoder outputs)."""
        return self.decoder(self.post_quant_conv(z_q))

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook indices (B,h,w) -> images in [0,1] (B,3,H,W), float32."""
        z_q = self.codebook.lookup(indices)
        return self.denormalize(self.decode_latents(z_q).float()).clamp(0, 1)
