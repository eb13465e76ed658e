"""Reading images (data/images.py): 16-bit and float grayscale scaled to 8 bits, decompression bombs refused."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.data.images import load_image, read_image, shown_size, to_rgb, upright
from maskgit_cli.errors import MaskgitError


def write_bomb(path, width=100_000, height=100_000):
    """A 1x1 PNG whose header is patched to claim ``width`` x ``height`` pixels (IHDR CRC fixed)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_16bit_grayscale_png_is_scaled_not_white(tmp_path):
    gradient = np.round(np.linspace(0, 65535, 64 * 64)).astype(np.uint16).reshape(64, 64)
    img = Image.fromarray(gradient)
    assert img.mode == "I;16"
    img.save(tmp_path / "g16.png")
    loaded = load_image(tmp_path / "g16.png", 64)
    expected = np.round(gradient / 257).astype(np.uint8)
    assert loaded.dtype == np.uint8 and loaded.shape == (64, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(loaded[..., c], expected)
    assert loaded.min() == 0 and loaded.max() == 255 and len(np.unique(loaded)) > 200


def test_32bit_integer_and_float_grayscale(tmp_path):
    wide = np.array([[-5, 0, 257, 65535, 70000, 30000]], dtype=np.int32)  # clipped to 0..65535, then /257
    np.testing.assert_array_equal(
        np.asarray(to_rgb(Image.fromarray(wide)))[..., 0], [[0, 0, 1, 255, 255, round(30000 / 257)]]
    )
    narrow = np.array([[0, 10, 128, 255]], dtype=np.int32)  # already 8-bit values: as is
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(narrow)))[..., 1], narrow)
    unit = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)  # max <= 1: [0, 1]
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(unit)))[..., 2], [[0, 64, 128, 255]])
    byte = np.array([[0.0, 2.0, 127.6, 255.0, 300.0]], dtype=np.float32)  # max > 1: [0, 255], clipped
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(byte)))[..., 0], [[0, 2, 128, 255, 255]])
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    loaded = load_image(tmp_path / "f.tif", 64)
    np.testing.assert_array_equal(loaded[..., 0], np.round(ramp * 255).astype(np.uint8))


def test_decompression_bomb_is_one_line_naming_file_and_size(tmp_path):
    bomb = write_bomb(tmp_path / "bomb.png")
    with pytest.raises(MaskgitError) as e:
        load_image(bomb)
    message = str(e.value)
    assert "bomb.png" in message and "100000x100000" in message and "\n" not in message
    assert "decompression bomb" in message
    # above Pillow's limit but under twice it Pillow only warns: refused as well
    with pytest.raises(MaskgitError, match=r"10000x10000"):
        load_image(write_bomb(tmp_path / "warned.png", 10_000, 10_000))


def write_rotated_jpeg(path, stored: np.ndarray, orientation: int = 6):
    """``stored`` (H,W,3) saved as a JPEG whose EXIF says how to show it (6: turned 90 degrees clockwise, as phones
    write portrait photos)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, quality=100, exif=exif.tobytes())
    return path


def test_exif_orientation_is_applied_as_viewers_show_it(tmp_path):
    stored = np.zeros((64, 80, 3), np.uint8)  # stored 80 wide, 64 high: left half black, right half white
    stored[:, 40:] = 255
    path = write_rotated_jpeg(tmp_path / "phone.jpg", stored)
    shown = load_image(path)
    assert shown.shape == (80, 64, 3)  # shown 64 wide, 80 high
    assert shown[:36].max() < 40 and shown[44:].min() > 215  # turned clockwise: the black half on top
    assert read_image(path).getexif().get(0x0112) is None  # the orientation is applied once, not again
    assert shown_size(read_image(path, header=True), header=True) == (64, 80)
    assert read_image(tmp_path / "phone.jpg", header=True).size == (80, 64)  # the header alone decodes nothing
    plain = tmp_path / "plain.png"
    Image.fromarray(stored).save(plain)
    assert load_image(plain).shape == (64, 80, 3) and upright(Image.open(plain)).size == (80, 64)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's own, on opening the garbage one
def test_damaged_exif_is_shown_as_stored(tmp_path):
    img = Image.new("RGB", (8, 4))
    for bad in (0, 9, 300):
        exif = Image.Exif()
        exif[0x0112] = bad
        img.save(tmp_path / "bad.jpg", exif=exif.tobytes())
        assert load_image(tmp_path / "bad.jpg").shape == (4, 8, 3)
    img.save(tmp_path / "garbage.jpg", exif=b"Exif\x00\x00MM\x00*garbage")
    assert load_image(tmp_path / "garbage.jpg").shape == (4, 8, 3)


def test_the_shown_size_from_headers_alone(tmp_path, monkeypatch):
    from PIL import ImageFile

    exif = Image.Exif()
    exif[0x0112] = 8
    for name in ("a.png", "a.tif", "a.jpg", "a.webp"):
        Image.new("RGB", (30, 20)).save(tmp_path / name, exif=exif.tobytes())
        assert load_image(tmp_path / name).shape == (30, 20, 3), name
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail(f"decoded {self.size}"))
    for name in ("a.png", "a.tif", "a.jpg", "a.webp"):
        assert shown_size(read_image(tmp_path / name, header=True), header=True) == (20, 30), name
