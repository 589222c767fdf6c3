"""map: land-cover maps of any imagery with a trained model: georeferenced class maps, areas, polygons.

    landcover-map --checkpoint models/best.pt --input scene.tif a.jpg --output out/
    landcover-map --model model.int8.onnx --input scene.tif --output out/
    landcover-map --model model.int8.onnx --input https://host/scenes/scene.tif s3://bucket/b.tif --output out/
    (the same as python -m landcover.cli.map ...)

The model is a checkpoint (--checkpoint), an exported ONNX model on its own (--model: its metadata
has the classes, colours, bands and their scaling), or both, which must match (the ONNX model
exported from that checkpoint). A model of other bands than uint8 RGB reads the bands it was
trained on (--bands: others), as raw values of its type.

An input is a local file, or a remote one read in place: a file://, http(s)://, s3:// or gs:// URL, or a
GDAL /vsicurl/, /vsis3/, /vsigs/ or /vsiaz/ path. A remote raster (best a Cloud-Optimized GeoTIFF) is read
a byte range at a time, never downloaded; a remote JPEG or PNG is copied to a temporary file first.

A raster GDAL reads (GeoTIFF, ...) of any size, streamed, gets <id>.tif: a Cloud-Optimized GeoTIFF
of class indices with the input's CRS and transform, the class colour table and nodata 255, and
<id>.qml (its QGIS legend); a JPEG or PNG gets <id>.png and <id>_colour.png. Each gets
<id>_areas.json and <id>_areas.csv (pixels and hectares per class); optionally
<id>_confidence.tif/.png (--confidence), <id>_probabilities.tif (--probabilities: a COG of a band
per class, round(probability x 255); for a JPEG or PNG too, without georeference) and
<id>_polygons.gpkg (--polygons). Beside them, STAC: <id>.item.json (the scene's maps) and
model-<sha256>.item.json (the model, an MLM Item); `python -m landcover.cli.stac validate OUT` checks them
offline. Started by torchrun, the processes share the files.
docs/mapping.md says how bands are chosen and scaled and how areas are computed.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from tqdm import tqdm

from landcover.data.naming import image_id_of
from landcover.data.scaling import BandScaling
from landcover.geo.georaster import ReadOptions, check_scene, reads_rgb
from landcover.geo.map_paths import MapInput, check_map_paths, input_file_name, map_input
from landcover.geo.mapping import MapOptions, map_file, written_as_raster
from landcover.geo.polygons import require_vector_writer
from landcover.geo.stac import ModelFacts, utc_now, write_scene_records
from landcover.inference.runtimes import check_predict_options, choose_runtime, run_label, runtime_probabilities
from landcover.io.errors import PipelineError, run_stage
from landcover.io.params import mapping_params
from landcover.io.sources import ACCEPTED, Source
from landcover.model.devices import choose_device
from landcover.model.ranks import die_with_launcher, process_group, rank_device, ranks_from_environment


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


def band_numbers(text: str) -> tuple[int, ...]:
    """An argparse type: band numbers from 1, comma-separated, e.g. 3,2,1 or 4,3,2."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected band numbers from 1, comma-separated, e.g. 3,2,1, got {text!r}")
    return values


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint of the train stage (models/best.pt)")
    parser.add_argument(
        "--model",
        type=Path,
        help="an exported ONNX model (model.int8.onnx or model.onnx), usable alone; with --checkpoint, its export",
    )
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        help=f"rasters GDAL reads, JPEG, PNG, as {ACCEPTED} (remote ones are read in place)",
    )
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--params",
        type=Path,
        help="its predict section: windows, runtime (default: params.yaml where there is one, else the defaults)",
    )
    parser.add_argument(
        "--export",
        type=Path,
        default=Path("models/export"),
        help="without --model: the export stage's folder, whose models the ONNX runtimes run (from --checkpoint)",
    )
    add_reading_and_output_arguments(parser)
    return parser


def add_reading_and_output_arguments(parser: argparse.ArgumentParser) -> None:
    """How rasters are read (bands, stretch) and what is written besides the class map."""
    parser.add_argument(
        "--bands",
        type=band_numbers,
        help="raster bands the model reads, numbered from 1, as many as it takes (default: the bands it was trained "
        "on; a uint8 RGB model's: red, green, blue by colour interpretation, else 1,2,3)",
    )
    parser.add_argument(
        "--percentiles",
        type=numbers(float, 2, "LOW,HIGH, e.g. 2,98"),
        metavar="LOW,HIGH",
        help="uint8 RGB models: stretch of bands that are not uint8: these percentiles of each band become 0 and 255 "
        "(default 2,98)",
    )
    parser.add_argument(
        "--value-range",
        type=numbers(float, 2, "MIN,MAX, e.g. 0,3000"),
        metavar="MIN,MAX",
        help="uint8 RGB models: a fixed stretch instead: MIN becomes 0 and MAX 255 in every band that is not uint8",
    )
    parser.add_argument(
        "--pixel-size",
        type=positive,
        metavar="METRES",
        help="pixel side on the ground for images without a CRS, for areas (DeepGlobe: 0.5)",
    )
    parser.add_argument(
        "--confidence",
        action="store_true",
        help="also write <id>_confidence.tif/.png: max class probability x 255 (0: no data)",
    )
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="also write <id>_probabilities.tif (a GeoTIFF for a JPEG or PNG too): a band per class, in the class "
        "table's order, of round(class probability x 255); pixels without data are 0 under the file's mask",
    )
    parser.add_argument(
        "--polygons",
        action="store_true",
        help="also write <id>_polygons.gpkg: a polygon per region of a class (needs pyogrio: make install-vector)",
    )
    parser.add_argument(
        "--min-area",
        type=float,
        default=0.0,
        metavar="HECTARES",
        help="leave out polygons smaller than this (default 0: keep all)",
    )


def map_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> MapOptions:
    if args.checkpoint is None and args.model is None:
        parser.error("give the model: --checkpoint (a .pt checkpoint), --model (an exported .onnx), or both")
    percentiles = args.percentiles if args.percentiles is not None else ReadOptions.percentiles
    low, high = percentiles
    if not 0 <= low < high <= 100:
        parser.error(f"--percentiles: need 0 <= LOW < HIGH <= 100, got {low:g},{high:g}")
    if args.value_range is not None and not args.value_range[0] < args.value_range[1]:
        parser.error("--value-range: MIN must be below MAX")
    if args.min_area < 0:
        parser.error("--min-area: must be 0 or more")
    stretch_given = args.percentiles is not None or args.value_range is not None
    read = ReadOptions(
        bands=args.bands, percentiles=percentiles, value_range=args.value_range, stretch_given=stretch_given
    )
    return MapOptions(
        read=read,
        pixel_size=args.pixel_size,
        confidence=args.confidence,
        probabilities=args.probabilities,
        polygons=args.polygons,
        min_area_ha=args.min_area,
    )


def for_model(options: MapOptions, scaling: BandScaling, inputs: Sequence[MapInput]) -> MapOptions:
    """The options reading the bands of the model of `scaling`, every input checked against it (band count and
    type) before the model loads."""
    if options.read.stretch_given and not reads_rgb(scaling):
        raise PipelineError(
            f"--percentiles and --value-range stretch bands for models of uint8 RGB; this model takes bands "
            f"{','.join(map(str, scaling.bands))} as raw {scaling.dtype} values and scales them itself"
        )
    options = dataclasses.replace(options, read=dataclasses.replace(options.read, scaling=scaling))
    for path in inputs:
        check_scene(path, options.read)
    return options


def readable(item: MapInput) -> AbstractContextManager[Path | Source]:
    """What map_file reads for the input: a local file's path, a remote raster itself, a remote JPEG's or PNG's
    temporary copy (Source.readable)."""
    return item.readable() if isinstance(item, Source) else nullcontext(item)


def main(argv: list[str] | None = None) -> None:
    die_with_launcher()  # started by torchrun: end with it, however it ends
    arguments = parser()
    args = arguments.parse_args(argv)
    options = map_options(args, arguments)
    predict_params = mapping_params(args.params)
    check_predict_options(predict_params)
    inputs = [map_input(text) for text in args.input]
    check_map_paths(inputs, args.output, options)  # bad paths are refused before the model is loaded
    if options.polygons:
        require_vector_writer()
    ranks = ranks_from_environment()
    with process_group(ranks):
        device = rank_device(choose_device("auto"), ranks, "predict.processes")
        runtime = choose_runtime(predict_params, device, args.checkpoint, args.model, args.export, ranks.threads)
        options = for_model(options, runtime.interface.scaling, inputs)
        probability_fn = runtime_probabilities(runtime, predict_params)
        facts = ModelFacts.of(runtime, predict_params)
        table = runtime.interface.table
        paths = ranks.share(inputs)  # each file's outputs are written atomically on their own
        for path in tqdm(paths, desc="map", unit="image", disable=len(paths) == 1 or not ranks.main):
            started = utc_now()
            with readable(path) as where:
                map_file(where, args.output, probability_fn, table, predict_params, options, path)
                image_id = image_id_of(input_file_name(path))
                is_raster = written_as_raster(where)
                write_scene_records(args.output, image_id, is_raster, path, table, options, facts, None, started)
    print(f"map{ranks.label}: {len(paths)} images -> {args.output} ({run_label(predict_params, runtime)})")


def console_main() -> None:
    """The `landcover-map` console script."""
    run_stage(main)


if __name__ == "__main__":
    run_stage(main)
