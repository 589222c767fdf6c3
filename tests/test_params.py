"""Params are validated once, and a wrong one is named by its key."""

from __future__ import annotations

import pytest
import yaml

from landcover.io.errors import PipelineError
from landcover.io.params import (
    EVALUATE_DEFAULTS,
    OUTPUT_STRIDE_MULTIPLE,
    PREDICT_DEFAULTS,
    AugmentParams,
    DataParams,
    EvaluateParams,
    ModelParams,
    PredictParams,
    SampleParams,
    SplitParams,
    TileParams,
    TrainParams,
    load_params,
    read_section,
)
from tests.conftest import REPO

SECTIONS = {
    "data": DataParams,
    "sample": SampleParams,
    "tile": TileParams,
    "split": SplitParams,
    "augment": AugmentParams,
    "model": ModelParams,
    "train": TrainParams,
    "predict": PredictParams,
    "evaluate": EvaluateParams,
}


def test_the_predict_defaults_are_the_repository_params_predict_section():
    assert PREDICT_DEFAULTS == load_params(REPO / "params.yaml")["predict"]


def test_the_evaluate_defaults_are_the_repository_params_evaluate_section():
    assert EVALUATE_DEFAULTS == load_params(REPO / "params.yaml")["evaluate"]
    assert EVALUATE_DEFAULTS["bootstrap"] >= 1000  # enough resamples for a 95% interval's ends


class ParamsRead(Exception):
    """Raised where a mapping command checks its predict params: the test needs no model past that point."""


@pytest.mark.parametrize("command", ["map", "region"])
def test_the_mapping_commands_outside_a_project_use_the_predict_defaults(tmp_path, monkeypatch, command):
    import importlib

    module = importlib.import_module(f"landcover.cli.{command}")
    seen = []

    def check(params):
        seen.append(params)
        raise ParamsRead

    monkeypatch.setattr(module, "check_predict_options", check)
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    argv = ["--model", "model.int8.onnx", "--input", "scene.tif", "--output", "out"]
    with pytest.raises(ParamsRead):
        module.main(argv)
    assert seen == [PredictParams(**PREDICT_DEFAULTS)]
    with pytest.raises(PipelineError, match=r"^other.yaml: cannot read params \(No such file or directory\)"):
        module.main([*argv, "--params", "other.yaml"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"predict": {**PREDICT_DEFAULTS, "window": 128}}))
    with pytest.raises(ParamsRead):
        module.main(argv)
    assert seen[-1].window == 128  # a project's params.yaml is read as before
    assert not (tmp_path / "out").exists()


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    for name, cls in SECTIONS.items():
        assert read_section(params, name, cls) == cls(**params[name])


@pytest.mark.parametrize(
    "section, cls, values, message",
    [
        ("tile", TileParams, {"size": 256, "stride": 0, "images": "source"}, "tile.stride must be at least 1"),
        ("tile", TileParams, {"size": 256, "stride": 300, "images": "source"}, "tile.stride must not exceed tile.size"),
        # DeepLabV3+ takes sides in multiples of 16 only: refused here, not by smp's traceback in training
        (
            "tile",
            TileParams,
            {"size": 100, "stride": 100, "images": "source"},
            r"^params: tile.size must be a positive multiple of 16 ",
        ),
        (
            "tile",
            TileParams,
            {"size": 8, "stride": 8, "images": "source"},
            r"^params: tile.size must be a positive multiple of 16 ",
        ),
        ("tile", TileParams, {"size": "big", "stride": 1, "images": "source"}, "tile.size must be int"),
        ("tile", TileParams, {"size": True, "stride": 1, "images": "source"}, "tile.size must be int"),
        ("tile", TileParams, {"size": 256, "images": "source"}, "missing key tile.stride"),
        (
            "tile",
            TileParams,
            {"size": 256, "stride": 256, "strides": 1, "images": "source"},
            "unknown key tile.strides",
        ),
        (
            "split",
            SplitParams,
            {
                "method": "ratios",
                "seed": 1,
                "ratios": {"train": 0.7, "val": 0.2, "test": 0.2},
                "lists": "x",
                "block_size": 64,
                "buffer": 0,
            },
            "split.ratios must sum to 1",
        ),
        (
            "split",
            SplitParams,
            {
                "method": "ratios",
                "seed": 1,
                "ratios": {"train": 0.8, "val": 0.2},
                "lists": "x",
                "block_size": 64,
                "buffer": 0,
            },
            "split.ratios must have exactly the keys train, val, test",
        ),
        (
            "split",
            SplitParams,
            {
                "method": "blocks",
                "seed": 1,
                "ratios": {"train": 1, "val": 0, "test": 0},
                "lists": "x",
                "block_size": 0,
                "buffer": 0,
            },
            "split.block_size must be at least 1 pixel",
        ),
        (
            "split",
            SplitParams,
            {
                "method": "blocks",
                "seed": 1,
                "ratios": {"train": 1, "val": 0, "test": 0},
                "lists": "x",
                "block_size": 8,
                "buffer": -1,
            },
            "split.buffer must be 0 or more pixels",
        ),
        ("augment", AugmentParams, {"scale_min": 0, "colour_jitter": 0.1}, "augment.scale_min must be in"),
    ],
)
def test_bad_values_are_named(section, cls, values, message):
    """(An option's names are its owner's to check: tests/test_options.py.)"""
    with pytest.raises(PipelineError, match=message):
        read_section({section: values}, section, cls)


def test_every_size_the_model_takes_whole_follows_one_rule():
    """tile.size and predict.window: the same multiple, the same words, from one place."""
    assert OUTPUT_STRIDE_MULTIPLE == 16
    assert read_section({"tile": {"size": 16, "stride": 16, "images": "source"}}, "tile", TileParams).size == 16
    refusals = []
    for section, cls, key in (("tile", TileParams, "size"), ("predict", PredictParams, "window")):
        with pytest.raises(PipelineError) as refused:
            read_section(with_value(section, key, 200), section, cls)
        refusals.append(str(refused.value).replace(f"{section}.{key}", "KEY"))
    expected = "params: KEY must be a positive multiple of 16 (DeepLabV3+'s output stride), got 200"
    assert refusals == [expected, expected]


def test_missing_section_and_bad_yaml(tmp_path):
    with pytest.raises(PipelineError, match="section 'tile' is missing"):
        read_section({}, "tile", TileParams)
    path = tmp_path / "params.yaml"
    path.write_text("tile: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(path)


def with_value(section: str, key: str, value) -> dict:
    """The repository's params with one key of one section replaced."""
    params = load_params(REPO / "params.yaml")
    return {section: {**params[section], key: value}}


@pytest.mark.parametrize("section", ["train", "predict"])
def test_a_params_file_with_the_old_bf16_key_is_refused_naming_its_replacement(section):
    """bf16 became precision: an old file is not mapped (one spelling in dvc.lock and checkpoints), it is refused."""
    params = load_params(REPO / "params.yaml")
    old = {key: value for key, value in params[section].items() if key != "precision"} | {"bf16": True}
    with pytest.raises(
        PipelineError,
        match=rf"^params: unknown key {section}\.bf16: replaced by {section}\.precision "
        r"\(auto, bf16, fp16 or fp32; true was auto, false fp32\)$",
    ):
        read_section({section: old}, section, SECTIONS[section])


def test_a_null_encoder_weights_reads_as_none():
    """Params files written before "none" keep working, and give the same checkpoint bytes."""
    assert read_section(with_value("model", "encoder_weights", None), "model", ModelParams).encoder_weights == "none"


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("model", "encoder", "efficientnet-b0"),
        ("model", "encoder_weights", "none"),
        ("model", "encoder_weights", "imagenet"),
        ("model", "encoder_weights", "weights/resnet50.pth"),
        ("train", "epochs", 1),
        ("train", "workers", 0),
        ("train", "shuffle_block", 1),
        ("train", "weight_decay", 0),  # an int where a float is expected
        ("train", "loss", "ce"),
        ("train", "loss", "dice"),
        ("train", "scheduler", "none"),
        ("train", "restart_epochs", 1),
        ("train", "device", "cpu"),
        ("train", "precision", "fp16"),  # valid as a param; refused on a device without CUDA when training starts
        ("train", "precision", "fp32"),
        ("train", "processes", 1),
        ("train", "nodes", 1),
        ("predict", "precision", "bf16"),
        ("predict", "window", 16),
        ("predict", "overlap", 0),
        ("predict", "overlap", 0.99),
        ("predict", "batch_size", 1),
        ("sample", "valid_images", 0),
        ("sample", "image_size", 32),
        ("sample", "jpeg_quality", 95),
        ("evaluate", "bootstrap", 1),
    ],
)
def test_boundary_values_are_accepted(section, key, value):
    cls = SECTIONS[section]
    assert getattr(read_section(with_value(section, key, value), section, cls), key) == value


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("model", "encoder", " ", "model.encoder must name an encoder"),
        ("model", "encoder", None, "model.encoder must be str"),
        ("model", "encoder_weights", 1, "model.encoder_weights must be str"),
        ("model", "encoder_weights", " ", "model.encoder_weights must be none, imagenet or a weights file"),
        ("train", "epochs", 0, "train.epochs must be at least 1"),
        ("train", "epochs", 2.5, "train.epochs must be int"),
        ("train", "batch_size", 0, "train.batch_size must be at least 1"),
        ("train", "workers", -1, "train.workers must be 0 or more"),
        ("train", "shuffle_block", 0, "train.shuffle_block must be at least 1"),
        ("train", "lr", 0, "train.lr must be above 0"),
        ("train", "lr", float("nan"), "train.lr must be a finite number"),
        ("train", "lr", "fast", "train.lr must be float"),
        ("train", "weight_decay", -0.1, "train.weight_decay must be 0 or more"),
        ("train", "restart_epochs", 0, "train.restart_epochs must be at least 1"),
        ("train", "seed", "seven", "train.seed must be int"),
        ("train", "precision", True, "train.precision must be str"),
        ("train", "processes", 0, "train.processes must be at least 1"),
        ("train", "nodes", 0, "train.nodes must be at least 1"),
        ("train", "sync_batchnorm", "no", "train.sync_batchnorm must be bool"),
        ("train", "deterministic", 1, "train.deterministic must be bool"),
        ("train", "channels_last", 1, "train.channels_last must be bool"),
        ("train", "resume", None, "train.resume must be bool"),
        ("predict", "window", 0, "predict.window must be a positive multiple of 16"),
        ("predict", "window", 200, "predict.window must be a positive multiple of 16"),
        ("predict", "overlap", 1, "predict.overlap must be in \\[0, 1\\)"),
        ("predict", "overlap", -0.1, "predict.overlap must be in \\[0, 1\\)"),
        ("predict", "batch_size", 0, "predict.batch_size must be at least 1"),
        ("predict", "tta", "no", "predict.tta must be bool"),
        ("predict", "compile", 0, "predict.compile must be bool"),
        ("sample", "train_images", 0, "sample.train_images must be at least 1"),
        ("sample", "test_images", -1, "sample.test_images must be 0 or more"),
        ("sample", "image_size", 31, "sample.image_size must be at least 32 pixels"),
        ("sample", "jpeg_quality", 96, "sample.jpeg_quality must be between 1 and 95"),
        ("sample", "jpeg_quality", 0, "sample.jpeg_quality must be between 1 and 95"),
        ("evaluate", "bootstrap", 0, "^params: evaluate.bootstrap must be at least 1, got 0$"),
        ("evaluate", "bootstrap", 1000.5, "evaluate.bootstrap must be int"),
        ("evaluate", "bootstrap", True, "evaluate.bootstrap must be int"),
        ("evaluate", "seed", "zero", "evaluate.seed must be int"),
    ],
)
def test_each_bad_value_is_refused_naming_its_key(section, key, value, message):
    with pytest.raises(PipelineError, match=message):
        read_section(with_value(section, key, value), section, SECTIONS[section])


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("bands", [], r"^params: data.bands must list at least one band, got \[\]$"),
        ("bands", [1, 2, 1], r"^params: data.bands must not repeat a band \(band 1 is repeated\), got \[1, 2, 1\]$"),
        ("bands", [0, 1], "data.bands must number bands from 1"),
        ("bands", [1, "2"], r"data.bands\[1\] must be int"),
        ("bands", 3, "data.bands must be a list"),
        ("value_range", [0], r"data.value_range must be \[low, high\] or one \[low, high\] per band \(3\)"),
        ("value_range", [[0, 1], [0, 1]], r"data.value_range must be \[low, high\] or one \[low, high\] per band"),
        ("value_range", [255, 0], "data.value_range must have low below high"),
        ("value_range", [0, "high"], r"data.value_range\[1\] must be float"),
    ],
)
def test_bad_band_and_scaling_params_are_named(key, value, message):
    with pytest.raises(PipelineError, match=message):
        read_section(with_value("data", key, value), "data", DataParams)


def test_band_params_are_read_as_tuples_with_a_range_per_band():
    params = read_section(with_value("data", "value_range", [[0, 10], [1, 2], [-3, 3.5]]), "data", DataParams)
    assert params.bands == (1, 2, 3) and params.scaling == "auto"
    assert params.value_range == ((0.0, 10.0), (1.0, 2.0), (-3.0, 3.5))
    assert read_section(load_params(REPO / "params.yaml"), "data", DataParams).value_range == ((0.0, 255.0),) * 3
