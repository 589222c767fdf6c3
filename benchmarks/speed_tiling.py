"""benchmarks.speed's data measurements: the tile stage against the bare work it cannot avoid, and the tile
storage formats tried. Each runs in a fresh process; the tiling one imports no torch, so the peak memory it
reports is the tile stage's own (benchmarks.tile_memory measures with it too)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from benchmarks.common import IMAGE_SIZE, REPO
from benchmarks.inputs import read_tile_batch


def measure_tiling(config: dict) -> dict:
    """The tile stage on the images in config["raw"], or the bare work it cannot avoid: decode each file (to find
    damage), copy it. config["params"] names the params file of the stage (default this repository's)."""
    from PIL import Image

    raw, out = Path(config["raw"]), Path(config["out"])
    params_path = Path(config.get("params", REPO / "params.yaml"))
    start = time.perf_counter()
    if config["variant"] == "stage":
        from stages import tile as tile_stage

        tile_stage.main([str(raw), str(out), "--params", str(params_path)])
    else:
        out.mkdir(parents=True)
        for image_path in sorted(raw.glob("*_sat.jpg")):
            mask_path = image_path.with_name(image_path.name.replace("_sat.jpg", "_mask.png"))
            for path in (image_path, mask_path):
                with Image.open(path) as image:
                    image.load()
                shutil.copyfile(path, out / path.name)
    seconds = time.perf_counter() - start
    count = len(list(raw.glob("*_sat.jpg")))
    return {
        "seconds": seconds,
        "mp_per_second": count * IMAGE_SIZE**2 / 1e6 / seconds,
        "images": count,
        "tile_size": yaml.safe_load(params_path.read_text())["tile"]["size"],
    }


def measure_formats(config: dict) -> dict:
    """Tile storage formats: bytes on disk and decode milliseconds per 256 px image tile."""
    from PIL import Image

    from landcover.io.imageio import read_rgb

    images, _ = read_tile_batch(Path(config["tiles"]), 64)
    arrays = list(images)
    formats: list[tuple[str, str, Callable[[np.ndarray, Path], object], Callable[[Path], object]]] = [
        ("png_level1", ".png", lambda a, p: Image.fromarray(a).save(p, compress_level=1), read_rgb),
        ("png_level0", ".png", lambda a, p: Image.fromarray(a).save(p, compress_level=0), read_rgb),
        ("npy", ".npy", lambda a, p: np.save(p, a), np.load),
        ("jpeg_q95_lossy", ".jpg", lambda a, p: Image.fromarray(a).save(p, quality=95), read_rgb),
    ]
    result = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, suffix, save, load in formats:
            files = [Path(scratch) / f"{name}_{k}{suffix}" for k in range(len(arrays))]
            start = time.perf_counter()
            for array, path in zip(arrays, files):
                save(array, path)
            write_ms = (time.perf_counter() - start) / len(files) * 1000
            start = time.perf_counter()
            for path in files:
                load(path)
            result[name] = {
                "decode_ms": (time.perf_counter() - start) / len(files) * 1000,
                "write_ms": write_ms,
                "kb_per_tile": sum(path.stat().st_size for path in files) / len(files) / 1024,
            }
    return result
