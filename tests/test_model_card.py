"""Model folders and cards: card.json and README.md, the shipped weights/ as a model folder, a Hub id from the local
cache (never a download), `--model` on inpaint/serve and its conflict with --transformer/--vqgan, `maskgit info
MODEL`, the card in report.json (with the windows' scales) and on the page."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.errors import MaskgitError
from maskgit_cli.model_card import (
    CARD_KEY,
    card_for,
    card_lines,
    card_readme,
    files_sha256,
    is_model_folder,
    model_weights,
    names_a_model,
    read_card,
    resolve_model,
    write_card,
)

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"
CARD = {
    "name": "blobs",
    "note": "trained on 6 blobs at 64x64: emoji will not look right",
    "trained_on": {"folder": "blobs", "images": 6, "files_sha256": "ab" * 32, "resolution": 64},
    "resolution": 64,
    "tokens": [16, 16],
    "downsample": 4,
    "codes": 64,
    "stages": [
        {"stage": "vqgan", "seconds": 12.5, "images_per_second": 40.0, "steps": 10, "validation": {"psnr": 20.5}}
    ],  # fmt: skip
    "device": "cpu",
    "created": "2026-12-06",
    "maskgit_version": "0.1.0",
    "command": "maskgit fit blobs -o model",
}


@pytest.fixture
def model_folder(tmp_path, tiny_vqgan_file, tiny_transformer_file):
    """A model folder of the tiny models (tmp_path/vqgan.safetensors, transformer.safetensors) with CARD."""
    write_card(tmp_path, CARD)
    return tmp_path


def test_files_sha256_is_of_the_sorted_names():
    assert files_sha256(["b.png", "a.png"]) == hashlib.sha256(b"a.png\nb.png").hexdigest()


def test_a_card_written_reads_back_with_its_readme(tmp_path):
    write_card(tmp_path, CARD)
    assert read_card(tmp_path) == CARD and read_card(tmp_path / "none") == {}
    readme = (tmp_path / "README.md").read_text()
    assert readme == card_readme(CARD) and readme.startswith("# blobs\n\n" + CARD["note"])
    assert "| trained on | blobs: 6 images, files sha256 abababababab |" in readme
    assert "| stage vqgan | 12.5 s, 40.0 img/s, 10 steps; validation: psnr 20.5 |" in readme
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "card.json"]  # no temporary files left
    (tmp_path / "card.json").write_text("[1]")
    with pytest.raises(MaskgitError, match=r"card.json: not a model card \(expected a JSON object\)$"):
        read_card(tmp_path)


def test_the_shipped_weights_are_a_model_folder():
    m = resolve_model(WEIGHTS)
    assert m.transformer == WEIGHTS / "maskgit-emoji64.safetensors" and m.vqgan == WEIGHTS / "vqgan-emoji64.safetensors"
    card = m.card
    assert card["note"].startswith("trained on 3,057 emoji at 64x64") and "`maskgit fit`" in card["note"]
    assert card["trained_on"]["images"] == 3057 and card["resolution"] == 64 and card["tokens"] == [16, 16]
    assert card["test"]["psnr"] == 29.03 and card["test"]["masked_token_accuracy"] == 0.523
    names = sorted(p.name for p in (ROOT / "data" / "emoji64" / "train").iterdir() if p.suffix == ".png")
    assert len(names) == 3057 and card["trained_on"]["files_sha256"] == files_sha256(names)
    assert [s["stage"] for s in card["stages"]] == ["vqgan", "decoder", "tokens", "transformer"]
    assert card_for(m.transformer) == card and card_for(m.vqgan) == {}  # the card names the transformer file


def test_the_card_of_a_transformer_file(model_folder, tiny_transformer, tmp_path_factory):
    from maskgit_cli.weights import save_model

    assert card_for(model_folder / "transformer.safetensors") == CARD
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "t.safetensors"
    save_model(elsewhere, tiny_transformer, "transformer")
    assert card_for(elsewhere) == {} and card_for(tiny_transformer) == {}
    save_model(elsewhere, tiny_transformer, "transformer", {CARD_KEY: json.dumps(CARD)})  # as fit stores it
    assert card_for(elsewhere) == CARD


def test_model_and_weights_options():
    assert model_weights(None, "t", "v") == ("t", "v")
    assert model_weights(WEIGHTS, None, None) == (WEIGHTS / "maskgit-emoji64.safetensors",
                                                  WEIGHTS / "vqgan-emoji64.safetensors")  # fmt: skip
    with pytest.raises(MaskgitError, match=r"^--model names both weights files: give --model alone, or"):
        model_weights(WEIGHTS, "t", None)
    assert names_a_model(WEIGHTS) and names_a_model("org/name") and not names_a_model("runs/x.safetensors")
    assert not names_a_model(WEIGHTS / "card.json") and not names_a_model(None)


def test_a_folder_that_is_no_model_is_one_line(tmp_path):
    assert not is_model_folder(tmp_path)
    with pytest.raises(MaskgitError, match=r"not a model folder \(no vqgan.safetensors or transformer.safetensors;"):
        resolve_model(tmp_path)
    with pytest.raises(MaskgitError, match=r"^--model .*nothing: no such folder$"):
        resolve_model(tmp_path / "nothing")


def _hub_cache(root: Path, repo: str, folder: Path) -> Path:
    """A Hugging Face cache holding ``folder``'s files as the snapshot of ``repo``'s main branch."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    base = root / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    shutil.copytree(folder, base / "snapshots" / commit)
    return base / "snapshots" / commit


def test_a_hub_id_from_the_local_cache_never_downloads(model_folder, tmp_path_factory, monkeypatch):
    pytest.importorskip("huggingface_hub")
    from maskgit_cli.decoding.pipeline import Inpainter

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any attempt to reach the Hub would fail
    cache = tmp_path_factory.mktemp("hf-cache")
    snapshot = _hub_cache(cache, "someone/blobs", model_folder)
    m = resolve_model("someone/blobs", cache_dir=cache)
    assert m.path == snapshot and m.card == CARD and m.transformer == snapshot / "transformer.safetensors"
    pipe = Inpainter.from_pretrained("someone/blobs", device="cpu", cache_dir=cache, total_iter=4)
    assert pipe.card == CARD and pipe.size == 64
    folder_pipe = Inpainter.from_pretrained(model_folder, device="cpu", total_iter=4)
    image, holes = np.full((64, 64, 3), 200, np.uint8), np.zeros((64, 64), bool)
    holes[20:40, 20:40] = True
    assert (np.asarray(pipe(image, holes=holes)) == np.asarray(folder_pipe(image, holes=holes))).all()
    with pytest.raises(MaskgitError, match=r"^someone/other: no such folder, and not in the local Hugging Face cache"):
        Inpainter.from_pretrained("someone/other", device="cpu", cache_dir=cache)
    with pytest.raises(MaskgitError, match="is a model, which holds its VQGAN"):
        Inpainter.from_pretrained(model_folder, model_folder / "vqgan.safetensors")


def test_info_prints_a_model_folders_card(cli, model_folder):
    r = cli("info", model_folder)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == f"{model_folder}: model folder 'blobs'" and lines[1] == f"  note: {CARD['note']}"
    assert f"  trained on: blobs: 6 images, files sha256 {'ab' * 6}" in lines
    use = f"maskgit inpaint --model {model_folder} --images IMAGES --mask-kind stroke -o OUT"
    assert lines[-1] == f"  inpaint with it: {use}"
    info = json.loads(cli("info", model_folder, "--json").stdout)
    assert info["card"] == CARD and info["transformer"] == str(model_folder / "transformer.safetensors")
    assert [label for label, _ in card_lines(CARD)][:2] == ["trained on", "model"]
    shipped = cli("info", WEIGHTS).stdout
    assert "note: trained on 3,057 emoji at 64x64" in shipped and "psnr 29.03" in shipped


def test_inpaint_with_a_model_records_its_card_and_the_windows_scales(cli, model_folder, make_photo, tmp_path_factory):
    images = tmp_path_factory.mktemp("photos")
    Image.fromarray(make_photo(64, 64)).save(images / "a.png")
    Image.fromarray(make_photo(97, 131, seed=1)).save(images / "b.png")
    out = tmp_path_factory.mktemp("runs") / "out"
    r = cli("inpaint", "--model", model_folder, "--images", images, "--mask-kind", "box", "-o", out,
            "--device", "cpu", "--total-iter", "4", "--grids", "none")  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == {"name": "blobs", "note": CARD["note"]}
    # the shell says it too, last: what the model knows, and how many images are not its size
    assert r.stdout.splitlines()[-1] == f"model blobs: {CARD['note']} (1 of 2 images here are not 64x64)"
    a, b = report["images"]
    assert "windows" not in a and "scales" not in a
    assert b["size"] == [131, 97] and len(b["scales"]) == len(b["windows"]) >= 1
    for (_, _, w, h), (sx, sy) in zip(b["windows"], b["scales"]):
        assert (sx, sy) == (round(w / 64, 4), round(h / 64, 4))
    again = cli("inpaint", "--model", model_folder, "--transformer", model_folder / "transformer.safetensors",
                "--images", images, "--mask-kind", "box", "-o", tmp_path_factory.mktemp("x") / "o")  # fmt: skip
    assert again.exit_code == 1
    assert again.stderr == "Error: --model names both weights files: give --model alone, or --transformer and --vqgan\n"


def test_inpaint_without_a_card_says_nothing_of_a_model(cli, tiny_vqgan_file, tiny_transformer_file, make_photo,
                                                        tmp_path_factory):  # fmt: skip
    images = tmp_path_factory.mktemp("photos")
    Image.fromarray(make_photo(97, 131)).save(images / "b.png")
    out = tmp_path_factory.mktemp("runs") / "out"
    r = cli("inpaint", "--transformer", tiny_transformer_file, "--vqgan", tiny_vqgan_file, "--images", images,
            "--mask-kind", "box", "-o", out, "--device", "cpu", "--total-iter", "2", "--grids", "none")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((out / "report.json").read_text())["model"] is None
    assert r.stdout.splitlines()[-1].startswith("overview: ") and "model" not in r.stdout


def test_serve_takes_a_model(cli):
    r = cli("serve", "--model", "weights", "--vqgan", "x", "--port", "1")
    assert r.exit_code == 1 and r.stderr.startswith("Error: --model names both weights files")
    assert "--model" in cli("serve", "--help").stdout


def test_the_page_shows_the_note_and_reports_the_windows(model_folder, tmp_path_factory):
    from maskgit_cli.decoding.pipeline import Inpainter
    from maskgit_cli.web.handlers import Page
    from maskgit_cli.web.layout import model_note

    pipe = Inpainter.from_pretrained(model_folder, device="cpu", total_iter=4)
    page = Page(pipe, tmp_path_factory.mktemp("page"))
    assert model_note(pipe.card) == f"**Model blobs**: {CARD['note']}"
    mask = np.full((61, 97), 255, np.uint8)
    mask[10:30, 20:50] = 0
    assert page.windows(np.full((64, 64), 255, np.uint8), "auto") == {}
    found = page.windows(mask, "auto")  # smaller than the model on one side: the whole image, resized
    assert found == {"windows": [[0, 0, 97, 61]], "scales": [[round(97 / 64, 4), round(61 / 64, 4)]], "model_size": 64}
    gr = pytest.importorskip("gradio")
    from maskgit_cli.web.layout import build_page

    demo = build_page(page)
    notes = [b for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b.elem_id == "model-note"]
    assert len(notes) == 1 and notes[0].value == model_note(pipe.card)


# ---------------------------------------------------------------------------------------------------------
# Hostile cards (issue 28: every file's metadata is untrusted): one line naming the file


@pytest.mark.parametrize(
    "change,problem",
    [
        ({"note": ["a", "list"]}, "note must be a string"),
        ({"trained_on": [1, 2]}, "trained_on must be a JSON object"),
        ({"trained_on": {"images": "many"}}, "trained_on.images must be a whole number"),
        ({"stages": {"stage": "vqgan"}}, "stages must be a list"),
        ({"stages": [{"stage": "vqgan", "seconds": "long"}]}, "stages[0].seconds must be a number"),
        ({"stages": [{"stage": "vqgan", "validation": [1]}]}, "stages[0].validation must be a JSON object"),
        ({"stages": [7]}, "stages[0] must be a JSON object"),
        ({"tokens": [16, "16"]}, "tokens[1] must be a whole number"),
        ({"test": "good"}, "test must be a JSON object"),
        ({"files": {"vqgan": "../../elsewhere/v.safetensors"}}, "files.vqgan must be a file name in the model folder"),
        ({"files": "vqgan.safetensors"}, "files must be a JSON object"),
    ],
)
def test_a_card_with_a_field_of_the_wrong_kind_is_one_line(cli, model_folder, change, problem):
    card_path = model_folder / "card.json"
    card_path.write_text(json.dumps({**CARD, **change}))
    with pytest.raises(MaskgitError) as e:
        read_card(model_folder)
    assert str(e.value) == f"{card_path}: not a model card ({problem})"
    r = cli("info", model_folder)
    assert r.exit_code == 1 and r.stderr == f"Error: {e.value}\n"


@pytest.mark.parametrize(
    "text,problem",
    [
        ("[" * 100_000 + "]" * 100_000, "not a model card (not valid JSON: maximum recursion depth exceeded"),
        (json.dumps({**CARD, "pad": "x" * (1 << 20)}), "not a model card (1,"),
        (b'{"name": "\xff"}', "not a model card (not UTF-8 text: invalid start byte at byte 10)"),
    ],
)
def test_a_deep_huge_or_undecodable_card_is_one_line(model_folder, text, problem):
    card_path = model_folder / "card.json"
    card_path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(MaskgitError) as e:
        read_card(model_folder)
    assert str(e.value).startswith(f"{card_path}: {problem}") and "\n" not in str(e.value)


def test_a_hostile_card_in_a_weights_files_metadata_is_one_line(tiny_transformer, tmp_path):
    from maskgit_cli.weights import save_model

    path = tmp_path / "t.safetensors"
    save_model(path, tiny_transformer, "transformer", {CARD_KEY: json.dumps({**CARD, "stages": "all"})})
    with pytest.raises(MaskgitError, match=rf"^{path} \({CARD_KEY}\): not a model card \(stages must be a list\)$"):
        card_for(path)
    save_model(path, tiny_transformer, "transformer", {CARD_KEY: "[" * 100_000})
    with pytest.raises(MaskgitError, match=r"not a model card \(not valid JSON: maximum recursion depth"):
        card_for(path)
