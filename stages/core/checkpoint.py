"""Checkpoints: weights plus everything needed to use them (classes, colours, encoder, normalisation)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stages.core.errors import PipelineError
from stages.core.model import IMAGENET_MEAN, IMAGENET_STD, build_model
from stages.core.outputs import atomic_file
from stages.core.palette import ClassTable

CHECKPOINT_FORMAT = 1


def checkpoint_config(encoder: str, table: ClassTable, tile_size: int) -> dict:
    """What predict needs besides the weights, so a checkpoint is usable on its own."""
    return {"encoder": encoder, "class_names": list(table.names), "class_colours": table.colours.tolist(),
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "tile_size": tile_size}


def save_checkpoint(path: Path, **content) -> None:
    # Serialised in memory first: torch.save names the archive's inner folder after the file it
    # writes to, so saving to a randomly named temporary file would change the bytes every run.
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **content}, buffer)
    with atomic_file(path) as staging:
        staging.write_bytes(buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    if not Path(path).is_file():
        raise PipelineError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise PipelineError(f"{path}: cannot load checkpoint ({error})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise PipelineError(f"{path}: not a checkpoint of this pipeline (format {CHECKPOINT_FORMAT})")
    return checkpoint


def model_from_checkpoint(checkpoint: dict) -> tuple[nn.Module, ClassTable]:
    """The trained model (eval mode, on the CPU) and its class table."""
    config = checkpoint["config"]
    table = ClassTable(tuple(config["class_names"]), np.array(config["class_colours"], dtype=np.uint8))
    model = build_model(config["encoder"], len(table))
    model.load_state_dict(checkpoint["model"])
    return model.eval(), table
