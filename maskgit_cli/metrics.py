"""Image and codebook metrics: PSNR, SSIM (per image, optionally restricted to a mask) and codebook usage.

Images may be given as torch tensors or numpy arrays, uint8 (0-255) or float in [0, 1], channels-first
(B,3,H,W) or channels-last (B,H,W,3); a single image (3 dims) is treated as a batch of one. Every score is
computed per image in [0, 1] space and returned as a float64 numpy array of shape (B,).

``mask`` (optional) selects the pixels that count: True / non-zero = scored. It is (B,H,W), (H,W) (shared by
the batch) or (B,1,H,W). Note the lab's mask files use 0 = hole (REFERENCE §1.3): for hole-only scores pass
``mask=(lab_mask == 0)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _images(x, name: str) -> np.ndarray:
    """Any supported image batch -> float64 (B,H,W,C) in [0,1]."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.numpy() if x.dtype != torch.bfloat16 else x.float().numpy()
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"{name}: expected images (B,3,H,W) or (B,H,W,3), got shape {x.shape}")
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # channels-first -> channels-last
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    return x.astype(np.float64)


def _mask(mask, shape: tuple[int, ...]) -> np.ndarray:
    """A mask broadcast to the (B,H,W) of ``shape`` (B,H,W,C), as bool."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim == 4:  # (B,1,H,W) or (B,H,W,1)
        m = m[:, 0] if m.shape[1] == 1 else m[..., 0]
    b, h, w, _ = shape
    if m.shape[-2:] != (h, w):
        raise ValueError(f"mask of shape {m.shape} does not match images of size {h}x{w}")
    return np.broadcast_to(m.astype(bool), (b, h, w))


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _images(a, "a"), _images(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {a.shape} vs {b.shape}")
    return a, b


def psnr(a, b, mask=None) -> np.ndarray:
    """Per-image PSNR in dB with peak 1 (= 255 for uint8): 10 log10(1 / MSE) over all channels.

    Identical images give ``inf``; an image whose mask selects no pixel gives ``nan``.
    """
    a, b = _pair(a, b)
    se = ((a - b) ** 2).mean(axis=-1)  # (B,H,W): mean over channels
    if mask is None:
        mse = se.reshape(len(se), -1).mean(axis=1)
    else:
        m = _mask(mask, a.shape)
        count = m.reshape(len(m), -1).sum(axis=1)
        total = (se * m).reshape(len(se), -1).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mse = total / count
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(1.0 / mse)


def ssim(a, b, mask=None) -> np.ndarray:
    """Per-image SSIM from scikit-image's ``structural_similarity`` (7x7 uniform window, data range 1).

    Without a mask: scikit-image's mean SSIM. With a mask: the mean of its full SSIM map (channel-averaged)
    over the masked pixels (``nan`` when none is selected).
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    m = _mask(mask, a.shape) if mask is not None else None
    out = np.empty(len(a))
    for i in range(len(a)):
        if m is None:
            out[i] = structural_similarity(a[i], b[i], channel_axis=-1, data_range=1.0)
        else:
            _, smap = structural_similarity(a[i], b[i], channel_axis=-1, data_range=1.0, full=True)
            selected = smap.mean(axis=-1)[m[i]]
            out[i] = selected.mean() if selected.size else math.nan
    return out


def codebook_usage(indices, num_codes: int) -> tuple[float, float]:
    """(fraction of the ``num_codes`` codes that occur in ``indices``, perplexity of their distribution).

    Perplexity = exp(entropy) of the code frequencies: ``num_codes`` when all codes are used equally, 1 when
    a single code is used.
    """
    idx = torch.as_tensor(indices).reshape(-1).long().cpu()
    if idx.numel() == 0:
        return 0.0, 0.0
    if int(idx.min()) < 0 or int(idx.max()) >= num_codes:
        raise ValueError(f"code indices must lie in [0, {num_codes}), got [{int(idx.min())}, {int(idx.max())}]")
    counts = torch.bincount(idx, minlength=num_codes).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    perplexity = float(torch.exp(-(nz * nz.log()).sum()))
    return float((counts > 0).sum()) / num_codes, perplexity
