"""The lab's ``test_gt.csv`` (docs/data.md, "The lab's files"): the test set's ground truth as one csv.

A header row, then one row of H*W*3 values 0-255 (HWC order) per square image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskgit_cli.errors import MaskgitError, require_file


def load_csv_images(path: str | Path) -> np.ndarray:
    """The lab's ``test_gt.csv``: a header row, then one row of H*W*3 values 0-255 (HWC) per square image.

    Returns uint8 (N,H,W,3). Errors name the file and the row (data rows count from 1; line = file line).
    """
    path = Path(path)
    require_file(path)
    rows: list[np.ndarray] = []
    length = side = None
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = f.readline()
            if not header.strip():
                raise MaskgitError(f"{path}: empty csv (expected a header row, then one row of pixel values per image)")
            for line_no, line in enumerate(f, start=2):
                line = line.strip()
                if not line:
                    continue
                row_no = len(rows) + 1
                cells = line.split(",")
                if length is None:
                    side = int(round((len(cells) / 3) ** 0.5))
                    if 3 * side * side != len(cells):
                        raise MaskgitError(
                            f"{path}: data row {row_no} (line {line_no}) has {len(cells)} values, which is not "
                            "H*W*3 of a square image (the lab's 64x64 images have 12288)"
                        )
                    length = len(cells)
                elif len(cells) != length:
                    raise MaskgitError(
                        f"{path}: data row {row_no} (line {line_no}) has {len(cells)} values, expected {length} "
                        f"({side}x{side}x3, like data row 1)"
                    )
                try:
                    values = np.array(cells, dtype=np.float64)
                except ValueError:
                    col, bad = next((i, c) for i, c in enumerate(cells) if not _is_number(c))
                    raise MaskgitError(
                        f"{path}: data row {row_no} (line {line_no}), value {col + 1} is {bad.strip()[:20]!r}, "
                        "not a number"
                    ) from None
                if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
                    col = int(np.flatnonzero(~np.isfinite(values) | (values < 0) | (values > 255))[0])
                    raise MaskgitError(
                        f"{path}: data row {row_no} (line {line_no}), value {col + 1} is {cells[col].strip()}, "
                        "outside 0-255"
                    )
                rows.append(np.rint(values).astype(np.uint8).reshape(side, side, 3))
    except UnicodeDecodeError as e:
        raise MaskgitError(f"{path}: not a text csv ({e})") from None
    if not rows:
        raise MaskgitError(f"{path}: no image rows after the header")
    return np.stack(rows)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
