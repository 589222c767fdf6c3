"""Checkpoints: weights plus everything needed to use them (classes, colours, encoder, bands and their scaling).

Only this module knows a checkpoint's layout: the train stage saves through it, and predict,
plot and the benchmarks read a `TrainedModel` or the training history back through it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from landcover.data.palette import ClassTable
from landcover.data.scaling import UINT8_RGB, BandScaling
from landcover.io.digests import file_sha256
from landcover.io.errors import PipelineError
from landcover.io.outputs import atomic_file
from landcover.model.model import build_model

CHECKPOINT_FORMAT = 1

# The config key of the temperature the model's logits are divided by before the softmax (temperature
# scaling, fitted on the validation split at the end of training: landcover.evaluation.calibration). A
# checkpoint without it (saved before it was recorded, or a training run's last.pt) reads as 1.0.
TEMPERATURE = "temperature"


def checkpoint_config(encoder: str, table: ClassTable, tile_size: int, scaling: BandScaling = UINT8_RGB) -> dict:
    """What predict needs besides the weights, so a checkpoint is usable on its own."""
    return {
        "encoder": encoder,
        "class_names": list(table.names),
        "class_colours": table.colours.tolist(),
        "class_values": list(table.values),  # each class's label value in an index raster
        "class_headline": list(table.headline),  # whether each class counts in the headline mean
        "mean": list(scaling.mean),  # also in scaling; kept for readers from before scalings were recorded
        "std": list(scaling.std),
        "scaling": scaling.to_config(),  # bands, their type and scaling (absent in older checkpoints: UINT8_RGB)
        "in_channels": scaling.channels,  # the first convolution's input channels
        "tile_size": tile_size,
    }


def save_checkpoint(path: Path, **content) -> None:
    # Serialised in memory first: torch.save names the archive's inner folder after the file it
    # writes to, so saving to a randomly named temporary file would change the bytes every run.
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **content}, buffer)
    with atomic_file(path) as staging:
        staging.write_bytes(buffer.getvalue())


def load_checkpoint(path: Path, mmap: bool = False) -> dict:
    """The checkpoint's contents; with `mmap`, tensors are mapped from the file instead of read."""
    if not Path(path).is_file():
        raise PipelineError(f"{path}: checkpoint not found")
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings), so unpickling anything
        # else (code a crafted file would run) is refused.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:
        raise PipelineError(f"{path}: cannot load checkpoint ({error})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise PipelineError(f"{path}: not a checkpoint of this pipeline (format {CHECKPOINT_FORMAT})")
    return checkpoint


def encode_history(history: list[dict]) -> str:
    # JSON text, not the dicts: pickling them would make the bytes depend on which strings happen
    # to be shared objects, which differs after a resume.
    return json.dumps(history)


def decode_history(text: str) -> list[dict]:
    return json.loads(text)


def read_history(path: Path) -> list[dict]:
    """One record per epoch trained so far: {"train": {metric: value}, "val": {...}}."""
    return decode_history(load_checkpoint(path, mmap=True)["history"])


@dataclass(frozen=True)
class TrainedModel:
    """A trained model with what using it takes: its classes and colours, and its bands and their scaling."""

    model: nn.Module  # eval mode, on the CPU
    table: ClassTable
    scaling: BandScaling
    tile_size: int  # the side of the tiles it was trained on
    temperature: float = 1.0  # its logits are divided by it before the softmax (1.0: as trained)


@dataclass(frozen=True)
class ModelInterface:
    """What a trained model takes and gives, and which checkpoint its weights are: read from a checkpoint
    (read_model_interface) or from an exported ONNX model's metadata (inference.export.read_onnx_interface)
    without building the model."""

    table: ClassTable
    scaling: BandScaling  # the bands the model takes, their type and scaling
    tile_size: int
    checkpoint_sha256: str  # the checkpoint file's sha256: an export records its checkpoint's
    temperature: float = 1.0  # the calibration temperature its probabilities are made with

    @property
    def mean(self) -> tuple[float, ...]:
        return self.scaling.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.scaling.std


def checkpoint_sha256(path: Path) -> str:
    """A checkpoint file's sha256: its identity, which an export records in its metadata."""
    if not Path(path).is_file():
        raise PipelineError(f"{path}: checkpoint not found")
    return file_sha256(path)


def _class_table(config: dict) -> ClassTable:
    """The class table of checkpoint_config's keys; a config from before class_values and class_headline
    were recorded gives the defaults those checkpoints were trained with (values 0..n-1, every class but
    `unknown` in the headline)."""
    return ClassTable(
        tuple(config["class_names"]),
        np.array(config["class_colours"], dtype=np.uint8),
        tuple(config.get("class_values") or ()),
        tuple(config.get("class_headline") or ()),
    )


def config_temperature(config: dict, path: Path | None = None) -> float:
    """The config's calibration temperature: 1.0 where it has none; a positive finite number, else an error."""
    value = config.get(TEMPERATURE, 1.0)
    try:
        temperature = float(value)
    except (TypeError, ValueError):
        temperature = float("nan")
    if not 0 < temperature < float("inf"):
        where = f"{path}: " if path is not None else ""
        raise PipelineError(f"{where}its temperature {value!r} is not a positive number")
    return temperature


def interface_from_config(config: dict, checkpoint_sha256: str) -> ModelInterface:
    """A ModelInterface from checkpoint_config's keys (which an export's metadata repeats)."""
    return ModelInterface(
        _class_table(config),
        _scaling(config),
        int(config["tile_size"]),
        checkpoint_sha256,
        config_temperature(config),
    )


def _scaling(config: dict, path: Path | None = None) -> BandScaling:
    """The config's scaling; a checkpoint from before scalings were recorded was trained on uint8 RGB."""
    try:
        return BandScaling.from_config(config.get("scaling"))
    except (ValueError, KeyError, TypeError) as error:
        if path is None:
            raise
        raise PipelineError(f"{path}: its scaling is malformed ({type(error).__name__}: {error})") from None


def read_model_interface(path: Path) -> ModelInterface:
    config = load_checkpoint(path, mmap=True)["config"]
    _scaling(config, path)  # a malformed one named with its file
    config_temperature(config, path)
    return interface_from_config(config, checkpoint_sha256(path))


def load_trained_model(path: Path) -> TrainedModel:
    checkpoint = load_checkpoint(path)
    config, table = checkpoint["config"], _class_table(checkpoint["config"])
    scaling = _scaling(config, path)
    model = build_model(config["encoder"], len(table), in_channels=int(config.get("in_channels", scaling.channels)))
    model.load_state_dict(checkpoint["model"])
    return TrainedModel(model.eval(), table, scaling, config["tile_size"], config_temperature(config, path))


def read_training_record(path: Path) -> dict:
    """What a model card says about training: the encoder, the params, the epoch kept and its validation mIoU."""
    checkpoint = load_checkpoint(path, mmap=True)
    return {
        "encoder": checkpoint["config"]["encoder"],
        "tile_size": checkpoint["config"]["tile_size"],
        "best_epoch": checkpoint.get("epoch"),
        "best_val_miou_land": checkpoint.get("best_miou"),
        "params": checkpoint.get("params", {}),
        "temperature": config_temperature(checkpoint["config"], path),
        "calibration": checkpoint.get("calibration"),  # the temperature fit's figures (None before it was recorded)
    }
