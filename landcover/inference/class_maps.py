"""The pipeline's predictions: a class map per whole image, written as the evaluate and plot stages read them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from landcover.data.palette import ClassTable, index_to_colour
from landcover.inference.blending import ProbabilityFn, RowSource, SlidingWindows
from landcover.io.imageio import write_png
from landcover.io.outputs import atomic_file
from landcover.io.params import PredictParams


def write_class_maps(
    out_dir: Path,
    images: Iterator[tuple[str, np.ndarray | RowSource]],
    total: int,
    probability_fn: ProbabilityFn,
    table: ClassTable,
    predict_params: PredictParams,
    progress: bool = True,
) -> list[str]:
    """Write <id>.png (class indices) and <id>_colour.png (class colours) for each (id, image), each file
    atomically; returns the ids. An image is an array in memory, or a RowSource read a strip at a time (a scene's
    GeoTIFF: only its class map is held whole)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    windows = SlidingWindows.of(probability_fn, len(table), predict_params)
    done = []
    for image_id, image in tqdm(images, total=total, desc="predict", unit="image", disable=not progress):
        index = windows.classes(image)
        for name, array in ((f"{image_id}.png", index), (f"{image_id}_colour.png", index_to_colour(index, table))):
            with atomic_file(out_dir / name) as staging:
                write_png(staging, array)
        done.append(image_id)
    return done
