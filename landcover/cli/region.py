"""region: map a region's scenes on Dask.distributed, then one mosaic and one area table (docs/region.md).

    landcover-region --checkpoint models/best.pt --input scenes/ --output region/
    landcover-region --model model.int8.onnx --input items.json --asset visual --output region/
    landcover-region ... --scheduler tcp://10.0.0.5:8786     # an existing cluster
    (the same as python -m landcover.cli.region ...; needs `make install-region`)

--input: raster files, folders (their .tif/.tiff/.jp2/.img/.vrt files), glob patterns, text lists of paths
(.txt, one a line) or STAC ItemCollections/Catalogs (.json; --asset names the asset to map); a scene may be
a URL (http(s)://, s3://, gs://) or GDAL path (/vsicurl/, /vsis3/, /vsigs/, /vsiaz/), read in place. Without
--scheduler a local cluster is started: a worker per GPU, else one per 4 cores. Each scene is one task:
map_file as the mapping command runs it, into <output>/scenes/, with a resume record beside its outputs; a
rerun skips scenes whose record matches (the same input: its bytes, or a remote object's ETag; the same model
and params). A failing scene is retried (--retries), then reported while the others go on. Then
<output>/region.vrt (the mosaic: first listed scene wins where scenes overlap), region_areas.json/.csv (from
the mosaic) and region.json (the run's summary); the command exits 1 naming the scenes that failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.cli.map import add_reading_and_output_arguments, map_options
from landcover.geo.areas import MAP_AREAS
from landcover.geo.footprints import source_footprint
from landcover.geo.georaster import class_table_of
from landcover.geo.map_paths import check_output_folder
from landcover.geo.mapping import MapOptions
from landcover.geo.polygons import require_vector_writer
from landcover.inference.runtimes import check_predict_options
from landcover.io.errors import PipelineError, run_stage
from landcover.io.outputs import write_json
from landcover.io.params import mapping_params
from landcover.region.engine import (
    SCENES_FOLDER,
    ModelSpec,
    RegionRun,
    local_plan,
    region_client,
    remove_dead_staging,
    require_distributed,
    run_scenes,
    scene_resources,
)
from landcover.region.inputs import SceneInput, region_scenes
from landcover.region.mosaic import build_mosaic, mosaic_as_cog, parse_crs, write_region_areas


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint of the train stage (models/best.pt)")
    parser.add_argument("--model", type=Path, help="an exported ONNX model, alone or with --checkpoint")
    parser.add_argument(
        "--input", nargs="+", required=True, help="rasters, folders, globs, text lists (.txt), STAC JSON (.json)"
    )
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--asset", help="STAC inputs: the key of the asset to map (needed where items have several)")
    parser.add_argument(
        "--params",
        type=Path,
        help="its predict section: windows, runtime (default: params.yaml where there is one, else the defaults)",
    )
    parser.add_argument("--export", type=Path, default=Path("models/export"), help="as the mapping command's")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:8786); default: local")
    parser.add_argument("--workers", type=int, help="local cluster: workers (default: one per GPU, else per 4 cores)")
    parser.add_argument("--retries", type=non_negative, default=2, help="tries after a scene's first fails (2)")
    parser.add_argument("--crs", help="the mosaic's CRS (EPSG:32633, ...; default: the first scene's)")
    parser.add_argument("--mosaic-cog", action="store_true", help="also write the mosaic as one COG (region.tif)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_reading_and_output_arguments(parser)
    return parser


def check_outside_output(scenes: list[SceneInput], output: Path) -> None:
    """A scene inside --output could be an output of this run (region.tif) read back as a scene by the next."""
    inside = output.resolve()
    for scene in scenes:
        if scene.source.is_local and inside in scene.source.local_path.resolve().parents:
            raise PipelineError(f"{scene.source}: is inside --output {output}; keep the scenes outside it")


def check_model_files(args: argparse.Namespace) -> None:
    """Missing model files are refused here, once, rather than by every scene on the workers."""
    for flag, path in (("--checkpoint", args.checkpoint), ("--model", args.model)):
        if path is not None and not path.is_file():
            raise PipelineError(f"{path}: {flag} file not found")


def main(argv: list[str] | None = None) -> None:
    arguments = parser()
    args = arguments.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        arguments.error("--workers: must be at least 1")
    options = map_options(args, arguments)
    predict_params = mapping_params(args.params)
    check_predict_options(predict_params)
    scenes = region_scenes(args.input, args.asset)
    crs = parse_crs(args.crs) if args.crs else None
    check_output_folder(args.output)
    check_outside_output(scenes, args.output)
    check_model_files(args)
    if options.polygons:
        require_vector_writer()
    require_distributed()
    plan = local_plan(args.workers)
    # absolute paths: the workers' current folder is not this one's, and on a cluster not even this machine's
    checkpoint, model = (None if path is None else path.resolve() for path in (args.checkpoint, args.model))
    spec = ModelSpec(checkpoint, model, args.export.resolve(), None if args.scheduler else plan.threads)
    scenes_dir = args.output.resolve() / SCENES_FOLDER
    with region_client(args.scheduler, plan) as client:
        run = run_scenes(
            client,
            scenes,
            scenes_dir,
            spec,
            predict_params,
            options,
            args.retries,
            scene_resources(client),
            not args.no_progress,
        )
    remove_dead_staging(scenes_dir)
    summary = finish_region(scenes, run, args.output, crs, args.mosaic_cog, options)
    print(
        f"region: {summary['mapped']} mapped, {summary['resumed']} resumed, {summary['failed']} failed of "
        f"{summary['scenes']} scenes -> {args.output} ({summary['megapixels_mapped']:.1f} MP mapped in "
        f"{summary['seconds']:.1f} s)"
    )
    if summary["areas"]:
        print(f"region: region_areas.* hold {MAP_AREAS}")
    if run.failed:
        listed = "; ".join(f"{scene} ({error})" for scene, error in run.failed.items())
        raise PipelineError(f"{args.output}: {len(run.failed)} of {len(scenes)} scenes failed: {listed}")


def finish_region(scenes: list[SceneInput], run: RegionRun, output: Path, crs, cog: bool, options: MapOptions) -> dict:
    """The mosaic and area table over the scenes that have maps (in input order), and region.json."""
    scenes_dir = output / SCENES_FOLDER
    done = [run.results[scene.id] for scene in scenes if scene.id in run.results]
    placed = [result for result in done if result["crs"] is not None and result["map"].endswith(".tif")]
    mosaic = areas = None
    if placed:
        maps = [scenes_dir / result["map"] for result in placed]
        table = class_table_of(maps[0])
        mosaic = build_mosaic(maps, output, table, crs)
        if cog:
            mosaic_as_cog(mosaic, output / "region.tif")
        areas = write_region_areas(mosaic, table, output)
    summary = region_summary(scenes, run, done, placed)
    summary["mosaic"] = None if mosaic is None else mosaic.name
    summary["mosaic_cog"] = "region.tif" if cog and mosaic is not None else None
    summary["mosaic_crs"] = None if areas is None else areas["crs"]
    summary["areas"] = None if areas is None else "region_areas.json"
    summary["areas_are"] = None if areas is None else MAP_AREAS
    write_json(output / "region.json", summary)
    return summary


def region_summary(scenes: list[SceneInput], run: RegionRun, done: list[dict], placed: list[dict]) -> dict:
    mapped = [result for result in done if result["status"] == "mapped"]
    megapixels = sum(result["megapixels"] for result in mapped)
    workers: dict[str, dict] = {}
    for result in done:
        worker = workers.setdefault(result["worker"], {"scenes_mapped": 0, "scenes_resumed": 0, "model_loads": 0})
        worker["scenes_mapped" if result["status"] == "mapped" else "scenes_resumed"] += 1
        worker["model_loads"] = max(worker["model_loads"], result["worker_model_loads"])
    in_mosaic = {result["scene"] for result in placed}
    # each scene's outline on the ground, for viewers: None where its header could not be read or it has no CRS
    footprints = {scene.id: source_footprint(scene.source) for scene in scenes}
    return {
        "scenes": len(scenes),
        "mapped": len(mapped),
        "resumed": len(done) - len(mapped),
        "failed": len(run.failed),
        "failures": [
            {
                "scene": scene.id,
                "source": str(scene.source),
                "error": run.failed[scene.id],
                "footprint": footprints[scene.id],
            }
            for scene in scenes
            if scene.id in run.failed
        ],
        "seconds": run.seconds,
        "megapixels_mapped": megapixels,
        "megapixels_per_second": megapixels / run.seconds if run.seconds > 0 else None,
        "workers": workers,
        "runs": sorted({result["run"] for result in done}),
        "not_in_mosaic": [result["scene"] for result in done if result["scene"] not in in_mosaic],
        "scene_results": [
            {key: result[key] for key in ("scene", "source", "status", "worker", "seconds", "megapixels")}
            | {"footprint": footprints[result["scene"]]}
            for result in done
        ],
    }


def console_main() -> None:
    """The `landcover-region` console script."""
    run_stage(main)


if __name__ == "__main__":
    run_stage(main)
