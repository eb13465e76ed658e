"""CLI conventions: help, lazy imports, exit codes, one-line errors, info."""

import json
import subprocess
import sys

import pytest

from maskgit_cli import __version__
from maskgit_cli.vqgan.tokens import tokenize_folder


def test_help_lists_commands(cli):
    r = cli("--help")
    assert r.exit_code == 0
    for name in ("tokenize", "convert-vqgan", "info"):
        assert name in r.stdout


def test_no_args_shows_help(cli):
    r = cli()
    assert "Usage" in r.output and "tokenize" in r.output


def test_tokenize_help_has_an_example(cli):
    r = cli("tokenize", "--help")
    assert r.exit_code == 0 and "Example" in r.stdout and "maskgit tokenize data/emoji64/train" in r.stdout


def test_version(cli):
    assert cli("--version").stdout.strip() == f"maskgit {__version__}"


def test_cli_import_does_not_import_torch():
    code = "import sys, maskgit_cli.cli; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_dash_m_and_console_script():
    r = subprocess.run([sys.executable, "-m", "maskgit_cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "tokenize" in r.stdout


def test_bad_option_value_exits_2(cli, image_dir, tiny_vqgan_file, tmp_path):
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", tmp_path / "t.tokens", "--device", "tpu")
    assert r.exit_code == 2
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", tmp_path / "t.tokens", "--batch-size", "0")
    assert r.exit_code == 2


def test_expected_error_is_one_line_without_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "maskgit_cli", "info", str(tmp_path / "x.safetensors")], capture_output=True, text=True
    )
    assert r.returncode == 1
    assert r.stderr.strip() == f"Error: {tmp_path / 'x.safetensors'}: no such file"
    assert r.stdout == ""


def test_a_folder_where_a_file_belongs_is_one_line_naming_what_was_expected(cli, image_dir, tiny_vqgan_file, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    cases = {
        "a VQGAN weights file (.safetensors)": ("tokenize", image_dir, "--vqgan", folder, "-o", tmp_path / "t.tokens"),
        "a transformer weights file (.safetensors)": (
            *("inpaint", "--images", image_dir, "--mask-kind", "box", "--transformer", folder),
            *("--vqgan", tiny_vqgan_file, "-o", tmp_path / "out"),
        ),
        "a token cache file (made by `maskgit tokenize`)": (
            "train",
            folder,
            "-o",
            tmp_path / "run",
            "--max-steps",
            "1",
        ),
        "a safetensors file": ("info", folder),
    }
    for expected, args in cases.items():
        r = cli(*args)
        assert r.exit_code == 1, (args, r.output)
        assert r.stderr.strip() == f"Error: {folder}: is a folder, expected {expected}", r.stderr
    assert not (tmp_path / "t.tokens").exists() and not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_require_file_names_the_role_and_the_path(tmp_path):
    from maskgit_cli.errors import MaskgitError, require_file

    with pytest.raises(MaskgitError, match=r"^Mask file .*m\.png: no such file$"):
        require_file(tmp_path / "m.png", "Mask file")
    with pytest.raises(MaskgitError, match=r": is a folder, expected a file$"):
        require_file(tmp_path)
    (tmp_path / "f").write_text("x")
    require_file(tmp_path / "f")  # an existing file passes


def test_debug_env_shows_traceback(tmp_path):
    import os

    env = {**os.environ, "MASKGIT_DEBUG": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "maskgit_cli", "info", str(tmp_path / "x.safetensors")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 1 and "Traceback" in r.stderr and "MaskgitError" in r.stderr


def test_cuda_without_gpu_is_an_error(cli, image_dir, tiny_vqgan_file, tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", tmp_path / "t.tokens", "--device", "cuda")
    assert r.exit_code == 1 and "--device cuda: CUDA is not available" in r.stderr


def test_info_weights_and_tokens(cli, tiny_vqgan_file, tiny_vqgan, image_dir, tmp_path):
    r = cli("info", tiny_vqgan_file)
    assert r.exit_code == 0 and "kind=vqgan" in r.stdout and "codebook.embedding.weight" in r.stdout
    r = cli("info", tiny_vqgan_file, "--json")
    info = json.loads(r.stdout)
    assert info["kind"] == "vqgan" and info["config"]["num_codebook_vectors"] == 64
    tokenize_folder(image_dir, tiny_vqgan, tmp_path / "t.tokens", num_workers=0)
    info = json.loads(cli("info", tmp_path / "t.tokens", "--json").stdout)
    assert info["kind"] == "tokens" and len(info["files"]) == 6 and info["flip"] == "false"
    assert {"name": "tokens", "dtype": "I16", "shape": [6, 16, 16]} in info["tensors"]
    assert {"name": "code_patch_counts", "dtype": "I64", "shape": [64]} in info["tensors"]
    r = cli("info", tmp_path / "t.tokens")
    assert "files: 6 (image_000.png" in r.stdout


def test_masks_command(cli, image_dir, tmp_path):
    r = cli("masks", image_dir, "-o", tmp_path / "m", "--kind", "box", "--seed", "3", "--masked-out", tmp_path / "mi")
    assert r.exit_code == 0, r.output
    assert "wrote 6 box masks" in r.stdout
    assert sorted(p.name for p in (tmp_path / "m").iterdir())[0] == "mask_000.png"
    assert len(list((tmp_path / "mi").iterdir())) == 6
    r = cli("masks", image_dir, "-o", tmp_path / "m2", "--kind", "circle")
    assert r.exit_code == 2
    r = cli("masks", tmp_path / "nope", "-o", tmp_path / "m3")
    assert r.exit_code == 1 and "nope: no such folder" in r.stderr


def _commands(group, prefix=()):
    """(argv prefix, click command) for every command of the app, sub-groups included."""
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_every_help_shows_every_option_text_whole(cli, monkeypatch):
    """Rich markup must not swallow bracketed words (e.g. "[train]" in a help text): every word of every option's
    help, and of the command's own description, appears in the rendered --help."""
    import re

    import typer

    from maskgit_cli.cli import app

    monkeypatch.setenv("COLUMNS", "400")  # no wrapping: words stay whole
    root = typer.main.get_command(app)
    commands = list(_commands(root))
    assert len(commands) == 20  # masks, convert-vqgan, ..., tune-decoder, fit, serve, bench train/inpaint/tokenize
    for argv, cmd in commands:
        r = cli(*argv, "--help")
        assert r.exit_code == 0, argv
        rendered = " ".join(r.stdout.split())
        texts = [p.help for p in cmd.params if getattr(p, "help", None)]
        texts.append((cmd.help or "").split("\n\n")[0])
        for text in texts:
            visible = re.sub(r"\[/?bold\]", "", text).replace("\\[", "[")
            for word in visible.split():
                assert word in rendered, (argv, word, text)


def test_tokenize_json(cli, image_dir, tiny_vqgan_file, tmp_path):
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", tmp_path / "t.tokens", "--json", "--device", "cpu")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["output"] == str(tmp_path / "t.tokens") and info["images"] == info["rows"] == 6
    assert info["grid"] == [16, 16] and info["skipped"] == [] and len(info["vqgan_sha256"]) == 64


def test_os_errors_are_one_line_naming_the_path(cli, image_dir, tiny_vqgan_file, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = cli("tokenize", image_dir, "--vqgan", tiny_vqgan_file, "-o", blocker / "t.tokens", "--device", "cpu")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"Error: {blocker}"), r.stderr
    assert "Traceback" not in r.output


def test_resume_refuses_a_run_of_the_other_trainer(cli, tmp_path):
    run = tmp_path / "vq"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"trainer": "train-vqgan", "train": {}, "data": {}}))
    r = cli("train", "--resume", run)
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
        f"Error: --resume {run}: is a `maskgit train-vqgan` run, not a `maskgit train` run"
    ]
    (run / "config.json").write_text(json.dumps({"trainer": "train", "train": {}, "data": {}}))
    r = cli("train-vqgan", "--resume", run)
    assert r.exit_code == 1 and "is a `maskgit train` run, not a `maskgit train-vqgan` run" in r.stderr


def test_inpaint_uses_the_shipped_weights_without_weight_options(cli, tmp_path):
    import shutil
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data" / "emoji64"
    for folder in ("masked_image", "mask64"):
        (tmp_path / folder).mkdir()
        for p in sorted((data / folder).iterdir())[:2]:
            shutil.copy(p, tmp_path / folder / p.name)
    r = cli("info", "--json")
    defaults = json.loads(r.stdout)["default_weights"]
    assert defaults["vqgan"].endswith("weights/vqgan-emoji64.safetensors")
    r = cli("inpaint", "--images", tmp_path / "masked_image", "--masks", tmp_path / "mask64", "-o", tmp_path / "o",
            "--device", "cpu", "--grids", "none")  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["count"] == 2 and report["settings"]["code_patches"] == "training images"


def test_tokenize_and_reconstruct_use_the_shipped_vqgan_without_vqgan(cli, tmp_path):
    import shutil
    from pathlib import Path

    import torch

    from maskgit_cli.vqgan.tokens import load_token_cache

    root = Path(__file__).resolve().parents[1]
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((root / "data" / "emoji64" / "test").iterdir())[:3]:
        shutil.copy(p, images / p.name)
    shipped = root / "weights" / "vqgan-emoji64.safetensors"
    for name, extra in (("default", ()), ("named", ("--vqgan", shipped))):
        r = cli("tokenize", images, "-o", tmp_path / f"{name}.tokens", "--device", "cpu", "--workers", "0", *extra)
        assert r.exit_code == 0, r.output
    default, named = (load_token_cache(tmp_path / f"{n}.tokens") for n in ("default", "named"))
    assert default.tokens.shape == (3, 16, 16) and torch.equal(default.tokens, named.tokens)
    r = cli("reconstruct", images, "-o", tmp_path / "recon", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["psnr"] > 20 and len(list((tmp_path / "recon").glob("*.png"))) == 3


def _help_strings(path):
    """(line, text) of every help string written in ``path``: ``help=`` arguments, a ``setting()``'s help, and a
    ``help={...}`` dict's values and a ``loop_help()``'s texts (strings joined as Python joins them)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        values = [k.value for k in node.keywords if k.arg == "help"]
        if getattr(node.func, "id", None) == "setting" and len(node.args) > 2:
            values.append(node.args[2])
        if getattr(node.func, "id", None) == "loop_help":
            values += [k.value for k in node.keywords]
        for value in values:
            found += [(c.lineno, c.value) for c in ast.walk(value) if isinstance(c, ast.Constant)]
    return [(line, text) for line, text in found if isinstance(text, str)]


def test_no_help_text_writes_a_default_by_hand():
    """A default shown in a help text comes from its dataclass field (cli.common.default_help, shown_default): no
    help string in the CLI or the settings' fields spells out "[default: ...]" or "default: ..." itself."""
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "maskgit_cli"
    files = sorted((package / "cli").glob("*.py")) + [package / "decoding" / "settings.py"]
    written = []
    for path in files:
        name = str(path.relative_to(package))
        for line, text in _help_strings(path):
            if "default:" in text.lower():
                written.append(f"{name}:{line}: {text!r}")
    assert not written, "\n".join(written)


def _shown(value, option: str) -> str:
    """A default as a help text shows it: a switch by its flag, a float short."""
    if isinstance(value, bool):
        on, _, off = option.partition("/")
        return (on if value else off).lstrip("-")
    return f"{value:g}" if isinstance(value, float) else str(value)


def test_every_shown_default_is_the_dataclass_default():
    """Every option of every command: no option shows two defaults; and each option made from an inpainting
    setting shows its field's default, Typer's (the option's default) or the help's "[default: X]" of a None, with
    "; --lab: Y" where --lab sets another value."""
    import re

    import typer

    from maskgit_cli.cli import app
    from maskgit_cli.decoding.settings import LAB_SETTINGS, option_fields

    settings = {f.metadata["option"].split("/")[0]: f for f in option_fields()}
    checked = set()
    for argv, cmd in _commands(typer.main.get_command(app)):
        takes_settings = any("--lab" in p.opts for p in cmd.params) or argv == ("bench", "inpaint")
        for p in cmd.params:
            text = p.help or ""
            stated = re.findall(r"\[default: ([^]]*)\]", text)
            assert len(stated) <= 1 and not (stated and p.default is not None and p.show_default), (argv, p.name)
            f = next((settings[o] for o in p.opts if o in settings), None)
            if not takes_settings or f is None:
                continue
            option = f.metadata["option"]
            if p.default is not None:  # shown by Typer
                assert p.show_default and not stated, (argv, p.name)
                default = getattr(p.default, "value", p.default)
                assert str(default) == str(f.default), (argv, p.name, default)
            else:
                expected = f.metadata["default_help"] if f.default is None else _shown(f.default, option)
                if f.name in LAB_SETTINGS:
                    expected += f"; --lab: {_shown(LAB_SETTINGS[f.name], option)}"
                assert stated == [expected], (argv, p.name, stated, expected)
            checked.add((" ".join(argv), f.name))
    counts = {name: [c for c, _ in checked].count(name) for name, _ in checked}
    assert counts == {"inpaint": 21, "sweep": 20, "serve": 18, "bench inpaint": 1}, counts  # T, S: sweep's lists


# Bad values of every numeric option of inpaint, sweep and serve: 0, -1, nan (and inf where a finite number is due).
_BAD_DECODING = [
    ("--temperature", "0"), ("--temperature", "-1"), ("--temperature", "nan"), ("--temperature", "inf"),
    ("--total-iter", "0"), ("--total-iter", "-1"), ("--total-iter", "nan"),
    ("--sweet-spot", "0"), ("--sweet-spot", "-1"), ("--sweet-spot", "nan"),
    ("--choice-temperature", "-1"), ("--choice-temperature", "nan"),
    ("--pixel-guidance", "-1"), ("--pixel-guidance", "nan"), ("--pixel-guidance", "inf"),
    ("--dilate", "-1"), ("--dilate", "nan"), ("--seed", "nan"),
    ("--draws", "0"), ("--draws", "-1"), ("--draws", "nan"), ("--draws", "65"),
]  # fmt: skip
_BAD_INPUTS = [("--batch-size", "0"), ("--batch-size", "-1"), ("--batch-size", "nan"), ("--mask-seed", "-1"),
               ("--mask-seed", "nan")]  # fmt: skip
_BAD = (
    [("inpaint", o, v) for o, v in [*_BAD_DECODING, *_BAD_INPUTS, ("--sweet-spot", "9"), ("--num-samples", "0"),
                                    ("--num-samples", "-1"), ("--num-samples", "nan")]]
    + [("sweep", o, v) for o, v in [*_BAD_DECODING, *_BAD_INPUTS, ("--samplers", "fast"), ("--schedules", "x"),
                                    ("--sweet-spot", "9")]]
    + [("serve", o, v) for o, v in [*_BAD_DECODING, ("--sweet-spot", "9"), ("--port", "0"), ("--port", "-1"),
                                    ("--port", "nan")]]
)  # fmt: skip


@pytest.mark.parametrize(("command", "option", "value"), _BAD)
def test_every_bad_option_value_of_inpaint_sweep_serve_exits_2(cli, tmp_path, command, option, value):
    """Before anything loads: the input folder does not exist and serve's port is busy (exit 1 if the value got
    through). A value the settings refuse is one line naming the option (Typer's own refusals are its usage box)."""
    import socket

    base = {
        "inpaint": ["inpaint", "--images", tmp_path / "none", "-o", tmp_path / "o"],
        "sweep": ["sweep", "--images", tmp_path / "none", "--ref", tmp_path / "none", "-o", tmp_path / "o"],
    }
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        base["serve"] = ["serve", "--port", busy.getsockname()[1]] if option != "--port" else ["serve"]
        r = cli(*base[command], option, value)
    assert r.exit_code == 2, r.output
    if r.stderr.startswith("Error:"):
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"Error: {option}"), r.stderr
    assert not (tmp_path / "o").exists()


def test_temperature_0_is_one_line_and_exit_2(cli, tmp_path):
    r = cli("inpaint", "--images", tmp_path, "--mask-kind", "box", "-o", tmp_path / "o", "--temperature", "0")
    assert (r.exit_code, r.stderr) == (2, "Error: --temperature 0.0: must be a finite number > 0 (1 = official)\n")


def test_serve_unknown_host_exits_2(cli):
    r = cli("serve", "--host", "no.such.host.invalid", "--port", "7861")
    assert r.exit_code == 2 and r.stderr.startswith("Error: --host no.such.host.invalid: not a known address")


@pytest.mark.parametrize("grids", ["-1", "-3", "1,-2", "x"])
def test_grids_negative_or_not_a_number_exits_2(cli, image_dir, tiny_vqgan_file, tiny_transformer_file, tmp_path,
                                                grids):  # fmt: skip
    r = cli("inpaint", "--images", image_dir, "--mask-kind", "box", "--transformer", tiny_transformer_file,
            "--vqgan", tiny_vqgan_file, "-o", tmp_path / "o", "--device", "cpu", "--grids", grids)  # fmt: skip
    assert r.exit_code == 2, r.output
    error = f"Error: --grids {grids!r}: expected all, none, a count N >= 0, or indices like 0,5,9"
    assert r.stderr.splitlines()[-1] == error
    assert not (tmp_path / "o").exists()
