"""Speed of the pipeline against the seed notebooks' way, and against the hardware, measured in one run.

    make bench            # = .venv/bin/python -m benchmarks.speed: more repetitions, plus the settings explored
    make bench-quick      # = ... -m benchmarks.speed --quick: under 10 minutes on a 2-core CPU

Prints a table and writes benchmarks/results.json (with a description of the machine). Each
measurement runs in a fresh process, which reports its own peak RSS (VmHWM); the two training steps
run in one process, alternating, so both see the same machine state. Inputs are full-size
2448x2448 JPEGs and masks from the synthetic generator, made once into --cache. The models are
randomly initialised: speed does not depend on the weights.

What is compared (see benchmarks/seed_style.py for the reference side):
  training    the train stage's step (bf16 autocast, channels_last, softmax + Dice/CE, logging)
              vs the seed's (fp32, NCHW, sigmoid + Dice on a float one-hot mask), same batch of 256 px tiles
  loading     the train stage's DataLoader over tiles vs the seed's loader (whole-image decode,
              float64 one-hot, crop), per 256x256 sample delivered
  inference   predict's sliding window with blending (params.yaml's predict section) vs an fp32
              per-tile loop without overlap, on a whole 2448x2448 image; and predict's window through
              each predict.runtime and precision (benchmarks/runtimes.py)
  tile        the tile stage vs decoding the JPEG and mask and writing the same PNG tiles, nothing else
  peaks       the machine's bf16 and fp32 matrix-multiply and convolution ceilings, of which training and
              inference reach the fractions printed
  gpu         where CUDA is present (else printed as skipped): training img/s at 512 px, batch 16, on 1 and
              on all GPUs (DDP), fraction of the bf16 matmul peak, inference s per image (benchmarks/gpu.py)

The measurements live in speed_peaks, speed_training, speed_inference and speed_tiling, the figures and
tables in speed_report; this module runs them and writes the results.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import gpu, runtimes
from benchmarks.common import (
    BENCHMARKS,
    DEFAULT_CACHE,
    answered_measurement,
    benchmark_parser,
    git_commit,
    machine,
    measure_in_child,
    params,
    write_json,
)
from benchmarks.inputs import image_mask_pairs, prepare_inputs
from benchmarks.speed_inference import measure_inference
from benchmarks.speed_peaks import measure_peaks
from benchmarks.speed_report import RUNTIME_TARGET, report, report_explored, summarise
from benchmarks.speed_tiling import measure_formats, measure_tiling
from benchmarks.speed_training import measure_loading, measure_training

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

# Each runs in its own process (`python -m benchmarks.speed --measure NAME CONFIG`) and returns a dict.
MEASUREMENTS: dict[str, Callable[[dict], dict]] = {
    "peaks": measure_peaks,
    "training": measure_training,
    "loading": measure_loading,
    "inference": measure_inference,
    "tiling": measure_tiling,
    "formats": measure_formats,
    "runtime": runtimes.measure_runtime,
}


def run_measurement(name: str, label: str, **config: object) -> dict:
    """Measurement `name` in a fresh process, its `label` and seconds printed as it goes."""
    print(f"  {label} ...", end="", flush=True)
    start = time.perf_counter()
    result = measure_in_child("benchmarks.speed", name, config)
    print(f" {time.perf_counter() - start:.0f} s", flush=True)
    return result


def run_all(mode: str, cache: Path) -> dict:
    """Every measurement of `mode` (quick or full) on inputs made once into `cache`."""
    plan = MODES[mode]
    workers = params()["train"]["workers"]
    raw, tiles = prepare_inputs(cache, plan["images"])
    pairs = image_mask_pairs(raw)
    results: dict = {"cpu_bf16": machine()["cpu_bf16"]}  # the CPU class, whose targets the report judges
    print("measuring (each in a fresh process):")
    results["peaks"] = run_measurement("peaks", "bf16/fp32 matrix multiply and convolution peaks")
    # Steps alternating on the same batches: the project's against the seed's, then train.compile's against the
    # eager one (its first step is the compile, timed apart)
    for key, label, variants in (
        ("training", "training steps, project and seed alternating", ["project", "seed"]),
        (
            "training_compiled",
            "training steps, eager and compiled alternating (compiling first)",
            ["project", "compiled"],
        ),
    ):
        results[key] = run_measurement(
            "training",
            label,
            tiles=str(tiles),
            variants=variants,
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
    # The same images through every predict.runtime and precision
    results["runtimes"] = runtimes.run_all(run_measurement, images, tiles, cache)
    with tempfile.TemporaryDirectory() as scratch:
        results["tiling"] = {
            variant: run_measurement(
                "tiling", f"tiling, {variant}", variant=variant, raw=str(raw), out=f"{scratch}/{variant}"
            )
            for variant in ("stage", "bare")
        }
    results["explored"] = explore(plan, tiles, images) if plan["explore"] else {}
    results["gpu"] = gpu.run_section(mode, results["peaks"])
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


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("benchmarks.speed", __doc__, measures=True)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, no exploration (< 10 min on 2 cores)")
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where the synthetic full-size images are kept between runs"
    )
    parser.add_argument("--output", type=Path, default=BENCHMARKS / "results.json")
    args = parser.parse_args(argv)
    if answered_measurement(args, MEASUREMENTS):
        return

    mode = "quick" if args.quick else "full"
    started = time.perf_counter()
    results = run_all(mode, args.cache)
    summary = summarise(results)
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
    write_json(args.output, payload)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
