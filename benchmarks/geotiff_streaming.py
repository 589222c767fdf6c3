"""Streaming GeoTIFF prediction: peak memory and speed on a large scene, and streaming against in memory.

    .venv/bin/python -m benchmarks.geotiff_streaming [--size 20000] [--height H] [--cache DIR]
                                                     [--checkpoint models/best.pt] [--skip-large] [--skip-ratio]
                                                     [--ratio-side 2448] [--rounds 2]

1. large scene: `predict --input`'s mapping (mapping.map_file: stream, class-map COG, area report)
   of a SIZE x HEIGHT 3-band uint8 GeoTIFF (default 20000 x 20000, EPSG:32633, 0.5 m pixels), in a
   fresh process that reports its peak RSS (VmHWM) and MP/s. The scene is written once into
   --cache (outside the repository; 1.2 GB uncompressed at 20000 x 20000, about 0.7 GB as written:
   the free space needed is checked and said first), from the synthetic sample generator's scenes
   tiled across it, and reused by later runs.
2. ratio: per-pixel speed of streaming (map_file, as in 1.) against the in-memory path (read whole,
   SlidingWindows.probabilities, argmax, one GeoTIFF write) on a 2448 x 2448 GeoTIFF, alternating
   rounds after a warm-up of each, by wall time and by the process's CPU time (steadier where other
   work shares the machine); the two class maps must be identical.

The model is the project's DeepLabV3+ ResNet50 with the predict params of params.yaml (window
256, overlap 0.25, batch 8, bf16 where native): from random init unless --checkpoint names a
trained one. Speed does not depend on the weights; the classes it draws do. `--checkpoint stub`
replaces the network by a per-pixel 1x1 convolution: a full-size run then takes minutes, not an
hour, and measures what streaming itself holds and costs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.common import IMAGE_SIZE, REPO, answered_measurement, benchmark_parser, cpu_model, measure_in_child

if TYPE_CHECKING:
    from landcover.data.palette import ClassTable
    from landcover.io.params import PredictParams

DEFAULT_CACHE = Path.home() / ".cache" / "landcover-geotiff-bench"
TILE = 2048  # side of the synthetic scenes tiled across the large one
PIXEL_SIZE = 0.5


def write_scene(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A 3-band uint8 GeoTIFF in EPSG:32633 (tiled, DEFLATE), synthetic scenes tiled across it with flips."""
    import rasterio
    from affine import Affine
    from tqdm import tqdm

    from landcover.synthetic.scene import generate_scene

    rng = np.random.default_rng(seed)
    tiles = [generate_scene(rng, TILE)[0] for _ in range(3)]
    partial = path.with_name(path.name + ".partial")
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(PIXEL_SIZE, 0, 500_000, 0, -PIXEL_SIZE, 5_000_000),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        zlevel=1,
        predictor=2,
        bigtiff="if_safer",
        photometric="rgb",
    )
    with rasterio.Env(GDAL_CACHEMAX=256), rasterio.open(partial, "w", **profile) as dataset:
        for row, top in enumerate(tqdm(range(0, height, TILE), desc=f"writing {path.name}", unit="strip")):
            rows = min(TILE, height - top)
            strip = np.empty((rows, width, 3), dtype=np.uint8)
            for column, left in enumerate(range(0, width, TILE)):
                tile = tiles[(row * 7 + column) % len(tiles)]
                tile = tile[::-1] if row % 2 else tile
                tile = tile[:, ::-1] if column % 2 else tile
                strip[:, left : left + TILE] = tile[:rows, : min(TILE, width - left)]
            dataset.write(strip.transpose(2, 0, 1), window=((top, top + rows), (0, width)))
    partial.rename(path)


def stub_probabilities(num_classes: int) -> Callable:
    """A per-pixel linear softmax over the colours (a 1x1 convolution, fixed random weights): no network,
    so a run measures the streaming, blending and writing alone."""
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, num_classes, 1)

    @torch.inference_mode()
    def fn(batch: torch.Tensor) -> torch.Tensor:
        return conv(batch.permute(0, 3, 1, 2).float() / 255).softmax(dim=1)

    return fn


def probability_fn(checkpoint: str | None) -> tuple[Callable, ClassTable, PredictParams]:
    """The model as predict builds it (or the stub, for checkpoint "stub"), and its class table."""
    import torch

    from landcover.data.palette import ClassTable
    from landcover.data.scaling import UINT8_RGB
    from landcover.inference.probabilities import trained_model_probabilities
    from landcover.io.params import PredictParams, load_params, read_section
    from landcover.model.checkpoint import TrainedModel, load_trained_model
    from landcover.model.model import build_model

    params = read_section(load_params(REPO / "params.yaml"), "predict", PredictParams)
    if checkpoint == "stub":
        table = ClassTable.deepglobe()
        return stub_probabilities(len(table)), table, params
    if checkpoint:
        trained = load_trained_model(Path(checkpoint))
    else:
        torch.manual_seed(0)
        table = ClassTable.deepglobe()
        trained = TrainedModel(build_model("resnet50", len(table)).eval(), table, UINT8_RGB, 256)
    fn = trained_model_probabilities(trained, torch.device("cpu"), params.precision, params.tta, compile=params.compile)
    return fn, trained.table, params


def measure_large(config: dict) -> dict:
    """predict's mapping of the large scene config["scene"] into config["out"]: seconds, MP/s, outputs."""
    from landcover.geo.mapping import MapOptions, map_file
    from landcover.inference.blending import plan_windows

    scene, out = config["scene"], config["out"]
    fn, table, params = probability_fn(config["checkpoint"])
    start, start_cpu = time.perf_counter(), time.process_time()
    report = map_file(Path(scene), Path(out), fn, table, params, MapOptions())
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    megapixels = report["width"] * report["height"] / 1e6
    window, origins = plan_windows(report["height"], report["width"], params.window, params.overlap)
    sizes = {path.name: path.stat().st_size for path in Path(out).iterdir()}
    return {
        "scene": f"{report['width']}x{report['height']}",
        "megapixels": megapixels,
        "windows": len(origins),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "mp_per_second": round(megapixels / seconds, 3),
        "output_bytes": sizes,
        "area_report": {
            key: report[key]
            for key in (
                "crs",
                "area_method",
                "pixel_area_m2",
                "predicted_pixels",
                "no_prediction_pixels",
                "predicted_hectares",
            )
        },
        "classes": {row["class"]: [row["pixels"], row["hectares"]] for row in report["classes"]},
    }


def measure_ratio(config: dict) -> dict:
    """Streaming against in memory on config["scene"], config["rounds"] timed rounds after a warm-up."""
    import rasterio

    from landcover.geo.georaster import ReadOptions, gdal_env, open_scene
    from landcover.geo.mapping import MapOptions, map_file
    from landcover.inference.blending import SlidingWindows

    fn, table, params = probability_fn(config["checkpoint"])
    path, out, rounds = Path(config["scene"]), Path(config["out"]), config["rounds"]

    def in_memory() -> np.ndarray:
        with gdal_env(), open_scene(path, ReadOptions()) as opened:
            image, has_data = opened.read_rows(0, opened.height)
            probs = SlidingWindows.of(fn, len(table), params).probabilities(image)
            classes = probs.argmax(axis=0).astype(np.uint8)
            classes[~has_data] = 255
            with rasterio.open(
                out / "in_memory.tif",
                "w",
                driver="GTiff",
                width=opened.width,
                height=opened.height,
                count=1,
                dtype="uint8",
                crs=opened.crs,
                transform=opened.transform,
                nodata=255,
                tiled=True,
                compress="deflate",
            ) as dataset:
                dataset.write(classes, 1)
        return classes

    def streaming() -> np.ndarray:
        map_file(path, out / "streamed", fn, table, params, MapOptions())
        with rasterio.open(out / "streamed" / f"{path.stem}.tif") as dataset:
            return dataset.read(1)

    # Wall time, and CPU time of the process (all its threads): on a machine shared with other work
    # the CPU time is the steadier measure of the work each path does.
    times: dict[str, list[float]] = {"in_memory": [], "streaming": []}
    cpu: dict[str, list[float]] = {"in_memory": [], "streaming": []}
    outputs = {}
    for round_ in range(rounds + 1):  # round 0 warms both up and is not counted
        for name, run in (("in_memory", in_memory), ("streaming", streaming)):
            start, start_cpu = time.perf_counter(), time.process_time()
            outputs[name] = run()
            if round_:
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    megapixels = outputs["in_memory"].size / 1e6
    best = {name: min(values) for name, values in times.items()}
    best_cpu = {name: min(values) for name, values in cpu.items()}
    return {
        "image": "{1}x{0}".format(*outputs["in_memory"].shape),
        "seconds": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
        "cpu_seconds": {k: [round(v, 2) for v in vs] for k, vs in cpu.items()},
        "mp_per_second": {name: round(megapixels / seconds, 3) for name, seconds in best.items()},
        "streaming_over_in_memory_speed": round(best["in_memory"] / best["streaming"], 3),
        "streaming_over_in_memory_speed_by_cpu_time": round(best_cpu["in_memory"] / best_cpu["streaming"], 3),
        "identical_class_maps": bool(np.array_equal(outputs["in_memory"], outputs["streaming"])),
    }


MEASUREMENTS = {"large": measure_large, "ratio": measure_ratio}


def ensure_scene(cache: Path, width: int, height: int) -> Path:
    path = cache / f"scene_{width}x{height}.tif"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    # uncompressed size, a bound on what DEFLATE writes; the outputs need far less (class maps compress well)
    needed = width * height * 3 * 1.1 + (64 << 20)
    free = shutil.disk_usage(cache).free
    print(
        f"writing a {width}x{height} scene into {path} (once): needs up to {needed / 2**30:.1f} GiB, "
        f"{free / 2**30:.1f} GiB free",
        file=sys.stderr,
    )
    if free < needed * 1.2:
        raise SystemExit(f"not enough free space in {cache}: need {needed * 1.2 / 2**30:.1f} GiB")
    write_scene(path, width, height)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("benchmarks.geotiff_streaming", __doc__, measures=True)
    parser.add_argument("--size", type=int, default=20000, help="scene width (and height unless --height)")
    parser.add_argument("--height", type=int, help="scene height (default: --size)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--checkpoint",
        help="a trained checkpoint instead of the random-init ResNet50; 'stub': "
        "a per-pixel 1x1 convolution, to measure the streaming machinery alone",
    )
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of each path in the ratio")
    parser.add_argument("--ratio-side", type=int, default=IMAGE_SIZE, help="side of the image of the ratio")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-ratio", action="store_true")
    args = parser.parse_args(argv)
    if answered_measurement(args, MEASUREMENTS):
        return

    model = {None: "DeepLabV3+ ResNet50, random init", "stub": "stub: per-pixel 1x1 convolution, no network"}
    results = {"cpu": f"{os.cpu_count()} cores, {cpu_model()}", "model": model.get(args.checkpoint, args.checkpoint)}
    if not args.skip_ratio:
        scene = ensure_scene(args.cache, args.ratio_side, args.ratio_side)
        out = args.cache / "out_ratio"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        config = {"scene": str(scene), "out": str(out), "checkpoint": args.checkpoint, "rounds": args.rounds}
        results["ratio"] = measure_in_child("benchmarks.geotiff_streaming", "ratio", config, show_stderr=True)
        print(json.dumps(results["ratio"]), file=sys.stderr)
        shutil.rmtree(out)
    if not args.skip_large:
        scene = ensure_scene(args.cache, args.size, args.height or args.size)
        out = args.cache / "out_large"
        shutil.rmtree(out, ignore_errors=True)
        config = {"scene": str(scene), "out": str(out), "checkpoint": args.checkpoint}
        results["large"] = measure_in_child("benchmarks.geotiff_streaming", "large", config, show_stderr=True)
        shutil.rmtree(out)
    print(json.dumps(results, indent=2))
    if "large" in results:
        large = results["large"]
        print(
            f"\nlarge scene {large['scene']} ({large['megapixels']:.0f} MP): {large['seconds']} s, "
            f"{large['mp_per_second']} MP/s, peak RSS {large['peak_rss_mb']:.0f} MB"
        )
    if "ratio" in results:
        ratio = results["ratio"]
        print(
            f"{ratio['image']}: streaming {ratio['mp_per_second']['streaming']} MP/s, in memory "
            f"{ratio['mp_per_second']['in_memory']} MP/s: {ratio['streaming_over_in_memory_speed']}x "
            f"({ratio['streaming_over_in_memory_speed_by_cpu_time']}x by CPU time); "
            f"identical class maps: {ratio['identical_class_maps']}"
        )


if __name__ == "__main__":
    main()
