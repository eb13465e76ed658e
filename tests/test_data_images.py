"""Reading images (data/images.py): 16-bit and float grayscale scaled to 8 bits, decompression bombs refused."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.data.images import load_image, to_rgb
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
