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

import functools

import numpy as np
import torch
import torch.nn.functional as F

BLEND_TOL = 1e-6  # relative residual at which a system stops: far below one 8-bit level


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 4 neighbours of every pixel of x (...,H,W); outside the image counts as 0."""
    p = F.pad(x, (1, 1, 1, 1))
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def _laplacian(u: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The 4-neighbour graph Laplacian of u (...,H,W): each pixel times its count of neighbours inside the image
    (``count``), less their sum. Symmetric: pixels outside the image do not count."""
    return count * u - _neighbour_sum(u)


def _conjugate_gradients(apply, rhs: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """x with ``apply(x) = rhs`` (each (...,H,W) plane its own symmetric positive definite system), by conjugate
    gradients from 0: every plane stops on its own once its residual is below ``tol`` of its right-hand side, so
    an image's result does not depend on the others in the batch."""
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rs = (r * r).sum((-2, -1), keepdim=True)
    limit = (tol * tol) * rs
    active = rs > limit
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        ap = apply(p)
        pap = (p * ap).sum((-2, -1), keepdim=True)
        alpha = torch.where(active & (pap > 0), rs / pap.clamp_min(1e-300), torch.zeros_like(rs))
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum((-2, -1), keepdim=True)
        beta = torch.where(active, rs_new / rs.clamp_min(1e-300), torch.zeros_like(rs))
        p = torch.where(active, r + beta * p, p)
        rs = torch.where(active, rs_new, rs)
        active = active & (rs > limit)
    return x


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
        return _laplacian(u, count) * hole

    rhs = _neighbour_sum((known64 - decoded64) * (1 - hole)) * hole
    x = _conjugate_gradients(laplacian, rhs, tol, max_iter if max_iter is not None else 2 * (h + w) + 50)
    out = torch.where(hole > 0, decoded64 + x, known64).clamp(0, 1)
    return out.to(decoded.dtype)


def biharmonic_fill(known: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """``known`` (B,C,H,W) with its ``holes`` (B,H,W) bool filled smoothly: the fill whose Laplacian is smallest in
    the least-squares sense over the whole image (min sum |L u|^2, L the 4-neighbour graph Laplacian of the module
    docstring, the known pixels held), i.e. L^T L u = 0 in the holes, the discrete biharmonic equation as
    ``skimage.restoration.inpaint_biharmonic`` solves it (close, not equal: its stencil differs near the image's
    border). Unlike a harmonic fill it carries the known pixels' slopes into the hole, not only their values, so a
    gradient or a curve's bend goes on. Known pixels are returned unchanged; not clipped (a blend adds it to other
    pixels). Its system is too ill-conditioned for a quick CG (the square of the harmonic one's), so it is solved
    directly: one sparse LU per image (scipy, on the CPU; milliseconds at 64 x 64), in float64."""
    from scipy.sparse.linalg import splu  # only here: the import costs about 0.2 s

    b, c, h, w = known.shape
    values = known.detach().to("cpu", torch.float64).reshape(b, c, h * w).numpy().copy()
    flat = holes.detach().cpu().reshape(b, h * w).numpy()
    system = _bilaplacian(h, w)
    for i in range(b):
        inside = np.flatnonzero(flat[i])
        if not inside.size:
            continue
        outside = np.flatnonzero(~flat[i])
        rows = system[inside]
        rhs = -(rows[:, outside] @ values[i][:, outside].T)  # (holes, C)
        values[i][:, inside] = splu(rows[:, inside].tocsc()).solve(rhs).T
    return torch.from_numpy(values).reshape(b, c, h, w).to(known.device, known.dtype)


@functools.lru_cache(maxsize=4)
def _bilaplacian(h: int, w: int):
    """L^T L (scipy CSR, (H W) x (H W)) for the 4-neighbour graph Laplacian L of an H x W image."""
    from scipy import sparse

    def path(n: int):
        ends = np.ones(n)
        ends[1:-1] = 2
        return (
            sparse.diags([ends, -np.ones(n - 1), -np.ones(n - 1)], [0, -1, 1]) if n > 1 else sparse.csr_matrix((1, 1))
        )

    laplacian = sparse.kron(sparse.identity(h), path(w)) + sparse.kron(path(h), sparse.identity(w))
    return (laplacian.T @ laplacian).tocsr()


# --fill smooth-prior: where a token's draw had probability p (with --draws, the draws' mean), its pixels keep the
# weight min(1, p / tau) ** gamma of the decoded fill and the rest goes to the biharmonic fill. tau > 1: even a sure
# token keeps 1 / tau of the decoded fill, the rest smooth. Chosen with --draws 4 on the validation sets of the three
# training styles (docs/decoding.md, "Several draws, averaged"; before it tau = 1, gamma = 2, on emoji64's alone).
PRIOR_TAU = 1.5
PRIOR_GAMMA = 1.0


def confidence_weights(confidence: torch.Tensor, size: int) -> torch.Tensor:
    """(B,1,size,size) weights of the decoded pixels from the tokens' ``confidence`` (B,h,w) (each code's probability
    when it was fixed): min(1, p / :data:`PRIOR_TAU`) ** :data:`PRIOR_GAMMA` per token, bilinearly spread over its
    pixels so that no token's edge shows."""
    w = (confidence.float() / PRIOR_TAU).clamp(max=1.0) ** PRIOR_GAMMA
    return F.interpolate(w[:, None], size=(size, size), mode="bilinear", align_corners=False)


def smooth_prior(filled: torch.Tensor, known: torch.Tensor, holes: torch.Tensor, confidence: torch.Tensor):
    """``filled`` (B,C,H,W, the decoded holes already blended into ``known``) pulled, inside ``holes`` (B,H,W), toward
    the :func:`biharmonic_fill` of ``known`` wherever the transformer was unsure (:func:`confidence_weights` of
    ``confidence`` (B,h,w)): a wrong sharp guess costs more than a smooth one. Known pixels are returned unchanged."""
    smooth = biharmonic_fill(known, holes)
    w = confidence_weights(confidence, filled.shape[-1]).to(filled.dtype)
    mixed = (w * filled + (1 - w) * smooth).clamp(0, 1)
    return torch.where(holes[:, None].expand_as(known), mixed, known)
