"""`--lab` against an independent reference of the lab's inpainting loop (issue: "--lab is the lab's inference
exactly").

The reference below is written from the lab's starter code (docs/lab.md, "The lab's inference"), not from ours:
its `inpainting.py` loop (``for step in range(total_iter): if step == sweet_spot: break``, ratio (step+1)/T) and
the step its `MaskGit.inpainting` asks the students to write: softmax at temperature 1, the most likely code and
its probability p, known tokens kept, ``mask_len = floor(mask_num * gamma(ratio))`` with no clamp,
``confidence = p + choice_temperature * (1 - ratio) * g`` and the tokens below the ``mask_len``-th smallest
confidence masked again. One image at a time, in fp32, as the lab runs it. Only the tokens and the Gumbel noise g
are shared with our code ("the same tokens and noise"): the noise comes from our counter-based stream so that both
sides see the same draws.
"""

import math

import pytest
import torch

from maskgit_cli.decoding.decode import DecodeSettings, decode_tokens
from maskgit_cli.decoding.sampler import hashed_uniform

CHOICE_TEMPERATURE = 4.5

# The lab's gamma functions, written as its students do (numpy-style formulas on the ratio).
LAB_GAMMA = {
    "cosine": lambda r: math.cos(r * math.pi / 2),
    "linear": lambda r: 1 - r,
    "square": lambda r: 1 - r**2,
}


def lab_noise(seed: int, image_id: int, step: int, length: int) -> torch.Tensor:
    """(1, L) float32 Gumbel(0, 1) noise of one image and step (the stream our sampler ranks with)."""
    u = hashed_uniform(seed, torch.tensor([image_id]), step, 1, length)
    return (-torch.log(-torch.log(u))).float()


@torch.no_grad()
def lab_inpainting(transformer, z_indices, mask_b, total_iter, sweet_spot, gamma, noise):
    """The lab's loop for one image: z_indices (1, L) tokens, mask_b (1, L) True = masked. Returns the tokens after
    the last step run and, per step, the predicted tokens and the mask after the step (the lab's pictures)."""
    mask_token_id = transformer.config.mask_token_id
    mask_num = int(mask_b.sum())
    z_indices_predict, mask_bc = z_indices, mask_b
    predictions, masks = [], []
    for step in range(total_iter):
        if step == sweet_spot:
            break
        ratio = (step + 1) / total_iter
        # MaskGit.inpainting
        z_indices_with_mask = mask_bc * mask_token_id + (~mask_bc) * z_indices_predict
        logits = transformer(z_indices_with_mask)
        logits[..., mask_token_id] = float("-inf")  # the VQGAN has no code for the mask id
        probs = torch.softmax(logits, dim=-1)
        z_indices_predict_prob, predicted = torch.max(probs, dim=-1)
        z_indices_predict = torch.where(mask_bc, predicted, z_indices_predict)
        z_indices_predict_prob = torch.where(mask_bc, z_indices_predict_prob, torch.tensor(float("inf")))
        mask_len = math.floor(mask_num * gamma(ratio))
        g = noise(step)
        temperature = CHOICE_TEMPERATURE * (1 - ratio)
        confidence = z_indices_predict_prob + temperature * g
        sorted_confidence = torch.sort(confidence, dim=-1)[0]
        cut_off = sorted_confidence[:, mask_len].unsqueeze(-1)
        mask_bc = confidence < cut_off
        predictions.append(z_indices_predict)
        masks.append(mask_bc)
    return z_indices_predict, predictions, masks


def lab_settings(schedule: str, T: int, S: int, seed: int = 0) -> DecodeSettings:
    s = DecodeSettings(schedule=schedule, total_iter=T, sweet_spot=S, sampling="argmax", temperature=1.0, seed=seed)
    s.ranking, s.counts = "p", "floor"
    return s


def _inputs(n_images: int, L: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n_images, L), generator=g)
    unknown = torch.zeros(n_images, L, dtype=torch.bool)
    for i, n in enumerate([108, 40, 200, 3][:n_images]):
        unknown[i, torch.randperm(L, generator=g)[:n]] = True
    return tokens, unknown


@pytest.mark.parametrize(
    ("schedule", "T"), [("cosine", 8), ("square", 8), pytest.param("cosine", 25, marks=pytest.mark.slow)]
)
def test_lab_rule_equals_the_reference_on_every_token(tiny_transformer, schedule, T):
    model = tiny_transformer.float()
    L = model.config.num_image_tokens
    tokens, unknown = _inputs(4, L, model.config.num_codebook_vectors)
    for S in range(1, T + 1):
        ours = decode_tokens(
            model, tokens, unknown, lab_settings(schedule, T, S), model.config.mask_token_id, record=True
        )
        for i in range(len(tokens)):
            final, predictions, masks = lab_inpainting(
                model, tokens[i : i + 1], unknown[i : i + 1], T, S, LAB_GAMMA[schedule],
                lambda step, i=i: lab_noise(0, i, step, L),
            )  # fmt: skip
            assert torch.equal(ours.tokens[i], final[0]), (schedule, T, S, i)
            for step in range(S):
                assert torch.equal(ours.step_predictions[step][i], predictions[step][0]), (T, S, i, step)
                assert torch.equal(ours.step_masks[step][i], masks[step][0]), (T, S, i, step)
            assert ours.still_masked[i].tolist() == [int(m.sum()) for m in masks]


def test_lab_counts_differ_from_the_official_clamp_where_the_issue_says():
    """T = 25 with 108 masked: the lab keeps 107, 107, 106, 104 masked where the official clamp gives 107, 106, 105,
    104; the lab's count after the last step run is floor(N * gamma(S/T)), not 0."""
    from maskgit_cli.schedules import expected_counts

    assert expected_counts("cosine", 25, 108, "floor")[:4] == [107, 107, 106, 104]
    assert expected_counts("cosine", 25, 108)[:4] == [107, 106, 105, 104]
    assert expected_counts("cosine", 8, 108, "floor", steps=3)[-1] == math.floor(108 * math.cos(3 / 8 * math.pi / 2))
    assert expected_counts("cosine", 8, 108, steps=3)[-1] == 0


@pytest.mark.parametrize(("T", "S"), [(8, 3), (8, 8), (25, 25), (1, 1), (12, 5)])
def test_lab_pictures_equal_torchvision_save_image(tmp_path, T, S):
    """The starter code's pictures: preallocated zeros, tiles written per step run, saved with save_image."""
    import numpy as np
    from PIL import Image
    from torchvision.utils import save_image

    from maskgit_cli.data.images import to_uint8
    from maskgit_cli.decoding.lab_pictures import image_picture, mask_picture

    def lab_bytes(x):  # our writer's half-up rounding, the one --lab uses
        return to_uint8(x[None], "half-up")[0]

    g = torch.Generator().manual_seed(T * 100 + S)
    masks = [torch.rand(16, 16, generator=g) < 0.3 for _ in range(S)]
    images = [torch.rand(3, 64, 64, generator=g) * 1.2 - 0.1 for _ in range(S)]  # the lab does not clamp first
    masked_input = torch.rand(3, 64, 64, generator=g)
    maska = torch.zeros(T, 3, 16, 16)
    imga = torch.zeros(T + 1, 3, 64, 64)
    imga[0] = masked_input
    for step in range(S):
        mask_image = torch.ones(3, 16, 16)
        indices = torch.nonzero(masks[step].view(1, 16, 16), as_tuple=False)
        mask_image[:, indices[:, 1], indices[:, 2]] = 0
        maska[step] = mask_image
        imga[step + 1] = images[step]
    save_image(maska, tmp_path / "mask.png", nrow=10)
    save_image(imga, tmp_path / "imga.png", nrow=7)
    save_image(images[-1], tmp_path / "final.png", nrow=1)
    assert np.array_equal(
        mask_picture([m.numpy() for m in masks], T), np.asarray(Image.open(tmp_path / "mask.png").convert("RGB"))
    )
    ours = image_picture(lab_bytes(masked_input), [lab_bytes(x) for x in images], T)
    assert np.array_equal(ours, np.asarray(Image.open(tmp_path / "imga.png").convert("RGB")))
    assert np.array_equal(lab_bytes(images[-1]), np.asarray(Image.open(tmp_path / "final.png").convert("RGB")))


def test_lab_with_the_wrong_vqgan_names_the_vqgan_first(cli, make_test_set, tiny_transformer, tiny_vqgan, tmp_path):
    """--lab implies --normalization test; a VQGAN the transformer was not trained with is the real cause and is
    named first (it used to say 'records no test-set statistics')."""
    from maskgit_cli.weights import save_model

    make_test_set(tmp_path, 2)
    save_model(tmp_path / "t.safetensors", tiny_transformer, "transformer", {"vqgan_sha256": "ab" * 32})
    save_model(tmp_path / "v.safetensors", tiny_vqgan, "vqgan")
    models = ["--transformer", tmp_path / "t.safetensors", "--vqgan", tmp_path / "v.safetensors"]
    r = cli("inpaint", "--images", tmp_path / "masked_image", "--masks", tmp_path / "mask64", *models, "-o",
            tmp_path / "o", "--lab")  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1
    assert lines[0].startswith("Error: the transformer was trained on the tokens of VQGAN abababababab, but --vqgan")


@pytest.mark.slow
@pytest.mark.parametrize(("T", "S"), [(8, s) for s in range(1, 9)] + [(25, s) for s in range(1, 26)])
def test_lab_inpaint_equals_the_reference_on_every_token_and_pixel(cli, make_test_set, tiny_vqgan, tmp_path, T, S):
    """`maskgit inpaint --lab` writes what the lab's loop writes: test_results, mask_scheduling and imga, pixel for
    pixel (the reference decodes each step with the lab's decode, de-normalizes by hand and saves with torchvision's
    save_image, one image at a time)."""
    import dataclasses

    import numpy as np
    from PIL import Image
    from torchvision.utils import save_image

    from maskgit_cli.data.images import load_image, to_tensor
    from maskgit_cli.transformer.model import MaskGITTransformer, get_preset
    from maskgit_cli.vqgan.model import VQGAN
    from maskgit_cli.weights import save_model

    make_test_set(tmp_path, 3)
    config = dataclasses.replace(tiny_vqgan.config, test_mean=(0.45, 0.4, 0.35), test_std=(0.3, 0.28, 0.26))
    vq = VQGAN(config).eval()
    vq.load_state_dict(tiny_vqgan.state_dict())
    torch.manual_seed(1)
    transformer = MaskGITTransformer(get_preset("tiny", num_codebook_vectors=64)).eval()
    with torch.no_grad():
        transformer.tok_emb.weight.normal_(0, 1.0)
    save_model(tmp_path / "v.safetensors", vq, "vqgan")
    save_model(tmp_path / "t.safetensors", transformer, "transformer")
    out = tmp_path / "out"
    r = cli("inpaint", "--images", tmp_path / "masked_image", "--masks", tmp_path / "mask64", "--transformer",
            tmp_path / "t.safetensors", "--vqgan", tmp_path / "v.safetensors", "-o", out, "--lab", "--total-iter",
            str(T), "--sweet-spot", str(S), "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output

    vq.use_normalization("test")
    mean, std = torch.tensor(config.test_mean).view(3, 1, 1), torch.tensor(config.test_std).view(3, 1, 1)
    ref = tmp_path / "ref"
    for i, (image_file, mask_file) in enumerate(
        zip(sorted((tmp_path / "masked_image").iterdir()), sorted((tmp_path / "mask64").iterdir()))
    ):
        image = to_tensor(load_image(image_file))[None]
        z_indices = vq.encode(image).view(1, -1)
        mask = torch.from_numpy(np.asarray(Image.open(mask_file)) == 255).float()[None, None]
        pooled = torch.nn.functional.avg_pool2d(torch.nn.functional.avg_pool2d(mask, 2, 2), 2, 2)
        mask_b = (pooled != 1).view(1, -1)  # the lab's rule: a token is kept only if all 16 pixels are known
        _, predictions, masks = lab_inpainting(
            transformer, z_indices, mask_b, T, S, LAB_GAMMA["cosine"], lambda step, i=i: lab_noise(0, i, step, 256)
        )
        maska, imga = torch.zeros(T, 3, 16, 16), torch.zeros(T + 1, 3, 64, 64)
        imga[0] = image[0]
        for step, (predicted, mask_bc) in enumerate(zip(predictions, masks)):
            mask_image = torch.ones(3, 16, 16)
            indices = torch.nonzero(mask_bc.view(1, 16, 16), as_tuple=False)
            mask_image[:, indices[:, 1], indices[:, 2]] = 0
            maska[step] = mask_image
            with torch.no_grad():
                z_q = vq.codebook.embedding(predicted).view(1, 16, 16, -1).permute(0, 3, 1, 2)
                decoded_img = vq.decoder(vq.post_quant_conv(z_q))
            imga[step + 1] = dec_img_ori = decoded_img[0] * std + mean
        for folder in ("test_results", "mask_scheduling", "imga"):
            (ref / folder).mkdir(parents=True, exist_ok=True)
        save_image(dec_img_ori, ref / "test_results" / f"image_{i:03d}.png", nrow=1)
        save_image(maska, ref / "mask_scheduling" / f"test_{i}.png", nrow=10)
        save_image(imga, ref / "imga" / f"test_{i}.png", nrow=7)
    for folder in ("test_results", "mask_scheduling", "imga"):
        names = sorted(p.name for p in (ref / folder).iterdir())
        assert names == sorted(p.name for p in (out / folder).iterdir())
        for name in names:
            theirs, ours = (np.asarray(Image.open(root / folder / name).convert("RGB")) for root in (ref, out))
            assert theirs.shape == ours.shape and np.array_equal(theirs, ours), (folder, name)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (tools/gpu_check.sh)")
def test_lab_rule_on_cuda_equals_the_reference_on_every_token():
    """The lab's rule (--lab: argmax, temperature 1, p + noise, floor counts, fp32) on CUDA against the independent
    reference of the lab's loop (tests/test_lab_reference.py), also run on CUDA, for T = 8 and 25, S = 1..T."""
    from maskgit_cli.transformer.model import MaskGITTransformer, get_preset

    torch.manual_seed(0)
    model = MaskGITTransformer(get_preset("tiny", num_codebook_vectors=64)).eval().cuda()
    with torch.no_grad():
        model.tok_emb.weight.normal_(0, 1.0)
    torch.backends.cuda.matmul.allow_tf32 = False  # the lab's fp32
    torch.backends.cudnn.allow_tf32 = False
    L = model.config.num_image_tokens
    tokens, unknown = (x.cuda() for x in _inputs(4, L, 64))
    mismatches = 0
    for T in (8, 25):
        for S in range(1, T + 1):
            ours = decode_tokens(
                model, tokens, unknown, lab_settings("cosine", T, S), model.config.mask_token_id, record=True
            )
            for i in range(len(tokens)):
                final, _, masks = lab_inpainting(
                    model, tokens[i : i + 1], unknown[i : i + 1], T, S, LAB_GAMMA["cosine"],
                    lambda step, i=i: lab_noise(0, i, step, L).cuda(),
                )  # fmt: skip
                mismatches += int(not torch.equal(ours.tokens[i], final[0]))
                mismatches += sum(int(not torch.equal(ours.step_masks[s][i], masks[s][0])) for s in range(S))
    print(f"lab rule on CUDA: {mismatches} mismatching grids or masks")
    assert mismatches == 0
