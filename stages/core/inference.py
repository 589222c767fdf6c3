"""Whole-image prediction by sliding window with overlap and weighted blending.

Windows are laid out like tiles (the last row and column flush with the image's edge) and each
window's softmax probabilities are weighted by a bump that falls off toward its borders, where a
CNN sees the least context; the weighted sum, divided by the summed weights, is the image's
probability map. Optional test-time augmentation averages the 8 flips/90-degree rotations.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from stages.core.checkpoint import TrainedModel
from stages.core.devices import autocast, resolve_precision
from stages.core.errors import PipelineError
from stages.core.geometry import window_grid
from stages.core.model import OUTPUT_STRIDE_MULTIPLE, compile_for_inference, normalise

# (uint8 NHWC batch) -> float32 NCHW class probabilities
ProbabilityFn = Callable[[torch.Tensor], torch.Tensor]


def window_weights(window: int) -> np.ndarray:
    """A separable Gaussian bump, 1 at the centre and e^-2 (not 0) at the borders.

    Kept above zero so a pixel covered by a single window (an image corner) still gets its prediction.
    """
    position = (np.arange(window) + 0.5 - window / 2) / (window / 4)
    profile = np.exp(-0.5 * position ** 2).astype(np.float32)
    return np.outer(profile, profile)


def fit_window(window: int, height: int, width: int) -> int:
    """The window, shrunk to the largest multiple of 16 that fits an image smaller than it."""
    fitted = min(window, min(height, width) // OUTPUT_STRIDE_MULTIPLE * OUTPUT_STRIDE_MULTIPLE)
    if fitted < OUTPUT_STRIDE_MULTIPLE:
        raise PipelineError(f"image of {width}x{height} pixels is too small to predict: "
                            f"both sides must be at least {OUTPUT_STRIDE_MULTIPLE}")
    return fitted


def sliding_window_probabilities(probability_fn: ProbabilityFn, image: np.ndarray, num_classes: int, window: int,
                                 overlap: float, batch_size: int) -> np.ndarray:
    """(num_classes, H, W) float32 blended class probabilities for one HxWx3 uint8 image."""
    height, width = image.shape[:2]
    window = fit_window(window, height, width)
    origins = window_grid(height, width, window, overlap)
    weights = window_weights(window)
    total = np.zeros((num_classes, height, width), dtype=np.float32)
    weight_sum = np.zeros((height, width), dtype=np.float32)
    for start in range(0, len(origins), batch_size):
        batch_origins = origins[start:start + batch_size]
        crops = torch.from_numpy(np.stack([image[y:y + window, x:x + window] for y, x in batch_origins]))
        probs = probability_fn(crops).cpu().numpy()
        for (y, x), prob in zip(batch_origins, probs):
            total[:, y:y + window, x:x + window] += prob * weights
            weight_sum[y:y + window, x:x + window] += weights
    return total / weight_sum


def model_probabilities(model: nn.Module, device: torch.device, mean: tuple[float, ...], std: tuple[float, ...],
                        precision: str, tta: bool) -> ProbabilityFn:
    """Wrap a model (eval mode, channels_last) as a ProbabilityFn on `device`, autocast to `precision`
    (bf16, fp16 or fp32: resolved already)."""

    @torch.inference_mode()
    def window_probabilities(batch: torch.Tensor) -> torch.Tensor:
        images = normalise(batch.to(device), mean, std).contiguous(memory_format=torch.channels_last)
        views = DIHEDRAL if tta else DIHEDRAL[:1]
        summed = None
        for view in views:
            with autocast(device, precision):
                logits = model(dihedral_view(images, view))
            probs = undo_dihedral_view(logits.float().softmax(dim=1), view)
            summed = probs if summed is None else summed + probs
        return summed / len(views)

    return window_probabilities


def trained_model_probabilities(trained: TrainedModel, device: torch.device, precision: str, tta: bool,
                                compile: bool = False) -> ProbabilityFn:
    """A checkpoint's model as a ProbabilityFn: moved to `device` in channels_last, optionally compiled,
    normalising as in training; `precision` is predict.precision (auto: bf16 where native, see devices)."""
    model = trained.model.to(device, memory_format=torch.channels_last)
    if compile:
        model = compile_for_inference(model)
    return model_probabilities(model, device, trained.mean, trained.std,
                               resolve_precision(precision, device, "predict.precision"), tta)


# The 8 flips/90-degree rotations of test-time augmentation, as (quarter turns, horizontal flip); identity first.
DIHEDRAL = tuple((turns, flip) for flip in (False, True) for turns in range(4))


def dihedral_view(x: torch.Tensor, view: tuple[int, bool]) -> torch.Tensor:
    """One DIHEDRAL view of NCHW tensors: the optional horizontal flip, then the quarter turns."""
    turns, flip = view
    return torch.rot90(x.flip(-1) if flip else x, turns, dims=(-2, -1))


def undo_dihedral_view(x: torch.Tensor, view: tuple[int, bool]) -> torch.Tensor:
    """The inverse of dihedral_view: per-pixel outputs of a view put back where the pixels came from."""
    turns, flip = view
    x = torch.rot90(x, -turns, dims=(-2, -1))
    return x.flip(-1) if flip else x
