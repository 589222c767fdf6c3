"""The pipeline's data stages at DeepGlobe's real size: time, memory, disk, DVC and the training loader.

    make bench-scale                                   # 803 labelled 2448 px images, as DeepGlobe has
    make bench-scale SCALE_ARGS="--images 80"          # a tenth: per-image costs should stay flat
    .venv/bin/python -m benchmarks.scale [--images 803] [--image-size 2448] [--tile-size 512]
        [--batch-size 16] [--loader-batches 20] [--train-steps 3] [--cache DIR] [--work DIR] [--keep]
        [--output benchmarks/scale.json]

The dataset is scale_dataset's, the clone and DVC's side scale_dvc's (commands watched by
scale_processes), the loader and training step scale_training's, the verdicts and table scale_report's;
this module runs them in order.

What it does:

1. A dataset in the Kaggle layout of DeepGlobe Land Cover (metadata.csv, class_dict.csv,
   train/<id>_sat.jpg + train/<id>_mask.png, valid/ and test/ without masks: 803/171/172 images
   at --images 803, the others in proportion), built once into --cache (default
   ${XDG_CACHE_HOME:-~/.cache}/landcover-scale), one folder per image count and size, written to a
   temporary folder and renamed when complete. Generating 1146 scenes at 2448 px would take about
   45 minutes, so the images are DERIVED: 24 base scenes come from the synthetic generator
   (landcover.synthetic.scene.generate_scene), and every image is one of them circularly shifted by
   random prime offsets (np.roll of image and labels; a prime is a multiple of no tile size but
   itself), turned by a random one of the 8 flips/rotations, and given a colour offset of its own
   (-6..+6 per channel, no two images of a base alike). Every image tile's bytes therefore differ
   between images, as they would in real data, so DVC's cache cannot deduplicate them. Images are
   JPEG quality 90, masks DeepGlobe's colours with off-palette borders (synthetic colour_mask).
2. A temporary `git clone` of this repository's committed HEAD (under --work, default the cache
   folder; removed at the end unless --keep), with params as README's "The real DeepGlobe data"
   says, except the split: data.raw=<dataset>, split.method=ratios, tile.size=tile.stride=
   --tile-size, train.batch_size=--batch-size. Commands use this repository's .venv/bin.
3. Measures, in order:
   - each data stage (tile, encode, split, preview) by `dvc repro -s <stage>`: the command's wall
     time, the stage process's own time, and the peak RSS (VmHWM) of the stage's own
     `python -m stages.<stage>` process and of dvc, from polling the process tree;
   - files and bytes of each output in the workspace and in .dvc/cache (apparent, and on disk
     counting each inode once), against the raw dataset's bytes; `dvc config cache.type`;
   - no-op `dvc status tile encode split preview` and `dvc repro preview` (which walks tile,
     encode, split, preview; a bare `dvc repro` would train), checking that nothing ran or changed;
   - `dvc push` of the data stages to a directory remote, and `dvc pull` of them into a fresh
     clone of the temporary clone, which is then checked: same files, `dvc status` clean;
   - the train stage's DataLoader (built as landcover/training/trainer.py builds it), samples/s
     with 0 and 2 workers, after a first-batch warm-up;
   - what a training step consumes: the trainer's model, optimizer, loss and batch settings (bf16
     where native, channels_last) on random uint8 batches of the run's batch and tile size, run
     through the trainer's own loop (run_epoch), samples/s after one warm-up step.
4. Prints a table with the targets judged, and merges the run into --output (default
   benchmarks/scale.json), keyed by image count, so runs at two sizes sit side by side: their
   per-image costs are printed together.

The time targets are stated for 803 images: a smaller run at 2448 px is projected linearly from
its per-image cost (and says so). The training step runs where training would (cuda if present,
else the CPU); the loader-to-consumption ratio of a CPU-only machine says nothing about a GPU one.
Timings on a shared machine are noisy (the load average is recorded); compare runs from one idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import BENCHMARKS, IMAGE_SIZE, REPO, benchmark_parser, cpu_model, run_in_checkout
from benchmarks.scale_dataset import DEEPGLOBE_IMAGES, dataset_folder, ensure_dataset
from benchmarks.scale_dvc import (
    DATA_STAGES,
    DISK_FACTOR,
    check_disk,
    files_under,
    noop_checks,
    prepare_clone,
    push_and_pull,
    storage,
    usage,
)
from benchmarks.scale_processes import command_env, git, run, run_watched
from benchmarks.scale_report import judge, merge_results, report
from landcover.io.errors import PipelineError
from landcover.io.params import TileParams

LOADER_WORKERS = (0, 2)
TRAINING_SIDE = BENCHMARKS / "scale_training.py"  # run by path in the clone: see run_in_checkout


# --- The run ----------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace, dataset: Path, run_dir: Path) -> dict:
    """The whole run in `run_dir` on `dataset`: every figure of benchmarks/scale.json for its image count."""
    load_at_start = os.getloadavg()[0]  # other work on the machine skews every timing: recorded
    env = command_env(run_dir)
    repo, logs = run_dir / "repo", run_dir / "logs"
    logs.mkdir()
    params = prepare_clone(repo, dataset, args.tile_size, args.batch_size, env)
    description = json.loads((dataset / "scale-dataset.json").read_text())
    labelled = description["images"]["train"]

    stages: dict[str, dict] = {}
    for name in DATA_STAGES:
        print(f"dvc repro -s {name} ...", flush=True)
        stages[name] = run_watched(["dvc", "repro", "-s", name], repo, env, logs / f"{name}.log", name)
        stages[name]["seconds_per_image"] = stages[name]["seconds"] / labelled
        print(f"  {stages[name]['seconds']:.1f} s, stage peak RSS {stages[name]['peak_rss_mb']:.0f} MB", flush=True)
    print("no-op dvc status and repro; sizes ...", flush=True)
    noop = noop_checks(repo, env)
    store = storage(repo, dataset)
    store["cache_type"] = (
        run(["dvc", "config", "cache.type"], repo, env)[1].strip() or "unset (DVC default: reflink,copy)"
    )
    print("dvc push, git clone, dvc pull ...", flush=True)
    remote = push_and_pull(repo, run_dir, env)
    print("training loader and step ...", flush=True)
    loader = {
        str(workers): run_in_checkout(
            TRAINING_SIDE, "loader_rate", repo, env, workers=workers, batches=args.loader_batches
        )
        for workers in LOADER_WORKERS
    }
    step = run_in_checkout(TRAINING_SIDE, "training_consumption", repo, env, steps=args.train_steps)
    consumed = step.get("samples_per_second")
    used = usage(files_under(run_dir))["disk_bytes"] + store["raw"]["disk_bytes"]
    result: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git(REPO, "rev-parse", "--short", "HEAD", env=env).strip(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "dvc": run(["dvc", "--version"], repo, env)[1].strip(),
            "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]},
        },
        "dataset": {
            "path": str(dataset),
            "images": description["images"],
            "image_size": description["image_size"],
            "generation": {key: description[key] for key in ("method", "base_scenes", "seed", "build_seconds")},
        },
        "params": params,
        "stages": stages,
        "noop": noop,
        "storage": store,
        "remote": remote,
        "loader": loader,
        "train_step": step,
        "loader_over_consumption": {
            workers: (rate["samples_per_second"] / consumed if consumed else None) for workers, rate in loader.items()
        },
        "disk": {
            "used_bytes": used,
            "used_over_raw": used / store["raw"]["disk_bytes"],
            "estimate_factor": DISK_FACTOR,
        },
    }
    result["targets"] = judge(result)
    return result


def default_cache() -> Path:
    """${XDG_CACHE_HOME:-~/.cache}/landcover-scale: datasets of 2448 px images are too big for /tmp."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "landcover-scale"


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("benchmarks.scale", __doc__)
    parser.add_argument(
        "--images",
        type=int,
        default=DEEPGLOBE_IMAGES["train"],
        help="labelled images (valid/ and test/ in DeepGlobe's proportion); default 803",
    )
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="image side in pixels; default 2448")
    parser.add_argument("--tile-size", type=int, default=512, help="tile.size and tile.stride; default 512")
    parser.add_argument("--batch-size", type=int, default=16, help="train.batch_size; default 16")
    parser.add_argument("--loader-batches", type=int, default=20, help="loader batches timed after the first")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps timed after one warm-up")
    parser.add_argument("--cache", type=Path, default=default_cache(), help="where datasets are built once")
    parser.add_argument("--work", type=Path, help="folder for the run's temporary clone (default: --cache)")
    parser.add_argument("--keep", action="store_true", help="keep the run's clone, remote and pulled clone")
    parser.add_argument("--output", type=Path, default=BENCHMARKS / "scale.json", help="results, merged by image count")
    args = parser.parse_args(argv)
    if args.images < 3:
        parser.error("--images must be at least 3 (train, val and test each need an image)")
    try:
        TileParams(args.tile_size, args.tile_size, "source")  # the tile stage's own check, before the dataset is built
    except PipelineError as error:
        parser.error(f"--tile-size: {error}")
    if args.tile_size > args.image_size:
        parser.error("--tile-size must not exceed --image-size")
    cache, work = args.cache.expanduser().resolve(), (args.work or args.cache).expanduser().resolve()
    dataset_exists = (dataset_folder(cache, args.images, args.image_size) / "scale-dataset.json").is_file()
    check_disk(cache, work, args.images, args.image_size, dataset_exists)

    dataset = ensure_dataset(cache, args.images, args.image_size)
    print(
        f"dataset: {dataset}\n  generation: {json.loads((dataset / 'scale-dataset.json').read_text())['method']}",
        flush=True,
    )
    work.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    try:
        result = benchmark(args, dataset, run_dir)
    finally:
        if args.keep:
            print(f"kept the run's clone, remote and pulled clone in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    runs = merge_results(args.output, result)
    print(report(result, runs))
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
