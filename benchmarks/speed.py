"""Speed of the pipeline against the seed notebooks' way, and against the hardware, measured in one run.

    make bench            # full: more repetitions, plus the settings explored (workers, formats, compile)
    make bench-quick      # under 10 minutes on a 2-core CPU

Prints a table and writes benchmarks/results.json (with a description of the machine). Each
measurement runs in a fresh process, which reports its own peak RSS (VmHWM); the two training steps
run in one process, alternating, so both see the same machine state. Inputs are full-size
2448x2448 JPEGs and masks from the synthetic generator, made once into --cache. The models are
randomly initialised: speed does not depend on the weights.

What is compared (see seed_style.py for the reference side):
  training    the train stage's step (bf16 autocast, channels_last, softmax + Dice/CE, logging)
              vs the seed's (fp32, NCHW, sigmoid + Dice on a float one-hot mask), same batch of 256 px tiles
  loading     the train stage's DataLoader over tiles vs the seed's loader (whole-image decode,
              float64 one-hot, crop), per 256x256 sample delivered
  inference   predict's sliding window with blending (params.yaml's predict section) vs an fp32
              per-tile loop without overlap, on a whole 2448x2448 image
  tile        the tile stage vs decoding the JPEG and mask and writing the same PNG tiles, nothing else
  gpu         where CUDA is present (else printed as skipped): training img/s at 512 px, batch 16, on 1 and
              on all GPUs (DDP), fraction of the bf16 matmul peak, inference s per image (benchmarks/gpu.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # run as a script from anywhere

import gpu  # noqa: E402  (the GPU section, benchmarks/gpu.py)
import numpy as np  # noqa: E402

# torch is imported where used: the tile measurements' peak memory should not include it.
import yaml  # noqa: E402

IMAGE_SIZE = 2448  # DeepGlobe's image side
SAMPLE_SIZE = 256  # the training tile of every training and loading measurement
SAMPLE_MP = SAMPLE_SIZE**2 / 1e6
BATCH_SIZE = 8  # both training steps, both loaders
NUM_CLASSES = 7

# Repetitions per mode. Quick mode keeps `make bench-quick` under 10 minutes on a 2-core CPU.
MODES = {
    "quick": {
        "images": 2,
        "train_rounds": 3,
        "train_steps": 2,
        "load_samples": 48,
        "seed_samples": 8,
        "infer_images": 2,
        "explore": False,
    },
    "full": {
        "images": 4,
        "train_rounds": 6,
        "train_steps": 3,
        "load_samples": 192,
        "seed_samples": 24,
        "infer_images": 3,
        "explore": True,
    },
}
TARGETS = {"training": 2.2, "loading": 30.0, "inference": 3.0, "tile": 0.5}
RUNTIME_TARGET = 2.0  # issue 14: some runtime at 2x the seed loop's speed, blending kept


# --- Helpers run in the measuring process ---------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: on Linux that survives exec."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def device_and_sync() -> tuple[torch.device, callable]:
    import torch

    from stages.core.model.devices import choose_device

    device = choose_device("auto")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return device, sync


def count_flops(function) -> int:
    """Floating-point operations of one call (convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def tile_store(tiles: Path):
    """The benchmark's tiles and, in their folder, their encoded masks."""
    from stages.core.data.tilestore import TileStore

    return TileStore(tiles, tiles / "encoded")


def read_tile_batch(tiles: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` 256 px tiles (uint8 NHWC) and their class-index masks."""
    from stages.core.data.datasets import TileDataset

    dataset = TileDataset(tile_store(tiles).index()[:count], tile_store(tiles))  # decodes each image once
    samples = [dataset[index] for index in range(len(dataset))]
    return np.stack([image.numpy() for image, _ in samples]), np.stack([mask.numpy() for _, mask in samples])


# --- Measurements: each runs in its own process and returns a dict --------------------------------


def measure_peaks(config: dict) -> dict:
    """The machine's throughput ceilings, GFLOP/s: a large matrix multiply and a large 3x3 convolution.

    Both in bf16 and fp32. The convolution runs through oneDNN as the network's layers do; the fp32
    matrix multiply goes through MKL, which can understate the fp32 ceiling on non-Intel CPUs.
    """
    import torch
    import torch.nn.functional as F

    device, sync = device_and_sync()
    side = 8192 if device.type == "cuda" else 4096
    repeats = 20 if device.type == "cuda" else 4

    def rate(operation, flops: int) -> float:
        for _ in range(2):
            operation()
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            operation()
        sync()
        return flops * repeats / (time.perf_counter() - start) / 1e9

    result = {}
    with torch.no_grad():
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            a, b = (torch.randn(side, side, device=device, dtype=dtype) for _ in range(2))
            result[f"{name}_matmul_gflops"] = rate(lambda: a @ b, 2 * side**3)
            images = torch.randn(8, 256, 64, 64, device=device, dtype=dtype).contiguous(
                memory_format=torch.channels_last
            )
            weights = torch.randn(256, 256, 3, 3, device=device, dtype=dtype).contiguous(
                memory_format=torch.channels_last
            )
            result[f"{name}_conv_gflops"] = rate(
                lambda: F.conv2d(images, weights, padding=1), 2 * 8 * 256 * 256 * 9 * 64 * 64
            )
    return result


def measure_training(config: dict) -> dict:
    """Per-step seconds of the project's and the seed's step on the same batches, alternating rounds."""
    import torch
    from seed_style import seed_model, seed_train_step

    from stages.core.data.palette import one_hot
    from stages.core.io.params import TrainParams, read_section
    from stages.core.model.devices import resolve_precision
    from stages.core.model.model import IMAGENET_MEAN, IMAGENET_STD, build_model
    from stages.core.training.components import BatchSettings, configure_loss, configure_optimizer
    from stages.core.training.loop import run_epoch

    device, sync = device_and_sync()
    train = read_section(params(), "train", TrainParams)
    images, masks = read_tile_batch(Path(config["tiles"]), BATCH_SIZE)
    torch.manual_seed(0)
    project_batches = [(torch.from_numpy(images), torch.from_numpy(masks))] * config["steps"]  # as the loader gives
    seed_images = (
        torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    seed_masks = torch.from_numpy(one_hot(masks, NUM_CLASSES)).permute(0, 3, 1, 2).float()
    seed_images, seed_masks = seed_images.to(device), seed_masks.to(device)

    steps = {}
    if "project" in config["variants"]:
        model = build_model(params()["model"]["encoder"], NUM_CLASSES).to(device, memory_format=torch.channels_last)
        optimizer = configure_optimizer(model, train, device)
        settings = BatchSettings(
            device,
            resolve_precision(train.precision, device, "train.precision"),
            train.channels_last,
            IMAGENET_MEAN,
            IMAGENET_STD,
        )
        loss_fn = configure_loss(train.loss)

        def project_steps(batches):
            run_epoch(model, batches, settings, loss_fn, NUM_CLASSES, "benchmark", optimizer, progress=False)
            sync()

        steps["project"] = project_steps
    if "seed" in config["variants"]:
        reference = seed_model(params()["model"]["encoder"], NUM_CLASSES).to(device)
        reference_optimizer = torch.optim.Adam(reference.parameters(), lr=8e-5)

        def seed_steps(batches):
            for _ in batches:
                seed_train_step(reference, reference_optimizer, seed_images, seed_masks)
            sync()

        steps["seed"] = seed_steps

    for run in steps.values():  # warm-up: oneDNN builds its kernels on first use; the first steps are slow
        run(project_batches[:2])
    seconds = {name: [] for name in steps}
    for _ in range(config["rounds"]):
        for name, run in steps.items():
            start = time.perf_counter()
            run(project_batches)
            seconds[name].append((time.perf_counter() - start) / config["steps"])
    result = {f"{name}_step_seconds": times for name, times in seconds.items()}
    # Work per step (the same network for both): the forward's count, times 3 for forward + backward
    # (gradients of inputs and of weights each cost a forward). Counted, not timed; torch's counter
    # over-counts the backward of dilated convolutions, so it is asked for the forward only.
    network = build_model(params()["model"]["encoder"], NUM_CLASSES).to(device)
    with torch.no_grad():
        result["step_flops"] = 3 * count_flops(lambda: network(seed_images))
    return result


def measure_loading(config: dict) -> dict:
    """Milliseconds per 256x256 sample delivered in batches: after the first batch, and the first batch."""
    import torch
    from seed_style import SeedDataset
    from torch.utils.data import DataLoader

    from stages.core.data.augment import training_augmentation
    from stages.core.data.datasets import TileDataset
    from stages.core.data.palette import ClassTable

    tiles = Path(config["tiles"])
    if config["variant"] == "project":
        augment = params()["augment"]
        store = tile_store(tiles)
        dataset = TileDataset(
            store.index(), store, training_augmentation(SAMPLE_SIZE, augment["scale_min"], augment["colour_jitter"])
        )
    else:
        pairs = [(Path(image), Path(mask)) for image, mask in config["pairs"]]
        pairs = (pairs * (config["samples"] + BATCH_SIZE))[: config["samples"] + BATCH_SIZE]  # + the first batch
        dataset = SeedDataset(pairs, ClassTable.deepglobe().colours, SAMPLE_SIZE)
    workers = config["workers"]
    loader = DataLoader(
        dataset,
        batch_size=BATCH_SIZE,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first_batch = time.perf_counter() - start
    delivered, start = 0, time.perf_counter()
    for images, _ in batches:
        delivered += len(images)
        if delivered >= config["samples"]:
            break
    ms_per_sample = (time.perf_counter() - start) / delivered * 1000
    return {
        "ms_per_sample": ms_per_sample,
        "ms_per_mp": ms_per_sample / SAMPLE_MP,
        "samples": delivered,
        "first_batch_seconds": first_batch,
    }


def measure_inference(config: dict) -> dict:
    """Seconds per whole image: predict's blended sliding window, or the seed's fp32 per-tile loop."""
    import torch
    from seed_style import seed_model, seed_predict

    from stages.core.data.geometry import window_grid
    from stages.core.inference.blending import fit_window, model_probabilities, sliding_window_probabilities
    from stages.core.io.imageio import read_rgb
    from stages.core.model.devices import resolve_precision
    from stages.core.model.model import IMAGENET_MEAN, IMAGENET_STD, build_model, compile_for_inference

    device, sync = device_and_sync()
    predict = {**params()["predict"], **config.get("predict", {})}
    encoder = params()["model"]["encoder"]
    images = [read_rgb(path) for path in config["images"]]
    window = fit_window(predict["window"], *images[0].shape[:2])
    torch.manual_seed(0)
    if config["variant"] == "project":
        model = build_model(encoder, NUM_CLASSES).eval().to(device, memory_format=torch.channels_last)
        network = compile_for_inference(model) if predict["compile"] else model
        probability_fn = model_probabilities(
            network,
            device,
            IMAGENET_MEAN,
            IMAGENET_STD,
            resolve_precision(predict["precision"], device, "predict.precision"),
            predict["tta"],
        )

        def run(image):
            sliding_window_probabilities(
                probability_fn, image, NUM_CLASSES, window, predict["overlap"], predict["batch_size"]
            ).argmax(axis=0).astype(np.uint8)

        overlap = predict["overlap"]
        sample = torch.zeros(1, 3, window, window, device=device).contiguous(memory_format=torch.channels_last)
    else:
        model = seed_model(encoder, NUM_CLASSES).eval().to(device)

        def run(image):
            seed_predict(model, image, window)

        overlap = 0.0
        sample = torch.zeros(1, 3, window, window, device=device)
    windows = len(window_grid(*images[0].shape[:2], window, overlap))

    start = time.perf_counter()
    run(images[0][: 2 * window, : 2 * window])  # warm-up (and, with compile, the compilation)
    warmup = time.perf_counter() - start
    times = []
    for image in images:
        start = time.perf_counter()
        run(image)
        sync()
        times.append(time.perf_counter() - start)
    with torch.inference_mode():
        window_flops = count_flops(lambda: model(sample))
    return {
        "seconds_per_image": statistics.median(times),
        "windows": windows,
        "window": window,
        "image_flops": windows * window_flops * (8 if predict["tta"] and config["variant"] == "project" else 1),
        "warmup_seconds": warmup,
        "settings": predict,
    }


def measure_tiling(config: dict) -> dict:
    """The tile stage on `count` images, or the bare work it cannot avoid: decode each file (to find damage), copy it."""
    from PIL import Image

    raw, out = Path(config["raw"]), Path(config["out"])
    tile = params()["tile"]
    start = time.perf_counter()
    if config["variant"] == "stage":
        from stages import tile as tile_stage

        tile_stage.main([str(raw), str(out), "--params", str(REPO / "params.yaml")])
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
        "tile_size": tile["size"],
    }


def measure_formats(config: dict) -> dict:
    """Tile storage formats: bytes on disk and decode milliseconds per 256 px image tile."""
    from PIL import Image

    from stages.core.io.imageio import read_rgb

    images, _ = read_tile_batch(Path(config["tiles"]), 64)
    arrays = list(images)
    result = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, suffix, save, load in (
            ("png_level1", ".png", lambda a, p: Image.fromarray(a).save(p, compress_level=1), read_rgb),
            ("png_level0", ".png", lambda a, p: Image.fromarray(a).save(p, compress_level=0), read_rgb),
            ("npy", ".npy", lambda a, p: np.save(p, a), np.load),
            ("jpeg_q95_lossy", ".jpg", lambda a, p: Image.fromarray(a).save(p, quality=95), read_rgb),
        ):
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


def measure_runtime(config: dict) -> dict:
    """Seconds per whole image through one predict.runtime and precision (benchmarks/runtimes.py)."""
    import runtimes

    return runtimes.measure_runtime(config, params()["predict"], params()["model"]["encoder"], NUM_CLASSES)


MEASUREMENTS = {
    "peaks": measure_peaks,
    "training": measure_training,
    "loading": measure_loading,
    "inference": measure_inference,
    "tiling": measure_tiling,
    "formats": measure_formats,
    "runtime": measure_runtime,
}


def child(name: str, config: dict) -> None:
    result = MEASUREMENTS[name](config)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


# --- The orchestrating process ------------------------------------------------------------------


def run_measurement(name: str, label: str, **config) -> dict:
    print(f"  {label} ...", end="", flush=True)
    start = time.perf_counter()
    process = subprocess.run(
        [sys.executable, __file__, "--measure", name, json.dumps(config)], capture_output=True, text=True, cwd=REPO
    )
    if process.returncode != 0:
        sys.exit(f"\nerror: benchmark '{label}' failed:\n{process.stderr.strip()[-3000:]}")
    print(f" {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads(process.stdout.strip().splitlines()[-1])


def prepare_inputs(cache: Path, count: int) -> tuple[Path, Path]:
    """`count` synthetic 2448 px pairs (a plain folder) and their 256 px tiles with encoded masks; made once."""
    from stages.core.data.encoding import encode_images
    from stages.core.data.palette import ClassTable
    from stages.core.data.tiling import tile_dataset
    from stages.synthetic.dataset import write_sample

    root = cache / f"{IMAGE_SIZE}px-{count}"
    raw, tiles = root / "raw", root / f"tiles-{SAMPLE_SIZE}"
    done = tiles / "done-whole-images"  # made with today's layout (whole images; encoded masks in tiles/encoded)
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        generated = root / "generated"
        generated.mkdir(parents=True)
        print(f"making {count} synthetic {IMAGE_SIZE}x{IMAGE_SIZE} images and their tiles in {root} (once)")
        write_sample(
            generated,
            seed=2448,
            train_images=count,
            valid_images=0,
            test_images=0,
            image_size=IMAGE_SIZE,
            jpeg_quality=90,
        )
        (generated / "train").rename(raw)
        shutil.copy(generated / "class_dict.csv", raw / "class_dict.csv")
        shutil.rmtree(generated)
        from stages.core.data.rawdata import find_pairs

        tile_dataset(find_pairs(raw), tiles, SAMPLE_SIZE, SAMPLE_SIZE)
        encode_images(tile_store(tiles).index(), tile_store(tiles), ClassTable.deepglobe())
        done.touch()
    return raw, tiles


def machine() -> dict:
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo, re.M).group(1).split()) if "flags" in cpuinfo else set()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    memory = (
        re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        if Path("/proc/meminfo").exists()
        else None
    )
    return {
        "cpu": model.group(1) if model else platform.processor(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni"}),
        "memory_gb": round(int(memory.group(1)) / 1024**2, 1) if memory else None,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def git_commit() -> str | None:
    process = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return process.stdout.strip() or None


def run_all(mode: str, cache: Path) -> dict:
    plan = MODES[mode]
    workers = params()["train"]["workers"]
    raw, tiles = prepare_inputs(cache, plan["images"])
    pairs = [(str(p), str(p.with_name(p.name.replace("_sat.jpg", "_mask.png")))) for p in sorted(raw.glob("*_sat.jpg"))]
    results: dict = {}
    print("measuring (each in a fresh process):")
    results["peaks"] = run_measurement("peaks", "bf16/fp32 matrix multiply and convolution peaks")
    results["training"] = run_measurement(
        "training",
        "training steps, project and seed alternating",
        tiles=str(tiles),
        variants=["project", "seed"],
        rounds=plan["train_rounds"],
        steps=plan["train_steps"],
    )
    for variant in ("project", "seed"):  # peak memory of each step on its own
        results["training"][f"{variant}_peak_rss_mb"] = run_measurement(
            "training", f"training memory, {variant}", tiles=str(tiles), variants=[variant], rounds=1, steps=2
        )["peak_rss_mb"]
    results["loading"] = {
        "project": run_measurement(
            "loading",
            f"loading, project ({workers} workers)",
            variant="project",
            tiles=str(tiles),
            workers=workers,
            samples=plan["load_samples"],
        ),
        "seed": run_measurement(
            "loading",
            f"loading, seed ({workers} workers)",
            variant="seed",
            tiles=str(tiles),
            pairs=pairs,
            workers=workers,
            samples=plan["seed_samples"],
        ),
    }
    images = [image for image, _ in pairs[: plan["infer_images"]]]
    results["inference"] = {
        variant: run_measurement("inference", f"inference, {variant}", variant=variant, images=images)
        for variant in ("project", "seed")
    }
    import runtimes  # the same images through every predict.runtime and precision

    results["runtimes"] = runtimes.run_all(run_measurement, images, tiles, cache)
    with tempfile.TemporaryDirectory() as scratch:
        results["tiling"] = {
            variant: run_measurement(
                "tiling", f"tiling, {variant}", variant=variant, raw=str(raw), out=f"{scratch}/{variant}"
            )
            for variant in ("stage", "bare")
        }
    results["explored"] = explore(plan, tiles, images) if plan["explore"] else {}
    results["gpu"] = gpu.run_section(mode, results["peaks"])  # GPU section: benchmarks/gpu.py
    return results


def explore(plan: dict, tiles: Path, images: list[str]) -> dict:
    """Settings tried in search of more speed; README.md says which helped."""
    print("exploring settings:")
    explored = {"formats": run_measurement("formats", "tile storage formats", tiles=str(tiles))}
    explored["loader_workers"] = {
        workers: run_measurement(
            "loading",
            f"loading, project, {workers} workers",
            variant="project",
            tiles=str(tiles),
            workers=workers,
            samples=plan["load_samples"],
        )
        for workers in (0, 1, 2)
    }
    explored["inference"] = {}
    predict = params()["predict"]
    for label, settings in (
        ("batch 1", {"batch_size": 1}),
        ("batch 16", {"batch_size": 16}),
        ("window 512", {"window": 512}),
        ("overlap 0.5", {"overlap": 0.5}),
        ("overlap 0", {"overlap": 0.0}),
        ("fp32 (bf16 off)", {"precision": "fp32"}),
        ("torch.compile", {"compile": True}),
    ):
        explored["inference"][label] = run_measurement(
            "inference",
            f"inference, project, {label}",
            variant="project",
            images=images[:1],
            predict={**predict, **settings},
        )
    return explored


# --- Report ---------------------------------------------------------------------------------------


def summarise(results: dict) -> dict:
    """The headline figures and ratios, as printed in the table."""
    peaks = {name: value * 1e9 for name, value in results["peaks"].items() if name.endswith("_gflops")}
    training = results["training"]
    project_step = statistics.median(training["project_step_seconds"])
    seed_step = statistics.median(training["seed_step_seconds"])
    loading, inference, tiling = results["loading"], results["inference"], results["tiling"]
    project_infer = inference["project"]["seconds_per_image"]
    seed_infer = inference["seed"]["seconds_per_image"]
    train_rate = BATCH_SIZE / project_step
    loader_rate = 1000 / loading["project"]["ms_per_sample"]
    train_flops_rate = training["step_flops"] / project_step
    infer_flops_rate = inference["project"]["image_flops"] / project_infer
    return {
        "peaks_gflops": results["peaks"],
        # The most bf16 can give over fp32 for the network's main work, on this machine.
        "bf16_over_fp32_convolution": peaks["bf16_conv_gflops"] / peaks["fp32_conv_gflops"],
        "training_images_per_second": {"project": train_rate, "seed": BATCH_SIZE / seed_step},
        "training_speedup": seed_step / project_step,
        "training_fraction_of_bf16_matmul_peak": train_flops_rate / peaks["bf16_matmul_gflops"],
        "training_fraction_of_bf16_conv_peak": train_flops_rate / peaks["bf16_conv_gflops"],
        "seed_training_fraction_of_fp32_conv_peak": training["step_flops"] / seed_step / peaks["fp32_conv_gflops"],
        "loading_ms_per_mp": {"project": loading["project"]["ms_per_mp"], "seed": loading["seed"]["ms_per_mp"]},
        "loading_speedup_per_mp": loading["seed"]["ms_per_mp"] / loading["project"]["ms_per_mp"],
        "loader_samples_per_second": loader_rate,
        "loader_over_training_rate": loader_rate / train_rate,
        "inference_seconds_per_image": {"project": project_infer, "seed": seed_infer},
        "inference_speedup": seed_infer / project_infer,
        "inference_fraction_of_bf16_matmul_peak": infer_flops_rate / peaks["bf16_matmul_gflops"],
        "inference_fraction_of_bf16_conv_peak": infer_flops_rate / peaks["bf16_conv_gflops"],
        # The best ratio predict could reach with its window layout, running at the bf16 convolution peak.
        "inference_speedup_bound_at_conv_peak": seed_infer
        / (inference["project"]["image_flops"] / peaks["bf16_conv_gflops"]),
        "tile_fraction_of_bare": tiling["stage"]["mp_per_second"] / tiling["bare"]["mp_per_second"],
    }


def verdict(value: float, target: float) -> str:
    return f"{'met' if value >= target else 'MISSED'} (target {target:g})"


def report(results: dict, summary: dict) -> str:
    training, loading = results["training"], results["loading"]
    inference, tiling = results["inference"], results["tiling"]
    rows = [
        (
            "training, img/s (8 x 256 px)",
            f"{summary['training_images_per_second']['project']:.2f}",
            f"{summary['training_images_per_second']['seed']:.2f}",
            summary["training_speedup"],
            TARGETS["training"],
            training["project_peak_rss_mb"],
            training["seed_peak_rss_mb"],
        ),
        (
            "loading, ms per MP delivered",
            f"{loading['project']['ms_per_mp']:.0f}",
            f"{loading['seed']['ms_per_mp']:.0f}",
            summary["loading_speedup_per_mp"],
            TARGETS["loading"],
            loading["project"]["peak_rss_mb"],
            loading["seed"]["peak_rss_mb"],
        ),
        (
            "loading, ms per 256 px sample",
            f"{loading['project']['ms_per_sample']:.1f}",
            f"{loading['seed']['ms_per_sample']:.1f}",
            None,
            None,
            None,
            None,
        ),
        (
            f"inference, s per {IMAGE_SIZE} px image",
            f"{inference['project']['seconds_per_image']:.2f}",
            f"{inference['seed']['seconds_per_image']:.2f}",
            summary["inference_speedup"],
            TARGETS["inference"],
            inference["project"]["peak_rss_mb"],
            inference["seed"]["peak_rss_mb"],
        ),
        (
            "tile stage, MP/s (vs bare decode+write)",
            f"{tiling['stage']['mp_per_second']:.1f}",
            f"{tiling['bare']['mp_per_second']:.1f}",
            summary["tile_fraction_of_bare"],
            TARGETS["tile"],
            tiling["stage"]["peak_rss_mb"],
            tiling["bare"]["peak_rss_mb"],
        ),
    ]
    lines = [
        "| measure | project | seed / bare | ratio | target | peak RSS MB (project / seed) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, ours, theirs, ratio, target, rss_ours, rss_theirs in rows:
        ratio_text = f"{ratio:.2f}x" if ratio is not None else ""
        target_text = verdict(ratio, target) if target is not None else ""
        rss = f"{rss_ours:.0f} / {rss_theirs:.0f}" if rss_ours is not None else ""
        lines.append(f"| {name} | {ours} | {theirs} | {ratio_text} | {target_text} | {rss} |")
    project_predict = inference["project"]["settings"]
    peaks = summary["peaks_gflops"]
    lines += [
        "",
        f"- ceilings, GFLOP/s: bf16 matmul {peaks['bf16_matmul_gflops']:.0f}, bf16 3x3 convolution "
        f"{peaks['bf16_conv_gflops']:.0f}; fp32 matmul {peaks['fp32_matmul_gflops']:.0f}, fp32 convolution "
        f"{peaks['fp32_conv_gflops']:.0f}. bf16 convolutions are {summary['bf16_over_fp32_convolution']:.2f}x fp32 "
        "ones here: the most precision alone can give.",
        f"- training reaches {summary['training_fraction_of_bf16_matmul_peak']:.0%} of the bf16 matmul peak "
        f"({summary['training_fraction_of_bf16_conv_peak']:.0%} of the convolution peak); the seed's fp32 step "
        f"{summary['seed_training_fraction_of_fp32_conv_peak']:.0%} of the fp32 convolution peak.",
        f"- inference reaches {summary['inference_fraction_of_bf16_matmul_peak']:.0%} of the bf16 matmul peak "
        f"({summary['inference_fraction_of_bf16_conv_peak']:.0%} of the convolution peak).",
        f"- loader ({params()['train']['workers']} workers) delivers {summary['loader_samples_per_second']:.0f} samples/s, "
        f"{summary['loader_over_training_rate']:.1f}x what a training step consumes "
        f"({summary['training_images_per_second']['project']:.1f} img/s).",
        f"- predict: window {inference['project']['window']}, overlap {project_predict['overlap']}, "
        f"batch {project_predict['batch_size']}: {inference['project']['windows']} windows per image against the "
        f"plain loop's {inference['seed']['windows']}; even at the bf16 convolution peak it would be "
        f"{summary['inference_speedup_bound_at_conv_peak']:.2f}x the plain loop.",
    ]
    return "\n".join(lines)


def report_explored(explored: dict) -> str:
    if not explored:
        return ""
    lines = ["", "settings explored:", "| tile format | KB per tile | write ms | decode ms |", "|---|---:|---:|---:|"]
    lines += [
        f"| {name} | {f['kb_per_tile']:.0f} | {f['write_ms']:.2f} | {f['decode_ms']:.2f} |"
        for name, f in explored["formats"].items()
        if name != "peak_rss_mb"
    ]
    lines += ["", "| loader workers | ms per sample | first batch s |", "|---|---:|---:|"]
    lines += [
        f"| {workers} | {r['ms_per_sample']:.1f} | {r['first_batch_seconds']:.2f} |"
        for workers, r in explored["loader_workers"].items()
    ]
    lines += ["", "| predict setting (else params.yaml) | windows | s per image | warm-up s |", "|---|---:|---:|---:|"]
    lines += [
        f"| {label} | {r['windows']} | {r['seconds_per_image']:.2f} | {r['warmup_seconds']:.1f} |"
        for label, r in explored["inference"].items()
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, no exploration (< 10 min on 2 cores)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "landcover-bench",
        help="where the synthetic full-size images are kept between runs",
    )
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results.json")
    parser.add_argument("--measure", nargs=2, metavar=("NAME", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        child(args.measure[0], json.loads(args.measure[1]))
        return

    mode = "quick" if args.quick else "full"
    started = time.perf_counter()
    results = run_all(mode, args.cache)
    summary = summarise(results)
    import runtimes

    table = (
        report(results, summary)
        + runtimes.report(results["runtimes"], summary["inference_seconds_per_image"]["seed"], RUNTIME_TARGET)
        + report_explored(results["explored"])
        + gpu.report(results.get("gpu"))
    )
    print(f"\n{table}\n\n{mode} run, {time.perf_counter() - started:.0f} s in all")
    payload = {
        "mode": mode,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        "summary": summary,
        "results": results,
        "table": table,
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
