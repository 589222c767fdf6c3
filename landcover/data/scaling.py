"""How image band values reach the model: which bands, in which order, and how each is scaled.

A `BandScaling` is recorded in every checkpoint and exported model, so training, evaluation,
export and mapping feed the model alike. Per band (in the order of `bands`), the model's input is

    v = (x - low) / (high - low), clipped to [0, 1] where `clip`;  input = (v - mean) / std

uint8 RGB (DeepGlobe's, the default) is `low` 0, `high` 255 and ImageNet's mean and std: the same
floats, bit for bit, as `x / 255` then `(v - mean) / std`. Other types use a fixed range from
params (`data.scaling: range`) or the bands' mean and std over the training split
(`data.scaling: statistics`: low 0, high 1, not clipped). docs/parameters.md explains the params.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landcover.io.errors import PipelineError
from landcover.io.outputs import write_json
from landcover.io.params import DataParams, choose

# ImageNet statistics, written out here because smp's get_preprocessing_fn fetches them from the hub.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Bands beyond ImageNet's three (near-infrared, ...) of a fixed range: about ImageNet's average.
OTHER_BAND_MEAN, OTHER_BAND_STD = 0.45, 0.225
BAND_STATISTICS = "band_statistics.json"  # the split stage writes it beside the split indexes, for scene datasets
# The types an image's bands may have (numpy's names), each exactly representable in float32.
DTYPES = ("uint8", "uint16", "int16", "float32")
RGB = (1, 2, 3)


def imagenet_like(count: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for `count` bands scaled to 0..1: ImageNet's for the first three, OTHER_BAND's beyond."""
    mean = IMAGENET_MEAN[:count] + (OTHER_BAND_MEAN,) * max(0, count - 3)
    std = IMAGENET_STD[:count] + (OTHER_BAND_STD,) * max(0, count - 3)
    return mean, std


@dataclass(frozen=True)
class BandScaling:
    """The bands a model sees and how their values are scaled: one entry per band in low, high, mean, std."""

    bands: tuple[int, ...]  # numbered from 1 (GDAL's numbering), in the order the model sees them
    dtype: str  # numpy's name of the images' type: one of DTYPES
    low: tuple[float, ...]
    high: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    clip: bool  # (x - low) / (high - low) clipped to [0, 1]

    def __post_init__(self) -> None:
        for name in ("bands", "low", "high", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "bands", tuple(int(band) for band in self.bands))
        for name in ("low", "high", "mean", "std"):
            object.__setattr__(self, name, tuple(float(value) for value in getattr(self, name)))
        count = len(self.bands)
        if count == 0 or any(band < 1 for band in self.bands) or len(set(self.bands)) != count:
            raise ValueError(f"bands must be distinct numbers from 1, got {list(self.bands)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if any(len(getattr(self, name)) != count for name in ("low", "high", "mean", "std")):
            raise ValueError(f"low, high, mean and std need one value per band ({count})")
        values = self.low + self.high + self.mean + self.std
        if not all(math.isfinite(value) for value in values):
            raise ValueError("low, high, mean and std must be finite numbers")
        if not all(low < high for low, high in zip(self.low, self.high)) or min(self.std) <= 0:
            raise ValueError("each band needs low below high and a std above 0")

    @property
    def channels(self) -> int:
        """The model's input channels: one per band."""
        return len(self.bands)

    @property
    def input_dtype(self) -> str:
        """The type of the arrays the model takes (an exported model's input): uint8 images as they are, any
        other type as float32 (uint16 and int16 convert exactly)."""
        return "uint8" if self.dtype == "uint8" else "float32"

    @property
    def clip_needed(self) -> bool:
        """Whether clipping can change a value: not where every value of an integer type lies within low..high."""
        if not self.clip:
            return False
        if self.dtype == "float32":
            return True
        info = np.iinfo(np.dtype(self.dtype))
        return not all(low <= info.min and info.max <= high for low, high in zip(self.low, self.high))

    def to_config(self) -> dict[str, Any]:
        """The scaling as plain JSON values (a checkpoint's config, an exported model's metadata)."""
        return {
            "bands": list(self.bands),
            "dtype": self.dtype,
            "low": list(self.low),
            "high": list(self.high),
            "mean": list(self.mean),
            "std": list(self.std),
            "clip": self.clip,
        }

    @classmethod
    def from_config(cls, config: dict | None) -> BandScaling:
        """The scaling to_config wrote; None (a checkpoint or export from before scalings were recorded) gives
        UINT8_RGB, what every model was trained with then. ValueError, KeyError or TypeError if malformed."""
        if config is None:
            return UINT8_RGB
        if not isinstance(config, dict):
            raise TypeError(f"a scaling must be a mapping, got {type(config).__name__}")
        keys = ("bands", "dtype", "low", "high", "mean", "std", "clip")
        unknown = sorted(set(config) - set(keys))
        if unknown:
            raise ValueError(f"unknown scaling key {unknown[0]!r}")
        if not isinstance(config["clip"], bool):
            raise TypeError(f"scaling clip must be true or false, got {config['clip']!r}")
        return cls(**{key: config[key] for key in keys})


def uint8_scaling(bands: Sequence[int] = RGB) -> BandScaling:
    """uint8 images as today: x / 255, standardised with ImageNet's mean and std (RGB's three, then OTHER_BAND's)."""
    mean, std = imagenet_like(len(bands))
    count = len(bands)
    return BandScaling(tuple(bands), "uint8", (0.0,) * count, (255.0,) * count, mean, std, clip=True)


UINT8_RGB = uint8_scaling(RGB)  # DeepGlobe's, and every model's before bands and scalings were recorded


def range_scaling(bands: Sequence[int], dtype: str, value_range: Sequence[tuple[float, float]]) -> BandScaling:
    """Each band's [low, high] mapped to 0..1 (clipped), then standardised as uint8_scaling's."""
    mean, std = imagenet_like(len(bands))
    low, high = zip(*value_range)
    return BandScaling(tuple(bands), dtype, low, high, mean, std, clip=True)


def statistics_scaling(bands: Sequence[int], dtype: str, mean: Sequence[float], std: Sequence[float]) -> BandScaling:
    """Each band standardised by its mean and std over the training split, raw values otherwise (not clipped)."""
    count = len(bands)
    return BandScaling(tuple(bands), dtype, (0.0,) * count, (1.0,) * count, tuple(mean), tuple(std), clip=False)


Statistics = tuple[Sequence[float], Sequence[float]]  # (mean, std) per band over the training split


def _range(data_params: DataParams, dtype: str, statistics: Statistics | None) -> BandScaling:
    return range_scaling(data_params.bands, dtype, data_params.value_range)


def _statistics(data_params: DataParams, dtype: str, statistics: Statistics | None) -> BandScaling:
    bands = data_params.bands
    if statistics is None:
        raise PipelineError(
            f"params: data.scaling {data_params.scaling} (for {dtype} images) needs the bands' statistics over the "
            "training split, and none were given"
        )
    mean, std = statistics
    if len(mean) != len(bands) or len(std) != len(bands):
        raise PipelineError(
            f"params: data.bands has {len(bands)} bands but the training split's statistics have {len(mean)}; "
            "run the split stage again"
        )
    return statistics_scaling(bands, dtype, mean, std)


def _auto(data_params: DataParams, dtype: str, statistics: Statistics | None) -> BandScaling:
    """uint8 images as uint8_scaling (DeepGlobe's), any other type by its statistics."""
    if dtype == "uint8":
        return uint8_scaling(data_params.bands)
    return _statistics(data_params, dtype, statistics)


# data.scaling: each name's scaling of images of a type (numpy's name), given the training split's statistics
SCALINGS: dict[str, Callable[[DataParams, str, Statistics | None], BandScaling]] = {
    "auto": _auto,
    "range": _range,
    "statistics": _statistics,
}


def scaling_from_params(data_params: DataParams, dtype: str, statistics: Statistics | None = None) -> BandScaling:
    """The scaling that data.bands, data.scaling and data.value_range give images of `dtype` (numpy's name).

    `statistics` is (mean, std) per band over the training split (band_statistics), needed by data.scaling
    statistics, and by auto for a type other than uint8.
    """
    dtype = str(np.dtype(dtype))
    if dtype not in DTYPES:
        raise PipelineError(f"params: data.scaling: images of type {dtype} are not supported ({', '.join(DTYPES)})")
    return choose("data.scaling", data_params.scaling, SCALINGS)(data_params, dtype, statistics)


def band_statistics(
    samples: Iterable[np.ndarray | tuple[np.ndarray, np.ndarray]],
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per band over the valid pixels of HxWxC `samples`, accumulated in float64.

    A sample is an array (every finite pixel valid) or (array, HxW bool valid mask). Samples are merged
    with Chan et al.'s pairwise update, so the result does not lose precision over many samples. The std
    is the population's; a band without spread (or without any valid pixel) gets std 1.0, not 0.
    """
    count: np.ndarray | None = None
    mean = m2 = np.zeros(0)
    for sample in samples:
        array, valid = sample if isinstance(sample, tuple) else (sample, None)
        if array.ndim == 2:
            array = array[..., None]
        values = array.reshape(-1, array.shape[-1]).astype(np.float64)
        keep = np.isfinite(values).all(axis=1)
        if valid is not None:
            keep &= np.asarray(valid, dtype=bool).reshape(-1)
        values = values[keep]
        if count is None:
            count, mean, m2 = np.zeros(values.shape[1]), np.zeros(values.shape[1]), np.zeros(values.shape[1])
        if values.shape[1] != len(mean):
            raise ValueError(f"samples have {values.shape[1]} bands, earlier ones {len(mean)}")
        n = len(values)
        if n == 0:
            continue
        sample_mean = values.mean(axis=0)
        sample_m2 = ((values - sample_mean) ** 2).sum(axis=0)
        total = count + n
        delta = sample_mean - mean
        mean = mean + delta * n / total
        m2 = m2 + sample_m2 + delta**2 * count * n / total
        count = total
    if count is None:
        raise ValueError("no samples to compute band statistics from")
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(m2 / count)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return tuple(float(value) for value in mean), tuple(float(value) for value in std)


def write_band_statistics(
    path: Path, bands: Sequence[int], dtype: str, statistics: tuple[Sequence[float], Sequence[float]]
) -> None:
    """The training split's band statistics as JSON (the split stage's band_statistics.json)."""
    mean, std = statistics
    write_json(path, {"bands": list(bands), "dtype": dtype, "mean": list(mean), "std": list(std)})


def read_band_statistics(path: Path, bands: Sequence[int]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) from write_band_statistics' file, which must be of `bands` (data.bands)."""
    try:
        record = json.loads(Path(path).read_text())
        recorded, mean, std = tuple(record["bands"]), tuple(record["mean"]), tuple(record["std"])
    except OSError as error:
        raise PipelineError(f"{path}: cannot read band statistics ({error.strerror})") from None
    except (ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"{path}: not band statistics ({type(error).__name__}: {error})") from None
    if recorded != tuple(bands):
        raise PipelineError(
            f"{path}: statistics of bands {list(recorded)}, but data.bands is {list(bands)}; run the split stage again"
        )
    return tuple(map(float, mean)), tuple(map(float, std))
