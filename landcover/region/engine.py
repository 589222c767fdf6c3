"""A region's scenes mapped on Dask.distributed: one scene one task, on a local cluster or an existing one.

- Each worker loads the model once, at its first scene, and keeps it (`worker_model`: a cache per worker
  process and worker): later scenes on that worker reuse it.
- A scene is `map_file` as the mapping command runs it (every output written whole or not at all), then its
  resume record (records.py). A task first takes its source's identity (io.sources: a local file's sha256,
  rehashed only where the file changed since its record; a remote object's ETag and size) and skips the scene
  if its record matches. A remote raster is read in place by GDAL, a range at a time.
- A failing scene is retried (`retries`), then reported failed with its one-line error while the others go
  on. A worker that dies mid-scene leaves only staging files, which the next writer of those outputs (or the
  end of the run) removes; the scheduler gives its scene to another worker.
- GPUs are worker resources: workers started with `--resources GPU=1` get scenes that ask for one GPU each.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from landcover.data.palette import ClassTable
from landcover.geo.mapping import MapOptions, map_file, written_as_raster
from landcover.geo.stac import ModelFacts, item_name, utc_now, write_scene_records
from landcover.inference.blending import ProbabilityFn
from landcover.inference.runtimes import choose_runtime, exported_path, run_label, runtime_probabilities
from landcover.io.errors import ENVIRONMENT_ERRNOS, PipelineError, one_line
from landcover.io.outputs import STAGING_NAME, process_alive
from landcover.io.params import PredictParams
from landcover.model.devices import choose_device
from landcover.region.inputs import SceneInput
from landcover.region.records import cached_identity, mapping_settings, record_key, record_matches, write_record

SCENES_FOLDER = "scenes"  # per-scene outputs and records, inside --output
# Dask starts worker processes with MALLOC_TRIM_THRESHOLD_=65536, which also fixes glibc's mmap threshold at
# 128 KiB: every strip's large arrays are then mapped fresh and page-faulted in, about 10% of a scene's time
# here. These values keep freed memory for the next strip (up to 128 MiB at the heap's top, arrays up to
# 32 MiB on the heap), as a plain process's adaptive thresholds end up doing.
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": "134217728", "MALLOC_MMAP_THRESHOLD_": "33554432"}


def require_distributed():
    """dask.distributed, or one line saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise PipelineError(
            "landcover-region runs on Dask.distributed, an optional dependency: install it with `make install-region`"
        ) from None
    return distributed


@dataclass(frozen=True)
class ModelSpec:
    """Which model the workers load, as the mapping command's flags name it."""

    checkpoint: Path | None
    model: Path | None
    export_dir: Path
    threads: int | None = None  # each worker's intra-op threads; None: the runtime's default


@dataclass
class LoadedModel:
    probability_fn: ProbabilityFn
    table: ClassTable
    identity: dict  # the runtime and the sha256 of the file it runs: part of each scene's record
    label: str  # run_label, for the summary
    facts: ModelFacts | None = None  # what the scenes' STAC says of the model (its MLM Item), where known


# worker (address) and model -> the loaded model: one load per worker, whatever number of scenes
_LOADED: dict[tuple, LoadedModel] = {}
# worker (address) -> models it has loaded since it started: reported with each scene, so that a load at a
# scene that then failed is counted too
_LOADS: dict[str, int] = {}
_LOADING = threading.Lock()


def worker_identity() -> tuple[str, object]:
    """(address, name) of the Dask worker running this code; ("", None) outside a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return "", None
    return worker.address, worker.name


def worker_device() -> torch.device:
    """The device this worker maps on: a CUDA GPU where there is one (on a machine with several, the
    local cluster's worker n takes GPU n modulo their number), else the CPU."""
    device = choose_device("auto")
    if device.type == "cuda":
        _, name = worker_identity()
        count = torch.cuda.device_count()
        if isinstance(name, int) and count > 1:
            device = torch.device("cuda", name % count)
            torch.cuda.set_device(device)
    return device


def load_model(spec: ModelSpec, params: PredictParams) -> LoadedModel:
    if spec.threads:
        # torch's own ops (blending, argmax) too: a Dask worker process starts with one thread whatever its
        # OMP_NUM_THREADS says
        torch.set_num_threads(spec.threads)
    runtime = choose_runtime(params, worker_device(), spec.checkpoint, spec.model, spec.export_dir, spec.threads)
    probability_fn = runtime_probabilities(runtime, params)
    facts = ModelFacts.of(runtime, params)
    identity = {"runtime": runtime.name, "file": runtime.model.name, "sha256": facts.sha256}
    return LoadedModel(probability_fn, runtime.interface.table, identity, run_label(params, runtime), facts)


def model_files(spec: ModelSpec) -> tuple:
    """(path, size, modification time) of each file the spec may load: a model file replaced at the same path
    (a worker of a long-lived cluster, a new export) is loaded again, without hashing it for every scene."""
    paths = [spec.checkpoint, spec.model, exported_path(spec.export_dir, False), exported_path(spec.export_dir, True)]
    found = []
    for path in paths:
        if path is not None and path.is_file():
            stat = path.stat()
            found.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def worker_model(spec: ModelSpec, params: PredictParams) -> tuple[LoadedModel, bool]:
    """This worker's model, loaded at its first scene; and whether this call loaded it."""
    worker = (worker_identity()[0], spec, params)
    key = (*worker, model_files(spec))
    with _LOADING:
        if key in _LOADED:
            return _LOADED[key], False
        for stale in [other for other in _LOADED if other[:3] == worker]:
            del _LOADED[stale]  # the files changed: the old model goes
        _LOADED[key] = load_model(spec, params)
        _LOADS[worker[0]] = _LOADS.get(worker[0], 0) + 1
        return _LOADED[key], True


class SceneFailed(Exception):
    """A scene's failure as one line, raised on the worker: plain to pickle, whatever the original error was."""


def map_scene(scene: SceneInput, out_dir: Path, spec: ModelSpec, params: PredictParams, options: MapOptions) -> dict:
    """One task: the scene mapped into `out_dir` with this worker's model, unless its record says it already is;
    SceneFailed with the error's one line if it cannot be (the scheduler then retries it)."""
    try:
        return _map_scene(scene, out_dir, spec, params, options)
    except Exception as error:  # any error of one scene is that scene's failure; the run goes on
        message = describe_failure(error)
    raise SceneFailed(message)  # outside the handler: no chained original to pickle


def _map_scene(scene: SceneInput, out_dir: Path, spec: ModelSpec, params: PredictParams, options: MapOptions) -> dict:
    started = time.perf_counter()
    loaded, loaded_here = worker_model(spec, params)
    identity = scene.source.identity(cached_identity(out_dir, scene.id))
    key = record_key(identity.content, loaded.identity, mapping_settings(params, options))
    record = record_matches(out_dir, scene.id, key)
    if record is not None:
        outputs = record["outputs"]
        if item_name(scene.id) not in outputs:  # outputs of a version that wrote no STAC: their Item now
            is_raster = record["scene"]["map"].endswith(".tif")
            names = write_scene_records(
                out_dir, scene.id, is_raster, scene.source, loaded.table, options, loaded.facts, scene.acquired,
                utc_now(),
            )  # fmt: skip
            outputs = sorted(names.values())
        if identity.seen != record.get("source_seen") or outputs != record["outputs"]:
            # the input seen anew (rewritten with the same bytes: no hashing next time), or the Item added
            write_record(out_dir, scene.id, key, outputs, record["scene"], identity.seen)
        return scene_result(scene, "skipped", record["scene"], started, loaded_here, loaded.label)
    mapped_at = utc_now()
    with scene.source.readable() as where:
        report = map_file(where, out_dir, loaded.probability_fn, loaded.table, params, options, scene.source)
        names = write_scene_records(
            out_dir, scene.id, written_as_raster(where), scene.source, loaded.table, options, loaded.facts,
            scene.acquired, mapped_at,
        )  # fmt: skip
    facts = {"width": report["width"], "height": report["height"], "crs": report["crs"], "map": names["classes"]}
    write_record(out_dir, scene.id, key, sorted(names.values()), facts, identity.seen)
    return scene_result(scene, "mapped", facts, started, loaded_here, loaded.label)


def scene_result(scene: SceneInput, status: str, facts: dict, started: float, loaded_here: bool, label: str) -> dict:
    address, _ = worker_identity()
    return {
        "scene": scene.id,
        "source": str(scene.source),
        "status": status,
        **facts,
        "megapixels": facts["width"] * facts["height"] / 1e6,
        "seconds": time.perf_counter() - started,
        "worker": address,
        "pid": os.getpid(),
        "model_loaded": loaded_here,
        "worker_model_loads": _LOADS.get(address, 0),
        "run": label,
    }


def describe_failure(error: BaseException) -> str:
    """A failed scene's error as one line: bad input in its own words, anything else with its type."""
    if isinstance(error, SceneFailed | PipelineError) or (
        isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS
    ):
        return one_line(error)
    if type(error).__name__ == "KilledWorker":
        return "the workers mapping it died (dask's KilledWorker: it was tried on a new worker each time)"
    return " ".join(f"{type(error).__name__}: {error}".split())


@dataclass
class RegionRun:
    """What a run over the scenes gave: each finished scene's result (by id) and each failed one's error."""

    results: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class RegionProgress:
    """One bar over the scenes: done (mapped or skipped), failed, remaining, megapixels/s of the mapped ones."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.bar = tqdm(total=total, desc="region", unit="scene", disable=not enabled, dynamic_ncols=True)
        self.total, self.started = total, time.perf_counter()
        self.mapped = self.skipped = self.failed = 0
        self.megapixels = 0.0

    def add(self, result: dict | None) -> None:
        if result is None:
            self.failed += 1
        elif result["status"] == "skipped":
            self.skipped += 1
        else:
            self.mapped += 1
            self.megapixels += result["megapixels"]
        done = self.mapped + self.skipped
        rate = self.megapixels / max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(
            f"done {done} ({self.skipped} resumed), failed {self.failed}, "
            f"remaining {self.total - done - self.failed}, {rate:.2f} MP/s",
            refresh=False,
        )
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_scenes(
    client,
    scenes: Sequence[SceneInput],
    out_dir: Path,
    spec: ModelSpec,
    params: PredictParams,
    options: MapOptions,
    retries: int = 2,
    resources: dict | None = None,
    progress: bool = True,
) -> RegionRun:
    """Every scene as one task on `client`'s cluster; failures are collected, not raised."""
    distributed = require_distributed()
    token = uuid.uuid4().hex[:8]  # task keys unique to this run, so a rerun on one cluster recomputes
    started = time.perf_counter()
    futures = {
        client.submit(
            map_scene,
            scene,
            out_dir,
            spec,
            params,
            options,
            key=f"map-{scene.id}-{token}",
            retries=retries,
            resources=resources,
            pure=False,
        ): scene
        for scene in scenes
    }
    run = RegionRun()
    bar = RegionProgress(len(scenes), progress)
    try:
        for future in distributed.as_completed(futures):
            scene = futures[future]
            if future.status == "finished":
                run.results[scene.id] = future.result()
            else:
                error = future.exception() if future.status == "error" else None
                run.failed[scene.id] = describe_failure(error) if error is not None else f"task {future.status}"
            bar.add(run.results.get(scene.id))
            future.release()
    finally:
        bar.close()
    run.seconds = time.perf_counter() - started
    return run


def remove_dead_staging(out_dir: Path) -> list[Path]:
    """Staging files that workers killed mid-scene left in `out_dir` (their process gone), removed; with the
    files GDAL writes beside a staging file (`<staging>.ovr.tmp`: a COG's overviews being built)."""
    removed = []
    for path in Path(out_dir).iterdir() if Path(out_dir).is_dir() else []:
        match = STAGING_NAME.match(path.name)
        if match and not process_alive(int(match["pid"])):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def gpus_here() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass(frozen=True)
class ClusterPlan:
    """A local cluster's shape: workers, each one's runtime threads, GPUs as worker resources."""

    workers: int
    threads: int | None
    gpus: int

    @property
    def worker_resources(self) -> dict | None:
        return {"GPU": 1} if self.gpus else None

    @property
    def worker_environment(self) -> dict[str, str]:
        """Each worker process's: its share of the cores for OpenMP, no per-window bars (the run has one), and
        glibc's allocator keeping freed memory (WORKER_MALLOC)."""
        return WORKER_MALLOC | {"TQDM_DISABLE": "1"} | ({"OMP_NUM_THREADS": str(self.threads)} if self.threads else {})


def local_plan(workers: int | None) -> ClusterPlan:
    """A worker per GPU where there are GPUs; on CPUs one worker per 4 cores (each with its share of them)."""
    gpus = gpus_here()
    cores = os.cpu_count() or 1
    count = workers or (gpus if gpus else max(1, cores // 4))
    return ClusterPlan(count, None if gpus else max(1, cores // count), gpus)


@contextmanager
def region_client(scheduler: str | None, plan: ClusterPlan) -> Iterator:
    """A client of the cluster at `scheduler`, or of a local cluster of `plan` started here and closed on leaving."""
    distributed = require_distributed()
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout="30s")
        except OSError as error:
            raise PipelineError(f"--scheduler {scheduler}: cannot reach it ({error})") from None
        with client:
            yield client
        return
    import dask

    # set before each worker process starts (Dask's nanny puts its pre-spawn environment over any other then:
    # OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_=65536), so that OpenMP and glibc read ours
    environment = dask.config.get("distributed.nanny.pre-spawn-environ", {}) | plan.worker_environment
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environment}),
        distributed.LocalCluster(
            n_workers=plan.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            resources=plan.worker_resources,
            silence_logs=logging.CRITICAL,  # a failed scene is reported once, by run_scenes
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def scene_resources(client) -> dict | None:
    """{"GPU": 1} where the cluster's workers offer GPUs as a resource (every scene then takes one), else None."""
    workers = client.scheduler_info().get("workers", {}).values()
    return {"GPU": 1} if any("GPU" in worker.get("resources", {}) for worker in workers) else None
