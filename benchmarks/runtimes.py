"""`make bench`'s runtime rows: seconds per 2448 px image for each predict.runtime and precision.

Every row is predict's blended sliding window (the `predict` params: window, overlap, batch) on
the same synthetic 2448 px images, through one runtime's probability function; benchmarks.speed
runs each in a fresh process and prints them beside the seed notebooks' fp32 loop. The model is
the benchmark's randomly initialised DeepLabV3+ (speed does not depend on the weights), exported
once to ONNX into the benchmark cache; its int8 version is calibrated on 32 of the cached 256 px
training tiles, the way the export stage does it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.common import NUM_CLASSES, markdown_table, params, speed_part_main, time_per_image
from benchmarks.speed_inference import blended_classes

# (label, runtime, precision) in the order printed; "compiled": torch.compile with frozen weights (predict.compile) in
# the precision predict.precision auto resolves to here
COMPILED = "compiled"
VARIANTS = (
    ("torch fp32", "torch", "fp32"),
    ("torch bf16", "torch", "bf16"),
    ("torch compiled (predict.precision auto)", "torch", COMPILED),
    ("onnxruntime fp32", "onnxruntime", "fp32"),
    ("onnxruntime int8", "onnxruntime", "int8"),
    ("openvino fp32", "openvino", "fp32"),
    ("openvino int8", "openvino", "int8"),
)
CALIBRATION_TILES = 32


def openvino_installed() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def exported_models(cache: Path, tiles: Path, encoder: str) -> dict[str, Path]:
    """The benchmark model as model.onnx and model.int8.onnx in the cache, made once per encoder."""
    import torch

    from landcover.data.palette import ClassTable
    from landcover.data.scaling import UINT8_RGB
    from landcover.data.tilestore import TileStore
    from landcover.inference.export import evenly_spaced, onnx_bytes, quantize_int8, tile_batches
    from landcover.model.checkpoint import TrainedModel
    from landcover.model.model import build_model

    folder = cache / f"onnx-{encoder}"
    models = {"fp32": folder / "model.onnx", "int8": folder / "model.int8.onnx"}
    if not all(path.exists() for path in models.values()):
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = build_model(encoder, NUM_CLASSES).eval()
        trained = TrainedModel(model, ClassTable.deepglobe(), UINT8_RGB, 256)
        models["fp32"].write_bytes(onnx_bytes(trained))
        store = TileStore(tiles)
        records = evenly_spaced(store.index(), CALIBRATION_TILES)
        quantize_int8(models["fp32"], models["int8"], tile_batches(store.whole_image, records, 8))
    return models


def measure_runtime(config: dict) -> dict:
    """Seconds per image through one runtime and precision (run in a fresh process by benchmarks.speed)."""
    import torch

    from landcover.data.geometry import window_grid
    from landcover.data.palette import ClassTable
    from landcover.data.scaling import UINT8_RGB
    from landcover.inference.blending import fit_window
    from landcover.inference.probabilities import trained_model_probabilities
    from landcover.inference.runtimes import onnxruntime_probabilities, openvino_probabilities
    from landcover.io.imageio import read_rgb
    from landcover.model.checkpoint import TrainedModel
    from landcover.model.devices import resolve_precision
    from landcover.model.model import build_model

    predict, encoder = params()["predict"], params()["model"]["encoder"]
    runtime, precision = config["runtime"], config["precision"]
    images = [read_rgb(path) for path in config["images"]]
    height, width = images[0].shape[:2]
    window = fit_window(predict["window"], height, width)
    if runtime == "torch":
        torch.manual_seed(0)
        trained = TrainedModel(build_model(encoder, NUM_CLASSES).eval(), ClassTable.deepglobe(), UINT8_RGB, 256)
        compiled = precision == COMPILED
        if compiled:
            precision = resolve_precision("auto", torch.device("cpu"), "predict.precision")
        probability_fn = trained_model_probabilities(
            trained, torch.device("cpu"), precision, predict["tta"], compile=compiled
        )
    else:
        models = exported_models(Path(config["cache"]), Path(config["tiles"]), encoder)
        make = onnxruntime_probabilities if runtime == "onnxruntime" else openvino_probabilities
        probability_fn = make(models[precision], predict["tta"])

    # The warm-up matters: sessions allocate and pick kernels on first use.
    timing = time_per_image(lambda image: blended_classes(probability_fn, image, window, predict), images, window)
    return {**timing, "windows": len(window_grid(height, width, window, predict["overlap"]))}


def run_all(run_measurement: Callable[..., dict], images: list[str], tiles: Path, cache: Path) -> dict:
    """Every runtime variant that can run here, each measured in a fresh process by `run_measurement`
    (benchmarks.speed's, passed in: that module imports this one)."""
    import torch

    from landcover.model.devices import bf16_supported

    results = {}
    for label, runtime, precision in VARIANTS:
        if runtime == "openvino" and not openvino_installed():
            results[label] = {"skipped": "openvino not installed (make install-runtime)"}
            continue
        if precision == "bf16" and not bf16_supported(torch.device("cpu")):
            # emulated: many minutes per image, and predict.precision auto runs fp32 on such a CPU
            results[label] = {"skipped": "no native bf16 on this CPU"}
            continue
        results[label] = run_measurement(
            "runtime",
            f"inference, {label}",
            runtime=runtime,
            precision=precision,
            images=images,
            tiles=str(tiles),
            cache=str(cache),
        )
    return results


def report(results: dict, seed_seconds: float, target: float) -> str:
    """The table: seconds per image for each runtime and precision, against the seed's plain fp32 loop."""
    rows = []
    for label, result in results.items():
        if "skipped" in result:
            rows.append((label, result["skipped"], "", "", ""))
            continue
        ratio = seed_seconds / result["seconds_per_image"]
        rows.append(
            (
                label,
                f"{result['seconds_per_image']:.2f}",
                f"{ratio:.2f}x",
                "met" if ratio >= target else "MISSED",
                f"{result['peak_rss_mb']:.0f}",
            )
        )
    header = ["runtime", "s per 2448 px image", f"vs seed ({seed_seconds:.2f} s)", f"target {target:g}x", "peak RSS MB"]
    lines = ["", "inference by runtime (predict's blended sliding window; seed: fp32 loop, no overlap):"]
    return "\n".join(lines + markdown_table(header, rows, "lrrlr"))


if __name__ == "__main__":
    speed_part_main("benchmarks.runtimes", __doc__)
