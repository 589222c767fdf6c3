"""Random fields and pixel-grid helpers that the synthetic scenes are drawn with."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def gaussian_spread(length: int, sigma: float) -> np.ndarray:
    """(length, nodes) weights that spread white noise on a coarse grid into a smooth 1-D profile.

    Nodes are sigma apart (the bumps overlap so much that no grid shows: the variance ripples by
    ~1e-4) and run 3 sigma past both ends (so the field is as strong at the edges as inside); rows
    have unit norm, so the field has unit variance.
    """
    nodes = np.arange(-3 * sigma, length + 3 * sigma, sigma)
    pixels = np.arange(length)[:, None]
    weights = np.exp(-0.5 * ((pixels - nodes) / sigma) ** 2)
    return weights / np.linalg.norm(weights, axis=1, keepdims=True)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """HxW float32 unit-variance Gaussian random field of correlation length ~sigma px.

    Two small matrix products instead of a wide Gaussian filter: fast for any sigma. They run in
    float64 so that rounding to float32 hides the summation order of the kernel OpenBLAS picks for
    the CPU: the same bytes on other machines, not only on this one.
    """
    rows = gaussian_spread(shape[0], sigma)
    cols = gaussian_spread(shape[1], sigma)
    coarse = rng.standard_normal((rows.shape[1], cols.shape[1]))
    return (rows @ coarse @ cols.T).astype(np.float32)


def fine_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance white noise blurred over a few pixels: grain and mottling."""
    radius = int(4 * sigma + 0.5)  # scipy's kernel, so the standard deviation below is exact
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    blurred = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return blurred / np.float32(np.sum(kernel**2))


def blend(rng: np.random.Generator, colours: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """HxWx3 mix of K colours (K, 3), each weighted by its own smooth field of scale sigma px.

    Sharp weights (exp of 3x a unit-variance field; no overflow in float32) keep mostly one colour
    at a time with soft transitions. One field at a time, so memory does not grow with K; channel
    planes (3, H, W) so that every update runs over contiguous memory.
    """
    planes = np.zeros((3, *shape), dtype=np.float32)
    total_weight = np.zeros(shape, dtype=np.float32)
    for colour in colours:
        weight = np.exp(3 * smooth_noise(rng, shape, sigma))
        total_weight += weight
        for plane, value in zip(planes, colour):
            plane += value * weight
    planes /= total_weight
    return np.moveaxis(planes, 0, -1)


def coordinates(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """float32 row (H, 1) and column (1, W) coordinates: int64 ones would turn textures into float64."""
    y, x = np.ogrid[: shape[0], : shape[1]]
    return y.astype(np.float32), x.astype(np.float32)


def edges(ids: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another id."""
    edges = np.zeros(ids.shape, dtype=bool)
    edges[:-1] |= ids[:-1] != ids[1:]
    edges[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    return edges
