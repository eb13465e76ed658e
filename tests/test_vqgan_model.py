"""The VQGAN's configuration and the lab's architecture: parameter count and state_dict layout
(docs/lab.md, "The VQGAN checkpoint")."""

import pytest
import torch

from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS, VQGANConfig


def test_config_validation():
    with pytest.raises(ValueError, match="needs 2 down/up-sampling steps"):
        VQGANConfig(enc_downsample_after=(2,))
    with pytest.raises(ValueError, match="encoder_reach must be None or >= 0"):
        VQGANConfig(encoder_reach=-1)
    with pytest.raises(ValueError, match="local_dim"):
        VQGANConfig(encoder_reach=0, local_dim=0)


@pytest.mark.parametrize("reach", [0, 1])
def test_a_local_encoder_token_sees_its_patch_and_reach_rings_only(reach):
    """Changing the pixels of one 4x4 patch changes the latents of that token and of the tokens within `reach`
    rings of it, and of no other (docs/decoding.md, "A tokenizer that keeps the context")."""
    from dataclasses import replace

    torch.manual_seed(0)
    model = VQGAN(replace(VQGAN_PRESETS["local"], encoder_reach=reach)).eval()
    x = torch.rand(2, 3, 64, 64)
    y = x.clone()
    y[0, :, 20:24, 40:44] = 0.5  # token (5, 10) of image 0
    y[1, :, 0:4, 60:64] = 0.0  # token (0, 15) of image 1, at the border
    with torch.no_grad():
        changed = (model.encode_latents(x) - model.encode_latents(y)).abs().amax(1) > 1e-5  # not rounding noise
    expected = torch.zeros(2, 16, 16, dtype=torch.bool)
    expected[0, 5 - reach : 6 + reach, 10 - reach : 11 + reach] = True
    expected[1, 0 : 1 + reach, 15 - reach : 16] = True
    assert torch.equal(changed, expected)
    # there is nothing to be blind to: a mask of known pixels changes nothing
    known = torch.rand(2, 64, 64) > 0.5
    assert torch.equal(model.encode(x, known), model.encode(x))


def test_the_local_preset_keeps_the_small_decoder():
    small, local = VQGAN(VQGAN_PRESETS["small"]), VQGAN(VQGAN_PRESETS["local"])
    assert local.config.encoder_reach == 0 and small.config.encoder_reach is None
    assert {k: v.shape for k, v in local.decoder.state_dict().items()} == {
        k: v.shape for k, v in small.decoder.state_dict().items()
    }
    assert local.num_params() < 3_000_000


def test_lab_preset_has_the_lab_parameter_count():
    with torch.device("meta"):
        model = VQGAN(VQGAN_PRESETS["lab"])
    assert model.num_params() == 70_775_299  # docs/lab.md, "The VQGAN checkpoint"
    assert len(model.state_dict()) == 315


def test_lab_key_layout_matches_reference():
    with torch.device("meta"):
        sd = VQGAN(VQGAN_PRESETS["lab"]).state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["encoder.model.0.weight"] == (128, 3, 3, 3)
    assert shapes["encoder.model.5.channel_up.weight"] == (256, 128, 1, 1)
    assert shapes["encoder.model.7.conv.weight"] == (256, 256, 3, 3)  # DownSample(256)
    assert shapes["encoder.model.12.conv.weight"] == (512, 512, 3, 3)  # DownSample(512)
    assert shapes["encoder.model.14.norm.gn.weight"] == (512,)  # NonLocal
    assert shapes["encoder.model.14.proj_out.weight"] == (512, 512, 1, 1)
    assert shapes["encoder.model.16.gn.weight"] == (512,)
    assert shapes["encoder.model.18.weight"] == (256, 512, 3, 3)
    assert shapes["decoder.model.0.weight"] == (512, 256, 3, 3)
    assert shapes["decoder.model.2.q.weight"] == (512, 512, 1, 1)
    assert shapes["decoder.model.9.v.weight"] == (512, 512, 1, 1)
    assert shapes["decoder.model.10.conv.weight"] == (512, 512, 3, 3)  # UpSample(512)
    assert shapes["decoder.model.11.channel_up.weight"] == (256, 512, 1, 1)
    assert shapes["decoder.model.17.conv.weight"] == (256, 256, 3, 3)  # UpSample(256)
    assert shapes["decoder.model.18.channel_up.weight"] == (128, 256, 1, 1)
    assert shapes["decoder.model.24.gn.weight"] == (128,)
    assert shapes["decoder.model.25.weight"] == (3, 128, 3, 3)
    assert "decoder.model.26.weight" not in shapes
    assert shapes["codebook.embedding.weight"] == (1024, 256)
    assert shapes["quant_conv.weight"] == shapes["post_quant_conv.weight"] == (256, 256, 1, 1)


def test_hole_blind_encoding_ignores_what_fills_the_holes_in_norms_and_attention():
    from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS, GroupNorm, NonLocalBlock

    torch.manual_seed(0)
    x = torch.randn(2, 32, 8, 8)
    known = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    known[:, :, 2:5, 2:5] = False
    norm, attn = GroupNorm(32), NonLocalBlock(32)
    other = x.clone()
    other[:, :, 2:5, 2:5] = 100.0  # a different fill of the holes
    # statistics and attention keys from the known positions only: the known outputs do not move
    for layer in (norm, attn):
        a, b = layer(x, known), layer(other, known)
        assert torch.allclose(a * known, b * known, atol=1e-5), type(layer).__name__
        assert not torch.allclose(layer(x), layer(other), atol=1e-3)  # the plain layers do move
    # an all-known mask is the plain layer
    assert torch.allclose(norm(x, torch.ones_like(known)), norm(x), atol=1e-5)
    model = VQGAN(VQGAN_PRESETS["tiny"]).eval()
    images = torch.rand(2, 3, 64, 64)
    holes = torch.zeros(2, 64, 64, dtype=torch.bool)
    holes[:, 20:30, 20:30] = True
    assert torch.equal(model.encode_masked(images, holes), model.encode(images.masked_fill(holes[:, None], 128 / 255)))
    blind = VQGAN(VQGAN_PRESETS["tiny"].__class__(**{**VQGAN_PRESETS["tiny"].__dict__, "hole_blind": True}))
    blind.load_state_dict(model.state_dict())
    assert blind.encode_masked(images, holes).shape == (2, 16, 16)
