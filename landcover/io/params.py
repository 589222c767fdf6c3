"""params.yaml, read once and validated into one frozen dataclass per section.

Each stage reads only the sections it declares in dvc.yaml and passes plain values on. A wrong
param (missing, unknown, wrong type or out of range) raises PipelineError naming the key. The names a
choosable option takes (data.layout, train.loss, ...) live in one registry beside their implementation, in a
layer above this one: the module that owns an option checks its name with `choose` as the params are read.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from landcover.io.errors import PipelineError

DEFAULT_PARAMS = Path("params.yaml")
# The predict section the mapping commands use outside a project (no --params, no ./params.yaml): the
# repository's params.yaml predict section, which tests/test_params.py holds them equal to.
PREDICT_DEFAULTS: dict[str, Any] = {
    "window": 256,
    "overlap": 0.25,
    "batch_size": 8,
    "tta": False,
    "precision": "auto",
    "compile": False,
    "runtime": "auto",
    "int8": True,
    "processes": 1,
}
# The evaluate section that `landcover-compare` uses outside a project (no ./params.yaml): the repository's
# params.yaml evaluate section, which tests/test_params.py holds them equal to.
EVALUATE_DEFAULTS: dict[str, Any] = {"seed": 0, "bootstrap": 2000}
NO_ENCODER_WEIGHTS = "none"  # model.encoder_weights for a randomly initialised encoder
# DeepLabV3+ halves its input four times (output stride 16) and scales back up: smp refuses sides that are
# not multiples of 16. Every param whose size reaches the model whole is checked against it here, at params
# time, rather than by smp's traceback stages later.
OUTPUT_STRIDE_MULTIPLE = 16


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except OSError as error:
        raise PipelineError(f"{path}: cannot read params ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise PipelineError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{path}: expected a mapping of sections at the top level")
    return params


Section = TypeVar("Section")
Choice = TypeVar("Choice")


def choose(key: str, name: str, registry: Mapping[str, Choice]) -> Choice:
    """What `name` stands for in the registry of the option `key`, or PipelineError naming the key and its names.

    Each choosable option's names live in one registry, beside what implements them; params only checks their
    type, and the module that owns the option checks the name here as the params are read.
    """
    if name not in registry:
        raise PipelineError(f"params: {key} must be one of {', '.join(registry)}, got {name!r}")
    return registry[name]


# Keys that were renamed: a params file that still has one is refused (not mapped, so dvc.lock and
# checkpoints have one spelling), with the error naming its replacement.
REPLACED_KEYS = {
    "train.bf16": "train.precision (auto, bf16, fp16 or fp32; true was auto, false fp32)",
    "predict.bf16": "predict.precision (auto, bf16, fp16 or fp32; true was auto, false fp32)",
}


def _check_type(key: str, value: Any, expected: Any) -> Any:
    """Return `value` as `expected` (int accepted for float), or raise naming `key`."""
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        kinds = [option for option in options if option is not type(None)]
        if len(kinds) > 1:
            return value  # bool | str (predict.int8): checked by the section's __post_init__, which names its values
        expected = kinds[0]
    if typing.get_origin(expected) in (list, tuple):
        # checked item by item by the section's __post_init__, which knows their shape
        if not isinstance(value, list | tuple):
            raise PipelineError(f"params: {key} must be a list, got {value!r}")
        return value
    if typing.get_origin(expected) is dict:
        if not isinstance(value, dict):
            raise PipelineError(f"params: {key} must be a mapping, got {value!r}")
        _, value_type = typing.get_args(expected)
        return {name: _check_type(f"{key}.{name}", item, value_type) for name, item in value.items()}
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise PipelineError(f"params: {key} must be {expected.__name__}, got {value!r}")
    if expected is float and not math.isfinite(value):
        raise PipelineError(f"params: {key} must be a finite number, got {value!r}")
    return value


def read_section(params: dict[str, Any], name: str, cls: type[Section]) -> Section:
    """Build `cls` from params[name]: every field required, no unknown keys, types checked."""
    raw = params.get(name)
    if not isinstance(raw, dict):
        raise PipelineError(f"params: section {name!r} is missing or not a mapping")
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{name}.{unknown[0]}"
        if key in REPLACED_KEYS:
            raise PipelineError(f"params: unknown key {key}: replaced by {REPLACED_KEYS[key]}")
        raise PipelineError(f"params: unknown key {key} (known: {', '.join(fields)})")
    missing = [key for key in fields if key not in raw]
    if missing:
        raise PipelineError(f"params: missing key {name}.{missing[0]}")
    hints = typing.get_type_hints(cls)
    values = {key: _check_type(f"{name}.{key}", raw[key], hints[key]) for key in fields}
    return cls(**values)


def _require(condition: bool, key: str, message: str, value: Any) -> None:
    if not condition:
        raise PipelineError(f"params: {key} {message}, got {value!r}")


def _require_model_side(key: str, value: int) -> None:
    """`value` is a side the model is given whole: a positive multiple of OUTPUT_STRIDE_MULTIPLE."""
    _require(
        value >= OUTPUT_STRIDE_MULTIPLE and value % OUTPUT_STRIDE_MULTIPLE == 0,
        key,
        f"must be a positive multiple of {OUTPUT_STRIDE_MULTIPLE} (DeepLabV3+'s output stride)",
        value,
    )


def _numbers(key: str, value: Any) -> tuple[float, ...]:
    """A list of finite numbers (ints accepted), as floats, or PipelineError naming `key`."""
    _require(isinstance(value, list), key, "must be a list of numbers", value)
    return tuple(_check_type(f"{key}[{index}]", item, float) for index, item in enumerate(value))


@dataclass(frozen=True)
class DataParams:
    raw: str  # dataset root; reaches the tile stage through its command line (dvc.yaml), not read_section
    # How the dataset is laid out under data.raw: a name in landcover/data/scenes.py's LAYOUTS (docs/data.md).
    layout: str
    # Vector labels: the attribute holding each polygon's class name or label value.
    label_attribute: str
    # The image bands the model sees, numbered from 1 as GDAL numbers them, in the order it sees them.
    bands: tuple[int, ...]
    # How band values reach the model: a name in landcover/data/scaling.py's SCALINGS.
    scaling: str
    # data.scaling range: [low, high] for every band, or one [low, high] per band (in data.bands' order).
    value_range: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        _require(bool(self.label_attribute), "data.label_attribute", "must name an attribute", self.label_attribute)
        bands = self.bands
        _require(isinstance(bands, list | tuple) and len(bands) > 0, "data.bands", "must list at least one band", bands)
        checked = tuple(_check_type(f"data.bands[{index}]", band, int) for index, band in enumerate(bands))
        _require(all(band >= 1 for band in checked), "data.bands", "must number bands from 1", bands)
        repeated = next((band for band in checked if checked.count(band) > 1), None)
        _require(repeated is None, "data.bands", f"must not repeat a band (band {repeated} is repeated)", bands)
        object.__setattr__(self, "bands", checked)
        object.__setattr__(self, "value_range", self._ranges(self.value_range))

    def _ranges(self, value: Any) -> tuple[tuple[float, float], ...]:
        """data.value_range as one (low, high) per band: a single pair applies to every band."""
        key, count = "data.value_range", len(self.bands)
        shape = f"must be [low, high] or one [low, high] per band ({count})"
        _require(isinstance(value, list | tuple) and len(value) > 0, key, shape, value)
        if all(isinstance(item, list | tuple) for item in value):
            _require(len(value) == count, key, shape, value)
            pairs = [_numbers(f"{key}[{index}]", list(item)) for index, item in enumerate(value)]
        else:
            pairs = [_numbers(key, list(value))] * count
        for index, pair in enumerate(pairs):
            _require(len(pair) == 2, key, shape, value)
            _require(pair[0] < pair[1], key, f"must have low below high (band {self.bands[index]})", value)
        return tuple((low, high) for low, high in pairs)


@dataclass(frozen=True)
class SampleParams:
    seed: int
    train_images: int
    valid_images: int
    test_images: int
    image_size: int
    jpeg_quality: int

    def __post_init__(self) -> None:
        _require(self.train_images >= 1, "sample.train_images", "must be at least 1", self.train_images)
        for key in ("valid_images", "test_images"):
            _require(getattr(self, key) >= 0, f"sample.{key}", "must be 0 or more", getattr(self, key))
        _require(self.image_size >= 32, "sample.image_size", "must be at least 32 pixels", self.image_size)
        _require(1 <= self.jpeg_quality <= 95, "sample.jpeg_quality", "must be between 1 and 95", self.jpeg_quality)


@dataclass(frozen=True)
class TileParams:
    size: int
    stride: int
    images: str  # how a scene's image is kept: a name in landcover/data/scenes.py's KEPT_IMAGES

    def __post_init__(self) -> None:
        _require_model_side("tile.size", self.size)  # training feeds tiles whole
        _require(self.stride >= 1, "tile.stride", "must be at least 1", self.stride)
        _require(
            self.stride <= self.size,
            "tile.stride",
            f"must not exceed tile.size ({self.size}), or pixels between tiles are skipped",
            self.stride,
        )


SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitParams:
    method: str  # a name in landcover/data/splitting.py's SPLIT_METHODS
    seed: int
    ratios: dict[str, float]
    lists: str  # directory holding train.txt, val.txt, test.txt (used when method is "lists")
    block_size: int  # method blocks: side of the blocks each scene is cut into, in pixels
    buffer: int  # method blocks: pixels around a tile that must lie in its own split's blocks

    def __post_init__(self) -> None:
        _require(self.block_size >= 1, "split.block_size", "must be at least 1 pixel", self.block_size)
        _require(self.buffer >= 0, "split.buffer", "must be 0 or more pixels", self.buffer)
        _require(
            set(self.ratios) == set(SPLIT_NAMES),
            "split.ratios",
            "must have exactly the keys train, val, test",
            self.ratios,
        )
        for name, ratio in self.ratios.items():
            _require(0 <= ratio <= 1, f"split.ratios.{name}", "must be between 0 and 1", ratio)
        total = sum(self.ratios.values())
        _require(
            math.isclose(total, 1.0, abs_tol=1e-6),
            "split.ratios",
            f"must sum to 1 (they sum to {total:g})",
            self.ratios,
        )
        _require(self.ratios["train"] > 0, "split.ratios.train", "must be above 0", self.ratios["train"])


@dataclass(frozen=True)
class AugmentParams:
    scale_min: float  # smallest area fraction of a tile kept by the random-resized crop
    colour_jitter: float  # strength of brightness/contrast/saturation jitter (0 turns it off)

    def __post_init__(self) -> None:
        _require(0 < self.scale_min <= 1, "augment.scale_min", "must be in (0, 1]", self.scale_min)
        _require(0 <= self.colour_jitter < 1, "augment.colour_jitter", "must be in [0, 1)", self.colour_jitter)


@dataclass(frozen=True)
class ModelParams:
    encoder: str  # any smp encoder name; resnet50 for the real run
    # "none" (random init), "imagenet" (fetched by smp) or a local weights file. Not YAML's null:
    # `dvc exp run -S` rewrites a null as an empty value, which then shows up in every diff.
    encoder_weights: str | None

    def __post_init__(self) -> None:
        _require(bool(self.encoder.strip()), "model.encoder", "must name an encoder", self.encoder)
        if self.encoder_weights is None:
            # YAML's null, from params files written before "none": one spelling from here on, so
            # checkpoints and dvc.lock do not depend on which was used
            object.__setattr__(self, "encoder_weights", NO_ENCODER_WEIGHTS)
        _require(
            bool((self.encoder_weights or "").strip()),
            "model.encoder_weights",
            f"must be {NO_ENCODER_WEIGHTS}, imagenet or a weights file",
            self.encoder_weights,
        )


@dataclass(frozen=True)
class TrainParams:
    epochs: int
    batch_size: int
    workers: int
    shuffle_block: int  # images whose tiles are shuffled together (each decoded once per block)
    lr: float
    weight_decay: float
    loss: str  # a name in landcover/training/components.py's LOSSES
    scheduler: str  # a name in landcover/training/components.py's SCHEDULERS
    restart_epochs: int  # cosine warm restarts: epochs in the first cycle (T_0)
    seed: int
    precision: str  # a name in landcover/model/devices.py's PRECISIONS
    channels_last: bool
    device: str  # a name in landcover/model/devices.py's DEVICES
    processes: int  # processes per node that torchrun starts (one per GPU)
    nodes: int  # machines taking part; processes * nodes is the world size
    sync_batchnorm: bool  # batch-norm statistics over the whole global batch (CUDA, more than one process)
    deterministic: bool  # deterministic algorithms (and cuDNN/cuBLAS settings) on CUDA
    resume: bool
    # torch.compile the training pass (landcover.model.model.compile_for_training); validation stays eager
    compile: bool = False

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "train.epochs", "must be at least 1", self.epochs)
        _require(self.batch_size >= 1, "train.batch_size", "must be at least 1", self.batch_size)
        _require(self.workers >= 0, "train.workers", "must be 0 or more", self.workers)
        _require(self.shuffle_block >= 1, "train.shuffle_block", "must be at least 1", self.shuffle_block)
        _require(self.lr > 0, "train.lr", "must be above 0", self.lr)
        _require(self.weight_decay >= 0, "train.weight_decay", "must be 0 or more", self.weight_decay)
        _require(self.restart_epochs >= 1, "train.restart_epochs", "must be at least 1", self.restart_epochs)
        _require(self.processes >= 1, "train.processes", "must be at least 1", self.processes)
        _require(self.nodes >= 1, "train.nodes", "must be at least 1", self.nodes)


INT8_REQUIRED = "required"  # predict.int8: the int8 model or a stop, never the fp32 model in its place


@dataclass(frozen=True)
class PredictParams:
    window: int  # sliding-window side in pixels (a multiple of OUTPUT_STRIDE_MULTIPLE)
    overlap: float  # fraction of the window shared with the next one
    batch_size: int
    tta: bool  # average over the 8 flips/90-degree rotations
    precision: str  # as train.precision (the device is chosen as train.device auto)
    compile: bool  # torch.compile the model: faster per window after a compile of tens of seconds
    processes: int = 1  # processes (GPUs) the test split is divided among: torchrun's --nproc_per_node in dvc.yaml
    runtime: str = "auto"  # a name in landcover/inference/runtimes.py's RUNTIMES
    # true: the export stage's int8 model where it passed its gate (landcover/inference/runtimes.py's int8_choice);
    # false: the fp32 model; "required": the int8 model, or a stop where it failed. Torch has none and ignores it.
    int8: bool | str = True

    def __post_init__(self) -> None:
        _require(self.processes >= 1, "predict.processes", "must be at least 1", self.processes)
        _require_model_side("predict.window", self.window)
        _require(0 <= self.overlap < 1, "predict.overlap", "must be in [0, 1)", self.overlap)
        _require(self.batch_size >= 1, "predict.batch_size", "must be at least 1", self.batch_size)
        _require(
            isinstance(self.int8, bool) or self.int8 == INT8_REQUIRED,
            "predict.int8",
            f"must be true, false or {INT8_REQUIRED}",
            self.int8,
        )


@dataclass(frozen=True)
class EvaluateParams:
    seed: int  # seed of the bootstrap's resamples: the same seed, the same intervals (and dvc.lock)
    bootstrap: int  # resamples of the test regions behind each interval (landcover/evaluation/intervals.py)

    def __post_init__(self) -> None:
        _require(self.bootstrap >= 1, "evaluate.bootstrap", "must be at least 1", self.bootstrap)


def mapping_params(path: Path | None) -> PredictParams:
    """The predict section of the mapping commands: of --params when given (a missing file is an error), else of
    ./params.yaml where there is one, else PREDICT_DEFAULTS (a self-describing model needs no project)."""
    if path is None:
        if not DEFAULT_PARAMS.is_file():
            return read_section({"predict": PREDICT_DEFAULTS}, "predict", PredictParams)
        path = DEFAULT_PARAMS
    return read_section(load_params(path), "predict", PredictParams)


@dataclass(frozen=True)
class ExportParams:
    opset: int  # ONNX opset of the exported model
    check_tiles: int  # test tiles the ONNX model is compared with PyTorch on (evenly spaced)
    min_agreement: float  # least fraction of pixels with the same argmax class; below it the stage fails
    calibration_tiles: int  # training tiles that calibrate the int8 model (evenly spaced)
    min_int8_agreement: float  # the same for the int8 model against PyTorch fp32
    max_int8_miou_drop: float  # most the int8 model's mIoU (land) on the check tiles may be below PyTorch fp32's

    def __post_init__(self) -> None:
        _require(self.opset >= 13, "export.opset", "must be at least 13", self.opset)
        _require(self.check_tiles >= 1, "export.check_tiles", "must be at least 1", self.check_tiles)
        _require(0 <= self.min_agreement <= 1, "export.min_agreement", "must be between 0 and 1", self.min_agreement)
        _require(self.calibration_tiles >= 1, "export.calibration_tiles", "must be at least 1", self.calibration_tiles)
        _require(
            0 <= self.min_int8_agreement <= 1,
            "export.min_int8_agreement",
            "must be between 0 and 1",
            self.min_int8_agreement,
        )
        _require(
            0 <= self.max_int8_miou_drop <= 1,
            "export.max_int8_miou_drop",
            "must be between 0 and 1",
            self.max_int8_miou_drop,
        )
