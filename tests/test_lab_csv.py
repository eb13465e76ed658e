"""The lab's test_gt.csv: one 64x64 image per row in HWC order; malformed files are errors naming row and value."""

from __future__ import annotations

import re

import numpy as np
import pytest

from maskgit_cli.data import lab_csv
from maskgit_cli.errors import MaskgitError


def test_csv_errors(tmp_path):
    good = ",".join(["7"] * 12288)
    cases = {
        "short": (f"h\n{good}\n{','.join(['7'] * 12000)}\n", "data row 2 (line 3) has 12000 values, expected 12288"),
        "notsquare": ("h\n1,2,3,4\n", "not H*W*3"),
        "text": (f"h\n{good}\n{good}x\n", "data row 2 (line 3), value 12288 is '7x', not a number"),
        "range": (f"h\n{good.replace('7', '300', 1)}\n", "value 1 is 300, outside 0-255"),
        "empty": ("", "empty csv"),
        "header_only": ("a,b,c\n", "no image rows"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        with pytest.raises(MaskgitError, match=re.escape(message)) as e:
            lab_csv.load_csv_images(path)
        assert str(path) in str(e.value)
    (tmp_path / "ok.csv").write_text(f"h\n{good}\n\n{good}\n")
    arr = lab_csv.load_csv_images(tmp_path / "ok.csv")
    assert arr.shape == (2, 64, 64, 3) and arr.dtype == np.uint8 and (arr == 7).all()


def test_csv_is_hwc_order(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    (tmp_path / "gt.csv").write_text("header\n" + ",".join(map(str, img.reshape(-1))) + "\n")
    np.testing.assert_array_equal(lab_csv.load_csv_images(tmp_path / "gt.csv")[0], img)
