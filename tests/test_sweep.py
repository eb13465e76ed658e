"""`maskgit sweep`: the grid, the outputs, PSNR fallback and the FID path (injected extractor), and bad input."""

from __future__ import annotations

import csv
import json
import shlex

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.cli.inpaint import parse_int_list, parse_schedules
from maskgit_cli.errors import MaskgitError
from maskgit_cli.evaluation.sweep import make_cells


@pytest.fixture
def lab(tmp_path, make_test_set, tiny_transformer_file):
    """A tiny lab-layout test set: ground truth, masks, masked images (gray holes); and a tiny transformer
    (``tiny_transformer_file`` is tmp_path/transformer.safetensors)."""
    return make_test_set(tmp_path, 4)


def sweep(cli, lab, vqgan, out, *extra, ref=None, masks=True):
    args = ["sweep", "--images", lab / "masked_image", "--ref", ref or lab / "gt"]
    args += ["--transformer", lab / "transformer.safetensors", "--vqgan", vqgan, "-o", out, "--device", "cpu"]
    if masks:
        args += ["--masks", lab / "mask64"]
    return cli(*args, *extra)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_grid_outputs_psnr_fallback_and_best_line(cli, lab, tiny_vqgan_file, no_weights, tmp_path):
    out = tmp_path / "out"
    r = sweep(
        cli,
        lab,
        tiny_vqgan_file,
        out,
        *("--schedules", "cosine,uniform", "--total-iter", "2,4", "--sweet-spot", "1,3", "--save-images"),
    )
    assert r.exit_code == 0, r.output
    # S <= T only: T=2 -> S=1 (S=3 skipped, said on stderr); T=4 -> S=1,3; for both schedules (alias -> linear)
    rows = read_rows(out / "sweep.csv")
    cells = [(row["schedule"], int(row["total_iter"]), int(row["sweet_spot"])) for row in rows]
    assert cells == [(s, t, k) for s in ("cosine", "linear") for t, k in ((2, 1), (4, 1), (4, 3))]
    assert "skipping sweet spot 3 for --total-iter 2" in r.stderr
    # no Inception: PSNR/SSIM, and one line saying why FID was skipped
    notes = [line for line in r.stdout.splitlines() if "FID skipped" in line]
    assert len(notes) == 1 and "hole PSNR" in notes[0] and "inception-2015-12-05.pt" in notes[0]
    assert all(row["fid"] == "" and float(row["psnr_hole"]) > 0 and 0 < float(row["ssim"]) <= 1 for row in rows)
    assert all(float(row["seconds"]) > 0 and float(row["images_per_second"]) > 0 for row in rows)
    # one step fills every token: S = 1 does not depend on the schedule or T, and is decoded once
    ones = [row for row in rows if row["sweet_spot"] == "1"]
    assert len({row["psnr_hole"] for row in ones}) == 1
    assert [row["same_as"] for row in ones] == ["", "cosine_T2_S1", "cosine_T2_S1", "cosine_T2_S1"]
    # best = highest hole PSNR, marked in the csv, the json and the printed lines
    best = max(rows, key=lambda row: float(row["psnr_hole"]))
    assert [row["best"] for row in rows].count("True") == 1 and best["best"] == "True"
    report = json.loads((out / "sweep.json").read_text())
    assert report["metric"] == "psnr_hole" and report["count"] == 4 and len(report["cells"]) == 6
    assert (report["best"]["schedule"], report["best"]["total_iter"]) == (best["schedule"], int(best["total_iter"]))
    assert Image.open(out / "sweep.png").size[0] > 600
    best_line = next(line for line in r.stdout.splitlines() if line.startswith("best: "))
    assert f"--schedule {best['schedule']} --total-iter {best['total_iter']}" in best_line
    assert "┏" in r.stdout and "┏" not in r.stderr  # the Rich table is a result: stdout

    # the printed command is ready to run and reproduces the sweep's images for that cell
    command = next(line for line in r.stdout.splitlines() if line.startswith("run it: maskgit inpaint "))
    args = shlex.split(command.removeprefix("run it: maskgit "))
    args[args.index("-o") + 1] = str(tmp_path / "rerun")
    r2 = cli(*args, "--grids", "all", "--device", "cpu")
    assert r2.exit_code == 0, r2.output
    cell_name = f"{best['schedule']}_T{best['total_iter']}_S{best['sweet_spot']}"
    cell = out / "images" / cell_name
    names = sorted(p.name for p in cell.iterdir())
    assert names == [f"image_{i:03d}.png" for i in range(4)]
    for name in names:
        assert np.array_equal(
            np.asarray(Image.open(cell / name)), np.asarray(Image.open(tmp_path / "rerun" / "images" / name))
        )
    # --save-images also writes every cell's step grids, the same pictures inpaint writes
    grids = sorted(p.name for p in (out / "steps" / cell_name).iterdir())
    assert grids == sorted(f"image_{i:03d}_{kind}.png" for i in range(4) for kind in ("mask", "image"))
    for name in grids:
        assert (out / "steps" / cell_name / name).read_bytes() == (tmp_path / "rerun" / "steps" / name).read_bytes()
    assert len(list((out / "steps").iterdir())) == len(rows)


def test_fid_path_with_injected_extractor_and_lab_csv(cli, lab, tiny_vqgan_file, tiny_extractor, write_csv, tmp_path):
    csv_ref = write_csv(tmp_path / "test_gt.csv", lab / "gt")
    out = tmp_path / "out"
    r = sweep(
        cli,
        lab,
        tiny_vqgan_file,
        out,
        "--schedules",
        "square,cosine",
        "--total-iter",
        "3",
        "--kid",
        "--json",
        ref=csv_ref,
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["metric"] == "fid" and report["metric_note"].startswith("metric: FID and KID")
    assert report["fid"]["feature_extractor"] == "test-tiny-conv" and report["fid"]["comparable_to_lab"] is False
    cells = report["cells"]
    assert [(c["schedule"], c["total_iter"], c["sweet_spot"]) for c in cells] == [("square", 3, 3), ("cosine", 3, 3)]
    assert all(c["fid"] >= 0 and c["kid"] is not None and c["psnr_hole"] is not None for c in cells)
    assert report["best"] == min(cells, key=lambda c: c["fid"])
    assert (out / "ref_fid_stats.npz").exists() and (out / "sweep.png").exists() and not (out / "images").exists()
    rows = read_rows(out / "sweep.csv")
    assert [float(row["fid"]) for row in rows] == pytest.approx([c["fid"] for c in cells])
    # the statistics file is reusable: maskgit fid against it, and a second sweep with it as REF (FID only)
    r2 = sweep(
        cli,
        lab,
        tiny_vqgan_file,
        tmp_path / "o2",
        "--schedules",
        "square",
        "--total-iter",
        "3",
        ref=out / "ref_fid_stats.npz",
    )
    assert r2.exit_code == 0, r2.output
    again = read_rows(tmp_path / "o2" / "sweep.csv")[0]
    assert float(again["fid"]) == pytest.approx(cells[0]["fid"]) and again["psnr_hole"] == ""


def test_parsing_helpers():
    assert parse_schedules(None)[:2] == ["cosine", "linear"] and len(parse_schedules("all")) == 8
    assert parse_schedules("Pow2, cosine,square") == ["square", "cosine"]
    assert parse_int_list("8,4,4,12", "--total-iter") == [4, 8, 12] and parse_int_list(None, "--x") is None
    cells, skipped = make_cells(["cosine"], [2, 8], [1, 3, 8])
    assert cells == [("cosine", 2, 1), ("cosine", 8, 1), ("cosine", 8, 3), ("cosine", 8, 8)]
    assert skipped == [(2, 3), (2, 8)]
    assert make_cells(["a", "b"], [4], None)[0] == [("a", 4, 4), ("b", 4, 4)]
    with pytest.raises(MaskgitError, match="no cell to run"):
        make_cells(["cosine"], [2], [3])


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--schedules", "cosine,bogus"), "--schedules: unknown schedule 'bogus'; valid names: cosine, linear"),
        (("--schedules", "cosine,,linear"), "--schedules 'cosine,,linear': empty name"),
        (("--total-iter", "4,x"), "--total-iter '4,x': expected comma-separated whole numbers"),
        (("--sweet-spot", "0,2"), "--sweet-spot '0,2': every value must be at least 1"),
        (("--total-iter", "2", "--sweet-spot", "3,4"), "no cell to run"),
        (("--metric", "fid"), "Inception weights for --mode clean not found"),
        (("--metric", "fid", "--fid-mode", "legacy_pytorch"), "pt_inception-2015-12-05-6726825d.pth"),
        (("--metric", "psnr", "--kid"), "--kid needs FID"),
    ],
)
def test_option_errors_are_one_line(cli, lab, tiny_vqgan_file, no_weights, tmp_path, extra, message):
    r = sweep(cli, lab, tiny_vqgan_file, tmp_path / "out", *extra)
    bad_list = extra[0] in ("--schedules", "--total-iter", "--sweet-spot")
    assert r.exit_code == (2 if bad_list else 1) and r.stdout == ""  # a bad option value exits 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], r.stderr
    if "Inception" in message or "pth" in message:
        assert "--inception" in lines[0]  # names the file and where to put it
    assert not (tmp_path / "out").exists()


def test_mismatched_counts_and_bad_refs(cli, lab, tiny_vqgan_file, no_weights, tmp_path, make_images):
    make_images(tmp_path / "gt3", 3, seed=1)
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2), sigma=np.eye(2))
    results = {
        "4 images in --images but 3 images in --ref": sweep(
            cli, lab, tiny_vqgan_file, tmp_path / "o", ref=tmp_path / "gt3"
        ),
        "no such file or folder": sweep(cli, lab, tiny_vqgan_file, tmp_path / "o", ref=tmp_path / "missing"),
        "holds FID statistics only: this needs the images": sweep(
            cli, lab, tiny_vqgan_file, tmp_path / "o", "--mask-kind", "box", ref=tmp_path / "stats.npz", masks=False
        ),
        "give --masks DIR or --mask-kind KIND, not both": sweep(
            cli, lab, tiny_vqgan_file, tmp_path / "o", "--mask-kind", "box"
        ),
    }
    (lab / "mask64" / "mask_003.png").unlink()
    results["but 3 masks in"] = sweep(cli, lab, tiny_vqgan_file, tmp_path / "o")
    for message, r in results.items():
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 1 and len(lines) == 1 and message in lines[0], (message, r.stderr)
    assert not (tmp_path / "o").exists()


def test_lab_settings_carry_into_the_printed_lines(cli, lab, tiny_vqgan, tmp_path, no_weights):
    import dataclasses

    from maskgit_cli.vqgan.model import VQGAN
    from maskgit_cli.weights import save_model

    config = dataclasses.replace(tiny_vqgan.config, test_mean=(0.45, 0.4, 0.35), test_std=(0.3, 0.28, 0.26))
    model = VQGAN(config)
    model.load_state_dict(tiny_vqgan.state_dict())
    save_model(tmp_path / "lab-vqgan.safetensors", model, "vqgan")
    out = tmp_path / "s"
    r = sweep(cli, lab, tmp_path / "lab-vqgan.safetensors", out, "--lab", "--schedules", "cosine", "--fid-mode",
              "legacy_pytorch", "--dilate", "1")  # fmt: skip
    assert r.exit_code == 0, r.output
    run_it = next(line for line in r.stdout.splitlines() if line.startswith("run it: "))
    assert " --lab " in run_it and "--dilate 1" in run_it and "--pixel-guidance" not in run_it
    score_it = next(line for line in r.stdout.splitlines() if line.startswith("score it: "))
    assert score_it == f"score it: maskgit fid {out}/best/test_results {lab / 'gt'} --mode legacy_pytorch"
    settings = json.loads((out / "sweep.json").read_text())["settings"]
    assert settings["normalization"] == "test" and settings["vqgan_mean"] == [0.45, 0.4, 0.35]
    # the output folder is never mixed: a second sweep into it needs --overwrite
    r = sweep(cli, lab, tmp_path / "lab-vqgan.safetensors", out, "--schedules", "cosine")
    assert r.exit_code == 1 and "already holds results" in r.stderr and "--overwrite" in r.stderr
    r = sweep(cli, lab, tmp_path / "lab-vqgan.safetensors", out, "--schedules", "linear", "--overwrite")
    assert r.exit_code == 0, r.output
    assert [row["schedule"] for row in read_rows(out / "sweep.csv")] == ["linear"]


def test_samplers_are_a_grid_dimension_and_the_best_lines_name_the_sampler(
    cli, lab, tiny_vqgan_file, no_weights, tmp_path
):
    out = tmp_path / "out"
    grid = (
        "--schedules",
        "cosine,linear",
        "--total-iter",
        "4",
        "--sweet-spot",
        "1,3",
        "--samplers",
        "confidence,halton",
    )
    r = sweep(cli, lab, tiny_vqgan_file, out, *grid)
    assert r.exit_code == 0, r.output
    rows = read_rows(out / "sweep.csv")
    cells = [(row["sampler"], row["schedule"], int(row["sweet_spot"])) for row in rows]
    assert cells == [(a, s, k) for a in ("confidence", "halton") for s in ("cosine", "linear") for k in (1, 3)]
    # computed once: S = 1 for every sampler and schedule; halton for every schedule at a given S
    same = {(row["sampler"], row["schedule"], row["sweet_spot"]): row["same_as"] for row in rows}
    assert same == {
        ("confidence", "cosine", "1"): "",
        ("confidence", "cosine", "3"): "",
        ("confidence", "linear", "1"): "cosine_T4_S1",
        ("confidence", "linear", "3"): "",
        ("halton", "cosine", "1"): "cosine_T4_S1",
        ("halton", "cosine", "3"): "",
        ("halton", "linear", "1"): "cosine_T4_S1",
        ("halton", "linear", "3"): "halton_cosine_T4_S3",
    }
    by = {(row["sampler"], row["schedule"], row["sweet_spot"]): row for row in rows}
    assert by["halton", "linear", "3"]["psnr_hole"] == by["halton", "cosine", "3"]["psnr_hole"]
    report = json.loads((out / "sweep.json").read_text())
    assert [c["sampler"] for c in report["cells"]] == [row["sampler"] for row in rows]
    assert report["settings"]["samplers"] == ["confidence", "halton"]
    best = next(row for row in rows if row["best"] == "True")
    best_line = next(line for line in r.stdout.splitlines() if line.startswith("best: "))
    assert best_line.startswith(f"best: --sampler {best['sampler']} --schedule {best['schedule']} --total-iter 4")
    run_it = next(line for line in r.stdout.splitlines() if line.startswith("run it: "))
    assert ("--sampler halton" in run_it) == (best["sampler"] == "halton") and "--sampler confidence" not in run_it

    # --sampler halton alone: a halton sweep; its run-it line reproduces the cell's images with `inpaint`
    out2 = tmp_path / "halton"
    r = sweep(cli, lab, tiny_vqgan_file, out2, "--sampler", "halton", "--schedules", "cosine", "--total-iter", "3",
              "--save-images")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert [row["sampler"] for row in read_rows(out2 / "sweep.csv")] == ["halton"]
    command = next(line for line in r.stdout.splitlines() if line.startswith("run it: maskgit inpaint "))
    assert "--sampler halton --schedule cosine --total-iter 3 --sweet-spot 3" in command
    args = shlex.split(command.removeprefix("run it: maskgit "))
    args[args.index("-o") + 1] = str(tmp_path / "rerun")
    r2 = cli(*args, "--grids", "none", "--device", "cpu")
    assert r2.exit_code == 0, r2.output
    assert json.loads((tmp_path / "rerun" / "report.json").read_text())["settings"]["decode"]["sampler"] == "halton"
    cell = out2 / "images" / "halton_cosine_T3_S3"
    for name in sorted(p.name for p in cell.iterdir()):
        assert np.array_equal(
            np.asarray(Image.open(cell / name)), np.asarray(Image.open(tmp_path / "rerun" / "images" / name))
        )
    r = sweep(cli, lab, tiny_vqgan_file, tmp_path / "bad", "--samplers", "confidence,bogus")
    assert r.exit_code == 2 and "--samplers 'confidence,bogus': unknown sampler 'bogus'" in r.stderr


def test_the_run_it_line_states_every_setting_and_reruns_the_cell(cli, lab, tiny_vqgan_file, no_weights, tmp_path):
    """Every non-default setting reaches the run-it line (--blend none was once left out): rerun, it gives the
    cell's images."""
    out = tmp_path / "out"
    extra = ("--blend", "none", "--pixel-guidance", "20", "--temperature", "0.7", "--seed", "3", "--dilate", "1")
    r = sweep(cli, lab, tiny_vqgan_file, out, "--schedules", "cosine", "--total-iter", "3", "--save-images", *extra)
    assert r.exit_code == 0, r.output
    command = next(line for line in r.stdout.splitlines() if line.startswith("run it: maskgit inpaint "))
    assert command.endswith("--schedule cosine --total-iter 3 --sweet-spot 3 --dilate 1 --pixel-guidance 20 "
                            "--temperature 0.7 --seed 3 --blend none"), command  # fmt: skip
    args = shlex.split(command.removeprefix("run it: maskgit "))
    args[args.index("-o") + 1] = str(tmp_path / "rerun")
    r2 = cli(*args, "--grids", "none", "--device", "cpu")
    assert r2.exit_code == 0, r2.output
    assert json.loads((tmp_path / "rerun" / "report.json").read_text())["settings"]["blend"] == "none"
    cell = out / "images" / "cosine_T3_S3"
    for name in sorted(p.name for p in cell.iterdir()):
        assert np.array_equal(
            np.asarray(Image.open(cell / name)), np.asarray(Image.open(tmp_path / "rerun" / "images" / name))
        )


def test_a_tie_for_the_best_cell_is_said():
    """Cells whose scores are equal are named in the note (a cell that reuses another's images is no tie of its own);
    the first in grid order is marked best."""
    from maskgit_cli.evaluation.sweep_scores import rank_cells

    def row(schedule, t, s, psnr, same_as=None):
        return {"schedule": schedule, "total_iter": t, "sweet_spot": s, "psnr_hole": psnr, "psnr": psnr,
                "same_as": same_as}  # fmt: skip

    ref = type("Ref", (), {"label": "gt"})()
    rows = [row("cosine", 8, 1, 20.0), row("linear", 8, 1, 20.0, "cosine_T8_S1"), row("cosine", 8, 3, 21.5),
            row("square", 8, 3, 21.5), row("linear", 8, 3, 21.0), row("square", 8, 8, 21.5)]  # fmt: skip
    key, best, note = rank_cells(rows, None, "clean", False, ref, "--metric psnr")
    assert key == "psnr_hole" and best is rows[2] and [r["best"] for r in rows] == [False, False, True] + [False] * 3
    assert note.endswith("; 3 cells tie for the best psnr_hole (cosine T8 S3, square T8 S3, square T8 S8): the first "
                         "is marked best")  # fmt: skip
    _, best, note = rank_cells(rows[:2] + rows[4:5], None, "clean", False, ref, "--metric psnr")
    assert best is rows[4] and "tie" not in note
