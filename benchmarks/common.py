"""What the benchmarks share: the repository's paths and params, peak memory, devices, timing, fresh processes,
the machine's description, results files and Markdown tables.

This module imports only the standard library, numpy and yaml at the top (torch and `landcover` inside the
functions that use them): a measurement that runs in a fresh process to read its own peak memory must not
pay for torch unless it uses it, and benchmarks.scale runs this file by path in a clone of the repository
(run_in_checkout), where the `benchmarks` package is the clone's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

if TYPE_CHECKING:
    import torch
    from torch import nn

    from landcover.inference.blending import ProbabilityFn
    from landcover.io.params import TrainParams
    from landcover.training.components import BatchSettings

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "landcover-bench"  # synthetic full-size images, kept between runs
IMAGE_SIZE = 2448  # DeepGlobe's image side
NUM_CLASSES = 7  # DeepGlobe's classes

Sync = Callable[[], None]


def params() -> dict:
    """This repository's params.yaml."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


def write_json(path: Path, data: object) -> None:
    """`data` as indented JSON with a final newline, as every results file of the benchmarks is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


# --- Peak memory -------------------------------------------------------------------------------------------


def peak_rss_kb(pid: int | str = "self") -> int | None:
    """A process's peak resident memory (VmHWM), or None when it is gone.

    VmHWM, not getrusage's ru_maxrss: on Linux ru_maxrss survives exec, so a child would report its
    parent's peak.
    """
    try:
        match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB."""
    return (peak_rss_kb() or 0) / 1024


# --- Fresh processes ---------------------------------------------------------------------------------------


def run_for_json(
    command: Sequence[str],
    what: str,
    cwd: Path = REPO,
    env: Mapping[str, str] | None = None,
    show_stderr: bool = False,
) -> dict:
    """Run `command` to completion and return the JSON object on the last line it prints.

    A failure stops the benchmark with `what` and the end of the command's output. With `show_stderr`,
    the command's error stream (its progress bars) goes to the terminal as it runs, not into the message.
    """
    stderr = None if show_stderr else subprocess.PIPE
    process = subprocess.run(list(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    if process.returncode != 0:
        output = (process.stdout + (process.stderr or "")).strip()[-3000:]
        raise SystemExit(f"error: {what} failed (exit {process.returncode}):\n{output}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def measure_in_child(module: str, name: str, config: dict, show_stderr: bool = False) -> dict:
    """Measurement `name` of benchmark `module` in a fresh process (`python -m MODULE --measure NAME CONFIG`);
    its result, with that process's peak RSS."""
    command = [sys.executable, "-m", module, "--measure", name, json.dumps(config)]
    return run_for_json(command, f"measurement '{name}' of {module}", show_stderr=show_stderr)


def answer_parent(result: dict) -> None:
    """The child's side of measure_in_child and run_in_checkout: the result with this process's peak RSS,
    as the last line printed."""
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))


CHECKOUT_CHILD = """
import json, runpy, sys
common = runpy.run_path(sys.argv[1])
functions = runpy.run_path(sys.argv[2])
common["answer_parent"](functions[sys.argv[3]](**json.loads(sys.argv[4])))
"""


def run_in_checkout(module_file: Path, function: str, checkout: Path, env: Mapping[str, str], **kwargs: Any) -> dict:
    """`function(**kwargs)` of `module_file` in a fresh process working in another checkout; its result, with
    that process's peak RSS.

    The file is run by path (runpy), not imported: the working folder comes first on the child's sys.path,
    so `landcover` and `stages` there are the checkout's, and so would `benchmarks` be. `module_file` therefore imports
    nothing from `benchmarks`; this module, run by path as well, gives the child its peak RSS.
    """
    command = [sys.executable, "-c", CHECKOUT_CHILD, __file__, str(module_file), function, json.dumps(kwargs)]
    return run_for_json(command, f"{function} in {checkout}", cwd=checkout, env=env)


# --- Devices and timing ------------------------------------------------------------------------------------


def no_sync() -> None:
    """The CPU's synchronisation: its work is done when the call returns."""


def sync_of(device: torch.device) -> Sync:
    """Waits for `device`'s queued work, so that a timer read afterwards counts it."""
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else no_sync


def device_and_sync(requested: str = "auto") -> tuple[torch.device, Sync]:
    """The device `requested` resolves to (auto: cuda, then mps, then cpu) and its synchronisation."""
    from landcover.model.devices import choose_device

    device = choose_device(requested)
    return device, sync_of(device)


def time_alternating(
    runs: Mapping[str, Callable[[Any], Any]],
    inputs: Iterable[Any],
    warmup: Any,
    sync: Sync = no_sync,
    same_output: Callable[[Any, Any], bool] | None = None,
) -> dict[str, list[float]]:
    """Seconds of every run on every input, the runs alternating input by input so that all see the same
    machine state, after a warm-up call of each on `warmup` (kernels chosen, caches filled).

    With `same_output`, the runs' outputs on each input must agree, or the benchmark stops.
    """
    for run in runs.values():
        run(warmup)
    sync()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for item in inputs:
        outputs = []
        for name, run in runs.items():
            start = time.perf_counter()
            outputs.append(run(item))
            sync()
            seconds[name].append(time.perf_counter() - start)
        if same_output is not None and not all(same_output(outputs[0], other) for other in outputs[1:]):
            raise SystemExit(f"error: the outputs of {', '.join(runs)} differ")
    return seconds


def time_per_image(
    run: Callable[[np.ndarray], object], images: Sequence[np.ndarray], window: int, sync: Sync = no_sync
) -> dict:
    """Median seconds per image of `run`, after a warm-up on the first image's 2x2-window corner (where
    kernels are chosen, sessions allocated and, with torch.compile, the model compiled)."""
    start = time.perf_counter()
    run(images[0][: 2 * window, : 2 * window])
    warmup = time.perf_counter() - start
    times = []
    for image in images:
        start = time.perf_counter()
        run(image)
        sync()
        times.append(time.perf_counter() - start)
    return {"seconds_per_image": statistics.median(times), "warmup_seconds": warmup}


def count_flops(function: Callable[[], object]) -> int:
    """Floating-point operations of one call (convolutions and matrix products), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


# --- The model as the pipeline runs it ---------------------------------------------------------------------


def random_model(encoder: str, device: torch.device) -> nn.Module:
    """The project's DeepLabV3+, randomly initialised (seed 0: speed does not depend on the weights), in eval
    mode and channels_last on `device`, as predict runs it."""
    import torch

    from landcover.model.model import build_model

    torch.manual_seed(0)
    return build_model(encoder, NUM_CLASSES).eval().to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]


def predict_probabilities(model: nn.Module, device: torch.device, predict: dict) -> ProbabilityFn:
    """`model` as predict's probability function on `device`, with the `predict` params' precision and TTA."""
    from landcover.data.scaling import UINT8_RGB
    from landcover.inference.probabilities import model_probabilities
    from landcover.model.devices import resolve_precision

    precision = resolve_precision(predict["precision"], device, "predict.precision")
    return model_probabilities(model, device, UINT8_RGB, precision, predict["tta"])


def training_batch_settings(train: TrainParams, device: torch.device) -> BatchSettings:
    """The trainer's batch handling on `device`: train.precision resolved there, train.channels_last."""
    from landcover.data.scaling import UINT8_RGB
    from landcover.model.devices import resolve_precision
    from landcover.training.components import BatchSettings

    precision = resolve_precision(train.precision, device, "train.precision")
    return BatchSettings(device, precision, train.channels_last, UINT8_RGB)


# --- The machine -------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform says, else "unknown"."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def machine() -> dict:
    """The CPU, its bf16 instructions, memory, GPU and software versions that a speed depends on."""
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags_line = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    memory = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    return {
        "cpu": cpu_model(),
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
    """This repository's HEAD, abbreviated; None outside a git checkout."""
    process = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return process.stdout.strip() or None


# --- Command lines ---------------------------------------------------------------------------------------


def benchmark_parser(module: str, doc: str | None, measures: bool = False, **kwargs: Any) -> argparse.ArgumentParser:
    """The command line of `python -m MODULE`, its docstring as the description. With `measures`, it takes the
    hidden `--measure NAME CONFIG` of measure_in_child's processes (see answered_measurement)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
    )
    if measures:
        parser.add_argument("--measure", nargs=2, metavar=("NAME", "CONFIG"), help=argparse.SUPPRESS)
    return parser


def answered_measurement(args: argparse.Namespace, measurements: Mapping[str, Callable[[dict], dict]]) -> bool:
    """Whether this process is a measure_in_child child: if so, it has run the measurement that --measure names
    and answered its parent."""
    if not args.measure:
        return False
    name, config = args.measure
    answer_parent(measurements[name](json.loads(config)))
    return True


def speed_part_main(module: str, doc: str | None, argv: list[str] | None = None) -> None:
    """The command line of a module that benchmarks.speed runs (it has none of its own): --help describes it,
    anything else says to run benchmarks.speed."""
    parser = benchmark_parser(module, doc)
    parser.parse_args(argv)
    parser.error("part of `python -m benchmarks.speed` (make bench): run that")


# --- Tables ------------------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str) -> list[str]:
    """The lines of a Markdown table; `align` has one letter a column, l (left) or r (right)."""
    rule = "|" + "|".join("---" if side == "l" else "---:" for side in align) + "|"
    return ["| " + " | ".join(header) + " |", rule] + [
        "| " + " | ".join(str(cell) for cell in row) + " |" for row in rows
    ]
