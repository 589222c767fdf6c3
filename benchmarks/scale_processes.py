"""benchmarks.scale's commands: run in the temporary clone with this repository's tools, and watched for the peak
memory of dvc and of the stage process it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from benchmarks.common import REPO, peak_rss_kb

TREE_POLL_SECONDS = 0.1  # how often a dvc command's process tree is scanned for the stage process
PEAK_POLL_SECONDS = 0.01  # how often the peak RSS of dvc and of the stage process is read


def command_env(run_dir: Path) -> dict[str, str]:
    """This repository's venv first on PATH (the clone has none), no DVC analytics, DVC's state kept in the run."""
    venv_bin = REPO / ".venv" / "bin"
    bin_dir = venv_bin if (venv_bin / "dvc").exists() else Path(sys.executable).parent
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(run_dir / "dvc-site-cache"),
    }


def run(command: list[str], cwd: Path, env: Mapping[str, str]) -> tuple[float, str]:
    """Run to completion; (seconds, stdout). A failure stops the benchmark with the command's output."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"error: `{' '.join(command)}` failed in {cwd}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return seconds, result.stdout


def git(cwd: Path, *args: str, env: Mapping[str, str]) -> str:
    """git's output, committing as the scale benchmark."""
    identity = ["-c", "user.name=scale benchmark", "-c", "user.email=scale@benchmark.invalid"]
    return run(["git", *identity, *args], cwd, env)[1]


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
    """Every process below `root`, children first."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents_by_pid().items():
        children.setdefault(parent, []).append(pid)
    found, queue = [], [root]
    while queue:
        found.extend(kids := children.get(queue.pop(), []))
        queue.extend(kids)
    return found


def command_line(pid: int) -> list[str]:
    """The process's argv; [] when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


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


def run_watched(command: list[str], cwd: Path, env: Mapping[str, str], log: Path, stage: str) -> dict:
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
                peak = peak_rss_kb(pid)
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
