"""predict: whole-image class maps by sliding window, for the test split or for any images.

In the pipeline:  python -m stages.predict --checkpoint models/best.pt --tiles data/tiles \\
                      --split data/splits/test.csv --output data/predictions
  Each test image gets <id>.png (class indices) and <id>_colour.png (the class colours).
On new imagery:   python -m stages.predict --checkpoint models/best.pt --input scene.tif a.jpg --output out/
  A raster GDAL reads (GeoTIFF, ...) of any size, streamed, gets <id>.tif: a Cloud-Optimized GeoTIFF
  of class indices with the input's CRS and transform, the class colour table and nodata 255, and
  <id>.qml (its QGIS legend); a JPEG or PNG gets <id>.png and <id>_colour.png as in the pipeline.
  Each gets <id>_areas.json and <id>_areas.csv (pixels and hectares per class); optionally
  <id>_confidence.tif/.png (--confidence) and <id>_polygons.gpkg (--polygons).
  README, "Mapping new imagery", says how bands are chosen and scaled and how areas are computed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stages.core.data.palette import ClassTable, index_to_colour
from stages.core.data.tilestore import TileStore, group_by_image, read_index, whole_images
from stages.core.geo.georaster import ReadOptions, check_scene
from stages.core.geo.mapping import MapOptions, map_file
from stages.core.geo.polygons import require_vector_writer
from stages.core.inference.blending import ProbabilityFn, sliding_window_classes
from stages.core.inference.runtimes import runtime_label, runtime_probabilities
from stages.core.io.errors import run_stage
from stages.core.io.imageio import write_png
from stages.core.io.outputs import atomic_file
from stages.core.io.params import DEFAULT_PARAMS, PredictParams, load_params, read_section
from stages.core.model.checkpoint import load_trained_model
from stages.core.model.devices import choose_device
from stages.core.model.ranks import (
    Ranks,
    die_with_launcher,
    process_group,
    rank_device,
    ranks_from_environment,
    shared_atomic_dir,
)


def predict_into(
    out_dir: Path,
    images: Iterator[tuple[str, np.ndarray]],
    total: int,
    probability_fn: ProbabilityFn,
    table: ClassTable,
    predict_params: PredictParams,
    progress: bool = True,
) -> list[str]:
    """Write <id>.png and <id>_colour.png for each (id, image), each file atomically; returns the ids."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for image_id, image in tqdm(images, total=total, desc="predict", unit="image", disable=not progress):
        index = sliding_window_classes(
            probability_fn, image, len(table), predict_params.window, predict_params.overlap, predict_params.batch_size
        )
        for name, array in ((f"{image_id}.png", index), (f"{image_id}_colour.png", index_to_colour(index, table))):
            with atomic_file(out_dir / name) as staging:
                write_png(staging, array)
        done.append(image_id)
    return done


def numbers(kind: Callable[[str], float], count: int, what: str) -> Callable[[str], tuple]:
    """An argparse type: `count` comma-separated numbers, e.g. 3,2,1."""

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(part) for part in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return values

    return parse


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def map_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> MapOptions:
    low, high = args.percentiles
    if not 0 <= low < high <= 100:
        parser.error(f"--percentiles: need 0 <= LOW < HIGH <= 100, got {low:g},{high:g}")
    if args.value_range is not None and not args.value_range[0] < args.value_range[1]:
        parser.error("--value-range: MIN must be below MAX")
    if args.min_area < 0:
        parser.error("--min-area: must be 0 or more")
    return MapOptions(
        ReadOptions(args.bands, args.percentiles, args.value_range),
        args.pixel_size,
        args.confidence,
        args.polygons,
        args.min_area,
    )


def main(argv: list[str] | None = None) -> None:
    die_with_launcher()  # started by torchrun: end with it, however it ends
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--input", type=Path, nargs="+", help="image files to map: rasters GDAL reads, JPEG, PNG")
    parser.add_argument("--tiles", type=Path, help="tile stage output (with --split)")
    parser.add_argument("--split", type=Path, help="a split's tile list, e.g. data/splits/test.csv")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    parser.add_argument(
        "--export",
        type=Path,
        default=Path("models/export"),
        help="the export stage's folder: its ONNX models, for predict.runtime onnxruntime or openvino",
    )
    mapping = parser.add_argument_group("with --input")
    mapping.add_argument(
        "--bands",
        type=numbers(int, 3, "three band numbers R,G,B, e.g. 3,2,1"),
        help="raster bands read as red, green, blue, numbered from 1 (default: by colour interpretation, else 1,2,3)",
    )
    mapping.add_argument(
        "--percentiles",
        type=numbers(float, 2, "LOW,HIGH, e.g. 2,98"),
        default=(2.0, 98.0),
        metavar="LOW,HIGH",
        help="stretch of bands that are not uint8: these percentiles of each band become 0 and 255 (default 2,98)",
    )
    mapping.add_argument(
        "--value-range",
        type=numbers(float, 2, "MIN,MAX, e.g. 0,3000"),
        metavar="MIN,MAX",
        help="a fixed stretch instead: MIN becomes 0 and MAX 255 in every band that is not uint8",
    )
    mapping.add_argument(
        "--pixel-size",
        type=positive,
        metavar="METRES",
        help="pixel side on the ground for images without a CRS, for areas (DeepGlobe: 0.5)",
    )
    mapping.add_argument(
        "--confidence",
        action="store_true",
        help="also write <id>_confidence.tif/.png: max class probability x 255 (0: no data)",
    )
    mapping.add_argument(
        "--polygons",
        action="store_true",
        help="also write <id>_polygons.gpkg: a polygon per region of a class (needs pyogrio: make install-vector)",
    )
    mapping.add_argument(
        "--min-area",
        type=float,
        default=0.0,
        metavar="HECTARES",
        help="leave out polygons smaller than this (default 0: keep all)",
    )
    args = parser.parse_args(argv)
    ranks = ranks_from_environment()  # set by torchrun: README, "Prediction on several processes or GPUs"
    with process_group(ranks):
        predict(args, parser, ranks)


def predict(args: argparse.Namespace, parser: argparse.ArgumentParser, ranks: Ranks) -> None:
    if (args.input is None) == (args.split is None or args.tiles is None):
        parser.error("give either --input FILES or both --tiles and --split")
    predict_params = read_section(load_params(args.params), "predict", PredictParams)
    options = map_options(args, parser) if args.input else None
    if args.input:  # bad input is refused before the model is loaded
        for path in args.input:
            check_scene(path, options.read)
        if options.polygons:
            require_vector_writer()

    trained = load_trained_model(args.checkpoint)
    device = rank_device(choose_device("auto"), ranks, "predict.processes")
    probability_fn = runtime_probabilities(predict_params, trained, device, args.export)
    if args.input:
        paths = ranks.share(args.input)  # each file's outputs are written atomically on their own
        count = len(paths)
        for path in tqdm(paths, desc="map", unit="image", disable=count == 1 or ranks.rank > 0):
            map_file(path, args.output, probability_fn, trained.table, predict_params, options)
    else:
        records = read_index(args.split)
        mine = set(ranks.share(list(group_by_image(records))))  # image ids r, r + W, ... of the split
        records = [record for record in records if record.image_id in mine]
        count = len(mine)
        # the pipeline's output appears whole or not at all, written by every rank
        with shared_atomic_dir(args.output, ranks) as staging:
            done = predict_into(
                staging,
                whole_images(records, TileStore(args.tiles).whole_image),
                count,
                probability_fn,
                trained.table,
                predict_params,
                progress=ranks.rank == 0,
            )
        if ranks.world > 1:
            print(f"predict{ranks.label}: predicted {' '.join(done)}")
    print(
        f"predict{ranks.label}: {count} images -> {args.output} (window {predict_params.window}, overlap "
        f"{predict_params.overlap}, tta {'on' if predict_params.tta else 'off'}, "
        f"{runtime_label(predict_params)}, {device if predict_params.runtime == 'torch' else 'cpu'})"
    )


if __name__ == "__main__":
    run_stage(main)
