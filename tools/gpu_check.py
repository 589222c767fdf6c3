"""The prepared GPU check: the project's CUDA paths run once, in minutes, on a lent GPU machine (docs/gpu-check.md).

    make gpu-wheels                      # here, with network: the wheels that machine lacks, into gpu-wheels/
    bash tools/gpu_check.sh              # there: installs them offline, then runs this module
    bash tools/gpu_check.sh --dry-run    # on any CPU (CI does): the same plumbing at tiny sizes

Each check prints one verdict line (PASS, FAIL or SKIP, and its figure); all of them, with the machine, go to
gpu_check.json beside gpu_check.log in the output folder (--out, else $GPU_CHECK_OUT, else $OUT, else
gpu-check/). The exit status is 1 when any check failed. The checks, in order:

  packages                  the carried wheels import, at tools/gpu-wheels.txt's versions
  train_bf16_deterministic  the trainer (landcover.training) on the fast profile, bf16 on CUDA with
                            train.deterministic, twice in fresh processes: loss falls, weights finite and
                            identical (else how far apart, and which ops warned that they are not deterministic)
  train_fp16_gradscaler     the same once in fp16 with the GradScaler: loss falls, no NaN, the final loss scale
  predict_cuda_vs_cpu       predict.runtime torch on CUDA (predict.precision as params.yaml says) against the
                            CPU's fp32 classes from the same checkpoint: argmax agreement at least 99.9%
  blending_device_vs_host   the sliding window blended on the GPU against on the host, same probabilities:
                            bit-identical probabilities and classes
  benchmark                 the GPU section of `make bench` (benchmarks.gpu): training images/s at 512 px, batch
                            16, as a fraction of the bf16 matmul peak measured in the same run; s per 2448 px image
  nccl_two_processes        with more than one GPU: the trainer in 2 processes under torchrun (NCCL)
  wheel_list                tools/gpu-wheels.txt against requirements.lock, and every package this run imported
                            either on the GPU machine already or in the list

Training here runs without augmentation (albumentations is not on that machine) and logs to a plain folder
(DVCLive is not either): the trainer's `augment_params=None` and `open_log`. Only the standard library is
imported at the top: `--wheel-requirements` and `--check-wheel-folder` (make gpu-wheels) need nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WHEEL_LIST = REPO / "tools" / "gpu-wheels.txt"
LOCK = REPO / "requirements.lock"
FAST_PROFILE = REPO / ".ci" / "fast-profile"
DEFAULT_OUT = REPO / "gpu-check"
JSON_NAME, LOG_NAME = "gpu_check.json", "gpu_check.log"
JSON_FORMAT = 1

MAX_WHEEL_BYTES = 60 * 2**20  # what travels to the GPU machine is at most 64 MiB, the working tree included
BUDGET_SECONDS = 480  # the whole check on one GPU: 8 minutes of a lease of about 15
MIN_AGREEMENT = 0.999  # predict on CUDA against the CPU's fp32 classes
# What the lent GPU machine's Python has (issue 24; docs/gpu-check.md): these, and what they require.
MACHINE_PACKAGES = ("torch", "timm", "onnxruntime", "numpy", "pillow", "matplotlib")
REPO_PACKAGES = ("landcover", "stages", "benchmarks", "tools", "tests")

CHECKS = (
    "packages",
    "train_bf16_deterministic",
    "train_fp16_gradscaler",
    "predict_cuda_vs_cpu",
    "blending_device_vs_host",
    "benchmark",
    "nccl_two_processes",
    "wheel_list",
)
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class Sizes:
    """How much each check does: on a GPU, and in the CPU's dry run (CI)."""

    epochs: int  # training epochs on the fast profile's data (one cosine cycle)
    predict_images: int  # synthetic images predicted on CUDA and on the CPU
    predict_size: int  # their side, pixels
    blend_size: int  # the blending check's image side
    blend_window: int


GPU_SIZES = Sizes(epochs=15, predict_images=4, predict_size=256, blend_size=2448, blend_window=256)
DRY_SIZES = Sizes(epochs=2, predict_images=1, predict_size=64, blend_size=96, blend_window=32)


# --- The wheel list against the lock (make gpu-wheels, and the wheel_list check) -------------------------


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file or lock ({canonical name: version}); comments and hashes skipped."""
    return read_pins_of(path.read_text().splitlines())


def read_pins_of(lines: Iterable[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def list_problems(wheel_list: Path = WHEEL_LIST, lock: Path = LOCK) -> list[str]:
    """Where the wheel list disagrees with the lock: a package the lock lacks, or another version."""
    locked = read_pins(lock)
    problems = []
    for name, version in read_pins(wheel_list).items():
        if name not in locked:
            problems.append(f"{wheel_list.name}: {name} is not in {lock.name}")
        elif locked[name] != version:
            problems.append(f"{wheel_list.name}: {name}=={version}, but {lock.name} has {locked[name]}")
    return problems


def wheel_requirements(wheel_list: Path = WHEEL_LIST, lock: Path = LOCK) -> str:
    """The lock's entries (pin and sha256 hashes) of the listed packages: what `pip download --require-hashes` takes."""
    problems = list_problems(wheel_list, lock)
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    wanted = set(read_pins(wheel_list))
    entries, keep = [], False
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if match:
            keep = canonical(match.group(1)) in wanted
        elif not line.startswith(" "):
            keep = False
        if keep and not line.lstrip().startswith("#"):
            entries.append(line)
    return "\n".join(entries) + "\n"


def wheel_folder_problems(folder: Path, wheel_list: Path = WHEEL_LIST, limit: int = MAX_WHEEL_BYTES) -> list[str]:
    """Where a downloaded wheel folder is not one wheel of each listed package at its version, within `limit` bytes."""
    wheels = sorted(folder.glob("*.whl"))
    found = {canonical(wheel.name.split("-")[0]): wheel.name.split("-")[1] for wheel in wheels}
    problems = []
    if len(found) != len(wheels):  # two versions of one package stop the whole offline install
        problems.append(f"{folder}: {len(wheels)} wheels for {len(found)} packages")
    for name, version in read_pins(wheel_list).items():
        if found.get(name) != version:
            problems.append(f"{folder}: no wheel of {name}=={version}")
    problems += [f"{folder}: {name} is not in {wheel_list.name}" for name in found if name not in read_pins(wheel_list)]
    total = sum(wheel.stat().st_size for wheel in wheels)
    if total > limit:
        problems.append(f"{folder}: the wheels take {total / 2**20:.1f} MiB, more than {limit / 2**20:.0f} MiB")
    return problems


def requirement_names(distribution: str) -> list[str]:
    """What an installed distribution requires (canonical names), markers evaluated here, extras left out."""
    from importlib import metadata

    from packaging.requirements import Requirement

    names = []
    for text in metadata.requires(distribution) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.append(canonical(requirement.name))
    return names


def provided_by_machine(packages: Iterable[str] = MACHINE_PACKAGES) -> set[str]:
    """The GPU machine's packages and, transitively, what they require (as installed here): pip put those there."""
    from importlib import metadata

    provided: set[str] = set()
    pending = [canonical(name) for name in packages]
    while pending:
        name = pending.pop()
        if name in provided:
            continue
        provided.add(name)
        with contextlib.suppress(metadata.PackageNotFoundError):
            pending.extend(requirement_names(name))
    return provided


def imported_modules() -> set[str]:
    """Third-party top-level modules this project's code imported in this process: the names its modules import
    (ast, at any depth: imports inside functions too) that are in sys.modules now."""
    import ast

    names: set[str] = set()
    for module in list(sys.modules.values()):
        path = Path(getattr(module, "__file__", None) or "/")
        if not path.is_relative_to(REPO) or path.relative_to(REPO).parts[0] not in REPO_PACKAGES:
            continue  # not this project's code (a virtual environment inside the checkout, say)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names - set(REPO_PACKAGES) if name in sys.modules and name not in sys.stdlib_module_names}


def distributions_of(modules: Iterable[str]) -> set[str]:
    """The distributions (canonical names) that installed these top-level modules."""
    from importlib import metadata

    owners = metadata.packages_distributions()
    return {canonical(owner) for name in modules for owner in owners.get(name, [name])}


def replacements(wheel_list: Path = WHEEL_LIST) -> set[str]:
    """Listed packages whose line says `# replaces the machine's`: carried for another version than the GPU
    machine's own (KINDS.md: carry a package it has only for another version)."""
    return {
        name
        for line in wheel_list.read_text().splitlines()
        for name in read_pins_of([line])
        if re.search(r"#\s*replaces", line, re.IGNORECASE)
    }


def coverage_problems(
    imported: set[str], listed: set[str], provided: set[str], replacing: Iterable[str] = ()
) -> list[str]:
    """Packages the check needs that neither the machine nor the wheel list brings, and listed ones it has already
    (but those `replacing` its own version)."""
    problems = [
        f"{name}: imported by this run, but neither on the GPU machine nor in the wheel list"
        for name in sorted(imported - listed - provided)
    ]
    for name in sorted(listed):
        with contextlib.suppress(Exception):  # a listed package not installed here: the packages check says so
            problems += [
                f"{name} requires {needed}: neither on the GPU machine nor in the wheel list"
                for needed in requirement_names(name)
                if needed not in listed | provided
            ]
    problems += [
        f"{name}: in the wheel list, but the GPU machine has it (mark it `# replaces the machine's` if meant)"
        for name in sorted(listed & provided - set(replacing))
    ]
    return problems


# --- Params and data: the fast profile, synthetic tiles ----------------------------------------------------


def fast_profile() -> dict[str, Any]:
    """.ci/fast-profile's `key=value` lines (the end-to-end tests' and CI's small run), values parsed as YAML."""
    import yaml

    pairs = (line.split("=", 1) for line in FAST_PROFILE.read_text().splitlines() if "=" in line and line[0] != "#")
    return {key.strip(): yaml.safe_load(value) for key, value in pairs}


def check_params(**overrides: Any) -> dict[str, Any]:
    """params.yaml with the fast profile and then `overrides` ("train.precision": "bf16", ...) applied."""
    from landcover.io.params import load_params

    params = load_params(REPO / "params.yaml")
    for key, value in {**fast_profile(), **overrides}.items():
        section, *path, last = key.split(".")
        node = params[section]
        for part in path:
            node = node[part]
        node[last] = value
    return params


# Each land class's mean colour in the synthetic images, after DeepGlobe's palette: far apart, so that a few epochs
# learn them and what stays uncertain is mostly where regions meet
CLASS_TONES = ((40, 200, 200), (210, 210, 50), (200, 60, 200), (40, 160, 40), (40, 40, 190), (200, 200, 200))


def synthetic_image(seed: int, size: int, block: int = 16) -> tuple[Any, Any]:
    """An RGB image and its class indices: `block` px squares of random land classes, each its tone plus noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(CLASS_TONES), (size // block + 1, size // block + 1))
    classes = np.kron(blocks, np.ones((block, block), dtype=np.int64))[:size, :size].astype(np.uint8)
    image = np.asarray(CLASS_TONES, dtype=np.float32)[classes] + rng.normal(0, 10, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8), classes


def write_training_data(root: Path) -> dict[str, str]:
    """The fast profile's sample as a prepared dataset in `root`, through the tile and encode stages' code:
    raw pairs, tiles (tiles/), class masks (encoded/), and the train and val tile lists (train.csv, val.csv)."""
    from landcover.data.encoding import encode_images
    from landcover.data.palette import ClassTable, index_to_colour
    from landcover.data.rawdata import RawPair
    from landcover.data.tilestore import TileStore, write_index
    from landcover.data.tiling import tile_dataset
    from landcover.io.imageio import write_png

    params = check_params()
    sample, tile = params["sample"], params["tile"]
    table = ClassTable.deepglobe()
    (root / "raw").mkdir(parents=True)
    pairs = []
    for number in range(sample["train_images"]):
        image, classes = synthetic_image(number, sample["image_size"])
        pair = RawPair(f"{number:03d}", root / "raw" / f"{number:03d}_sat.png", root / "raw" / f"{number:03d}_mask.png")
        write_png(pair.image, image)
        write_png(pair.mask, index_to_colour(classes, table))
        pairs.append(pair)
    store = TileStore(root / "tiles", root / "encoded")
    tile_dataset(pairs, store.tiles, tile["size"], tile["stride"], progress=False)
    table.to_csv(store.class_table_path)
    records = store.index()
    encode_images(records, store, table, progress=False)
    ratios = params["split"]["ratios"]
    train_images = round(len(pairs) * ratios["train"])
    val_images = max(1, round(len(pairs) * ratios["val"]))
    ids = [pair.image_id for pair in pairs]
    write_index(root / "train.csv", [record for record in records if record.image_id in ids[:train_images]])
    val_ids = ids[train_images : train_images + val_images]
    write_index(root / "val.csv", [record for record in records if record.image_id in val_ids])
    return {"images": str(len(pairs)), "tiles": str(len(records)), "image_size": str(sample["image_size"])}


class PlainLog(contextlib.AbstractContextManager):
    """Training's log in a plain folder, for a machine without DVCLive: metrics.json, one record per epoch."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.step = folder, 0
        self.epochs: dict[int, dict[str, float]] = {}

    def log_metric(self, name: str, val: float) -> None:
        self.epochs.setdefault(self.step, {})[name] = val

    def make_summary(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "metrics.json").write_text(json.dumps([self.epochs[step] for step in sorted(self.epochs)]))

    def __exit__(self, *exception: object) -> None:
        self.make_summary()


# --- A training run, in a fresh process (python -m tools.gpu_check --train CONFIG) ------------------------


def run_training(config: dict) -> dict:
    """The trainer on the prepared data in config["data"]: train() itself, as the train stage calls it, with the
    fast profile and config's precision, device, epochs and processes; its per-epoch record and what warned."""
    import warnings

    import torch

    from landcover.data.tilestore import TileStore, read_index
    from landcover.io.params import ModelParams, TrainParams, read_section
    from landcover.model.ranks import ranks_from_environment
    from landcover.training.trainer import TrainingData, train

    overrides = {"precision": config["precision"], "device": config["device"], "epochs": config["epochs"]}
    overrides |= {"restart_epochs": config["epochs"], "deterministic": True, "processes": config.get("processes", 1)}
    params = check_params(**{f"train.{key}": value for key, value in overrides.items()})
    data_root, out = Path(config["data"]), Path(config["out"])
    store = TileStore(data_root / "tiles", data_root / "encoded")
    train_tiles = read_index(data_root / "train.csv")
    data = TrainingData(train_tiles, read_index(data_root / "val.csv"), store, store.class_table(), train_tiles[0].size)
    model_params = read_section(params, "model", ModelParams)
    train_params = read_section(params, "train", TrainParams)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model_params, train_params, None, data, out / "models", out / "log", progress=False, open_log=PlainLog)
    seconds = time.perf_counter() - start
    if not ranks_from_environment().main:
        return {}
    epochs = json.loads((out / "log" / "metrics.json").read_text())
    return {
        "seconds": seconds,
        "device": torch.cuda.get_device_name() if config["device"] == "cuda" else "cpu",
        "train_loss": [epoch["train/loss"] for epoch in epochs],
        "val_miou_land": [epoch.get("val/miou_land") for epoch in epochs],
        "warnings": sorted({" ".join(str(warning.message).split())[:160] for warning in caught}),
        "imported_modules": sorted(imported_modules()),
    }


def launch_trainings(configs: list[dict], log: Reporter, timeout: float, processes: int = 1) -> list[dict]:
    """run_training for each config, each in fresh processes (torchrun for several; rank 0 answers), their output
    going to the log. On CUDA one after the other; on the CPU (the dry run) side by side, to save CI's time."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    side_by_side = all(config["device"] == "cpu" for config in configs)
    results, running = [], []
    for config in configs:
        command = [sys.executable, *launcher, "-m", "tools.gpu_check", "--train", json.dumps(config)]
        log.write(f"$ {' '.join(command)}")
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        running.append(subprocess.Popen(command, cwd=REPO, text=True, **pipes))  # type: ignore[call-overload]
        if not side_by_side:
            results.append(finished_training(running.pop(), log, timeout))
    return results + [finished_training(process, log, timeout) for process in running]


def finished_training(process: subprocess.Popen, log: Reporter, timeout: float) -> dict:
    """A training process's JSON answer, once it has ended; CheckFailed if it failed or ran past `timeout` s."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise CheckFailed(f"training did not end within {timeout:.0f} s") from None
    log.write(stdout + stderr)
    if process.returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        raise CheckFailed(f"training failed (exit {process.returncode}): {lines[-1] if lines else 'no output'}")
    return json.loads(stdout.strip().splitlines()[-1])


def loss_problems(run: dict) -> list[str]:
    """What is wrong with a run's losses: not finite, or not lower after the last epoch than after the first."""
    import math

    losses = run["train_loss"]
    if not all(math.isfinite(loss) for loss in losses):
        return [f"train loss not finite: {losses}"]
    if len(losses) > 1 and not losses[-1] < losses[0]:
        return [f"train loss did not fall: {losses[0]:.4f} -> {losses[-1]:.4f}"]
    return []


def weight_difference(first: Path, second: Path) -> dict:
    """How far apart two checkpoints' weights are: identical files, the largest absolute difference, how many
    tensors differ, and whether every weight is finite."""
    import torch

    from landcover.io.digests import file_sha256
    from landcover.model.checkpoint import load_checkpoint

    weights = [load_checkpoint(path)["model"] for path in (first, second)]
    differences = {
        name: (tensor.double() - weights[1][name].double()).abs().max().item() for name, tensor in weights[0].items()
    }
    return {
        "identical_files": file_sha256(first) == file_sha256(second),
        "identical_weights": all(torch.equal(tensor, weights[1][name]) for name, tensor in weights[0].items()),
        "max_abs_difference": max(differences.values()),
        "tensors_differing": sum(1 for value in differences.values() if value != 0),
        "tensors": len(differences),
        "finite": all(bool(torch.isfinite(tensor).all()) for state in weights for tensor in state.values()),
    }


# --- The checks ---------------------------------------------------------------------------------------------


class CheckFailed(Exception):
    """A check that ran and failed: its message is the verdict's figure."""


class Reporter:
    """Verdict lines to the terminal and the log; everything else (children's output, tracebacks) to the log."""

    def __init__(self, out: Path, append: bool) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.handle = open(out / LOG_NAME, "a" if append else "w")  # noqa: SIM115 - open for the whole run

    def write(self, text: str) -> None:
        if text.strip():
            self.handle.write(text.rstrip("\n") + "\n")
            self.handle.flush()

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.write(line)


@dataclass
class Context:
    """What the checks share: the mode, sizes, a temporary folder, the log, the time left, what earlier checks made."""

    dry: bool
    sizes: Sizes
    work: Path  # temporary: the training data, each run's models and logs
    log: Reporter
    deadline: float  # time.monotonic() by which the checks should be done
    cuda: bool  # checks run on CUDA (never in the dry run)
    gpus: int
    wheels: Path | None  # the carried wheel folder, if any
    imported_modules: set[str] = field(default_factory=set)  # what the training processes imported (imported_modules)
    checkpoint: Path | None = None  # best.pt of the first bf16 run: what the predict check runs

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "cpu"

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 30.0)

    def outcome(self, problems: list[str], summary: str, figures: dict, reason: str = "no CUDA") -> tuple:
        """FAIL with the first problem; else PASS on CUDA, or SKIP (the reason, then the figure) in the dry run."""
        if problems:
            return FAIL, "; ".join(problems), figures
        if self.dry:
            return SKIP, f"{reason}; ran on the CPU: {summary}", figures
        return PASS, summary, figures


def check_packages(ctx: Context) -> tuple:
    """The listed wheels installed at their versions, and what the GPU machine brings, with versions."""
    from importlib import metadata

    import torch

    figures: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": ctx.gpus}
    problems = []
    for name, version in read_pins(WHEEL_LIST).items():
        try:
            figures[name] = installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed (make gpu-wheels here, then carry gpu-wheels/)")
            continue
        if installed != version:
            problems.append(f"{name} {installed} is installed, tools/gpu-wheels.txt says {version}")
    for name in ("timm", "torchvision", "huggingface-hub", "safetensors", "numpy", "pillow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            figures[name] = metadata.version(name)
    import segmentation_models_pytorch

    figures["segmentation_models_pytorch_from"] = str(Path(segmentation_models_pytorch.__file__).parent.parent)
    listed = ", ".join(f"{name} {figures.get(name)}" for name in read_pins(WHEEL_LIST))
    summary = f"{listed} from {figures['segmentation_models_pytorch_from']}; torch {torch.__version__}"
    return (FAIL, "; ".join(problems), figures) if problems else (PASS, summary, figures)


def training_config(ctx: Context, name: str, precision: str, processes: int = 1) -> dict:
    out = ctx.work / name
    return {"data": str(ctx.work / "data"), "out": str(out), "precision": precision, "device": ctx.device} | {
        "epochs": ctx.sizes.epochs,
        "processes": processes,
    }


def losses(run: dict) -> str:
    return f"train loss {run['train_loss'][0]:.3f} -> {run['train_loss'][-1]:.3f} in {run['seconds']:.1f} s"


def prepared_data(ctx: Context) -> None:
    """The training data in ctx.work/data, written by the first check that needs it."""
    if not (ctx.work / "data" / "val.csv").is_file():
        ctx.log.write(json.dumps(write_training_data(ctx.work / "data")))


def check_train_bf16(ctx: Context) -> tuple:
    """bf16 training with train.deterministic, twice, each in a fresh process: the same weights?"""
    prepared_data(ctx)
    configs = [training_config(ctx, f"bf16_{index}", "bf16") for index in range(2)]
    runs = launch_trainings(configs, ctx.log, ctx.remaining())
    ctx.imported_modules |= set(runs[0]["imported_modules"])
    models = [Path(config["out"]) / "models" for config in configs]
    difference = weight_difference(models[0] / "last.pt", models[1] / "last.pt")
    ctx.checkpoint = models[0] / "best.pt"
    problems = loss_problems(runs[0]) + loss_problems(runs[1])
    problems += [] if difference["finite"] else ["weights not finite"]
    if difference["identical_weights"]:
        same = "weights identical in 2 runs" + (", checkpoints byte-identical" if difference["identical_files"] else "")
    else:
        same = (
            f"weights differ: max abs difference {difference['max_abs_difference']:.3g} in "
            f"{difference['tensors_differing']} of {difference['tensors']} tensors "
            f"({len(runs[0]['warnings'])} warnings, see the JSON)"
        )
    return ctx.outcome(problems, f"{same}; {losses(runs[0])}", {"runs": runs, **difference})


def check_train_fp16(ctx: Context) -> tuple:
    """fp16 training with the GradScaler: loss falls, no NaN; the loss scale it ended with."""
    if not ctx.cuda:
        return SKIP, "no CUDA: fp16 needs it (train.precision fp16 is refused on the CPU)", {}
    import torch

    from landcover.model.checkpoint import load_checkpoint

    prepared_data(ctx)
    config = training_config(ctx, "fp16", "fp16")
    (run,) = launch_trainings([config], ctx.log, ctx.remaining())
    checkpoint = load_checkpoint(Path(config["out"]) / "models" / "last.pt")
    finite = all(bool(torch.isfinite(tensor).all()) for tensor in checkpoint["model"].values())
    scale = (checkpoint.get("scaler") or {}).get("scale")
    problems = loss_problems(run) + ([] if finite else ["weights not finite"])
    problems += [] if scale is not None else ["no GradScaler state in last.pt"]
    return ctx.outcome(problems, f"{losses(run)}; final loss scale {scale}", {"run": run, "loss_scale": scale})


def predicted_classes(ctx: Context, images: list, precision: str | None, device: Any) -> tuple[Any, str]:
    """The class maps of `images` by predict's own runtime (predict.runtime torch, the params' window, overlap and
    batch; `precision` or the params'), from the bf16 run's checkpoint, on `device`; and how it ran."""
    from dataclasses import replace

    import numpy as np

    from landcover.inference.blending import SlidingWindows
    from landcover.inference.runtimes import choose_runtime, run_label, runtime_probabilities
    from landcover.io.params import PredictParams, read_section

    assert ctx.checkpoint is not None
    params = read_section(check_params(**{"predict.runtime": "torch"}), "predict", PredictParams)
    params = replace(params, precision=precision or params.precision)
    runtime = choose_runtime(params, device, ctx.checkpoint, None, ctx.work / "no-export")
    probability_fn = runtime_probabilities(runtime, params)
    windows = SlidingWindows.of(probability_fn, len(runtime.interface.table), params)
    return np.stack([windows.classes(image) for image in images]), run_label(params, runtime)


def check_predict(ctx: Context) -> tuple:
    """predict.runtime torch on CUDA against the CPU's fp32 classes, same checkpoint: argmax agreement."""
    if ctx.checkpoint is None or not ctx.checkpoint.is_file():
        raise CheckFailed("no checkpoint to predict with: train_bf16_deterministic did not finish")
    import torch

    sizes = ctx.sizes
    # Regions twice the training images' blocks: near-ties, where bf16 and fp32 may pick different classes, lie
    # where regions meet, and 16 px ones put over a third of the pixels within 2 px of a border
    images = [synthetic_image(1000 + number, sizes.predict_size, 32)[0] for number in range(sizes.predict_images)]
    on_device, device_label = predicted_classes(ctx, images, None, torch.device(ctx.device))
    on_cpu, cpu_label = predicted_classes(ctx, images, "fp32", torch.device("cpu"))
    agreement = float((on_device == on_cpu).mean())
    figures: dict[str, Any] = {"agreement": agreement, "pixels": int(on_cpu.size), "device": device_label}
    figures["cpu"] = cpu_label
    if ctx.cuda:  # how much of the difference is the precision: CUDA in fp32 too
        on_device_fp32, _ = predicted_classes(ctx, images, "fp32", torch.device("cuda"))
        figures["agreement_cuda_fp32"] = float((on_device_fp32 == on_cpu).mean())
    summary = f"argmax agreement {agreement:.4%} over {on_cpu.size} pixels ({device_label}; CPU fp32)"
    low = agreement < MIN_AGREEMENT and not ctx.dry  # the CPU's own precision may differ in the dry run
    return ctx.outcome([f"{summary}: below {MIN_AGREEMENT:.1%}"] if low else [], summary, figures)


def content_probabilities(num_classes: int, device: Any) -> Callable:
    """A stand-in model on `device`: softmax of a fixed mix of each pixel's colour, so every window differs."""
    import torch

    mixing = torch.randn(3, num_classes, generator=torch.Generator().manual_seed(0)).to(device)

    def probabilities(batch: torch.Tensor) -> torch.Tensor:
        colours = batch.to(device).float() / 255
        logits = (colours.unsqueeze(-1) * mixing).sum(dim=3) * 4  # elementwise: the same bits every call
        return logits.permute(0, 3, 1, 2).softmax(dim=1)

    return probabilities


def check_blending(ctx: Context) -> tuple:
    """Blending on the device (predict's BlendAccumulator in torch) against on the host, same probabilities."""
    import numpy as np
    import torch

    from benchmarks.blending import host_blended_probabilities, host_classes
    from benchmarks.common import NUM_CLASSES, params
    from landcover.inference.blending import SlidingWindows

    probability_fn = content_probabilities(NUM_CLASSES, torch.device(ctx.device))
    image = synthetic_image(2000, ctx.sizes.blend_size)[0]
    predict = params()["predict"]
    settings = (NUM_CLASSES, ctx.sizes.blend_window, predict["overlap"], predict["batch_size"])
    # numpy_on_cpu False: on the CPU (the dry run) torch sums there too, the device path's arithmetic
    windows = SlidingWindows(probability_fn, *settings, numpy_on_cpu=False)
    on_device = windows.blended(image)
    where = str(on_device.device)
    on_device_probs = on_device.cpu().numpy()
    on_host = host_blended_probabilities(probability_fn, image, *settings)
    same_bits = on_device_probs.shape == on_host.shape and np.array_equal(
        on_device_probs.view(np.uint32), on_host.view(np.uint32)
    )
    device_classes = windows.classes(image)
    same_classes = np.array_equal(device_classes, host_classes(probability_fn, image, *settings))
    differing = int((on_device_probs != on_host).sum()) if on_device_probs.shape == on_host.shape else -1
    figures = {"device": where, "identical_probabilities": same_bits, "identical_classes": same_classes}
    figures |= {"values_differing": differing, "image_size": ctx.sizes.blend_size, "window": ctx.sizes.blend_window}
    summary = f"{ctx.sizes.blend_size} px image, blended on {where}: probabilities and classes bit-identical to host's"
    problems = (
        [] if same_bits and same_classes else [f"{differing} probabilities differ, classes equal: {same_classes}"]
    )
    return ctx.outcome(problems, summary, figures)


def check_benchmark(ctx: Context) -> tuple:
    """benchmarks.gpu's section (what `make bench` runs on a GPU), quick mode, with the bf16 peak measured here."""
    if not ctx.cuda:
        return SKIP, "no CUDA (make bench's GPU section runs only on CUDA)", {}
    import io

    from benchmarks import gpu
    from benchmarks.speed_peaks import measure_peaks

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # its progress lines go to the log
        peaks = measure_peaks({})
        section = gpu.run_section("quick", peaks)
    ctx.log.write(printed.getvalue() + gpu.report(section))
    summary = gpu.summarise(section)
    return PASS, benchmark_line(section, summary), {"peaks": peaks, "section": section, "summary": summary}


def benchmark_line(section: dict, summary: dict) -> str:
    """The benchmark's verdict figure from benchmarks.gpu's section and its summary: one GPU's training rate and
    fraction of the bf16 matmul peak, the seconds per 2448 px image."""
    from benchmarks import gpu

    one = summary["training"][1]
    seconds = summary["inference_seconds_per_image"]
    return (
        f"training {one['images_per_second']:.1f} img/s ({gpu.TILE} px, batch {gpu.BATCH}), "
        f"{one['fraction_of_bf16_matmul_peak']:.0%} of the bf16 matmul peak ({section['bf16_matmul_gflops'] / 1000:.0f}"
        f" TFLOP/s); {seconds['device_blending']:.2f} s per {section['inference']['image_size']} px image "
        f"({seconds['host_blending']:.2f} s blending on the host)"
    )


def check_nccl(ctx: Context) -> tuple:
    """The trainer in 2 processes under torchrun, NCCL between 2 GPUs."""
    if not ctx.cuda or ctx.gpus < 2:
        return SKIP, f"{'no CUDA' if not ctx.cuda else f'{ctx.gpus} GPU'}: needs 2 GPUs", {}
    prepared_data(ctx)
    config = training_config(ctx, "nccl", "bf16", processes=2)
    (run,) = launch_trainings([config], ctx.log, ctx.remaining(), processes=2)
    return ctx.outcome(loss_problems(run), f"2 processes (NCCL): {losses(run)}", {"run": run})


def check_wheel_list(ctx: Context) -> tuple:
    """tools/gpu-wheels.txt at the lock's versions; everything this run imported on the machine or in the list."""
    imported = distributions_of(ctx.imported_modules | imported_modules())
    listed = set(read_pins(WHEEL_LIST))
    problems = list_problems() + coverage_problems(imported, listed, provided_by_machine(), replacements())
    if ctx.wheels is not None:
        problems += wheel_folder_problems(ctx.wheels)
    figures = {"listed": read_pins(WHEEL_LIST), "imported": sorted(imported), "machine_packages": MACHINE_PACKAGES}
    names = ", ".join(f"{name}=={version}" for name, version in read_pins(WHEEL_LIST).items())
    summary = f"{names} as in {LOCK.name}; the {len(imported)} packages this run imported are on the machine or listed"
    return (FAIL, "; ".join(problems), figures) if problems else (PASS, summary, figures)


CHECK_FUNCTIONS: dict[str, Callable[[Context], tuple]] = {
    "packages": check_packages,
    "train_bf16_deterministic": check_train_bf16,
    "train_fp16_gradscaler": check_train_fp16,
    "predict_cuda_vs_cpu": check_predict,
    "blending_device_vs_host": check_blending,
    "benchmark": check_benchmark,
    "nccl_two_processes": check_nccl,
    "wheel_list": check_wheel_list,
}
ALWAYS = ("packages", "wheel_list")  # cheap: they run even when the time is up


def run_check(ctx: Context, name: str) -> dict:
    """One check's result ({"status", "summary", "seconds", "figures"}), its verdict line said."""
    start = time.monotonic()
    if time.monotonic() > ctx.deadline and name not in ALWAYS:
        status, summary, figures = SKIP, "the time budget is spent", {}
    else:
        try:
            status, summary, figures = CHECK_FUNCTIONS[name](ctx)
        except CheckFailed as failure:
            status, summary, figures = FAIL, str(failure), {}
        except (Exception, SystemExit) as error:  # benchmarks stop with SystemExit; the other checks go on
            ctx.log.write(traceback.format_exc())
            first = (str(error).strip().splitlines() or [""])[0]
            status, summary, figures = FAIL, f"{type(error).__name__}: {first}"[:300], {}
    ctx.log.say(f"{status} {name}: {summary}")
    return {"status": status, "summary": summary, "seconds": round(time.monotonic() - start, 2), "figures": figures}


def environment(ctx: Context) -> dict:
    import torch

    commit = None
    with contextlib.suppress(OSError):  # a copy of the working tree without git or .git
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        commit = git.stdout.strip() or None
    return {
        "gpu": torch.cuda.get_device_name() if ctx.cuda else None,
        "gpus": ctx.gpus,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if ctx.cuda else None,
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "commit": commit,
    }


def run_checks(ctx: Context, budget: float, out: Path) -> dict:
    """Every check in order; the report that gpu_check.json holds, written again after each check (`complete`
    false until the last), so that a run cut short still leaves what it found."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    start = time.monotonic()
    machine = environment(ctx)
    ctx.log.say("gpu_check: " + ("a dry run on the CPU" if ctx.dry else f"{ctx.gpus} x {machine['gpu']}"))
    results: dict[str, dict] = {}
    for name in CHECKS:
        results[name] = run_check(ctx, name)
        statuses = [result["status"] for result in results.values()]
        counts = {status: statuses.count(status) for status in (PASS, FAIL, SKIP)}
        report = {
            "format": JSON_FORMAT,
            "mode": "dry-run" if ctx.dry else "gpu",
            "complete": len(results) == len(CHECKS),
            "verdict": FAIL if counts[FAIL] else PASS,
            "counts": counts,
            "started": started,
            "seconds": round(time.monotonic() - start, 1),
            "budget_seconds": budget,
            "environment": machine,
            "sizes": vars(ctx.sizes),
            "checks": results,
        }
        write_report(out / JSON_NAME, report)
    return report


def write_report(path: Path, report: dict) -> None:
    from landcover.io.outputs import atomic_file

    with atomic_file(path) as staging:
        staging.write_text(json.dumps(report, indent=2, default=str) + "\n")


def output_folder(given: str | None) -> Path:
    """--out, else $GPU_CHECK_OUT, else $OUT (what a lent machine brings back), else gpu-check/ (git-ignored)."""
    return Path(given or os.environ.get("GPU_CHECK_OUT") or os.environ.get("OUT") or DEFAULT_OUT)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.gpu_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="on the CPU at tiny sizes (also GPU_CHECK_DRY=1)")
    parser.add_argument("--out", help="folder for gpu_check.json and gpu_check.log")
    parser.add_argument("--wheels", type=Path, help="the carried wheel folder, checked against the list")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, help="seconds the checks may take")
    parser.add_argument("--log-append", action="store_true", help="append to the log (tools/gpu_check.sh's pip)")
    parser.add_argument("--wheel-requirements", action="store_true", help="print the lock's entries of the list")
    parser.add_argument("--check-wheel-folder", type=Path, metavar="DIR", help="downloaded wheels against the list")
    parser.add_argument("--train", metavar="CONFIG", help=argparse.SUPPRESS)  # a training process's
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.train:
        result = run_training(json.loads(args.train))
        if result:  # rank 0
            print(json.dumps(result))
        return 0
    if args.wheel_requirements:
        sys.stdout.write(wheel_requirements())
        return 0
    if args.check_wheel_folder:
        problems = list_problems() + wheel_folder_problems(args.check_wheel_folder)
        if problems:
            raise SystemExit("\n".join(f"error: {problem}" for problem in problems))
        wheels = sorted(args.check_wheel_folder.glob("*.whl"))
        total = sum(wheel.stat().st_size for wheel in wheels) / 2**20
        limit = MAX_WHEEL_BYTES / 2**20
        print(f"{args.check_wheel_folder}: {len(wheels)} wheels, {total:.2f} MiB (at most {limit:.0f} MiB)")
        print("\n".join(f"  {wheel.name}  {wheel.stat().st_size / 2**20:.2f} MiB" for wheel in wheels))
        return 0
    return run_main(args)


def run_main(args: argparse.Namespace) -> int:
    import torch

    dry = args.dry_run or os.environ.get("GPU_CHECK_DRY") == "1"
    if not dry and not torch.cuda.is_available():
        raise SystemExit("error: tools/gpu_check: no CUDA device here; --dry-run runs its plumbing on the CPU")
    out = output_folder(args.out)
    log = Reporter(out, args.log_append)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        ctx = Context(
            dry=dry,
            sizes=DRY_SIZES if dry else GPU_SIZES,
            work=Path(work),
            log=log,
            deadline=time.monotonic() + args.budget,
            cuda=not dry,
            gpus=0 if dry else torch.cuda.device_count(),
            wheels=args.wheels,
        )
        report = run_checks(ctx, args.budget, out)
    counts = report["counts"]
    log.say(
        f"gpu_check {report['verdict']}: {counts[PASS]} PASS, {counts[FAIL]} FAIL, {counts[SKIP]} SKIP in "
        f"{report['seconds']:.0f} s -> {out / JSON_NAME}, {out / LOG_NAME}"
    )
    return 1 if counts[FAIL] else 0


if __name__ == "__main__":
    sys.exit(main())
