"""benchmarks.scale's DVC side: the disk a run needs, the temporary clone with the run's params, what its outputs
take in the workspace and in DVC's cache, the no-op checks, and a push to a directory remote and a pull into a
fresh clone.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from benchmarks.common import IMAGE_SIZE, REPO
from benchmarks.scale_dataset import split_counts
from benchmarks.scale_processes import git, run

DATA_STAGES = ("tile", "encode", "split", "preview")
OUTPUTS = ("data/tiles", "data/encoded", "data/splits", "plots/data")  # the data stages' (plots/data: cache: false)
NOOP_REPRO = ("repro", "preview")  # walks tile, encode, split, preview; a bare `dvc repro` would train

# Disk a run needs, as a multiple of the raw dataset: the raw data, then five copies of the derived
# data: the workspace outputs, the DVC cache (a copy: DVC's default link type falls back to copying
# where there are no reflinks, as on ext4), the remote, and the pulled clone's workspace and cache.
# The tile stage keeps the source files' bytes, so each copy is a little under the raw data's size
# (valid/ and test/ are not copied); 8 leaves a margin. Checked against free space before anything
# big is written; every run records what it really used (`disk.used_over_raw`).
DISK_FACTOR = 8
RAW_BYTES_PER_IMAGE = 2e6  # a 2448 px JPEG and its mask, about; scales with the pixel count


def gigabytes(n: float) -> str:
    """n bytes in GB, one decimal."""
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


def usage(paths: Iterable[Path], seen: set[tuple[int, int]] | None = None) -> dict:
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
    """The regular files below `folder` (links not followed); [] when it does not exist."""
    return [path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()] if folder.exists() else []


def cache_object(repo: Path, md5: str) -> Path:
    """Where DVC's cache keeps the object of hash `md5`."""
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def cached_files(repo: Path, path: str) -> list[Path]:
    """The cache objects of one output recorded in dvc.lock: its .dir listing and one object per file.

    An output declared `cache: false` has a hash in dvc.lock but nothing in the cache: [].
    """
    declared: dict[str, bool] = {}
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
    outputs: dict[str, dict] = {}
    derived_seen: set[tuple[int, int]] = set()
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


def prepare_clone(clone: Path, dataset: Path, tile_size: int, batch_size: int, env: Mapping[str, str]) -> dict:
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


def status_clean(repo: Path, env: Mapping[str, str]) -> tuple[float, bool]:
    """Seconds of `dvc status` of the data stages, and whether it found them all up to date."""
    seconds, output = run(["dvc", "status", "--json", *DATA_STAGES], repo, env)
    return seconds, json.loads(output or "{}") == {}


def noop_checks(repo: Path, env: Mapping[str, str]) -> dict:
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
    """Every file of the data stages' outputs in `repo`, with its size."""
    return {
        str(path.relative_to(repo)): path.stat().st_size for output in OUTPUTS for path in files_under(repo / output)
    }


def push_and_pull(repo: Path, run_dir: Path, env: Mapping[str, str]) -> dict:
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
