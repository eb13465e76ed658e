"""Poisson blending of the generated pixels into the known ones (`--blend poisson`, the default with `--composite`).

Pasting the decoded holes next to the known pixels leaves a seam: the VQGAN's decode of the regenerated tokens
differs from the input also at the known pixels those tokens cover, so colours jump at the holes' edge. Poisson
image editing (Perez, Gangnet and Blake, "Poisson Image Editing", SIGGRAPH 2003, seamless cloning) keeps the
decoded image's gradients inside the holes and the known pixels at their edge: inside the holes the result is

    decoded + u,   where u is harmonic (discrete Laplacian 0) in the holes and u = known - decoded at the known
                   pixels next to them

(4-neighbour Laplacian; pixels outside the image do not count, so holes at the border are free there). Known pixels
are returned unchanged, the result is clipped to [0, 1]. Pure tensor code, any batch, any device.

The linear system (one per image and channel, symmetric positive definite on the hole pixels) is solved by
conjugate gradients in float64, each system stopping on its own once its residual is below ``tol`` of its right-hand
side, so an image's result does not depend on the others in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BLEND_TOL = 1e-6  # relative residual at which a system stops: far below one 8-bit level


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 4 neighbours of every pixel of x (...,H,W); outside the image counts as 0."""
    p = F.pad(x, (1, 1, 1, 1))
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def poisson_blend(decoded: torch.Tensor, known: torch.Tensor, holes: torch.Tensor, tol: float = BLEND_TOL,
                  max_iter: int | None = None) -> torch.Tensor:  # fmt: skip
    """``known`` (B,C,H,W) outside ``holes`` (B,H,W) bool, and inside them ``decoded`` (B,C,H,W) plus the harmonic
    field that meets ``known - decoded`` at the holes' edge (module docstring). ``max_iter`` (default 2 (H+W) + 50,
    ample for CG on an H x W grid) bounds the iterations."""
    b, c, h, w = decoded.shape
    hole = holes[:, None].to(torch.float64).expand(b, c, h, w)
    if not bool(hole.any()):
        return known.clone()
    known64, decoded64 = known.to(torch.float64), decoded.to(torch.float64)
    count = _neighbour_sum(torch.ones(1, 1, h, w, dtype=torch.float64, device=decoded.device))

    def laplacian(u: torch.Tensor) -> torch.Tensor:  # u is 0 outside the holes
        return (count * u - _neighbour_sum(u)) * hole

    rhs = _neighbour_sum((known64 - decoded64) * (1 - hole)) * hole
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rs = (r * r).sum((-2, -1), keepdim=True)
    limit = (tol * tol) * rs
    active = rs > limit
    for _ in range(max_iter if max_iter is not None else 2 * (h + w) + 50):
        if not bool(active.any()):
            break
        ap = laplacian(p)
        pap = (p * ap).sum((-2, -1), keepdim=True)
        alpha = torch.where(active & (pap > 0), rs / pap.clamp_min(1e-300), torch.zeros_like(rs))
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum((-2, -1), keepdim=True)
        beta = torch.where(active, rs_new / rs.clamp_min(1e-300), torch.zeros_like(rs))
        p = torch.where(active, r + beta * p, p)
        rs = torch.where(active, rs_new, rs)
        active = active & (rs > limit)
    out = torch.where(hole > 0, decoded64 + x, known64).clamp(0, 1)
    return out.to(decoded.dtype)
