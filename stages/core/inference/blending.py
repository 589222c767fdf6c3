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

from stages.core.data.geometry import window_grid
from stages.core.io.errors import PipelineError
from stages.core.model.checkpoint import TrainedModel
from stages.core.model.devices import autocast, resolve_precision
from stages.core.model.model import OUTPUT_STRIDE_MULTIPLE, compile_for_inference, normalise

# (uint8 NHWC batch) -> float32 NCHW class probabilities
ProbabilityFn = Callable[[torch.Tensor], torch.Tensor]


def window_weights(window: int) -> np.ndarray:
    """A separable Gaussian bump, 1 at the centre and e^-2 (not 0) at the borders.

    Kept above zero so a pixel covered by a single window (an image corner) still gets its prediction.
    """
    position = (np.arange(window) + 0.5 - window / 2) / (window / 4)
    profile = np.exp(-0.5 * position**2).astype(np.float32)
    return np.outer(profile, profile)


def fit_window(window: int, height: int, width: int) -> int:
    """The window, shrunk to the largest multiple of 16 that fits an image smaller than it."""
    fitted = min(window, min(height, width) // OUTPUT_STRIDE_MULTIPLE * OUTPUT_STRIDE_MULTIPLE)
    if fitted < OUTPUT_STRIDE_MULTIPLE:
        raise PipelineError(
            f"image of {width}x{height} pixels is too small to predict: "
            f"both sides must be at least {OUTPUT_STRIDE_MULTIPLE}"
        )
    return fitted


class BlendAccumulator:
    """Weighted window probabilities summed where the probability function returns them: on the GPU
    for a model there (torch tensors), on the host for the CPU (numpy arrays, as before), float32.

    Each window adds `prob * weights` to its area of the sum and `weights` to the summed weights,
    one float32 multiply and one float32 add per element, in the order the windows come; torch on
    a device does the same arithmetic as numpy, and on the CPU it gives the same bits (tested).
    numpy stays the CPU's: for these elementwise adds and the argmax it is several times faster than
    torch on the 2-core CPU (benchmarks/blending.py). The sums are made on the first batch's device;
    `rows` rows of `width` columns, `top` being the image row that row 0 holds (the streaming path
    keeps only the rows later windows can touch).
    """

    numpy_on_cpu = True  # tests set it False to check torch's arithmetic on the CPU

    def __init__(self, num_classes: int, rows: int, width: int, weights: np.ndarray) -> None:
        self.shape, self.weights = (num_classes, rows, width), weights
        self.total = self.weight_sum = None  # numpy arrays on the host, else torch tensors on the device

    def add(self, probs: torch.Tensor, origins: list[tuple[int, int]], top: int = 0) -> None:
        """Blend a batch of windows' (N, classes, window, window) probabilities at their (y, x) origins."""
        probs = torch.as_tensor(probs)
        if self.total is None:
            if probs.device.type == "cpu" and self.numpy_on_cpu:
                self.total = np.zeros(self.shape, dtype=np.float32)
                self.weight_sum = np.zeros(self.shape[1:], dtype=np.float32)
            else:
                self.total = torch.zeros(self.shape, dtype=torch.float32, device=probs.device)
                self.weight_sum = torch.zeros(self.shape[1:], dtype=torch.float32, device=probs.device)
                self.weights = torch.from_numpy(self.weights).to(probs.device)
        if isinstance(self.total, np.ndarray):
            probs = probs.numpy()
        window = self.weights.shape[0]
        for (y, x), prob in zip(origins, probs):
            self.total[:, y - top : y - top + window, x : x + window] += prob * self.weights
            self.weight_sum[y - top : y - top + window, x : x + window] += self.weights

    def blended(self, rows: int | None = None) -> torch.Tensor:
        """(classes, rows, width) float32 probabilities of the first `rows` rows (all by default), on the device
        (a CPU tensor sharing a numpy array's memory on the host)."""
        rows = self.shape[1] if rows is None else rows
        return torch.as_tensor(self.total[:, :rows] / self.weight_sum[:rows])


def blend_windows(
    probability_fn: ProbabilityFn, image: np.ndarray, num_classes: int, window: int, overlap: float, batch_size: int
) -> torch.Tensor:
    """(num_classes, H, W) float32 blended class probabilities of one HxWx3 uint8 image, left on the
    device the probability function returns them on."""
    height, width = image.shape[:2]
    window = fit_window(window, height, width)
    origins = window_grid(height, width, window, overlap)
    sums = BlendAccumulator(num_classes, height, width, window_weights(window))
    for start in range(0, len(origins), batch_size):
        batch_origins = origins[start : start + batch_size]
        crops = torch.from_numpy(np.stack([image[y : y + window, x : x + window] for y, x in batch_origins]))
        sums.add(probability_fn(crops), batch_origins)
    return sums.blended()


def sliding_window_probabilities(
    probability_fn: ProbabilityFn, image: np.ndarray, num_classes: int, window: int, overlap: float, batch_size: int
) -> np.ndarray:
    """(num_classes, H, W) float32 blended class probabilities for one HxWx3 uint8 image, on the host."""
    return blend_windows(probability_fn, image, num_classes, window, overlap, batch_size).cpu().numpy()


def classes_of(probs: torch.Tensor, confidence: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 class indices (the first of tied classes, as numpy's argmax) of (classes, H, W) probabilities
    and, if asked, round(max probability x 255) as uint8: computed on the probabilities' device, and
    only these uint8 maps copied to the host."""
    if probs.device.type == "cpu" and BlendAccumulator.numpy_on_cpu:  # numpy: faster there (see BlendAccumulator)
        host = probs.numpy()
        classes = host.argmax(axis=0).astype(np.uint8)
        return classes, np.rint(host.max(axis=0) * 255).astype(np.uint8) if confidence else None
    if not confidence:
        return probs.argmax(dim=0).to(torch.uint8).cpu().numpy(), None
    best, classes = probs.max(dim=0)
    return classes.to(torch.uint8).cpu().numpy(), torch.round(best * 255).to(torch.uint8).cpu().numpy()


def sliding_window_classes(
    probability_fn: ProbabilityFn, image: np.ndarray, num_classes: int, window: int, overlap: float, batch_size: int
) -> np.ndarray:
    """(H, W) uint8 class map of one HxWx3 uint8 image: blended and argmaxed on the device, only the map copied back."""
    return classes_of(blend_windows(probability_fn, image, num_classes, window, overlap, batch_size))[0]


def model_probabilities(
    model: nn.Module, device: torch.device, mean: tuple[float, ...], std: tuple[float, ...], precision: str, tta: bool
) -> ProbabilityFn:
    """Wrap a model (eval mode, channels_last) as a ProbabilityFn on `device`, autocast to `precision`
    (bf16, fp16 or fp32: resolved already)."""

    @torch.inference_mode()
    def window_probabilities(batch: torch.Tensor) -> torch.Tensor:
        images = normalise(batch.to(device), mean, std).contiguous(memory_format=torch.channels_last)

        def view_probabilities(view: tuple[int, bool]) -> torch.Tensor:
            with autocast(device, precision):
                logits = model(dihedral_view(images, view))
            return logits.float().softmax(dim=1)

        return averaged_over_views(view_probabilities, tta)

    return window_probabilities


def averaged_over_views(view_probabilities: Callable[[tuple[int, bool]], torch.Tensor], tta: bool) -> torch.Tensor:
    """The probabilities of the identity view, or with `tta` their mean over the 8 DIHEDRAL views, each put
    back in place first. `view_probabilities(view)` gives NCHW probabilities of the batch seen in `view`."""
    views = DIHEDRAL if tta else DIHEDRAL[:1]
    summed = None
    for view in views:
        probs = undo_dihedral_view(view_probabilities(view), view)
        summed = probs if summed is None else summed + probs
    return summed / len(views)


def trained_model_probabilities(
    trained: TrainedModel, device: torch.device, precision: str, tta: bool, compile: bool = False
) -> ProbabilityFn:
    """A checkpoint's model as a ProbabilityFn: moved to `device` in channels_last, optionally compiled,
    normalising as in training; `precision` is predict.precision (auto: bf16 where native, see devices)."""
    model = trained.model.to(device, memory_format=torch.channels_last)
    if compile:
        model = compile_for_inference(model)
    return model_probabilities(
        model, device, trained.mean, trained.std, resolve_precision(precision, device, "predict.precision"), tta
    )


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
