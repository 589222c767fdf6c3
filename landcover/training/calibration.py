"""Temperature scaling fitted at the end of training, on the validation split (Guo et al. 2017).

The best epoch's weights run once in fp32 over the validation tiles (every pixel once, ignore-value
pixels left out, a seeded subsample beyond evaluation.calibration.MAX_PIXELS); the temperature that
minimises their negative log-likelihood goes into best.pt's config (`temperature`), with the fit's
figures (`calibration`: the temperature kept, the NLL before and after, the fitted value, the pixels,
and the reason where 1.0 was kept). Predict, export and mapping divide the logits by it before the
softmax. The test split is not seen here: the calibration stage reports the test split's figures.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from landcover.data.datasets import TileDataset
from landcover.data.scaling import BandScaling
from landcover.data.tilestore import TileRecord, TileStore
from landcover.evaluation.calibration import MAX_PIXELS, TemperatureFit, fit_temperature, tile_logits


def labelled_tiles(records: list[TileRecord], store: TileStore, batch_size: int) -> DataLoader:
    """Batches of (images, class masks) of `records` in order, each pixel of an image counted once."""
    return DataLoader(TileDataset(records, store, count_once=True), batch_size=batch_size, shuffle=False)


def tiles_pixels(records: list[TileRecord]) -> int:
    return sum(record.size * record.size for record in records)


def fit_on_tiles(
    model: nn.Module,
    records: list[TileRecord],
    store: TileStore,
    scaling: BandScaling,
    device: torch.device,
    batch_size: int,
    max_pixels: int = MAX_PIXELS,
) -> TemperatureFit:
    """The temperature fitted on the labelled pixels of `records` (the validation tiles), the model in fp32."""
    model = model.float().eval()
    pixels = tile_logits(
        model, labelled_tiles(records, store, batch_size), scaling, device, tiles_pixels(records), max_pixels
    )
    return fit_temperature(pixels)


def describe_fit(fit: TemperatureFit) -> str:
    """The train stage's line on the fit."""
    line = (
        f"train: temperature {fit.temperature:.4f} (validation NLL {fit.nll_before:.4f} at T=1, "
        f"{fit.nll_after:.4f} with it; {fit.pixels} pixels)"
    )
    return line + (f"; 1.0 kept: {fit.reason}" if fit.reason else "")
