"""Image and codebook metrics: PSNR, SSIM (per image, optionally restricted to a mask) and codebook usage.

Images may be given as torch tensors or numpy arrays, uint8 (0-255) or float in [0, 1], channels-first
(B,3,H,W) or channels-last (B,H,W,3); a single image (3 dims) is treated as a batch of one. Every score is
computed per image in [0, 1] space and returned as a float64 numpy array of shape (B,).

``mask`` (optional) selects the pixels that count: True / non-zero = scored. It is (B,H,W), (H,W) (shared by
the batch) or (B,1,H,W). Note the lab's mask files use 0 = hole (docs/data.md, "Masks"): for hole-only scores pass
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


_SSIM_WIN = 7  # scikit-image's default uniform window (the window sums below are written for 7)
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_SSIM_CHUNK = 8  # images per pass: small chunks keep the float64 temporaries in cache


def _reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """(N,C,H,W) padded by ``pad`` on each side like scipy.ndimage's mode='reflect' (d c b a | a b c d | d c b a).

    torch's 'reflect' does not repeat the edge sample (d c b | a b c d), so the flipped edges are built here.
    """
    x = torch.cat([x[..., :pad, :].flip(-2), x, x[..., -pad:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], dim=-1)


def _sum7(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Sums of 7 consecutive entries along ``dim`` (length L -> L-6), as 1 + 2 + 4: four adds instead of six."""
    length = x.shape[dim] - 6
    s2 = x.narrow(dim, 0, length + 5) + x.narrow(dim, 1, length + 5)  # x[i] + x[i+1]
    s4 = s2.narrow(dim, 0, length + 3) + s2.narrow(dim, 2, length + 3)  # x[i] + ... + x[i+3]
    out = s4.narrow(dim, 0, length) + s2.narrow(dim, 4, length)
    return out.add_(x.narrow(dim, 6, length))


def _ssim_map(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """Per-channel SSIM maps (B,C,H,W) float64 of channels-last batches in [0,1], as scikit-image computes them.

    ``structural_similarity(..., data_range=1)`` defaults: 7x7 uniform filter (scipy ``uniform_filter``,
    mode='reflect'), K1=0.01, K2=0.03, sample covariance (scaled by NP/(NP-1), NP=49).
    """
    pad = (_SSIM_WIN - 1) // 2
    x = _reflect_pad(torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))), pad)
    y = _reflect_pad(torch.from_numpy(np.ascontiguousarray(b.transpose(0, 3, 1, 2))), pad)
    stats = torch.stack([x, y, x * x, y * y, x * y])  # (5,B,C,H+6,W+6): filtered together
    ux, uy, uxx, uyy, uxy = _sum7(_sum7(stats, -2), -1).div_(_SSIM_WIN**2).unbind(0)
    cov_norm = _SSIM_WIN**2 / (_SSIM_WIN**2 - 1)
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2  # (K * data_range)^2 with data_range 1
    uxuy = ux * uy
    vxy = (uxy - uxuy).mul_(cov_norm)
    ux2, uy2 = ux.square_(), uy.square_()  # in place: ux, uy are not needed after this
    vx_plus_vy = (uxx + uyy - ux2 - uy2).mul_(cov_norm)  # cov_norm * (uxx - ux^2) + cov_norm * (uyy - uy^2)
    numerator = (2 * uxuy + c1).mul_(2 * vxy + c2)
    return numerator.div_((ux2 + uy2 + c1).mul_(vx_plus_vy + c2))


def ssim(a, b, mask=None) -> np.ndarray:
    """Per-image SSIM as scikit-image's ``structural_similarity(a, b, channel_axis=-1, data_range=1)`` computes it.

    7x7 uniform window, K1=0.01, K2=0.03, sample covariance, scipy's 'reflect' border; reimplemented in torch
    (float64, batched) and equal to scikit-image's values to ~1e-12. Without a mask: scikit-image's mean SSIM
    (per channel, the mean of the SSIM map with a 3-pixel border cropped; then averaged over channels). With a
    mask: the mean of the full SSIM map (channel-averaged) over the masked pixels (``nan`` when none is
    selected). Images smaller than 7x7 raise ValueError.
    """
    a, b = _pair(a, b)
    _, h, w, _ = a.shape
    if h < _SSIM_WIN or w < _SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {_SSIM_WIN}x{_SSIM_WIN} pixels (its window), got {w}x{h}")
    m = torch.from_numpy(_mask(mask, a.shape).copy()) if mask is not None else None
    crop = (_SSIM_WIN - 1) // 2
    out = torch.empty(len(a), dtype=torch.float64)
    for start in range(0, len(a), _SSIM_CHUNK):
        end = min(start + _SSIM_CHUNK, len(a))
        s = _ssim_map(a[start:end], b[start:end])
        if m is None:
            out[start:end] = s[..., crop:-crop, crop:-crop].mean(dim=(-2, -1)).mean(dim=1)
        else:
            selected = m[start:end]
            count = selected.sum(dim=(1, 2))
            total = (s.mean(dim=1) * selected).sum(dim=(1, 2))
            out[start:end] = torch.where(count > 0, total / count.clamp(min=1), math.nan)
    return out.numpy()


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
