"""Bands and their scaling: made from params, recorded as JSON, statistics over the training split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from landcover.data.scaling import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    UINT8_RGB,
    BandScaling,
    band_statistics,
    read_band_statistics,
    scaling_from_params,
    write_band_statistics,
)
from landcover.io.errors import PipelineError
from landcover.io.params import DataParams, load_params
from tests.conftest import REPO


def data_params(**values) -> DataParams:
    """The repository's data params with `values` replaced."""
    return DataParams(**(load_params(REPO / "params.yaml")["data"] | values))


def test_the_default_params_give_deepglobes_uint8_rgb_scaling():
    scaling = scaling_from_params(data_params(), "uint8")
    assert scaling == UINT8_RGB
    assert scaling.to_config() == {
        "bands": [1, 2, 3],
        "dtype": "uint8",
        "low": [0.0, 0.0, 0.0],
        "high": [255.0, 255.0, 255.0],
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "clip": True,
    }
    assert scaling.channels == 3 and scaling.input_dtype == "uint8" and not scaling.clip_needed


def test_a_config_round_trips_and_none_reads_as_the_uint8_rgb_default():
    scaling = BandScaling((4, 3, 2, 1), "uint16", (0,) * 4, (1,) * 4, (1.5, 2, 3, 4), (0.5, 1, 1, 2), clip=False)
    assert BandScaling.from_config(json.loads(json.dumps(scaling.to_config()))) == scaling
    assert BandScaling.from_config(None) == UINT8_RGB  # checkpoints and exports from before scalings were recorded


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bands": [1, 1, 2]}, "bands must be distinct"),
        ({"bands": []}, "bands must be distinct"),
        ({"dtype": "int32"}, "dtype must be one of"),
        ({"low": [0, 0]}, "one value per band"),
        ({"high": [255, 0, 255]}, "low below high"),
        ({"std": [1, 0, 1]}, "std above 0"),
        ({"mean": [0, float("nan"), 0]}, "finite"),
        ({"unknown": 1}, "unknown scaling key"),
    ],
)
def test_a_malformed_config_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        BandScaling.from_config(UINT8_RGB.to_config() | change)


def test_range_scaling_takes_one_range_for_all_bands_or_one_per_band():
    four = scaling_from_params(data_params(bands=[1, 2, 3, 4], scaling="range", value_range=[0, 3000]), "uint16")
    assert four.low == (0.0,) * 4 and four.high == (3000.0,) * 4 and four.clip and four.clip_needed
    assert four.mean == (*IMAGENET_MEAN, 0.45) and four.std == (*IMAGENET_STD, 0.225)
    assert four.input_dtype == "float32" and four.dtype == "uint16"
    each = scaling_from_params(data_params(bands=[4, 1], scaling="range", value_range=[[0, 10], [-5, 5]]), "int16")
    assert each.bands == (4, 1) and each.low == (0.0, -5.0) and each.high == (10.0, 5.0)
    full = scaling_from_params(data_params(scaling="range", value_range=[0, 65535]), "uint16")
    assert not full.clip_needed  # no uint16 value lies outside 0..65535


def test_statistics_scaling_uses_the_training_splits_statistics_and_needs_them():
    stats = ((100.0, 200.0, 300.0, 400.0), (10.0, 20.0, 30.0, 40.0))
    scaling = scaling_from_params(data_params(bands=[1, 2, 3, 4]), "uint16", stats)  # auto: statistics for uint16
    assert scaling.mean == stats[0] and scaling.std == stats[1] and scaling.low == (0.0,) * 4
    assert scaling.high == (1.0,) * 4 and not scaling.clip
    with pytest.raises(PipelineError, match=r"^params: data.scaling auto \(for uint16 images\) needs the bands'"):
        scaling_from_params(data_params(bands=[1, 2, 3, 4]), "uint16")
    with pytest.raises(PipelineError, match="data.bands has 3 bands but the training split's statistics have 4"):
        scaling_from_params(data_params(scaling="statistics"), "uint8", stats)
    with pytest.raises(PipelineError, match="images of type int32 are not supported"):
        scaling_from_params(data_params(), "int32")


def test_band_statistics_count_valid_finite_pixels_only_in_float64():
    rng = np.random.default_rng(0)
    first = rng.integers(0, 65536, (40, 30, 2), dtype=np.uint16)
    second = rng.integers(30000, 65536, (20, 50, 2), dtype=np.uint16)
    valid = rng.random((20, 50)) > 0.3
    floats = rng.normal(5, 2, (10, 10, 2)).astype(np.float32)
    floats[0, 0, 1] = np.nan  # the whole pixel is left out
    mean, std = band_statistics([first, (second, valid), floats])
    pixels = np.concatenate([first.reshape(-1, 2), second[valid].reshape(-1, 2), floats.reshape(-1, 2)[1:]]).astype(
        np.float64
    )
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-9)
    constant = band_statistics([np.full((4, 4, 1), 7, dtype=np.uint8)])
    assert constant == ((7.0,), (1.0,))  # no spread: std 1, not a division by 0


def test_band_statistics_round_trip_through_json_for_their_bands(tmp_path):
    path = tmp_path / "band_statistics.json"
    write_band_statistics(path, [4, 3, 2], "uint16", ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)))
    assert read_band_statistics(path, [4, 3, 2]) == ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
    with pytest.raises(PipelineError, match=r"band_statistics.json: statistics of bands \[4, 3, 2\], but data.bands"):
        read_band_statistics(path, [1, 2, 3])
    path.write_text("{")
    with pytest.raises(PipelineError, match="band_statistics.json: not band statistics"):
        read_band_statistics(path, [4, 3, 2])
