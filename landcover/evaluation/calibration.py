"""Calibration: how far a model's confidence is from its accuracy, and temperature scaling (Guo et al. 2017).

The model's confidence at a pixel is its largest softmax probability. Temperature scaling divides
every logit by one number T > 0 before the softmax: T > 1 softens overconfident probabilities, and
no single window's argmax changes. T is fitted by minimising the negative log-likelihood (NLL) of
the labelled pixels' classes; NLL(1/T) is convex in 1/T, so the fit is a safeguarded Newton search
for the zero of its derivative on 1/T in [1/TEMPERATURE_RANGE[1], 1/TEMPERATURE_RANGE[0]]:
deterministic, about ten passes over the pixels. A fit that would leave that range (a model whose
pixels are all right, or one whose logits say nothing) or that does not lower the NLL keeps 1.0,
with the reason (`TemperatureFit.reason`).

The statistics: the NLL (mean over pixels, natural log), the expected calibration error (ECE:
confidences in `BINS` equal-width bins over [0, 1], the pixel-weighted mean of |accuracy - mean
confidence| per bin) and each bin's figures (the reliability diagram's).

Pixels come from a model run on tiles (`tile_logits`): fp32 logits, ignore-value pixels left out,
at most `MAX_PIXELS` of them, drawn by a seeded generator where there are more (so the same
tiles and model always give the same pixels).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from landcover.data.palette import IGNORE_INDEX
from landcover.data.scaling import BandScaling
from landcover.model.model import normalise

BINS = 15  # equal-width confidence bins of the ECE and the reliability diagram
TEMPERATURE_RANGE = (0.05, 20.0)  # a fitted temperature must lie strictly inside, else 1.0 is kept
# The most pixels whose logits are kept for a fit or a statistic (7 classes: 112 MB of fp32 logits).
# The default run's validation split has 884,736; DeepGlobe's 207 validation images have 1.2e9, of which
# a seeded random share of about MAX_PIXELS is kept.
MAX_PIXELS = 4_000_000
PIXEL_SEED = 0  # the generator that draws the kept pixels where there are more than MAX_PIXELS


@dataclass(frozen=True)
class PixelLogits:
    """Labelled pixels: their fp32 logits (N, C) and classes (N,), ignore-value pixels left out."""

    logits: torch.Tensor
    labels: torch.Tensor
    seen: int  # labelled pixels the model ran on (more than len(labels) where some were left out)

    def __len__(self) -> int:
        return int(self.labels.numel())


def tile_logits(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    scaling: BandScaling,
    device: torch.device,
    expected_pixels: int,
    max_pixels: int = MAX_PIXELS,
    seed: int = PIXEL_SEED,
) -> PixelLogits:
    """The fp32 logits of the labelled pixels of (NHWC images, HW class masks) batches, the model in eval mode.

    Where `expected_pixels` (the tiles' pixels, an upper bound on the labelled ones) exceeds `max_pixels`,
    each labelled pixel is kept with probability max_pixels / expected_pixels, drawn by a generator seeded
    with `seed`: a deterministic subsample of about max_pixels.
    """
    model.eval()
    keep = min(1.0, max_pixels / max(expected_pixels, 1))
    generator = torch.Generator().manual_seed(seed)
    kept_logits, kept_labels, seen = [], [], 0
    with torch.inference_mode():
        for images, masks in batches:
            logits = model(normalise(images.to(device), scaling)).float().cpu()
            flat = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
            labels = masks.reshape(-1).long()
            labelled = labels != IGNORE_INDEX
            seen += int(labelled.sum())
            if keep < 1.0:
                labelled &= torch.rand(labels.shape, generator=generator) < keep
            kept_logits.append(flat[labelled].clone())
            kept_labels.append(labels[labelled])
    if not kept_labels:
        return PixelLogits(torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), 0)
    return PixelLogits(torch.cat(kept_logits), torch.cat(kept_labels), seen)


CHUNK = 500_000  # pixels computed on at a time in float64 (7 classes: 28 MB a copy)


def chunks(count: int) -> Iterable[slice]:
    return (slice(start, min(start + CHUNK, count)) for start in range(0, count, CHUNK))


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean NLL (natural log) of the labels under softmax(logits / temperature), in float64."""
    if labels.numel() == 0:
        return math.nan
    total = 0.0
    for part in chunks(labels.numel()):
        scaled = logits[part].double() / temperature
        total += float(torch.nn.functional.cross_entropy(scaled, labels[part], reduction="sum"))
    return total / labels.numel()


@dataclass(frozen=True)
class Reliability:
    """The reliability diagram's figures: per confidence bin, its pixels, mean confidence and accuracy."""

    edges: list[float]  # BINS + 1 bin edges, 0 to 1
    pixels: list[int]
    confidence: list[float | None]  # mean confidence of the bin's pixels (None: an empty bin)
    accuracy: list[float | None]  # share of the bin's pixels whose most probable class is right
    ece: float  # sum over bins of pixels / total x |accuracy - confidence|

    def as_dict(self) -> dict:
        return asdict(self)


def reliability(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> Reliability:
    """ECE and reliability bins of (N, C) probabilities against (N,) labels: bin i holds the confidences in
    (i / bins, (i + 1) / bins], the first bin [0, 1 / bins]."""
    edges = [i / bins for i in range(bins + 1)]
    if labels.numel() == 0:
        return Reliability(edges, [0] * bins, [None] * bins, [None] * bins, math.nan)
    confidence, predicted = probabilities.double().max(dim=1)
    correct = (predicted == labels).double()
    # ceil(confidence x bins) - 1: (i / bins, (i + 1) / bins] -> i; 0 -> bin 0
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    counts = torch.bincount(index, minlength=bins).double()
    confidence_sums = torch.bincount(index, weights=confidence, minlength=bins)
    correct_sums = torch.bincount(index, weights=correct, minlength=bins)
    filled = counts > 0
    mean_confidence = torch.where(filled, confidence_sums / counts.clamp(min=1), torch.zeros_like(counts))
    accuracy = torch.where(filled, correct_sums / counts.clamp(min=1), torch.zeros_like(counts))
    ece = float(((counts / counts.sum()) * (accuracy - mean_confidence).abs()).sum())
    return Reliability(
        edges,
        [int(count) for count in counts],
        [float(value) if keep else None for value, keep in zip(mean_confidence, filled)],
        [float(value) if keep else None for value, keep in zip(accuracy, filled)],
        ece,
    )


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> float:
    """The ECE of (N, C) probabilities against (N,) labels over `bins` equal-width confidence bins."""
    return reliability(probabilities, labels, bins).ece


def calibration_figures(pixels: PixelLogits, temperature: float, bins: int = BINS) -> dict:
    """NLL, ECE and the reliability bins of the pixels' softmax(logits / temperature)."""
    probabilities = (pixels.logits / temperature).softmax(dim=1) if len(pixels) else pixels.logits
    bins_figures = reliability(probabilities, pixels.labels, bins)
    return {
        "nll": negative_log_likelihood(pixels.logits, pixels.labels, temperature),
        "ece": bins_figures.ece,
        "reliability": bins_figures.as_dict(),
    }


@dataclass(frozen=True)
class TemperatureFit:
    """A temperature fit: the temperature kept (1.0 where the fit was refused), the NLL before (T = 1) and
    with it, the fitted value itself, the pixels it used, and why 1.0 was kept where it was."""

    temperature: float
    nll_before: float
    nll_after: float
    fitted: float | None  # the NLL's minimiser, where the search found one inside TEMPERATURE_RANGE
    pixels: int
    reason: str = ""  # empty where the fitted temperature is kept

    def as_dict(self) -> dict:
        return asdict(self)


def _nll_slope(logits: torch.Tensor, label_logits: torch.Tensor, beta: float) -> tuple[float, float]:
    """The first and second derivatives of the mean NLL of softmax(beta x logits) with respect to beta:
    mean(E_p[z] - z_label) and mean(Var_p[z]) >= 0 (so the NLL is convex in beta)."""
    slope = curvature = 0.0
    for part in chunks(label_logits.numel()):
        z = logits[part].double()
        p = (z * beta).softmax(dim=1)
        expected = (p * z).sum(dim=1)
        variance = (p * z.square()).sum(dim=1) - expected.square()
        slope += float((expected - label_logits[part].double()).sum())
        curvature += float(variance.clamp(min=0).sum())
    return slope / label_logits.numel(), curvature / label_logits.numel()


def fit_temperature(pixels: PixelLogits, iterations: int = 100, tolerance: float = 1e-10) -> TemperatureFit:
    """The temperature minimising the pixels' NLL, or 1.0 (with the reason) where there are no pixels, the
    minimiser lies outside TEMPERATURE_RANGE, or it does not lower the NLL."""
    logits, labels = pixels.logits, pixels.labels
    before = negative_log_likelihood(logits, labels)
    low_t, high_t = TEMPERATURE_RANGE

    def keep_one(reason: str, fitted: float | None = None) -> TemperatureFit:
        return TemperatureFit(1.0, before, before, fitted, len(pixels), reason)

    if len(pixels) == 0:
        return keep_one("no labelled pixels to fit on")
    if not torch.isfinite(logits).all():
        return keep_one("the logits are not all finite")
    label_logits = logits.gather(1, labels[:, None]).squeeze(1)
    # beta = 1 / T; the NLL's derivative in beta is increasing: its zero is the minimiser
    low, high = 1 / high_t, 1 / low_t
    if _nll_slope(logits, label_logits, low)[0] >= 0:
        return keep_one(f"the NLL falls as T grows up to {high_t:g}: the logits carry no usable confidence")
    if _nll_slope(logits, label_logits, high)[0] <= 0:
        return keep_one(f"the NLL falls as T shrinks down to {low_t:g}: the pixels are separated (all right)")
    # The derivative changes sign inside the bracket, so its zero (the fit) lies strictly inside the range:
    # Newton's steps and the bisections never leave (low, high).
    beta = 1.0 if low < 1.0 < high else (low + high) / 2
    for _ in range(iterations):
        slope, curvature = _nll_slope(logits, label_logits, beta)
        if slope > 0:
            high = beta
        else:
            low = beta
        step = slope / curvature if curvature > 0 else math.inf
        proposed = beta - step
        if not low < proposed < high:  # Newton left the bracket: bisect it instead
            proposed = (low + high) / 2
        if abs(proposed - beta) <= tolerance * beta:
            beta = proposed
            break
        beta = proposed
    temperature = 1 / beta
    after = negative_log_likelihood(logits, labels, temperature)
    if not after < before:
        return keep_one(f"the fitted temperature {temperature:.4g} does not lower the NLL ({after:.6f})", temperature)
    return TemperatureFit(temperature, before, after, temperature, len(pixels))
