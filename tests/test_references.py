"""References for FID (and score/sweep): a folder, a statistics .npz (ours or a foreign mu/sigma one) and the lab's
csv give the same numbers; missing, empty, unreadable or unknown references are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from maskgit_cli.evaluation import fid, references


def test_folder_npz_and_csv_references_agree(tiny_extractor, image_sets, tmp_path, run_json, write_csv):
    by_folder = run_json("fid", image_sets / "a", image_sets / "b", "--kid")
    stats = run_json("fid-stats", image_sets / "b", "-o", tmp_path / "b.npz")
    assert stats["count"] == 16 and stats["mode"] == "clean" and stats["features_saved"]
    by_npz = run_json("fid", image_sets / "a", tmp_path / "b.npz", "--kid")
    by_csv = run_json("fid", image_sets / "a", write_csv(tmp_path / "test_gt.csv", image_sets / "b"), "--kid")
    assert by_npz["ref_kind"] == "npz" and by_csv["ref_kind"] == "csv" and by_csv["ref_count"] == 16
    assert by_npz["fid"] == pytest.approx(by_folder["fid"], rel=1e-9)
    assert by_csv["fid"] == pytest.approx(by_folder["fid"], rel=1e-9)
    assert by_npz["kid"] == pytest.approx(by_folder["kid"], rel=1e-9) == pytest.approx(by_csv["kid"], rel=1e-9)


def test_foreign_npz_with_only_mu_sigma_is_accepted_with_a_warning(tiny_extractor, image_sets, tmp_path):
    feats = fid.extract_features(references.scan_folder(image_sets / "b"), tiny_extractor, num_workers=0)
    mu, sigma = np.mean(feats, axis=0), np.cov(feats, rowvar=False)
    np.savez(tmp_path / "pytorch_fid_stats.npz", mu=mu, sigma=sigma)
    r = fid.compute_fid(image_sets / "a", tmp_path / "pytorch_fid_stats.npz", num_workers=0)
    by_folder = fid.compute_fid(image_sets / "a", image_sets / "b", num_workers=0)
    assert r["fid"] == pytest.approx(by_folder["fid"], rel=1e-9)
    assert r["ref_count"] is None and any("does not say its mode" in w for w in r["warnings"])


def test_empty_missing_and_unreadable(cli, tiny_extractor, image_sets, tmp_path, make_images):
    (tmp_path / "empty").mkdir()
    r = cli("fid", tmp_path / "empty", image_sets / "b")
    assert r.exit_code == 1 and "contains no images" in r.stderr
    r = cli("fid", image_sets / "a", tmp_path / "nope")
    assert r.exit_code == 1 and "no such file or folder" in r.stderr
    make_images(tmp_path / "bad", 3)
    (tmp_path / "bad" / "image_001.png").write_bytes(b"not a png")
    r = cli("fid", tmp_path / "bad", image_sets / "b", "--device", "cpu")
    assert r.exit_code == 1 and "image_001.png" in r.stderr and "not a readable image" in r.stderr
    (tmp_path / "ref.txt").write_text("hello")
    r = cli("fid", image_sets / "a", tmp_path / "ref.txt")
    assert r.exit_code == 1 and "expected a folder of images" in r.stderr


def test_decompression_bomb_in_a_folder_is_one_line(cli, tiny_extractor, image_sets, tmp_path, make_images):
    import struct
    import zlib

    from PIL import Image

    from maskgit_cli.errors import MaskgitError

    make_images(tmp_path / "bombs", 3)
    bomb = tmp_path / "bombs" / "image_001.png"
    Image.new("L", (1, 1)).save(bomb)
    data = bytearray(bomb.read_bytes())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    bomb.write_bytes(bytes(data))
    with pytest.raises(MaskgitError, match=r"image_001\.png: its header claims 100000x100000 pixels"):
        references.scan_folder(tmp_path / "bombs")
    r = cli("fid", tmp_path / "bombs", image_sets / "b", "--device", "cpu")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.startswith("Error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "image_001.png" in r.stderr and "100000x100000" in r.stderr


def test_a_folder_of_photos_turned_by_exif_has_the_size_they_are_shown_at(tmp_path):
    from PIL import Image

    (tmp_path / "photos").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 30 wide, 20 high; shown 20 wide, 30 high
    Image.new("RGB", (30, 20)).save(tmp_path / "photos" / "a.jpg", exif=exif.tobytes())
    Image.new("RGB", (20, 30)).save(tmp_path / "photos" / "b.png")
    found = references.scan_folder(tmp_path / "photos")
    assert found.size == (30, 20) and found.load_all().shape == (2, 30, 20, 3)


@pytest.mark.parametrize("report", ["[" * 100_000 + "]" * 100_000, '{"settings": [], "images": 5}', "\x00not json"])
def test_a_hostile_report_beside_a_results_folder_is_not_an_inpaint_report(tmp_path, make_images, report):
    """report.json is read back to pick each image's sample 0; one that is not an inpaint report (deeply nested,
    wrong types, not JSON) leaves the folder's images as they are (issue 28: metadata is untrusted)."""
    files = make_images(tmp_path / "results" / "images", 3)
    (tmp_path / "results" / "report.json").write_text(report)
    assert references.result_files(tmp_path / "results" / "images") == sorted(files)


def test_a_statistics_file_that_would_expand_far_past_its_size_is_refused_before_numpy_reads_it(tmp_path, monkeypatch):
    """An .npz is a zip: one whose records declare far more than its size on disk (a zip bomb) is one line, and
    numpy never expands it (issue 28 item 16, the statistics files `maskgit fid` reads)."""
    import zipfile

    bomb = tmp_path / "stats.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("sigma.npy", bytes(160 << 20))  # 160 MiB of zeros, a few hundred KB on disk
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load read the bomb"))
    with pytest.raises(references.MaskgitError, match=r"statistics file .*stats\.npz: its records would expand"):
        references.load_stats(bomb)
