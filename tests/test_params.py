"""Params are validated once, and a wrong one is named by its key."""
from __future__ import annotations

import pytest

from stages.core.errors import PipelineError
from stages.core.params import (AugmentParams, SampleParams, SplitParams, TileParams, load_params,
                                read_section)
from tests.conftest import REPO


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    for name, cls in [("sample", SampleParams), ("tile", TileParams), ("split", SplitParams),
                      ("augment", AugmentParams)]:
        read_section(params, name, cls)


@pytest.mark.parametrize("section, cls, values, message", [
    ("tile", TileParams, {"size": 256, "stride": 0}, "tile.stride must be at least 1"),
    ("tile", TileParams, {"size": 256, "stride": 300}, "tile.stride must not exceed tile.size"),
    ("tile", TileParams, {"size": "big", "stride": 1}, "tile.size must be int"),
    ("tile", TileParams, {"size": True, "stride": 1}, "tile.size must be int"),
    ("tile", TileParams, {"size": 256}, "missing key tile.stride"),
    ("tile", TileParams, {"size": 256, "stride": 256, "strides": 1}, "unknown key tile.strides"),
    ("split", SplitParams, {"method": "ratios", "seed": 1, "ratios": {"train": 0.7, "val": 0.2, "test": 0.2},
                            "lists": "x"}, "split.ratios must sum to 1"),
    ("split", SplitParams, {"method": "ratios", "seed": 1, "ratios": {"train": 0.8, "val": 0.2}, "lists": "x"},
     "split.ratios must have exactly the keys train, val, test"),
    ("split", SplitParams, {"method": "random", "seed": 1, "ratios": {"train": 1, "val": 0, "test": 0},
                            "lists": "x"}, "split.method must be 'ratios' or 'lists'"),
    ("augment", AugmentParams, {"scale_min": 0, "colour_jitter": 0.1}, "augment.scale_min must be in"),
])
def test_bad_values_are_named(section, cls, values, message):
    with pytest.raises(PipelineError, match=message):
        read_section({section: values}, section, cls)


def test_missing_section_and_bad_yaml(tmp_path):
    with pytest.raises(PipelineError, match="section 'tile' is missing"):
        read_section({}, "tile", TileParams)
    path = tmp_path / "params.yaml"
    path.write_text("tile: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(path)
