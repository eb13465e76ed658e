"""The lab's per-step pictures and pixel rounding, as its starter code writes them (docs/lab.md, "The lab's
pictures"), for `maskgit inpaint --lab` (``--layout lab``).

The starter code keeps two preallocated tensors per image and saves them with torchvision's ``save_image``:
``mask_scheduling/test_{i}.png`` holds T tiles of the latent mask after each step (token resolution, white =
known, black = still masked; ten tiles to a row) and ``imga/test_{i}.png`` T + 1 tiles, the masked input then the
image decoded after each step (seven to a row, so T = 8 makes two rows). Tiles of steps not run (sweet spot
S < T) keep their initial zeros: black. ``save_image`` lays tiles out with a 2-pixel black border and turns
[0, 1] floats into bytes as floor(x * 255 + 0.5), clamped.
"""

from __future__ import annotations

import math

import numpy as np

MASK_TILES_PER_ROW = 10  # the starter code's save_image(maska, nrow=10)
IMAGE_TILES_PER_ROW = 7  # save_image(imga, nrow=7)
PADDING = 2  # torchvision's make_grid default, black


def tile_grid(tiles: np.ndarray, per_row: int) -> np.ndarray:
    """(N,H,W,C) -> (rows * (H+2) + 2, cols * (W+2) + 2, C): the tiles row by row with a 2-pixel black border, as
    torchvision's ``make_grid`` lays them out (a single tile is returned as it is)."""
    n, h, w, c = tiles.shape
    if n == 1:
        return tiles[0]
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + PADDING) + PADDING, cols * (w + PADDING) + PADDING, c), dtype=tiles.dtype)
    for k in range(n):
        y, x = divmod(k, cols)
        top, left = y * (h + PADDING) + PADDING, x * (w + PADDING) + PADDING
        grid[top : top + h, left : left + w] = tiles[k]
    return grid


def mask_picture(step_masks: list[np.ndarray], total_iter: int) -> np.ndarray:
    """``mask_scheduling/test_{i}.png``, uint8 (H,W,3): ``step_masks`` (h,w) bool, True = still masked after each
    step run; ``total_iter`` tiles, black for the steps not run."""
    h, w = np.asarray(step_masks[0]).shape
    tiles = np.zeros((total_iter, h, w, 3), dtype=np.uint8)
    for step, masked in enumerate(step_masks):
        tiles[step] = np.where(np.asarray(masked, dtype=bool), 0, 255)[..., None]
    return tile_grid(tiles, MASK_TILES_PER_ROW)


def image_picture(masked_input: np.ndarray, step_images: list[np.ndarray], total_iter: int) -> np.ndarray:
    """``imga/test_{i}.png``, uint8 (H,W,3): the masked input (H,W,3) uint8 then the image decoded after each step
    run (uint8, rounded half up: ``to_uint8(..., "half-up")``); ``total_iter`` + 1 tiles, black for the steps not
    run."""
    tiles = np.zeros((total_iter + 1, *masked_input.shape), dtype=np.uint8)
    tiles[0] = masked_input
    for step, image in enumerate(step_images):
        tiles[step + 1] = image
    return tile_grid(tiles, IMAGE_TILES_PER_ROW)
