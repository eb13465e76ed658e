"""Pictures for people: tiled image grids and training curves (matplotlib's Agg canvas, no display needed)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SEPARATOR = (160, 160, 160)  # mid gray: visible between white-background emoji and dark photos alike


def _tile(img, size: tuple[int, int] | None) -> np.ndarray:
    """A tile as uint8 (H,W,3); None is a blank tile; grayscale (H,W) (e.g. a mask) becomes RGB."""
    if img is None:
        if size is None:
            raise ValueError("a grid needs at least one image")
        return np.full((*size, 3), 255, dtype=np.uint8)
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)  # channels-first
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    return a


def make_grid(rows: Sequence[Sequence], pad: int = 2, color=SEPARATOR, scale: int = 1) -> np.ndarray:
    """Tile ``rows`` (lists of images) into one uint8 (H,W,3) array with ``pad``-pixel separators.

    Images are uint8 or [0,1] float arrays, (H,W,3), (3,H,W) or grayscale (H,W); all the same size. Shorter
    rows are completed with blank (white) tiles; ``None`` is a blank tile. ``scale`` enlarges every tile by
    an integer factor (nearest neighbour), which helps with 64x64 images.
    """
    first = next((img for row in rows for img in row if img is not None), None)
    if first is None:
        raise ValueError("a grid needs at least one image")
    h, w = _tile(first, None).shape[:2]
    ncols = max(len(row) for row in rows)
    th, tw = h * scale, w * scale
    grid = np.empty((pad + len(rows) * (th + pad), pad + ncols * (tw + pad), 3), dtype=np.uint8)
    grid[:] = np.asarray(color, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c in range(ncols):
            tile = _tile(row[c] if c < len(row) else None, (h, w))
            if tile.shape[:2] != (h, w):
                raise ValueError(
                    f"grid images must all be {h}x{w}; row {r} column {c} is {tile.shape[0]}x{tile.shape[1]}"
                )
            if scale != 1:
                tile = tile.repeat(scale, axis=0).repeat(scale, axis=1)
            y, x = pad + r * (th + pad), pad + c * (tw + pad)
            grid[y : y + th, x : x + tw] = tile
    return grid


def save_grid(
    rows: Sequence[Sequence],
    path: str | Path,
    pad: int = 2,
    color=SEPARATOR,
    scale: int = 1,
    title: str | None = None,
) -> Path:
    """:func:`make_grid` written as a PNG at ``path`` (parent folders created), under ``title`` (lines of black
    text on a white band) when one is given. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(rows, pad=pad, color=color, scale=scale)
    if title:
        grid = np.concatenate([_text_band(title, grid.shape[1]), grid])
    Image.fromarray(grid).save(path)
    return path


def _text_band(text: str, width: int) -> np.ndarray:
    """Lines of black text on a white (H,width,3) band, in Pillow's built-in font (no font files needed)."""
    font = ImageFont.load_default()
    lines = text.splitlines()
    line_height = 12
    band = Image.new("RGB", (width, 4 + line_height * len(lines)), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    for k, line in enumerate(lines):
        draw.text((3, 2 + k * line_height), line, fill=(0, 0, 0), font=font)
    return np.asarray(band)


# Record fields that are coordinates or bookkeeping, not curves.
_NOT_CURVES = {"kind", "step", "epoch", "time", "elapsed_s"}


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl file (a truncated last line, e.g. from a crash, is ignored)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def plot_curves(metrics_path: str | Path, out_path: str | Path, keys: Sequence[str] | None = None) -> Path | None:
    """Plot every numeric field of a metrics.jsonl against ``step``: one panel per field, one line per record
    ``kind`` (train, val, ...), so e.g. train and val ``loss`` share a panel. Returns None when there is nothing
    to plot yet."""
    # matplotlib only here, where a curve is drawn: every user of the grids above would pay its import otherwise
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = [r for r in read_jsonl(metrics_path) if "step" in r]
    if keys is None:
        keys = []
        for r in records:
            for k, v in r.items():
                if k not in _NOT_CURVES and k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                    keys.append(k)
    if not records or not keys:
        return None
    kinds = sorted({r.get("kind", "train") for r in records}, key=lambda k: (k != "train", k))
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for kind in kinds:
            pts = [(r["step"], r[key]) for r in records if r.get("kind", "train") == kind and r.get(key) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, "o-" if kind != "train" else "-", markersize=3, linewidth=1.2, label=kind)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(kinds) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    fig.savefig(tmp)
    tmp.replace(out_path)
    return out_path
