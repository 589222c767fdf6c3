"""benchmarks.scale's verdicts and table: the targets judged against a run, and the runs at several image counts
kept side by side in benchmarks/scale.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks.common import IMAGE_SIZE, write_json
from benchmarks.scale_dvc import DATA_STAGES, DISK_FACTOR, gigabytes

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


def judge(run_result: dict) -> list[dict]:
    """The targets against this run.

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
    """n bytes in MB, whole, with thousands separated."""
    return f"{n / 1e6:,.0f}"


def report(run_result: dict, runs: dict) -> str:
    """The run's table, the targets judged, and with runs at other image counts their per-image costs beside."""
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
    write_json(output, {"runs": dict(sorted(runs.items(), key=lambda item: int(item[0])))})
    return runs
