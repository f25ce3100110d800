"""The DRR ray caster on an NVIDIA GPU (numba.cuda); chosen with ``device="cuda"``.

The ray bodies are those of the CPU (:func:`rtforge.core._drr_kernels.siddon_ray`
and :func:`~rtforge.core._drr_kernels.trilinear_ray`, compiled here as device
functions), so both devices compute the same integrals; the kernels only add
one thread per pixel: ``x`` over columns, ``y`` over rows, ``z`` over the DRRs
of the call.

The μ volume and its occupancy grids are uploaded once per
:class:`~rtforge.core.drr.AttenuationVolume` and stay resident on the GPU for
every later call with that volume.

Tested with numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) on tiny
volumes; run for real where a GPU is present (tests marked ``gpu``).
"""

from __future__ import annotations

import math

import numpy as np

# numba-cuda 0.30 registers an overload for numpy.row_stack, which numpy 2.5
# removed: importing numba.cuda then fails.  Restore the alias (to vstack, which
# it always was) only when it is missing, before the import.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack  # noqa: NPY201 - the alias numba-cuda expects

from numba import cuda  # noqa: E402

from rtforge.core import _drr_kernels as _k  # noqa: E402
from rtforge.core._drr_types import BLOCK, BLOCK_SHIFT, DrrMethod, SkipMap  # noqa: E402
from rtforge.errors import InvalidInputError  # noqa: E402

__all__ = ["available", "cast"]

#: Threads per block: 16 columns x 8 rows of pixels.
THREADS = (16, 8, 1)

_siddon_device = cuda.jit(device=True)(_k.siddon_ray)
_trilinear_device = cuda.jit(device=True)(_k.trilinear_ray)


def available() -> bool:
    """True when numba.cuda sees a GPU (or the simulator is enabled)."""
    try:
        return bool(cuda.is_available())
    except Exception:  # a broken driver is the same as no GPU here
        return False


@cuda.jit
def _siddon_kernel(mu, occ, shape, shift, box, frames, metric, out):  # noqa: ANN001
    c, r, d = cuda.grid(3)
    n, rows, cols = out.shape
    if c >= cols or r >= rows or d >= n:
        return
    s_i = frames[d, 0, 0]
    s_j = frames[d, 0, 1]
    s_k = frames[d, 0, 2]
    d_i = frames[d, 1, 0] + c * frames[d, 2, 0] + r * frames[d, 3, 0] - s_i
    d_j = frames[d, 1, 1] + c * frames[d, 2, 1] + r * frames[d, 3, 1] - s_j
    d_k = frames[d, 1, 2] + c * frames[d, 2, 2] + r * frames[d, 3, 2] - s_k
    q = (metric[0, 0] * d_i * d_i + metric[1, 1] * d_j * d_j + metric[2, 2] * d_k * d_k
         + 2.0 * (metric[0, 1] * d_i * d_j + metric[0, 2] * d_i * d_k + metric[1, 2] * d_j * d_k))
    value = _siddon_device(mu, occ, shape[0], shape[1], shape[2], shape[3], shape[4], shift,
                           box[0], box[1], box[2], box[3], box[4], box[5],
                           s_i, s_j, s_k, d_i, d_j, d_k)
    out[d, r, c] = value * math.sqrt(q)


@cuda.jit
def _trilinear_kernel(mu, occ, shape, shift, box, frames, metric, step_mm, out):  # noqa: ANN001
    c, r, d = cuda.grid(3)
    n, rows, cols = out.shape
    if c >= cols or r >= rows or d >= n:
        return
    s_i = frames[d, 0, 0]
    s_j = frames[d, 0, 1]
    s_k = frames[d, 0, 2]
    d_i = frames[d, 1, 0] + c * frames[d, 2, 0] + r * frames[d, 3, 0] - s_i
    d_j = frames[d, 1, 1] + c * frames[d, 2, 1] + r * frames[d, 3, 1] - s_j
    d_k = frames[d, 1, 2] + c * frames[d, 2, 2] + r * frames[d, 3, 2] - s_k
    q = (metric[0, 0] * d_i * d_i + metric[1, 1] * d_j * d_j + metric[2, 2] * d_k * d_k
         + 2.0 * (metric[0, 1] * d_i * d_j + metric[0, 2] * d_i * d_k + metric[1, 2] * d_j * d_k))
    length = math.sqrt(q)
    value = _trilinear_device(mu, occ, shape[0], shape[1], shape[2], shape[3], shape[4], shift,
                              box[0], box[1], box[2], box[3], box[4], box[5],
                              s_i, s_j, s_k, d_i, d_j, d_k, step_mm / length)
    out[d, r, c] = value * length


def _resident(mu: np.ndarray, cache: dict, skip: SkipMap,
              method: DrrMethod) -> tuple[object, object, object]:
    """Device copies of μ and of the method's occupancy grid and box (uploaded once)."""
    if "cuda_mu" not in cache:
        cache["cuda_mu"] = cuda.to_device(mu.ravel())
    key = ("cuda_skip", method)
    if key not in cache:
        cache[key] = (cuda.to_device(skip.occupancy), cuda.to_device(skip.box))
    occ, box = cache[key]
    return cache["cuda_mu"], occ, box


def cast(mu: np.ndarray, cache: dict, skip: SkipMap, frames: np.ndarray, metric: np.ndarray,
         size: tuple[int, int], method: DrrMethod, step_mm: float) -> np.ndarray:
    """Line integrals on the GPU; called by :func:`rtforge.core.drr.compute_drr`.

    Parameters
    ----------
    mu : ndarray of shape (K, J, I), dtype float32
        The volume's linear attenuation (:attr:`~rtforge.core.drr.AttenuationVolume.mu`).
    cache : dict
        The volume's cache (:attr:`~rtforge.core.drr.AttenuationVolume.cache`): the
        device copies are kept there.
    skip : SkipMap
        The method's occupancy grid and box
        (:meth:`~rtforge.core.drr.AttenuationVolume.skip_map`).
    frames, metric : ndarray
        As :func:`rtforge.core._drr_kernels.drr_siddon` takes them.
    size : tuple of int
        ``(rows, columns)``.
    method : DrrMethod
    step_mm : float
        Trilinear step.

    Returns
    -------
    ndarray of shape (n, rows, columns), dtype float32

    Raises
    ------
    InvalidInputError
        If no GPU is available.
    """
    if not available():
        raise InvalidInputError("device 'cuda' asked for, but numba.cuda finds no GPU; use "
                                "device 'cpu'")
    nk, nj, ni = mu.shape
    mu, occ, box = _resident(mu, cache, skip, method)
    shape = np.array([ni, nj, nk, -(-ni // BLOCK), -(-nj // BLOCK), -(-nk // BLOCK)],
                     dtype=np.int64)
    rows, cols = size
    n = frames.shape[0]
    out = cuda.device_array((n, rows, cols), dtype=np.float32)
    blocks = (-(-cols // THREADS[0]), -(-rows // THREADS[1]), n)
    d_shape, d_frames, d_metric = (cuda.to_device(a) for a in (shape, frames, metric))
    if method is DrrMethod.SIDDON:
        _siddon_kernel[blocks, THREADS](mu, occ, d_shape, BLOCK_SHIFT, box, d_frames, d_metric,
                                        out)
    else:
        _trilinear_kernel[blocks, THREADS](mu, occ, d_shape, BLOCK_SHIFT, box, d_frames,
                                           d_metric, float(step_mm), out)
    return out.copy_to_host()
