"""The pipeline's data stages at DeepGlobe's real size: time, memory, disk, DVC and the training loader.

    make bench-scale                                   # 803 labelled 2448 px images, as DeepGlobe has
    make bench-scale SCALE_ARGS="--images 80"          # a tenth: per-image costs should stay flat
    .venv/bin/python benchmarks/scale.py [--images 803] [--image-size 2448] [--tile-size 512]
        [--batch-size 16] [--loader-batches 20] [--train-steps 3] [--cache DIR] [--work DIR] [--keep]
        [--output benchmarks/scale.json]

What it does:

1. A dataset in the Kaggle layout of DeepGlobe Land Cover (metadata.csv, class_dict.csv,
   train/<id>_sat.jpg + train/<id>_mask.png, valid/ and test/ without masks: 803/171/172 images
   at --images 803, the others in proportion), built once into --cache (default
   ${XDG_CACHE_HOME:-~/.cache}/landcover-scale), one folder per image count and size, written to a
   temporary folder and renamed when complete. Generating 1146 scenes at 2448 px would take about
   45 minutes, so the images are DERIVED: 24 base scenes come from the synthetic generator
   (stages.synthetic.scene.generate_scene), and every image is one of them circularly shifted by
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
   - the train stage's DataLoader (built as stages/core/training/trainer.py builds it), samples/s
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
import csv
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent
if __name__ == "__main__":  # run as a script: `stages` is this repository's package. Not so in the measuring
    sys.path.insert(0, str(REPO))  # children, which import the temporary clone's (their working folder)

# --- What is measured, and against what ------------------------------------------------------------

DEEPGLOBE_IMAGES = {"train": 803, "valid": 171, "test": 172}  # the Kaggle copy; only train/ has masks
SPLITS = tuple(DEEPGLOBE_IMAGES)
IMAGE_SIZE = 2448  # DeepGlobe's image side
JPEG_QUALITY = 90
SEED = 2018
BASE_SCENES = 24  # generate_scene calls (about 2.4 s each at 2448 px); every image derives from one
# Per-image colour offsets: every triple in -6..+6, drawn without replacement within a base scene.
COLOUR_OFFSETS = np.array(list(itertools.product(range(-6, 7), repeat=3)), dtype=np.int16)
GENERATION_METHOD = (
    "derived: {bases} base scenes from stages.synthetic generate_scene; each image is a base scene circularly "
    "shifted by random prime offsets (np.roll of image and labels), turned by one of the 8 flips/rotations, "
    "plus a per-image colour offset (-6..+6 per channel, distinct within a base); JPEG quality 90, colour "
    "masks with off-palette borders (colour_mask)"
)

DATA_STAGES = ("tile", "encode", "split", "preview")
OUTPUTS = ("data/tiles", "data/encoded", "data/splits", "plots/data")  # the data stages' (plots/data: cache: false)
NOOP_REPRO = ("repro", "preview")  # walks tile, encode, split, preview; a bare `dvc repro` would train
LOADER_WORKERS = (0, 2)
TREE_POLL_SECONDS = 0.1  # how often a dvc command's process tree is scanned for the stage process
PEAK_POLL_SECONDS = 0.01  # how often the peak RSS of dvc and of the stage process is read

# Disk a run needs, as a multiple of the raw dataset: the raw data, then five copies of the derived
# data: the workspace outputs, the DVC cache (a copy: DVC's default link type falls back to copying
# where there are no reflinks, as on ext4), the remote, and the pulled clone's workspace and cache.
# The tile stage keeps the source files' bytes, so each copy is a little under the raw data's size
# (valid/ and test/ are not copied); 8 leaves a margin. Checked against free space before anything
# big is written; every run records what it really used (`disk.used_over_raw`).
DISK_FACTOR = 8
RAW_BYTES_PER_IMAGE = 2e6  # a 2448 px JPEG and its mask, about; scales with the pixel count

# A training step on the CPU (DeepLabV3+ ResNet50, bf16, channels_last): peak RSS measured here as
# about 1.7 GB plus 0.37 GB per 512 px sample (7.5 GB at batch 16). The step is skipped, saying so, when that estimate
# exceeds the memory available (this machine is shared).
STEP_BASE_MB = 1700
STEP_MB_PER_512_SAMPLE = 370

TARGETS_AT_IMAGES = 803  # the time targets are for the full dataset
TARGETS = {
    "prepare_minutes": 15,  # tile + encode + split
    "stage_peak_rss_mb": 1024,
    "noop_status_seconds": 10,
    "noop_repro_seconds": 20,
    "derived_over_raw": 3,
    "push_pull_minutes": 10,
    "loader_over_consumption": 5,
}


# --- The dataset ------------------------------------------------------------------------------------


def split_counts(labelled: int) -> dict[str, int]:
    """Images per folder: `labelled` in train/, valid/ and test/ in DeepGlobe's proportions (at least 1)."""
    full = DEEPGLOBE_IMAGES["train"]
    return {
        "train": labelled,
        **{split: max(1, round(labelled * DEEPGLOBE_IMAGES[split] / full)) for split in ("valid", "test")},
    }


def image_ids(seed: int, count: int) -> list[int]:
    """`count` distinct ids of 3 to 6 digits, like DeepGlobe's."""
    return [int(i) + 100 for i in np.random.default_rng([seed, 0]).choice(1_000_000 - 100, count, replace=False)]


def primes_below(limit: int) -> np.ndarray:
    sieve = np.ones(limit, dtype=bool)
    sieve[:2] = False
    for n in range(2, math.isqrt(limit - 1) + 1):
        if sieve[n]:
            sieve[n * n :: n] = False
    return np.flatnonzero(sieve)


@dataclass(frozen=True)
class Derivation:
    """How one image is made from its base scene."""

    base: int
    shift: tuple[int, int]  # circular shift (rows, columns): primes, so a multiple of no tile size
    rotation: int  # quarter turns
    flip: bool  # left-right, after the rotation
    colour_offset: tuple[int, int, int]  # added to R, G, B


def base_count(images: int) -> int:
    """Base scenes for `images` images: BASE_SCENES, fewer for fewer images, more if the colour offsets run out."""
    return min(images, max(BASE_SCENES, math.ceil(images / len(COLOUR_OFFSETS))))


def plan_derivations(seed: int, images: int, size: int) -> list[Derivation]:
    """Image k derives from base k % bases; its transform is drawn from its own generator."""
    bases = base_count(images)
    primes = primes_below(size)
    primes = primes[primes > size // 8] if (primes > size // 8).any() else primes
    offsets = [np.random.default_rng([seed, 1, base]).permutation(len(COLOUR_OFFSETS)) for base in range(bases)]
    plans = []
    for k in range(images):
        rng = np.random.default_rng([seed, 2, k])
        base = k % bases
        plans.append(
            Derivation(
                base,
                (int(rng.choice(primes)), int(rng.choice(primes))),
                int(rng.integers(4)),
                bool(rng.integers(2)),
                tuple(int(v) for v in COLOUR_OFFSETS[offsets[base][k // bases]]),
            )
        )
    return plans


def derive(image: np.ndarray, labels: np.ndarray, plan: Derivation) -> tuple[np.ndarray, np.ndarray]:
    """A new image and its labels from a base scene: shifted, turned, flipped, colour-offset."""
    image = np.rot90(np.roll(image, plan.shift, axis=(0, 1)), plan.rotation)
    labels = np.rot90(np.roll(labels, plan.shift, axis=(0, 1)), plan.rotation)
    if plan.flip:
        image, labels = image[:, ::-1], labels[:, ::-1]
    image = np.clip(image + np.array(plan.colour_offset, dtype=np.int16), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def write_dataset(root: Path, labelled: int, size: int, seed: int = SEED) -> dict:
    """The Kaggle layout in `root` (an empty folder), every image derived from a base scene; returns its description."""
    from stages.core.io.imageio import write_jpeg, write_png
    from stages.synthetic.dataset import colour_mask
    from stages.synthetic.scene import DEEPGLOBE, generate_scene

    start = time.perf_counter()
    counts = split_counts(labelled)
    jobs = [(split, position) for split in SPLITS for position in range(counts[split])]
    ids = image_ids(seed, len(jobs))
    plans = plan_derivations(seed, len(jobs), size)
    bases = base_count(len(jobs))
    DEEPGLOBE.to_csv(root / "class_dict.csv")
    for split in SPLITS:
        (root / split).mkdir()
    rows: list[tuple | None] = [None] * len(jobs)
    for base in range(bases):  # one base scene in memory at a time
        base_image, base_labels = generate_scene(np.random.default_rng([seed, 3, base]), size)
        for k in range(base, len(jobs), bases):
            (split, _), image_id = jobs[k], ids[k]
            image, labels = derive(base_image, base_labels, plans[k])
            image_path, mask_path = f"{split}/{image_id}_sat.jpg", ""
            write_jpeg(root / image_path, image, JPEG_QUALITY)
            if split == "train":
                mask_path = f"{split}/{image_id}_mask.png"
                mask = colour_mask(labels, DEEPGLOBE, np.random.default_rng([seed, 4, k]), off_palette=True)
                write_png(root / mask_path, mask)
            rows[k] = (image_id, split, image_path, mask_path)
        print(f"  base scene {base + 1}/{bases}: {len(range(base, len(jobs), bases))} images", flush=True)
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image_id", "split", "sat_image_path", "mask_path"])
        writer.writerows(rows)
    description = {
        "method": GENERATION_METHOD.format(bases=bases),
        "base_scenes": bases,
        "seed": seed,
        "images": counts,
        "image_size": size,
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    (root / "scale-dataset.json").write_text(json.dumps(description, indent=2) + "\n")
    return description


def dataset_folder(cache: Path, labelled: int, size: int) -> Path:
    """Where the dataset of `labelled` images of `size` px lies; its description file is written last."""
    return cache / f"deepglobe-{labelled}-{size}px"


def ensure_dataset(cache: Path, labelled: int, size: int) -> Path:
    """The dataset for (labelled, size) in `cache`, built once; a build that did not finish is never reused."""
    from stages.core.io.outputs import process_alive

    root = dataset_folder(cache, labelled, size)
    if (root / "scale-dataset.json").is_file():
        return root
    for stale in cache.glob(f".{root.name}.tmp-*"):  # left by a build that was killed
        if not process_alive(int(stale.name.rsplit("-", 1)[1])):
            shutil.rmtree(stale)
    staging = cache / f".{root.name}.tmp-{os.getpid()}"
    staging.mkdir(parents=True)
    total = sum(split_counts(labelled).values())
    print(
        f"building the dataset once: {total} images of {size}x{size} px into {root}\n"
        f"  generation: {GENERATION_METHOD.format(bases=base_count(total))}",
        flush=True,
    )
    try:
        write_dataset(staging, labelled, size)
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


# --- Disk -------------------------------------------------------------------------------------------


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_disk(cache: Path, work: Path, labelled: int, size: int, dataset_exists: bool) -> None:
    """Refuse, in one line, a run the free disk space cannot hold (estimate: DISK_FACTOR x the raw dataset)."""
    raw = RAW_BYTES_PER_IMAGE * sum(split_counts(labelled).values()) * (size / IMAGE_SIZE) ** 2
    needs = [(cache, 0.0 if dataset_exists else raw), (work, (DISK_FACTOR - 1) * raw)]
    per_filesystem: dict[int, tuple[Path, float]] = {}
    for path, amount in needs:
        existing = next(folder for folder in (path, *path.parents) if folder.exists())
        place, total = per_filesystem.get(existing.stat().st_dev, (existing, 0.0))
        per_filesystem[existing.stat().st_dev] = (place, total + amount)
    for place, amount in per_filesystem.values():
        free = shutil.disk_usage(place).free
        if amount > free:
            raise SystemExit(
                f"error: not enough disk space: --images {labelled} at {size} px needs about "
                f"{gigabytes(amount)} on {place} (raw dataset ~{gigabytes(raw)}, x{DISK_FACTOR} for raw, "
                f"workspace, DVC cache, remote and a pulled clone) and it has {gigabytes(free)} free"
            )


def usage(paths, seen: set | None = None) -> dict:
    """Files, apparent bytes, and bytes on disk counting each inode once (across calls sharing `seen`)."""
    seen = set() if seen is None else seen
    files = apparent = disk = 0
    for path in paths:
        stat = path.lstat()
        files += 1
        apparent += stat.st_size
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            disk += stat.st_blocks * 512
    return {"files": files, "bytes": apparent, "disk_bytes": disk}


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()] if folder.exists() else []


def cache_object(repo: Path, md5: str) -> Path:
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def cached_files(repo: Path, path: str) -> list[Path]:
    """The cache objects of one output recorded in dvc.lock: its .dir listing and one object per file.

    An output declared `cache: false` has a hash in dvc.lock but nothing in the cache: [].
    """
    declared = {}
    for stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].values():
        for entry in stage.get("outs", []):
            name, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            declared[name] = options.get("cache", True)
    if not declared.get(path, False):
        return []
    for stage in yaml.safe_load((repo / "dvc.lock").read_text())["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == path:
                listing = cache_object(repo, out["md5"])
                if not out["md5"].endswith(".dir"):
                    return [listing]
                return [listing, *{cache_object(repo, entry["md5"]) for entry in json.loads(listing.read_text())}]
    raise SystemExit(f"error: {path} is not in {repo / 'dvc.lock'}")


def storage(repo: Path, raw: Path) -> dict:
    """Per output: workspace and cache usage; and the derived data (workspace + cache, unique on disk) over raw."""
    outputs, derived_seen = {}, set()
    for path in OUTPUTS:
        workspace = usage(files_under(repo / path), derived_seen)
        cache = usage(cached_files(repo, path), derived_seen)
        outputs[path] = {"workspace": workspace, "cache": cache}
    raw_usage = usage(files_under(raw))
    derived_disk = sum(o["workspace"]["disk_bytes"] + o["cache"]["disk_bytes"] for o in outputs.values())
    whole_cache = usage(files_under(repo / ".dvc" / "cache"))
    return {
        "outputs": outputs,
        "raw": raw_usage,
        "dvc_cache_total": whole_cache,
        "derived_disk_bytes": derived_disk,
        "derived_over_raw": derived_disk / raw_usage["disk_bytes"],
    }


# --- Running commands and watching their memory -----------------------------------------------------


def command_env(run_dir: Path) -> dict:
    """This repository's venv first on PATH (the clone has none), no DVC analytics, DVC's state kept in the run."""
    venv_bin = REPO / ".venv" / "bin"
    bin_dir = venv_bin if (venv_bin / "dvc").exists() else Path(sys.executable).parent
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(run_dir / "dvc-site-cache"),
    }


def run(command: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    """Run to completion; (seconds, stdout). A failure stops the benchmark with the command's output."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"error: `{' '.join(command)}` failed in {cwd}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return seconds, result.stdout


def git(cwd: Path, *args: str, env: dict) -> str:
    return run(["git", "-c", "user.name=scale benchmark", "-c", "user.email=scale@benchmark.invalid", *args], cwd, env)[
        1
    ]


def parents_by_pid() -> dict[int, int]:
    """ppid of every process now running."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents_by_pid().items():
        children.setdefault(parent, []).append(pid)
    found, queue = [], [root]
    while queue:
        found.extend(kids := children.get(queue.pop(), []))
        queue.extend(kids)
    return found


def peak_kb(pid: int) -> int | None:
    """VmHWM: the process's peak resident memory (ru_maxrss would be wrong: on Linux it survives exec)."""
    try:
        match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def own_peak_rss_mb() -> float:
    return peak_kb(os.getpid()) / 1024


def process_started(pid: int) -> float | None:
    """When `pid` started, on time.perf_counter's clock (to /proc's 10 ms clock ticks)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    return time.perf_counter() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def is_stage_process(pid: int, stage: str) -> bool:
    """`python -m stages.<stage> ...` (not the shell that dvc may start it through: its command is one string)."""
    argv = command_line(pid)
    return any(flag == "-m" and module == f"stages.{stage}" for flag, module in zip(argv, argv[1:]))


def run_watched(command: list[str], cwd: Path, env: dict, log: Path, stage: str) -> dict:
    """Run `command` (a dvc repro of `stage`): wall time, and the peak RSS (VmHWM) of dvc and of the stage's own
    `python -m stages.<stage>` process.

    The process tree is scanned every TREE_POLL_SECONDS for the stage process; the peaks of dvc and of
    the stage are read every PEAK_POLL_SECONDS. VmHWM only grows, so all that can be missed is growth
    in a process's last PEAK_POLL_SECONDS.
    """
    peaks: dict[int, int] = {}
    started: dict[int, float] = {}  # stage processes: start and last time seen alive
    last_seen: dict[int, float] = {}
    start = time.perf_counter()
    next_scan = start
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        while process.poll() is None:
            now = time.perf_counter()
            if now >= next_scan:
                for pid in descendants(process.pid):
                    if pid not in started and is_stage_process(pid, stage):
                        started[pid] = process_started(pid) or now
                next_scan = now + TREE_POLL_SECONDS
            for pid in (process.pid, *started):
                peak = peak_kb(pid)
                if peak is not None:
                    peaks[pid] = max(peaks.get(pid, 0), peak)
                    last_seen[pid] = now
            time.sleep(PEAK_POLL_SECONDS)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"error: `{' '.join(command)}` failed; its output ({log}):\n{log.read_text()[-3000:]}")
    stage_pids = [pid for pid in started if pid in peaks]
    if not stage_pids:
        raise SystemExit(
            f"error: `{' '.join(command)}` ran no `python -m stages.{stage}` process that could be watched (see {log})"
        )
    return {
        "seconds": seconds,
        "stage_seconds": sum(last_seen[pid] - started[pid] for pid in stage_pids),
        "peak_rss_mb": max(peaks[pid] for pid in stage_pids) / 1024,
        "dvc_peak_rss_mb": peaks.get(process.pid, 0) / 1024,
    }


# --- The temporary clone and DVC ------------------------------------------------------------------


def prepare_clone(clone: Path, dataset: Path, tile_size: int, batch_size: int, env: dict) -> dict:
    """`git clone` of this repository's HEAD with the run's params; returns the params changed."""
    git(REPO.parent, "clone", "-q", str(REPO), str(clone), env=env)
    params_path = clone / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["data"]["raw"] = str(dataset)
    params["split"]["method"] = "ratios"
    params["tile"].update(size=tile_size, stride=tile_size)
    params["train"]["batch_size"] = batch_size
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    return {
        "data.raw": str(dataset),
        "split.method": "ratios",
        "split.ratios": params["split"]["ratios"],
        "split.seed": params["split"]["seed"],
        "tile.size": tile_size,
        "tile.stride": tile_size,
        "train.batch_size": batch_size,
        "train.workers": params["train"]["workers"],
        "train.precision": params["train"]["precision"],
        "train.channels_last": params["train"]["channels_last"],
        "model.encoder": params["model"]["encoder"],
        "augment": params["augment"],
    }


def status_clean(repo: Path, env: dict) -> tuple[float, bool]:
    seconds, output = run(["dvc", "status", "--json", *DATA_STAGES], repo, env)
    return seconds, json.loads(output or "{}") == {}


def noop_checks(repo: Path, env: dict) -> dict:
    """No-op `dvc status` and `dvc repro` of the data stages, once everything is up to date."""
    status_seconds, clean = status_clean(repo, env)
    repro_seconds, output = run(["dvc", *NOOP_REPRO], repo, env)
    return {
        "status_command": f"dvc status {' '.join(DATA_STAGES)}",
        "status_seconds": status_seconds,
        "status_clean": clean,
        "repro_command": f"dvc {' '.join(NOOP_REPRO)}",
        "repro_seconds": repro_seconds,
        "repro_ran_nothing": "Running stage" not in output,
    }


def file_sizes(repo: Path) -> dict[str, int]:
    return {
        str(path.relative_to(repo)): path.stat().st_size for output in OUTPUTS for path in files_under(repo / output)
    }


def push_and_pull(repo: Path, run_dir: Path, env: dict) -> dict:
    """Push the data stages' outputs to a directory remote; pull them into a fresh clone and check it."""
    remote, pulled = run_dir / "remote", run_dir / "pulled"
    run(["dvc", "remote", "add", "-d", "scale", str(remote)], repo, env)
    push_seconds, _ = run(["dvc", "push", *DATA_STAGES], repo, env)
    git(repo, "add", "-A", env=env)  # params.yaml, dvc.lock, .dvc/config, the uncached metrics and plots
    git(repo, "commit", "-q", "-m", "scale benchmark: data stages reproduced, with a remote", env=env)
    git(run_dir, "clone", "-q", str(repo), str(pulled), env=env)
    pull_seconds, _ = run(["dvc", "pull", *DATA_STAGES], pulled, env)
    status_seconds, clean = status_clean(pulled, env)
    return {
        "push_seconds": push_seconds,
        "pull_seconds": pull_seconds,
        "push_pull_seconds": push_seconds + pull_seconds,
        "remote": usage(files_under(remote)),
        "fresh_clone_restored": file_sizes(pulled) == file_sizes(repo),
        "fresh_clone_status_clean": clean,
        "fresh_clone_status_seconds": status_seconds,
    }


# --- The training side (each runs in a child process, in the clone) -----------------------------------


def train_loader(records, store, tile_size: int, augment, train, workers: int, epoch: int):
    """The train stage's loader for `epoch`, built by the trainer's own functions, with `workers` workers."""
    from stages.core.model.devices import choose_device
    from stages.core.training.trainer import loader_options, train_loader_for_epoch, training_set

    dataset = training_set(records, store, tile_size, augment, train)
    dataset.epoch = epoch
    options = {**loader_options(train, choose_device(train.device)), "num_workers": workers}
    return train_loader_for_epoch(dataset, train, epoch, options)


def training_setup():
    """The clone's params and training tiles: (train params, augment params, model params, records, store)."""
    from stages.core.data.tilestore import TileStore, read_index
    from stages.core.io.params import AugmentParams, ModelParams, TrainParams, load_params, read_section

    params = load_params("params.yaml")
    return (
        read_section(params, "train", TrainParams),
        read_section(params, "augment", AugmentParams),
        read_section(params, "model", ModelParams),
        read_index("data/splits/train.csv"),
        TileStore(Path("data/tiles"), Path("data/encoded")),
    )


def loader_rate(workers: int, batches: int) -> dict:
    """Samples per second the train loader delivers over `batches` batches, after its first batch."""
    train, augment, _, records, store = training_setup()

    def forever():  # epoch after epoch, as training goes on
        for epoch in itertools.count():
            yield from train_loader(records, store, records[0].size, augment, train, workers, epoch)

    stream = forever()
    start = time.perf_counter()
    next(stream)
    first_batch = time.perf_counter() - start
    start, samples = time.perf_counter(), 0
    for _ in range(batches):
        samples += len(next(stream)[0])
    seconds = time.perf_counter() - start
    stream.close()  # shuts the workers down
    return {
        "workers": workers,
        "batches": batches,
        "samples": samples,
        "seconds": seconds,
        "samples_per_second": samples / seconds,
        "first_batch_seconds": first_batch,
        "train_tiles": len(records),
        "tile_size": records[0].size,
    }


def available_memory_mb() -> float:
    return int(re.search(r"MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text()).group(1)) / 1024


def training_consumption(steps: int) -> dict:
    """Samples per second a training step consumes: the trainer's components and loop, random uint8 batches."""
    import torch

    from stages.core.model.devices import choose_device, resolve_precision
    from stages.core.model.model import IMAGENET_MEAN, IMAGENET_STD
    from stages.core.training.components import (
        BatchSettings,
        configure_loss,
        configure_model,
        configure_optimizer,
        configure_scheduler,
    )
    from stages.core.training.loop import run_epoch

    train, _, model_params, records, store = training_setup()
    size, batch = records[0].size, train.batch_size
    device = choose_device(train.device)
    precision = resolve_precision(train.precision, device, "train.precision")
    bf16 = precision == "bf16"
    settings = {
        "device": device.type,
        "bf16": bf16,
        "channels_last": train.channels_last,
        "batch_size": batch,
        "tile_size": size,
        "encoder": model_params.encoder,
    }
    if device.type == "cpu":
        needed = STEP_BASE_MB + STEP_MB_PER_512_SAMPLE * batch * (size / 512) ** 2
        if needed > available_memory_mb():
            return {
                **settings,
                "skipped": f"a step needs about {needed / 1024:.1f} GB, "
                f"{available_memory_mb() / 1024:.1f} GB available",
            }
    num_classes = len(store.class_table())
    model = configure_model(model_params, num_classes, device, train.channels_last, train.seed)
    optimizer = configure_optimizer(model, train, device)
    scheduler = configure_scheduler(optimizer, train)
    loss_fn = configure_loss(train.loss)
    batch_settings = BatchSettings(device, precision, train.channels_last, IMAGENET_MEAN, IMAGENET_STD)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator)
    masks = torch.randint(0, num_classes, (batch, size, size), dtype=torch.uint8, generator=generator)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(count: int) -> float:
        sync()
        start = time.perf_counter()
        run_epoch(
            model,
            [(images, masks)] * count,
            batch_settings,
            loss_fn,
            num_classes,
            "scale",
            optimizer,
            scheduler,
            progress=False,
        )
        sync()
        return time.perf_counter() - start

    warm_up = timed(1)
    seconds = timed(steps)
    return {
        **settings,
        "steps": steps,
        "warm_up_seconds": warm_up,
        "seconds_per_step": seconds / steps,
        "samples_per_second": batch * steps / seconds,
    }


CHILD = """
import json, sys
sys.path.append({benchmarks!r})  # after the working folder: the clone's `stages` is the one measured
import scale
result = getattr(scale, sys.argv[1])(**json.loads(sys.argv[2]))
result["peak_rss_mb"] = scale.own_peak_rss_mb()
print(json.dumps(result))
"""


def in_child(function: str, repo: Path, env: dict, **kwargs) -> dict:
    """`function(**kwargs)` of this module in a fresh process working in the clone; its result and peak RSS."""
    _, output = run(
        [sys.executable, "-c", CHILD.format(benchmarks=str(BENCHMARKS)), function, json.dumps(kwargs)], repo, env
    )
    return json.loads(output.strip().splitlines()[-1])


# --- Report -----------------------------------------------------------------------------------------


def cpu_model() -> str:
    match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def judge(run_result: dict) -> list[dict]:
    """The issue's targets against this run.

    The time targets are for 803 images of 2448 px: a run with fewer such images is projected
    linearly (per-image cost x 803); a run at another image size is not judged on them.
    """
    images, size = run_result["dataset"]["images"]["train"], run_result["dataset"]["image_size"]
    if size != IMAGE_SIZE:
        projection, basis = None, f"not judged: images of {size} px, not {IMAGE_SIZE}"
    else:
        projection = TARGETS_AT_IMAGES / images
        basis = "measured" if images == TARGETS_AT_IMAGES else f"projected linearly from {images} images"
    stages = run_result["stages"]
    prepare_minutes = sum(stages[name]["seconds"] for name in ("tile", "encode", "split")) / 60
    push_pull_minutes = run_result["remote"]["push_pull_seconds"] / 60
    worst = max(stages, key=lambda name: stages[name]["peak_rss_mb"])
    rows = [
        (
            "tile+encode+split, min (803 images)",
            projection and prepare_minutes * projection,
            "<=",
            TARGETS["prepare_minutes"],
            basis,
        ),
        ("peak RSS of the worst stage, MB", stages[worst]["peak_rss_mb"], "<=", TARGETS["stage_peak_rss_mb"], worst),
        (
            "no-op dvc status, s",
            run_result["noop"]["status_seconds"],
            "<=",
            TARGETS["noop_status_seconds"],
            f"measured at {images} images",
        ),
        (
            "no-op dvc repro, s",
            run_result["noop"]["repro_seconds"],
            "<=",
            TARGETS["noop_repro_seconds"],
            f"measured at {images} images",
        ),
        (
            "derived (workspace + cache) / raw",
            run_result["storage"]["derived_over_raw"],
            "<=",
            TARGETS["derived_over_raw"],
            f"cache.type {run_result['storage']['cache_type']}",
        ),
        (
            "push + pull, min (803 images)",
            projection and push_pull_minutes * projection,
            "<=",
            TARGETS["push_pull_minutes"],
            basis,
        ),
    ]
    for workers, ratio in run_result["loader_over_consumption"].items():
        rows.append(
            (
                f"loader ({workers} workers) / training consumption",
                ratio,
                ">=",
                TARGETS["loader_over_consumption"],
                f"training on {run_result['train_step']['device']}",
            )
        )
    return [
        {
            "measure": name,
            "value": value,
            "target": f"{op} {target}",
            "met": None if value is None else (value <= target if op == "<=" else value >= target),
            "basis": basis,
        }
        for name, value, op, target, basis in rows
    ]


def megabytes(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def report(run_result: dict, runs: dict) -> str:
    d, images, machine = run_result["dataset"], run_result["dataset"]["images"], run_result["machine"]
    load = machine["load_average_1min"]
    lines = [
        f"\nscale benchmark: {images['train']} labelled {d['image_size']}x{d['image_size']} images "
        f"(+{images['valid']} valid, +{images['test']} test), tiles {run_result['params']['tile.size']} px, batch "
        f"{run_result['params']['train.batch_size']}; {machine['cpu']}, {machine['cores']} cores, "
        f"load average {load['start']:.1f} at the start, {load['end']:.1f} at the end",
        f"dataset: {d['generation']['method']}",
        "",
        f"{'stage':<8} {'dvc repro -s, s':>15} {'stage process, s':>16} {'s/image':>8} "
        f"{'peak RSS MB (stage)':>19} {'(dvc)':>6}",
    ]
    for name, stage in run_result["stages"].items():
        lines.append(
            f"{name:<8} {stage['seconds']:>15.1f} {stage['stage_seconds']:>16.1f} "
            f"{stage['seconds_per_image']:>8.3f} {stage['peak_rss_mb']:>19.0f} {stage['dvc_peak_rss_mb']:>6.0f}"
        )
    s = run_result["storage"]
    lines += [
        "",
        f"{'output':<13} {'workspace files':>15} {'MB':>8} {'cache files':>11} {'MB':>8}   "
        f"(cache.type {s['cache_type']})",
    ]
    for path, output in s["outputs"].items():
        ws, cache = output["workspace"], output["cache"]
        lines.append(
            f"{path:<13} {ws['files']:>15,} {megabytes(ws['bytes']):>8} {cache['files']:>11,} "
            f"{megabytes(cache['bytes']):>8}" + ("   (cache: false)" if not cache["files"] else "")
        )
    lines.append(
        f"raw dataset: {s['raw']['files']:,} files, {megabytes(s['raw']['disk_bytes'])} MB on disk; derived "
        f"(workspace + cache, each inode once): {megabytes(s['derived_disk_bytes'])} MB on disk = "
        f"{s['derived_over_raw']:.2f}x raw"
    )
    n, r = run_result["noop"], run_result["remote"]
    lines += [
        f"no-op: `{n['status_command']}` {n['status_seconds']:.1f} s (clean: {n['status_clean']}); "
        f"`{n['repro_command']}` {n['repro_seconds']:.1f} s (ran nothing: {n['repro_ran_nothing']})",
        f"remote: push {r['push_seconds']:.1f} s, pull {r['pull_seconds']:.1f} s, together "
        f"{r['push_pull_seconds']:.1f} s ({r['remote']['files']:,} files, {megabytes(r['remote']['bytes'])} MB); "
        f"fresh clone restored: {r['fresh_clone_restored']}, its status clean: {r['fresh_clone_status_clean']} "
        f"({r['fresh_clone_status_seconds']:.1f} s)",
    ]
    for workers, loader in run_result["loader"].items():
        lines.append(
            f"loader, {workers} workers: {loader['samples_per_second']:.1f} samples/s of {loader['tile_size']} px "
            f"({loader['samples']} samples; first batch {loader['first_batch_seconds']:.2f} s; "
            f"peak RSS {loader['peak_rss_mb']:.0f} MB)"
        )
    step = run_result["train_step"]
    if "skipped" in step:
        lines.append(f"training step: skipped ({step['skipped']})")
    else:
        lines.append(
            f"training step ({step['device']}, bf16 {step['bf16']}, channels_last {step['channels_last']}, "
            f"{step['encoder']}, batch {step['batch_size']} x {step['tile_size']} px): "
            f"{step['seconds_per_step']:.2f} s/step = {step['samples_per_second']:.2f} samples/s consumed "
            f"(peak RSS {step['peak_rss_mb']:.0f} MB)"
        )
    disk = run_result["disk"]
    lines.append(
        f"disk used by the run (raw, workspace, cache, remote, pulled clone): {gigabytes(disk['used_bytes'])} = "
        f"{disk['used_over_raw']:.1f}x raw (the space check assumes {DISK_FACTOR}x)"
    )
    lines += ["", f"{'target':<45} {'value':>9} {'target':>8}  verdict"]
    for row in run_result["targets"]:
        value = "n/a" if row["value"] is None else f"{row['value']:.2f}"
        verdict = "n/a" if row["met"] is None else ("met" if row["met"] else "MISSED")
        lines.append(f"{row['measure']:<45} {value:>9} {row['target']:>8}  {verdict} ({row['basis']})")
    if len(runs) > 1:
        counts = sorted(runs, key=int)
        lines += [
            "",
            "per image, by labelled image count (flat = scales linearly):",
            f"{'stage':<8} " + " ".join(f"{f'{c} img: s/img':>14} {'MB':>6}" for c in counts),
        ]
        for name in DATA_STAGES:
            cells = []
            for count in counts:
                stage = runs[count]["stages"].get(name, {})
                per_image, peak = stage.get("seconds_per_image", math.nan), stage.get("peak_rss_mb", math.nan)
                cells.append(f"{per_image:>14.3f} {peak:>6.0f}")
            lines.append(f"{name:<8} " + " ".join(cells))
        sizes = ", ".join(f"{c}: {runs[c]['dataset']['image_size']} px" for c in counts)
        lines.append(f"(image sizes: {sizes})")
    return "\n".join(lines)


def merge_results(output: Path, run_result: dict) -> dict:
    """Add this run to `output` under its image count, keeping the runs at other counts; returns all runs."""
    existing = json.loads(output.read_text()) if output.is_file() else {}
    runs = existing.get("runs", {})
    runs[str(run_result["dataset"]["images"]["train"])] = run_result
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"runs": dict(sorted(runs.items(), key=lambda item: int(item[0])))}, indent=2) + "\n")
    return runs


# --- The run ----------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace, dataset: Path, run_dir: Path) -> dict:
    load_at_start = os.getloadavg()[0]  # other work on the machine skews every timing: recorded
    env = command_env(run_dir)
    repo, logs = run_dir / "repo", run_dir / "logs"
    logs.mkdir()
    params = prepare_clone(repo, dataset, args.tile_size, args.batch_size, env)
    description = json.loads((dataset / "scale-dataset.json").read_text())
    labelled = description["images"]["train"]

    stages = {}
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
        str(w): in_child("loader_rate", repo, env, workers=w, batches=args.loader_batches) for w in LOADER_WORKERS
    }
    step = in_child("training_consumption", repo, env, steps=args.train_steps)
    consumed = step.get("samples_per_second")
    used = usage(files_under(run_dir))["disk_bytes"] + store["raw"]["disk_bytes"]
    result = {
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
            w: (l["samples_per_second"] / consumed if consumed else None) for w, l in loader.items()
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
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "landcover-scale"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    if not 16 <= args.tile_size <= args.image_size:
        parser.error("--tile-size must be between 16 and --image-size")
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
