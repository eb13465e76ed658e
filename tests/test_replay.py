"""A replayable decode (maskgit_cli/decoding/replay.py): still-masked tokens marked on the step pictures, the order
map, the animation, the chart of still-masked counts, and T capped at the masked tokens (the pipeline warns, the
CLI says it in one line, the lab's loop is left alone)."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.decoding.replay import (
    FRAME_MS,
    KNOWN_GRAY,
    StepsCapped,
    animation_frames,
    cap_message,
    cap_steps,
    counts_chart,
    marked_step,
    merged_message,
    order_map,
    order_picture,
    ramp,
    steps_capped,
    write_animation,
)
from maskgit_cli.decoding.settings import DecodeSettings, InpaintSettings


def _masks():
    """A 4x4 token grid: 5 tokens masked before step 1, filled 2, 2, then 1 over three steps."""
    before = np.zeros((4, 4), dtype=bool)
    before[1, 1:4] = before[2, 1:3] = True
    after1 = before.copy()
    after1[1, 1] = after1[2, 2] = False
    after2 = after1.copy()
    after2[1, 2] = after2[2, 1] = False
    return [before, after1, after2, np.zeros((4, 4), dtype=bool)]


def test_the_order_map_says_which_step_fixed_each_token():
    order = order_map(_masks())
    want = np.zeros((4, 4), dtype=np.int64)
    want[1, 1] = want[2, 2] = 1
    want[1, 2] = want[2, 1] = 2
    want[1, 3] = 3
    assert (order == want).all()
    # the lab's rule may leave tokens masked after its last step, whose draws still fill them: the last step's
    lab = _masks()[:3]
    assert order_map(lab)[1, 3] == 2

    picture = order_picture(order, 3, 16, legend=False)
    assert picture.shape == (16, 16, 3)
    assert (picture[0, 0] == KNOWN_GRAY).all()  # a known token, 4x4 pixels
    assert (picture[4, 4] == ramp(1, 3)).all() and (picture[4, 12] == ramp(3, 3)).all()
    assert (picture[4, 4] != picture[4, 12]).any() and (picture[4, 8] == ramp(2, 3)).all()
    with_legend = order_picture(order, 3, 16)
    assert with_legend.shape[0] > 16 and (with_legend[:16] == picture).all()


def test_still_masked_tokens_are_marked_and_the_rest_shown_as_decoded():
    image = np.full((16, 16, 3), 30, dtype=np.uint8)
    masked = np.zeros((4, 4), dtype=bool)
    masked[0, 0] = True
    out = marked_step(image, masked)
    assert (out[4:, :] == image[4:, :]).all() and (out[:, 4:] == image[:, 4:]).all()
    cell = out[:4, :4].astype(int)
    assert (cell[..., 0] > 3 * cell[..., 1]).all() and (cell[..., 2] > 3 * cell[..., 1]).all()  # tinted magenta
    assert len({tuple(p) for p in cell.reshape(-1, 3)}) == 2  # and hatched
    # a pixel-resolution mask (a token mask tile) marks the same cells
    assert (marked_step(image, masked.repeat(4, 0).repeat(4, 1)) == out).all()
    with pytest.raises(ValueError, match="does not tile"):
        marked_step(image, np.zeros((5, 5), dtype=bool))


def test_the_animation_has_a_frame_per_step(tmp_path):
    rng = np.random.default_rng(0)
    masks = _masks()
    steps = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    shown, result = np.full((16, 16, 3), 128, np.uint8), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    frames = animation_frames(shown, steps, masks[1:], result)
    assert len(frames) == 5 and (frames[0] == shown).all() and (frames[-1] == result).all()
    assert (frames[1] == marked_step(steps[0], masks[1])).all()
    for suffix in ("gif", "webp"):
        path = write_animation(frames, tmp_path / f"a.{suffix}", scale=3)
        with Image.open(path) as im:
            assert im.format == suffix.upper() and im.n_frames == 5 and im.size == (48, 48)
            im.seek(4)
            if suffix == "webp":  # lossless: the result itself, enlarged
                assert (np.asarray(im.convert("RGB")) == result.repeat(3, 0).repeat(3, 1)).all()
    with Image.open(write_animation([shown, shown, result], tmp_path / "merged.gif")) as im:
        assert im.n_frames == 2 and im.info["duration"] == 2 * FRAME_MS  # equal frames merged, their time added
    with pytest.raises(Exception, match="an animation is .gif or .webp"):
        write_animation(frames, tmp_path / "a.png")


def test_the_chart_of_still_masked_counts():
    chart = counts_chart([87, 60, 30, 8, 0])
    assert chart.shape == (110, 320, 3) and chart.dtype == np.uint8
    bars = (chart == ramp(2, 5)).all(axis=2) | (chart == np.array([59, 82, 139])).all(axis=2)
    heights = [int(bars[:, x].sum()) for x in (40, 100, 160, 220)]  # inside bars 1..4 of 5
    assert heights[0] > heights[1] > heights[2] > heights[3] > 0
    assert counts_chart([]).shape == (110, 320, 3)
    with_start = counts_chart([60, 30, 8, 0], start=87)  # the same bars, the first one "before step 1"
    assert (with_start[20:95, 40:300] == chart[20:95, 40:300]).all()


def test_t_is_capped_at_the_masked_tokens_with_a_message():
    d = DecodeSettings(total_iter=256)
    capped = cap_steps(d, 87)
    assert (capped.total_iter, capped.sweet_spot) == (87, None) and d.total_iter == 256
    assert cap_steps(DecodeSettings(total_iter=256, sweet_spot=200), 87).sweet_spot == 87
    assert cap_steps(DecodeSettings(total_iter=256, sweet_spot=20), 87).sweet_spot == 20
    for fine in (DecodeSettings(total_iter=8), DecodeSettings(total_iter=87)):
        assert cap_steps(fine, 87) is fine  # T <= masked: no cap
    assert cap_steps(d, 0) is d  # nothing to fill
    lab = InpaintSettings.from_options(lab=True, total_iter=256).decode
    assert cap_steps(lab, 87) is lab  # the lab's rule runs its loop as written
    assert cap_message(256, [87]) == "T=256 exceeds the 87 masked tokens: capped at 87 — the extra steps change nothing"
    assert cap_message(256, []) is None
    assert cap_message(256, [87, 12, 40]).startswith("T=256 exceeds the masked tokens of 3 images (12 to 87)")
    with steps_capped() as found:
        warnings.warn(StepsCapped(256, [87]), stacklevel=1)
        warnings.warn(StepsCapped(256, [12, 40]), stacklevel=1)
        assert len(found) == 2  # as they come
    assert merged_message(found) == cap_message(256, [87, 12, 40]) and merged_message([]) is None


def test_t_beyond_the_masked_tokens_only_repeats_one_token():
    """Why the cap: under the official count rule, at T=256 on 87 masked tokens, 170 steps (two thirds) run with a
    single token left and the same grid fed to the model; capped at 87, one does."""
    from maskgit_cli.choices import SCHEDULES
    from maskgit_cli.schedules import mask_len_after_step

    def idle(name, T, n):
        still, counts = n, []
        for t in range(T):
            still = mask_len_after_step(name, t, T, n, still)
            counts.append(still)
        return sum(c == 1 for c in counts[:-1])

    for name in SCHEDULES:
        assert idle(name, 256, 87) >= 256 - 87, name
    assert idle("cosine", 256, 87) == 170 and idle("cosine", 87, 87) == 1


def _tiny_pipe(tiny_transformer, tiny_vqgan):
    from maskgit_cli.decoding.pipeline import Inpainter

    return Inpainter(tiny_transformer, tiny_vqgan, "cpu", pixel_guidance=0.0, dilate=0)  # the holes' tokens alone


def test_the_pipeline_caps_each_image_by_its_own_holes(tiny_transformer, tiny_vqgan):
    pipe = _tiny_pipe(tiny_transformer, tiny_vqgan)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    small, large = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    small[8:16, 8:16] = True  # 2x2 tokens of 4x4 pixels
    large[0:40, 0:40] = True  # 100 tokens
    assert [int(m.sum()) for w in pipe.token_masks(images, [small, large]) for m in w] == [4, 100]
    with pytest.warns(StepsCapped, match="^T=12 exceeds the 4 masked tokens: capped at 4 — the extra steps"):
        both = pipe.fill(images, [small, large], total_iter=12)
    assert [len(f.still_masked) for f in both] == [4, 12]
    alone = pipe.fill(images[:1], [small], total_iter=4)[0]
    assert (both[0].image == alone.image).all()  # capped = decoded with T at its masked tokens, in any batch
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # T <= every image's masked tokens, or the lab's rule: no warning, no cap
        assert len(pipe.fill(images[1:], [large], total_iter=12)[0].still_masked) == 12
        assert len(pipe.fill(images[:1], [small], total_iter=12, counts="floor")[0].still_masked) == 12


def test_the_cli_warns_in_one_line_and_writes_animations(cli, image_dir, tiny_vqgan_file, tiny_transformer_file,
                                                         tmp_path):  # fmt: skip
    masks = tmp_path / "masks"
    masks.mkdir()
    for k, image in enumerate(sorted(image_dir.iterdir())):  # 1 to 6 tokens of 4x4 pixels, as holes
        mask = np.full((64, 64), 255, dtype=np.uint8)
        mask[8:12, 8 : 12 + 4 * k] = 0
        Image.fromarray(mask).save(masks / image.name)
    out = tmp_path / "o"
    args = ("inpaint", "--images", image_dir, "--masks", masks, "--transformer", tiny_transformer_file, "--vqgan",
            tiny_vqgan_file, "--device", "cpu", "--pixel-guidance", "0", "--dilate", "0")  # fmt: skip
    r = cli(*args, "-o", out, "--total-iter", "5", "--grids", "2", "--animation", "webp")
    assert r.exit_code == 0, r.output
    warned = [line for line in r.stderr.splitlines() if line.startswith("Warning:")]
    assert warned == [
        "Warning: T=5 exceeds the masked tokens of 4 images (1 to 4): each capped at its own count — the extra "
        "steps change nothing"
    ], r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["steps_capped"] == warned[0].removeprefix("Warning: ")
    assert [len(row["still_masked"]) for row in report["images"]] == [1, 2, 3, 4, 5, 5]
    for row in report["images"][:2]:
        stem = row["input"].removesuffix(".png")
        with Image.open(out / "steps" / f"{stem}.webp") as im:  # input, every step run, result
            # the last step's picture may be the result itself: merged
            assert len(row["still_masked"]) + 1 <= im.n_frames <= len(row["still_masked"]) + 2
            assert im.size == (256, 256)
    assert not (out / "steps" / "image_002.webp").exists()  # only the images with grids

    r = cli(*args, "-o", tmp_path / "fine", "--total-iter", "1", "--grids", "none")
    assert r.exit_code == 0 and "Warning" not in r.stderr  # T <= the masked tokens of every image: no cap
    r = cli(*args, "-o", tmp_path / "bad", "--animation", "mp4")
    assert r.exit_code == 2 and "'mp4' is not one of" in " ".join(r.stderr.split())  # Typer's choice
    assert not (tmp_path / "bad").exists()
