"""tools/compare_baselines.py: the classical rows (OpenCV Telea and Navier-Stokes, scikit-image's biharmonic) are the
libraries' own fills, maskgit's row is the Inpainter's, the generated mask kinds are fixed by the seed, a missing
library leaves its rows out with one line, and bad sets or options are one line (exit 1 or 2)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from maskgit_cli.data.images import list_images, load_image
from maskgit_cli.data.mask_generator import generate_mask, mask_rng, write_masks
from maskgit_cli.data.masks import HOLE, KNOWN, load_mask
from maskgit_cli.errors import MaskgitError, OptionError

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "compare_baselines.py"


@pytest.fixture(scope="module")
def tool():
    """The tool as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("compare_baselines", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def lab_set(tmp_path, make_images):
    """A 3-image set in the lab's layout: test/, mask64/ (strokes, seed 0), masked_image/."""
    root = tmp_path / "set"
    make_images(root / "test", 3, seed=4)
    write_masks(root / "test", root / "mask64", "stroke", 0, masked_out=root / "masked_image")
    return root


@pytest.fixture
def unscored(tool, monkeypatch):
    """The tool's scores made constant (slow under load, and not what a test of rows or pixels checks)."""
    keys = ("psnr_hole", "ssim_hole", "psnr", "ssim", "hole_fraction", "fd_pix8", "count")
    monkeypatch.setattr(tool, "score", lambda *folders: dict.fromkeys(keys, 1))


def _compare(tool, out, *args):
    tool.main(["-o", str(out), *map(str, args)])
    return json.loads((out / "compare.json").read_text())


def _pngs(folder):
    return [load_image(p) for p in list_images(folder)]


def _inputs(root):
    """The masked images and their holes of a lab-layout folder."""
    holes = [load_mask(p) == HOLE for p in list_images(root / "mask64")]
    return _pngs(root / "masked_image"), holes


def test_navier_stokes_and_biharmonic_rows_are_the_libraries_fills(tool, lab_set, tmp_path):
    cv2 = pytest.importorskip("cv2")
    from skimage.restoration import inpaint_biharmonic

    result = _compare(tool, tmp_path / "out", "--set", f"tiny={lab_set}", "--model", "none", "--kind", "lab")
    methods = [r["method"] for r in result["rows"]]
    assert methods == [tool.INPUT, "OpenCV Telea", "OpenCV Navier-Stokes", "scikit-image biharmonic"]
    images, holes = _inputs(lab_set)
    ns = _pngs(tmp_path / "out" / "tiny" / "lab" / "navier_stokes")
    bih = _pngs(tmp_path / "out" / "tiny" / "lab" / "biharmonic")
    for image, hole, ns_image, bih_image in zip(images, holes, ns, bih, strict=True):
        direct_ns = cv2.inpaint(image[..., ::-1].copy(), hole.astype(np.uint8) * 255, 3, cv2.INPAINT_NS)[..., ::-1]
        np.testing.assert_array_equal(ns_image, direct_ns)
        direct_bih = np.rint(np.clip(inpaint_biharmonic(image / 255.0, hole, channel_axis=-1), 0, 1) * 255)
        np.testing.assert_array_equal(bih_image[hole], direct_bih[hole])
        np.testing.assert_array_equal(bih_image[~hole], image[~hole])
    bih_row = next(r for r in result["rows"] if r["method"] == "scikit-image biharmonic")
    assert bih_row["count"] == 3 and bih_row["seconds"] > 0 and bih_row["psnr_hole"] > 0


def test_the_maskgit_row_is_the_inpainters_default_fill(
    tool, unscored, lab_set, tmp_path, tiny_vqgan_file, tiny_transformer_file
):
    from maskgit_cli import Inpainter

    model = tiny_vqgan_file.parent  # vqgan.safetensors and transformer.safetensors: a model folder
    args = ("--set", f"tiny={lab_set}", "--model", model, "--device", "cpu", "--kind", "lab")
    result = _compare(tool, tmp_path / "out", *args)
    assert [r["method"] for r in result["rows"]][:2] == [tool.INPUT, "maskgit"]
    pipe = Inpainter.from_pretrained(model, device="cpu")
    images, holes = _inputs(lab_set)
    expected = pipe(images, holes=holes)  # one batch, as the tool's (and `maskgit inpaint`'s)
    for ours, theirs in zip(_pngs(tmp_path / "out" / "tiny" / "lab" / "maskgit"), expected, strict=True):
        np.testing.assert_array_equal(ours, np.asarray(theirs))


def test_several_models_are_a_row_each_with_their_own_settings(
    tool, unscored, lab_set, tmp_path, tiny_vqgan_file, tiny_transformer_file
):
    from maskgit_cli import Inpainter

    model = tiny_vqgan_file.parent
    args = ["--set", f"tiny={lab_set}", "--device", "cpu", "--kind", "lab"]
    args += ["--model", f"now={model}", "--model", f"before={model},fill=sharp"]
    result = _compare(tool, tmp_path / "out", *args)
    assert [r["method"] for r in result["rows"]][:3] == [tool.INPUT, "now", "before"]
    assert result["models"] == [
        {"name": "now", "model": str(model), "settings": {}},
        {"name": "before", "model": str(model), "settings": {"fill": "sharp"}},
    ]
    images, holes = _inputs(lab_set)
    for name, fill in (("now", None), ("before", "sharp")):
        expected = Inpainter.from_pretrained(model, device="cpu", fill=fill)(images, holes=holes)
        for ours, theirs in zip(_pngs(tmp_path / "out" / "tiny" / "lab" / f"maskgit-{name}"), expected, strict=True):
            np.testing.assert_array_equal(ours, np.asarray(theirs))
    assert "| method | hole PSNR (dB)" in tool.tables(result) and "\n| now | 1.00 |" in tool.tables(result)


def test_true_tokens_fill_the_holes_with_the_vqgans_decode_of_the_ground_truth(
    tool, unscored, lab_set, tmp_path, tiny_vqgan_file, tiny_transformer_file
):
    import torch

    from maskgit_cli import Inpainter
    from maskgit_cli.data.images import to_tensor, to_uint8

    model = tiny_vqgan_file.parent
    args = ("--set", f"tiny={lab_set}", "--model", f"m={model},blend=none", "--device", "cpu", "--kind", "lab")
    result = _compare(tool, tmp_path / "out", *args, "--true-tokens")
    assert [r["method"] for r in result["rows"]][:3] == [tool.INPUT, "m", "m: true tokens"]
    truth = _pngs(lab_set / "test")
    vqgan = Inpainter.from_pretrained(model, device="cpu").ready.vqgan  # as inpainting normalizes
    with torch.no_grad():
        decoded = to_uint8(vqgan.decode(vqgan.encode(to_tensor(np.stack(truth)))).float())
    _, holes = _inputs(lab_set)
    filled = _pngs(tmp_path / "out" / "tiny" / "lab" / "maskgit-m-true-tokens")
    for ours, image, hole, recon in zip(filled, truth, holes, decoded, strict=True):
        np.testing.assert_array_equal(ours[~hole], image[~hole])  # known pixels kept
        np.testing.assert_array_equal(ours[hole], recon[hole])  # holes: the ground truth's own tokens, decoded
        assert not np.array_equal(ours[hole], image[hole])  # a reconstruction, not the truth copied


def test_true_tokens_refuse_images_of_another_size_than_the_vqgans(
    tool, tmp_path, make_images, tiny_vqgan_file, tiny_transformer_file
):
    root = tmp_path / "set"
    make_images(root / "test", 2, size=48)
    write_masks(root / "test", root / "mask64", "box", 0, masked_out=root / "masked_image")
    args = ("--set", f"small={root}", "--model", tiny_vqgan_file.parent, "--device", "cpu", "--kind", "lab")
    with pytest.raises(MaskgitError, match="--true-tokens: the model's VQGAN takes 64x64 images"):
        _compare(tool, tmp_path / "out", *args, "--true-tokens")


def test_model_settings_take_their_settings_types(tool):
    assert tool.parse_models(["a=default,total_iter=4,dilate=none,composite=false,pixel-guidance=25"]) == [
        ("a", "default", {"total_iter": 4, "dilate": None, "composite": False, "pixel_guidance": 25.0})
    ]
    assert tool.parse_models(["runs/m"]) == [("maskgit", "runs/m", {})] and tool.parse_models(["none"]) == []


@pytest.mark.parametrize(
    ("models", "words"),
    [
        (["none", "default"], "--model none: means no maskgit row"),
        (["=MODEL"], "--model =MODEL: expected NAME=MODEL[,SETTING=VALUE...]"),
        (["a=MODEL,nosuch=1"], "'nosuch=1' is not SETTING=VALUE"),
        (["a=MODEL,fill"], "'fill' is not SETTING=VALUE"),
        (["a=,fill=sharp"], "no model"),
        (["a=MODEL", "a=MODEL,fill=sharp"], "each row needs its own name, got a, a"),
        (["a=MODEL,fill=blurry"], "fill=blurry: --fill blurry: expected one of"),
        (["a=MODEL,total_iter=abc"], "'total_iter=abc': total_iter takes int"),
        (["a=MODEL,composite=maybe"], "'composite=maybe': composite takes bool"),
    ],
)
def test_bad_model_specs_are_one_option_error_before_anything_is_written(
    tool, lab_set, tmp_path, tiny_vqgan_file, tiny_transformer_file, models, words
):
    args = ["-o", str(tmp_path / "out"), "--set", f"tiny={lab_set}", "--device", "cpu"]
    for spec in models:
        args += ["--model", spec.replace("MODEL", str(tiny_vqgan_file.parent))]
    with pytest.raises(OptionError, match=None) as e:
        tool.main(args)
    assert words.replace("=MODEL:", f"={tiny_vqgan_file.parent}:") in str(e.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["stroke", "box", "half", "outpaint"])
def test_generated_masks_are_fixed_by_the_seed_one_per_image_of_their_kind(tool, lab_set, tmp_path, kind):
    test_set = tool.parse_set(f"tiny={lab_set}")
    masks_dir, masked_dir = tool.kind_masks(test_set, kind, tmp_path / "a", 5)
    again, _ = tool.kind_masks(test_set, kind, tmp_path / "b", 5)
    masks = [load_mask(p) for p in list_images(masks_dir)]
    assert len(masks) == 3
    for i, (mask, same) in enumerate(zip(masks, [load_mask(p) for p in list_images(again)], strict=True)):
        np.testing.assert_array_equal(mask, same)
        np.testing.assert_array_equal(mask, generate_mask(kind, mask_rng(5, i), 64))
        holes = mask == HOLE
        ys, xs = np.nonzero(holes)
        if kind in ("box", "half"):  # one filled rectangle; a half covers half the image
            assert holes[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()
            assert kind == "box" or holes.mean() == 0.5
        if kind == "outpaint":  # the known pixels are one centred square, the border is hole
            ky, kx = np.nonzero(mask == KNOWN)
            lo, hi = ky.min(), ky.max()
            assert (
                (kx.min(), kx.max()) == (lo, hi)
                and abs(lo - (63 - hi)) <= 1
                and not holes[lo : hi + 1, lo : hi + 1].any()
            )
    for image, truth, mask in zip(_pngs(masked_dir), _pngs(lab_set / "test"), masks, strict=True):
        assert (image[mask == HOLE] == 128).all()  # the masked images: gray holes, the truth elsewhere
        np.testing.assert_array_equal(image[mask == KNOWN], truth[mask == KNOWN])
    assert tool.kind_masks(test_set, "lab", tmp_path / "c", 5) == (lab_set / "mask64", lab_set / "masked_image")


@pytest.mark.parametrize(
    ("module", "left_out"),
    [("cv2", ["OpenCV Telea", "OpenCV Navier-Stokes"]), ("skimage.restoration", ["scikit-image biharmonic"])],
)
def test_a_missing_library_leaves_its_rows_out_with_one_line(
    tool, unscored, lab_set, tmp_path, monkeypatch, capsys, module, left_out
):
    pytest.importorskip("cv2")
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    result = _compare(tool, tmp_path / "out", "--set", f"tiny={lab_set}", "--model", "none", "--kind", "lab")
    methods = [r["method"] for r in result["rows"]]
    assert not set(left_out) & set(methods) and len(methods) == 4 - len(left_out)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and module.split(".")[0] in err[0] and all(name in err[0] for name in left_out), err


def test_sets_by_name_are_the_data_folders_in_the_lab_layout(tool, tmp_path):
    for name in tool.KNOWN_SETS:
        test_set = tool.parse_set(name)
        assert test_set.ref == ROOT / "data" / name / "test" and test_set.masks == ROOT / "data" / name / "mask64"
        tool.check_set(test_set)  # the committed data: every folder there, one mask per image
    assert tool.parse_set(f"mine={tmp_path}") == tool.TestSet(
        "mine", tmp_path / "test", tmp_path / "mask64", tmp_path / "masked_image"
    )


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        (["--set", "nosuchset"], OptionError, "--set nosuchset: not a known set"),
        (["--set", "a=DIR", "--kind", "blob"], OptionError, "--kind blob"),
        (["--set", "a=DIR", "--set", "b=DIR", "--pred", "x=DIR"], OptionError, "one set"),
        (["--set", "a=DIR/missing"], MaskgitError, "missing/test: no such folder"),
        (["--set", "a=DIR", "--pred", "x=DIR/none"], MaskgitError, "none: no such folder"),
    ],
)
def test_bad_sets_and_options_are_refused_before_anything_is_written(tool, lab_set, tmp_path, args, error, words):
    args = [a.replace("DIR", str(lab_set)) for a in args]
    with pytest.raises(error) as e:
        tool.main(["-o", str(tmp_path / "out"), "--model", "none", *args])
    assert words.replace("DIR", str(lab_set)) in str(e.value) and (e.type is OptionError) == (error is OptionError)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("spec", "code"), [("a=MISSING", 1), ("nosuchset", 2)])
def test_the_command_says_one_line_and_exits_1_for_a_bad_folder_and_2_for_a_bad_option(
    tool, tmp_path, monkeypatch, capsys, spec, code
):
    monkeypatch.delenv("MASKGIT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        tool.cli(["--set", spec.replace("MISSING", str(tmp_path / "missing")), "--model", "none", "-o", str(tmp_path)])
    out, err = capsys.readouterr()
    assert e.value.code == code and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: ")
    assert not (tmp_path / "compare.json").exists()
