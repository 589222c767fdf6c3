"""Your own imagery at size: tile, encode and split on large 4-band uint16 scenes with polygon labels, and the
training loader reading 512 px windows from them.

    python -m benchmarks.scenes                       # 10 scenes of 10,000 x 10,000 px against 2 of them
    python -m benchmarks.scenes --scenes 4 --size 4096  # smaller

Scenes are tiled, deflated GeoTIFFs with 512 px blocks (a COG's layout), their labels a GeoPackage of
polygons (one per 256 px cell), built once under --cache (the free space needed is checked first).
Each stage runs as its own process (`python -m stages.X`, as dvc runs it), watched for its peak RSS
(VmHWM); the table gives seconds per megapixel for the full dataset and for its first 2 scenes (flat
means it scales linearly). The loader is measured in a fresh process per scene size: samples/s of
TileDataset (augmented, one process, no workers) and its peak RSS, on these scenes and on 3 scenes a
quarter their area (independent of scene size means it reads windows, not whole scenes), and on those
3 scenes kept uncompressed (tile.images: uncompressed; disk: 2 bytes per band and pixel).
Results: benchmarks/scenes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks.common import REPO, machine, peak_rss_kb

# A DeepLabV3+ ResNet-50 training step at 512 px takes a few hundred samples/s on an A100-class GPU.
GPU_SAMPLES_PER_SECOND = 300
POLL_SECONDS = 0.05
BANDS, DTYPE_BYTES = 4, 2
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "landcover-scenes"


def build(root: Path, scenes: int, size: int) -> Path:
    """The dataset (scenes.csv, classes.csv, images/, labels/), built once."""
    from landcover.data.palette import ClassTable
    from landcover.synthetic.scenes import write_large_scene

    done = root / "built.json"
    if done.is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    table = ClassTable.preset("landcoverai")
    rows = ["scene_id,image,labels"]
    for number in range(scenes):
        start = time.perf_counter()
        image, label = write_large_scene(
            root, f"scene-{number + 1}", size, table, seed=number, origin=(500_000.0 + 10_000 * number, 5_600_000.0)
        )
        rows.append(f"scene-{number + 1},{image.relative_to(root)},{label.relative_to(root)}")
        print(f"  built scene {number + 1}/{scenes} ({time.perf_counter() - start:.0f} s)", flush=True)
    (root / "scenes.csv").write_text("\n".join(rows) + "\n")
    table.to_csv(root / "classes.csv")
    done.write_text(json.dumps({"scenes": scenes, "size": size}))
    return root


def subset(root: Path, count: int) -> Path:
    """A dataset of the first `count` scenes of `root`, its files hard links (no space; a symlink out of data.raw
    would be refused)."""
    folder = root.parent / f"{root.name}-first-{count}"
    lines = (root / "scenes.csv").read_text().splitlines()
    for line in lines[1 : count + 1]:
        for relative in line.split(",")[1:]:
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            if not (folder / relative).exists():
                os.link(root / relative, folder / relative)
    (folder / "scenes.csv").write_text("\n".join(lines[: count + 1]) + "\n")
    shutil.copy(root / "classes.csv", folder / "classes.csv")
    return folder


def watched(command: list[str], env: dict) -> tuple[float, float]:
    """(seconds, peak RSS MB) of a command run to completion; a failure stops the benchmark with its output."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, peak_rss_kb(process.pid) or 0)
        time.sleep(POLL_SECONDS)
    output = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{output[-3000:]}")
    return time.perf_counter() - start, peak / 1024


def run_data_stages(raw: Path, work: Path, params: dict, megapixels: float) -> dict:
    """Each data stage on the dataset at `raw` (of `megapixels`): its seconds, s per MP and peak RSS."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    params_path = work / "params.yaml"
    params_path.write_text(yaml.safe_dump({**params, "data": {**params["data"], "raw": str(raw)}}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    python = [sys.executable, "-m"]
    commands = {
        "tile": [*python, "stages.tile", str(raw), str(work / "tiles"), "--params", str(params_path)],
        "encode": [
            *python,
            "stages.encode",
            str(work / "tiles"),
            str(work / "encoded"),
            "--report",
            str(work / "encode.json"),
        ],
        "split": [
            *python,
            "stages.split",
            str(work / "tiles"),
            str(work / "encoded"),
            str(work / "splits"),
            "--params",
            str(params_path),
            "--distribution",
            str(work / "distribution.json"),
        ],
    }
    results = {}
    for stage, command in commands.items():
        seconds, peak_mb = watched(command, env)
        results[stage] = {
            "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak_mb),
            "seconds_per_megapixel": round(seconds / megapixels, 4),
        }
        print(f"    {stage}: {seconds:.1f} s, peak RSS {peak_mb:.0f} MB", flush=True)
    return results


def measure_loader(work: Path, samples: int) -> dict:
    """In this process: samples/s of the augmented training dataset over the training tiles, and peak RSS."""
    from landcover.data.augment import training_augmentation
    from landcover.data.datasets import TileDataset
    from landcover.data.tilestore import TileStore, read_index

    store = TileStore(work / "tiles", work / "encoded")
    records = read_index(work / "splits" / "train.csv")
    size = records[0].size
    dataset = TileDataset(records, store, training_augmentation(size, 0.75, 0.1, rgb=False), cached_images=4)
    dataset[0]  # opens the first scene
    order = [(index * 7919) % len(records) for index in range(samples)]  # spread over the scenes
    start = time.perf_counter()
    for index in order:
        dataset[index]
    seconds = time.perf_counter() - start
    return {
        "samples": samples,
        "samples_per_second": round(samples / seconds, 1),
        "peak_rss_mb": round((peak_rss_kb() or 0) / 1024),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=10, help="scenes in the full dataset; default 10")
    parser.add_argument("--size", type=int, default=10_000, help="scene side in pixels; default 10000")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--loader-samples", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "scenes.json")
    parser.add_argument("--loader-only", type=Path, help=argparse.SUPPRESS)  # the child process of a loader run
    args = parser.parse_args(argv)
    if args.loader_only:
        print(json.dumps(measure_loader(args.loader_only, args.loader_samples)))
        return
    small = args.size // 2
    raw_bytes = (args.scenes * args.size**2 + 3 * small**2) * BANDS * DTYPE_BYTES
    needed = 2.2 * raw_bytes + 3 * small**2 * BANDS * DTYPE_BYTES  # the scenes, the tile stage copies, uncompressed
    args.cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.cache).free
    print(f"needs about {needed / 2**30:.1f} GiB in {args.cache} ({free / 2**30:.1f} GiB free)", flush=True)
    if not (args.cache / f"scenes-{args.scenes}x{args.size}" / "built.json").is_file() and free < needed:
        raise SystemExit(f"not enough free space in {args.cache}: need {needed / 2**30:.1f} GiB")
    full = build(args.cache / f"scenes-{args.scenes}x{args.size}", args.scenes, args.size)
    quarter = build(args.cache / f"scenes-3x{small}", 3, small)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(layout="scenes", bands=[1, 2, 3, 4])
    params["tile"].update(size=args.tile_size, stride=args.tile_size)
    params["split"].update(method="blocks", block_size=args.tile_size, buffer=0)
    results: dict = {"machine": machine(), "scenes": args.scenes, "size": args.size, "stages": {}, "loader": {}}
    for label, raw in ((f"{args.scenes} scenes", full), ("2 scenes", subset(full, 2))):
        scenes = args.scenes if raw == full else 2
        print(f"data stages on {label} of {args.size} px:", flush=True)
        results["stages"][label] = run_data_stages(raw, args.cache / "work", params, scenes * args.size**2 / 1e6)
        if raw == full:
            uncompressed = {**params, "tile": {**params["tile"], "images": "uncompressed"}}
            loader_runs = (
                (f"{args.size} px scenes", None, params, args.cache / "work"),
                (f"{small} px scenes", quarter, params, args.cache / "work-small"),
                (f"{small} px scenes, tile.images uncompressed", quarter, uncompressed, args.cache / "work-raw"),
            )
            for name, dataset, run_params, work in loader_runs:
                if dataset is not None:
                    results["stages"][name] = run_data_stages(dataset, work, run_params, 3 * small**2 / 1e6)
                output = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.scenes",
                        "--loader-only",
                        str(work),
                        "--loader-samples",
                        str(args.loader_samples),
                    ],
                    cwd=REPO,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                results["loader"][name] = json.loads(output.strip().splitlines()[-1])
                print(f"  loader on {name}: {results['loader'][name]}", flush=True)
    rates = {name: loader["samples_per_second"] for name, loader in results["loader"].items()}
    results["loader_processes_per_gpu"] = {
        name: -(-GPU_SAMPLES_PER_SECOND // max(rate, 1e-9)) for name, rate in rates.items()
    }
    print("\n| stage | dataset | seconds | s per MP | peak RSS MB |\n|---|---|---:|---:|---:|")
    for label, stages in results["stages"].items():
        for stage, stats in stages.items():
            row = (stage, label, stats["seconds"], stats["seconds_per_megapixel"], stats["peak_rss_mb"])
            print("| " + " | ".join(map(str, row)) + " |")
    for name, rate in rates.items():
        print(
            f"loader on {name}: {rate} samples/s per process at {args.tile_size} px; a GPU step taking about "
            f"{GPU_SAMPLES_PER_SECOND} samples/s needs {results['loader_processes_per_gpu'][name]:.0f} loader "
            "processes (train.workers)"
        )
    args.output.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
