"""The sliding-window engine: class probabilities of an image of any size, blended from overlapping windows.

Windows are laid out like tiles (the last row and column flush with the image's edge) and each
window's softmax probabilities are weighted by a bump that falls off toward its borders, where a
CNN sees the least context; the weighted sum, divided by the summed weights, is the image's
probability map.

One driver, `SlidingWindows.strips`, serves every caller. It goes over the windows row by row in batches
and, after each batch, hands on the rows above the next batch's first window: no later window
touches them, so they are final. It keeps only the sums of the rows later windows can touch
((classes + 1) float32 values per pixel for the window side plus the rows a batch spans), so a
scene of any height streams through in the memory its width sets, read from a RowSource a strip at
a time (geo.georaster's scenes). An image already in memory (ArrayRows) goes through the same
driver; `SlidingWindows.probabilities` and `.classes` join its strips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from landcover.data.geometry import window_grid
from landcover.io.errors import PipelineError
from landcover.io.params import OUTPUT_STRIDE_MULTIPLE, PredictParams

# (NHWC batch of the model's bands: uint8, or float32 raw values) -> float32 NCHW class probabilities
ProbabilityFn = Callable[[torch.Tensor], torch.Tensor]


def model_input(batch: np.ndarray) -> np.ndarray:
    """A batch of band values as models take them: uint8 as it is, any other type (uint16, int16) as float32,
    which holds their values exactly (BandScaling.input_dtype; an exported model's input type)."""
    return batch if batch.dtype in (np.uint8, np.float32) else batch.astype(np.float32)


def window_weights(window: int) -> np.ndarray:
    """A separable Gaussian bump, 1 at the centre and e^-2 (not 0) at the borders.

    Kept above zero so a pixel covered by a single window (an image corner) still gets its prediction.
    """
    position = (np.arange(window) + 0.5 - window / 2) / (window / 4)
    profile = np.exp(-0.5 * position**2).astype(np.float32)
    return np.outer(profile, profile)


def too_small_to_predict(height: int, width: int) -> str | None:
    """Why an image of this size cannot be predicted (no window of the model's input rule fits in it), or None."""
    if min(height, width) >= OUTPUT_STRIDE_MULTIPLE:
        return None
    side = OUTPUT_STRIDE_MULTIPLE
    return f"image of {width}x{height} pixels is too small to predict: both sides must be at least {side}"


def fit_window(window: int, height: int, width: int) -> int:
    """The window, shrunk to the largest multiple of 16 that fits an image smaller than it.

    Callers that know the image's file check too_small_to_predict first, so that the error names it."""
    reason = too_small_to_predict(height, width)
    if reason is not None:
        raise PipelineError(reason)
    return min(window, min(height, width) // OUTPUT_STRIDE_MULTIPLE * OUTPUT_STRIDE_MULTIPLE)


class BlendAccumulator:
    """Weighted window probabilities summed where the probability function returns them: on the GPU for a model
    there (torch tensors), on the host for the CPU (numpy arrays), float32.

    Each window adds `prob * weights` to its area of the sum and `weights` to the summed weights, one float32
    multiply and one float32 add per element, in the order the windows come; torch on a device does the same
    arithmetic as numpy, and on the CPU it gives the same bits (tested). `numpy_on_cpu` keeps the CPU's sums in
    numpy: for these elementwise adds and the argmax it is several times faster than torch on a 2-core CPU
    (python -m benchmarks.blending); False runs torch there too (tests and benchmarks compare the two). The sums
    are made on the first batch's device; `rows` rows of `width` columns, `top` being the image row that row 0
    holds.
    """

    def __init__(self, num_classes: int, rows: int, width: int, weights: np.ndarray, numpy_on_cpu: bool = True) -> None:
        self.shape, self.weights, self.numpy_on_cpu = (num_classes, rows, width), weights, numpy_on_cpu
        # numpy arrays on the host, else torch tensors on the device: the same arithmetic on either (Any for both)
        self.total: Any = None
        self.weight_sum: Any = None
        self.device_weights: Any = weights

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
                self.device_weights = torch.from_numpy(self.weights).to(probs.device)
        assert self.weight_sum is not None
        window_probs = probs.numpy() if isinstance(self.total, np.ndarray) else probs
        weights, window = self.device_weights, self.weights.shape[0]
        for (y, x), prob in zip(origins, window_probs):
            self.total[:, y - top : y - top + window, x : x + window] += prob * weights
            self.weight_sum[y - top : y - top + window, x : x + window] += weights

    def blended(self, rows: int) -> torch.Tensor:
        """(classes, rows, width) float32 probabilities of the first `rows` rows, on the device (a CPU tensor
        sharing a numpy array's memory on the host)."""
        assert self.total is not None and self.weight_sum is not None
        return torch.as_tensor(self.total[:, :rows] / self.weight_sum[:rows])

    def shift_up(self, rows: int) -> None:
        """Drop the first `rows` rows: every later row moves up by `rows`, the rows freed at the bottom are zero."""
        assert self.total is not None and self.weight_sum is not None
        shift_up(self.total, rows)
        shift_up(self.weight_sum, rows)


def shift_up(array: Any, rows: int) -> None:
    """Move the rows of `array` (a numpy array or torch tensor; along its second-last axis) `rows` up, zeroing the
    rows freed at the bottom.

    Copied in chunks of `rows` so that no chunk overlaps its destination (numpy would copy an
    overlapping source whole first: another accumulator's worth of memory; torch refuses overlaps).
    """
    keep = array.shape[-2] - rows
    for start in range(0, keep, rows):
        stop = min(start + rows, keep)
        array[..., start:stop, :] = array[..., start + rows : stop + rows, :]
    array[..., max(keep, 0) :, :] = 0


class RowSource(Protocol):
    """An image read a strip of rows at a time: geo.georaster's scenes, or ArrayRows for one in memory."""

    height: int
    width: int
    block_rows: int  # rows of the storage blocks: reads aligned to them decode each block once

    def read_rows(self, top: int, bottom: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows top..bottom-1: (h x W x bands, the model's (uint8 RGB, or raw values of its type); h x W bool:
        pixel has data)."""
        ...


class ArrayRows:
    """An HxWxC image (the model's bands) already in memory as a RowSource: rows are views of it, every pixel has
    data."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.height, self.width = image.shape[:2]
        self.block_rows = self.height

    def read_rows(self, top: int, bottom: int) -> tuple[np.ndarray, np.ndarray]:
        return self.image[top:bottom], np.broadcast_to(np.True_, (bottom - top, self.width))


MAX_BLOCK_ROWS = 1024  # taller storage blocks are not read whole


class RowReader:
    """A source's rows read forward in chunks aligned to its storage blocks, handed out as any strip at or below
    the last one asked for; rows above it are dropped. Each block row is then decoded once, although window
    strips overlap and straddle blocks. An image in memory is sliced, never copied."""

    def __init__(self, source: RowSource, rows_at_least: int) -> None:
        # A file stored in very tall blocks (one strip for the whole image) is read window by window instead.
        block = source.block_rows if 1 <= source.block_rows <= MAX_BLOCK_ROWS else 1
        self.source, self.chunk = source, -(-rows_at_least // block) * block
        self.top = self.bottom = 0
        # rows self.top..self.bottom-1 (the source's bands and type) and which pixels have data; none read yet
        self.image: np.ndarray | None = None
        self.has_data: np.ndarray | None = None

    def rows(self, top: int, bottom: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.source, ArrayRows):
            return self.source.read_rows(top, bottom)
        drop = top - self.top
        parts_image = [] if self.image is None else [self.image[drop:]]
        parts_data = [] if self.has_data is None else [self.has_data[drop:]]
        while self.bottom < bottom:
            end = min(self.source.height, self.bottom + self.chunk)
            image, has_data = self.source.read_rows(self.bottom, end)
            parts_image.append(image)
            parts_data.append(has_data)
            self.bottom = end
        if len(parts_image) > 1:
            self.image, self.has_data = np.concatenate(parts_image), np.concatenate(parts_data)
        else:
            self.image, self.has_data = parts_image[0], parts_data[0]
        self.top = top
        assert self.image is not None and self.has_data is not None  # a strip is read whole before it is asked for
        return self.image[: bottom - top], self.has_data[: bottom - top]


def plan_windows(height: int, width: int, window: int, overlap: float) -> tuple[int, list[tuple[int, int]]]:
    """The window side used (shrunk for small images) and every window's (y, x), row by row."""
    window = fit_window(window, height, width)
    return window, window_grid(height, width, window, overlap)


# One strip of final rows: (first row, (classes, h, W) float32 blended probabilities on the probability
# function's device, (h, W) bool has data on the host)
Strip = tuple[int, torch.Tensor, np.ndarray]


def rows_of(image: np.ndarray | RowSource) -> RowSource:
    """An image in memory (HxWxC, the model's bands) as a RowSource; a RowSource as it is."""
    return ArrayRows(image) if isinstance(image, np.ndarray) else image


@dataclass(frozen=True)
class SlidingWindows:
    """How images are predicted: `probability_fn` on windows of `window` px overlapping by `overlap`, in batches
    of `batch_size`, blended into `num_classes` probabilities (`numpy_on_cpu`: see BlendAccumulator).

    Every method takes an HxWxC image in memory (the model's bands) or a RowSource read a strip at a time."""

    probability_fn: ProbabilityFn
    num_classes: int
    window: int
    overlap: float
    batch_size: int
    numpy_on_cpu: bool = True

    @classmethod
    def of(cls, probability_fn: ProbabilityFn, num_classes: int, params: PredictParams) -> SlidingWindows:
        """The windows of the predict params."""
        return cls(probability_fn, num_classes, params.window, params.overlap, params.batch_size)

    def plan(self, height: int, width: int) -> tuple[int, list[tuple[int, int]]]:
        """The window side used for an image of this size and every window's (y, x), row by row."""
        return plan_windows(height, width, self.window, self.overlap)

    def strips(self, image: np.ndarray | RowSource, progress: Callable[[int], object] | None = None) -> Iterator[Strip]:
        """The image's blended class probabilities, top to bottom, in strips of rows no later window touches.

        The windows go in batches, row by row; each strip is divided by its summed weights where it is final, so
        the strips do not depend on how the image is read. `progress(n)` is told of each batch.
        """
        source = rows_of(image)
        height, width = source.height, source.width
        window, origins = self.plan(height, width)
        batches = [origins[start : start + self.batch_size] for start in range(0, len(origins), self.batch_size)]
        span = max(batch[-1][0] - batch[0][0] for batch in batches) + window  # rows one batch touches
        sums = BlendAccumulator(self.num_classes, span, width, window_weights(window), self.numpy_on_cpu)
        has_data = np.zeros((span, width), dtype=bool)
        top = 0  # the image row that row 0 of the accumulator holds
        reader = RowReader(source, window)
        for index, batch in enumerate(batches):
            image_rows, image_has_data = reader.rows(top, batch[-1][0] + window)  # every row the batch covers
            has_data[: len(image_has_data)] = image_has_data
            crops = torch.from_numpy(
                model_input(np.stack([image_rows[y - top : y - top + window, x : x + window] for y, x in batch]))
            )
            sums.add(self.probability_fn(crops), batch, top)
            if progress is not None:
                progress(len(batch))
            final = batches[index + 1][0][0] if index + 1 < len(batches) else height  # no later window above it
            if final > top:
                rows = final - top
                yield top, sums.blended(rows), has_data[:rows].copy()
                sums.shift_up(rows)
                shift_up(has_data, rows)
                top = final

    def blended(self, image: np.ndarray | RowSource) -> torch.Tensor:
        """(num_classes, H, W) float32 blended class probabilities, left on the device the probability function
        returns them on."""
        return torch.cat([probs for _, probs, _ in self.strips(image)], dim=1)

    def probabilities(self, image: np.ndarray | RowSource) -> np.ndarray:
        """(num_classes, H, W) float32 blended class probabilities on the host."""
        return self.blended(image).cpu().numpy()

    def classes(self, image: np.ndarray | RowSource) -> np.ndarray:
        """(H, W) uint8 class map: each strip argmaxed on the device as it is final, only the class rows copied to
        the host (memory: the class map and a strip's probabilities)."""
        return np.concatenate([classes_of(probs, self.numpy_on_cpu) for _, probs, _ in self.strips(image)])


def classes_of(probs: torch.Tensor, numpy_on_cpu: bool = True) -> np.ndarray:
    """uint8 class indices (the first of tied classes, as numpy's argmax) of (classes, H, W) probabilities: computed
    on the probabilities' device, only the uint8 map copied to the host (numpy on the CPU: see BlendAccumulator)."""
    if probs.device.type == "cpu" and numpy_on_cpu:
        return probs.numpy().argmax(axis=0).astype(np.uint8)
    return probs.argmax(dim=0).to(torch.uint8).cpu().numpy()


def times_255(values: torch.Tensor, numpy_on_cpu: bool = True) -> np.ndarray:
    """round(value x 255) as uint8 (halves to even, as numpy's rint) of probabilities, computed on their device,
    only the uint8 values copied to the host."""
    if values.device.type == "cpu" and numpy_on_cpu:
        return np.rint(values.numpy() * 255).astype(np.uint8)
    return torch.round(values * 255).to(torch.uint8).cpu().numpy()


def confidence_of(probs: torch.Tensor, numpy_on_cpu: bool = True) -> np.ndarray:
    """round(max probability x 255) as uint8 of (classes, H, W) probabilities (see times_255)."""
    return times_255(probs.amax(dim=0), numpy_on_cpu)
