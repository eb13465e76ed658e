"""Image grids: layout, separators, blank tiles, scaling, and the saved PNG."""

import numpy as np
import pytest
from PIL import Image

from maskgit_cli.viz import make_grid, save_grid


def test_grid_layout():
    a = np.zeros((4, 4, 3), np.uint8)
    g = make_grid([[a, a, a], [a]], pad=1)
    assert g.shape == (1 + 2 * 5, 1 + 3 * 5, 3)
    assert (g[0] == 160).all() and (g[6:10, 6:10] == 255).all()  # separator; blank tile fills the short row
    g = make_grid([[np.ones((4, 4)), None]], pad=0, scale=2)  # grayscale float, blank, upscaled
    assert g.shape == (8, 16, 3) and (g == 255).all()
    with pytest.raises(ValueError, match="must all be 4x4"):
        make_grid([[a, np.zeros((5, 5, 3), np.uint8)]])


def test_save_grid_png(tmp_path):
    p = save_grid([[np.zeros((8, 8, 3), np.uint8)]], tmp_path / "sub" / "g.png")
    assert Image.open(p).size == (12, 12)
