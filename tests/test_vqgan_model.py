"""The VQGAN's configuration and the lab's architecture: parameter count and state_dict layout
(docs/lab.md, "The VQGAN checkpoint")."""

import pytest
import torch

from maskgit_cli.vqgan.model import VQGAN, VQGAN_PRESETS, VQGANConfig


def test_config_validation():
    with pytest.raises(ValueError, match="needs 2 down/up-sampling steps"):
        VQGANConfig(enc_downsample_after=(2,))


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
