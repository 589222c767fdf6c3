"""The region engine's cost and its faults, measured: Dask.distributed against a plain loop, two worker
processes against one, and a worker killed with SIGKILL mid-run.

    .venv/bin/python -m benchmarks.region_overhead [--size 2048] [--scenes 8] [--model PATH.onnx]
                                                   [--window 256] [--rounds 2] [--skip-overhead] [--skip-cluster]

1. overhead: SCENES scenes of SIZE x SIZE px (3-band uint8 GeoTIFFs, UTM) mapped by a plain loop of
   map_file in this process (the model loaded once, before the clock starts), then by the region engine
   (run_scenes) on a local cluster of one worker process with the same cores, each warmed up by a first
   scene (the engine's loads the worker's model); both into fresh folders, in alternating rounds (--rounds),
   the fastest of each counted; by wall time and by CPU time (the loop's process against the worker's plus
   this process's, which runs the scheduler and the client), steadier where other work shares the machine.
   It prints each one's seconds, the engine's extra seconds per scene and as a fraction of the loop's (the
   target: under 5%), and checks that both wrote the same class maps.
   Cluster start and model load are printed apart: they are paid once per run, not per scene.
2. cluster: a `dask scheduler` and two `dask worker --no-nanny` processes started on localhost, as two
   machines would join a cluster; `landcover-region --scheduler` maps the scenes with both, and its files
   are compared byte for byte with those of the one-worker run of 1. Then again on a fresh cluster, with one
   worker killed with SIGKILL once a scene is done: the run must still finish, every scene mapped once (one
   record each, one result each in region.json), no staging file left, every file the same as the
   one-worker run's.

The model is --model (an exported ONNX model, run by onnxruntime) or, by default, a one-layer stand-in with
the export's interface (tiny_onnx_model): the per-scene work is then mostly reading, blending and writing, so
the engine's share of the time is larger than with the real network, not smaller.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, benchmark_parser
from landcover.data.palette import ClassTable


def tiny_onnx_model(path: Path, table: ClassTable, seed: int = 0) -> Path:
    """An ONNX model with the export stage's interface (uint8 NHWC in, probabilities out, the class table in
    its metadata) whose network is one 1x1 convolution: it loads in milliseconds and maps any scene fast."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from landcover.data.scaling import UINT8_RGB
    from landcover.inference.export import INPUT_NAME, OUTPUT_NAME, model_metadata, with_metadata
    from landcover.model.checkpoint import ModelInterface

    classes = len(table)
    weights = np.random.default_rng(seed).normal(size=(classes, 3, 1, 1)).astype(np.float32) / 64
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "weights", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", classes, "height", "width"])],
        initializer=[
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(np.zeros(classes, np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    interface = ModelInterface(table, UINT8_RGB, 64, "0" * 64)
    Path(path).write_bytes(with_metadata(model.SerializeToString(), model_metadata(interface, "fp32", {})))
    return Path(path)


def write_scenes(folder: Path, count: int, size: int) -> list[Path]:
    """`count` 3-band uint8 GeoTIFFs of size x size px side by side in UTM 33N, 1 m pixels, smooth random colours."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        rng = np.random.default_rng(k)
        coarse = rng.integers(0, 256, (3, size // 32 + 1, size // 32 + 1), dtype=np.uint8)
        bands = coarse.repeat(32, axis=1).repeat(32, axis=2)[:, :size, :size]
        bands = np.ascontiguousarray(bands ^ rng.integers(0, 16, bands.shape, dtype=np.uint8))
        path = folder / f"scene{k:03d}.tif"
        transform = Affine(1.0, 0, 500_000.0 + k * size, 0, -1.0, 5_000_000.0)
        with rasterio.open(
            path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=CRS.from_epsg(32633),
            transform=transform, tiled=True, blockxsize=256, blockysize=256,
        ) as dataset:  # fmt: skip
            dataset.write(bands)
        paths.append(path)
    return paths


def write_params(path: Path, window: int) -> Path:
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["predict"] |= {"window": window, "runtime": "onnxruntime", "int8": False}
    path.write_text(yaml.safe_dump(params))
    return path


def measure_overhead(work: Path, scenes: list[Path], model: Path, params_path: Path, rounds: int) -> dict:
    """Seconds of the plain loop and of the engine (one worker process) over the same scenes, in alternating
    rounds after a warm-up scene of each (the fastest round of each counts: other work on the machine only
    ever adds time)."""
    from landcover.geo.mapping import MapOptions, map_file
    from landcover.inference.runtimes import choose_runtime, runtime_probabilities
    from landcover.io.params import PredictParams, load_params, read_section
    from landcover.region.engine import ModelSpec, local_plan, region_client, run_scenes
    from landcover.region.inputs import region_scenes

    params = read_section(load_params(params_path), "predict", PredictParams)
    options, cores = MapOptions(), os.cpu_count() or 1
    import torch

    runtime = choose_runtime(params, torch.device("cpu"), None, model, work, cores)
    probability_fn = runtime_probabilities(runtime, params)
    warm_up = write_scenes(work / "warm-up", 1, 256)[0]
    map_file(warm_up, work / "warm-up-loop", probability_fn, runtime.interface.table, params, options)
    plan, spec = local_plan(1), ModelSpec(None, model, work, cores)
    inputs = region_scenes([str(path) for path in scenes])
    loop_seconds, engine_seconds, loop_cpu, engine_cpu = [], [], [], []
    started = time.perf_counter()
    with region_client(None, plan) as client:
        cluster_seconds = time.perf_counter() - started
        started = time.perf_counter()
        first = region_scenes([str(warm_up)])
        run_scenes(client, first, work / "warm-up-engine", spec, params, options, 0, None, False)
        load_seconds = time.perf_counter() - started
        for round_ in range(rounds):
            started, cpu = time.perf_counter(), process_cpu_seconds()
            for path in scenes:
                map_file(path, work / f"loop{round_}", probability_fn, runtime.interface.table, params, options)
            loop_seconds.append(time.perf_counter() - started)
            loop_cpu.append(process_cpu_seconds() - cpu)
            cpu, workers = process_cpu_seconds(), sum(client.run(process_cpu_seconds).values())
            run = run_scenes(client, inputs, work / f"engine{round_}", spec, params, options, 0, None, False)
            engine_seconds.append(run.seconds)
            # the worker's CPU, and this process's: the scheduler and the client run here
            engine_cpu.append(sum(client.run(process_cpu_seconds).values()) - workers + process_cpu_seconds() - cpu)
    same = all((work / "loop0" / p.name).read_bytes() == (work / "engine0" / p.name).read_bytes() for p in scenes)
    loop, engine = min(loop_seconds), min(engine_seconds)
    return {
        "loop_cpu_seconds": loop_cpu,
        "engine_cpu_seconds": engine_cpu,
        "cpu_overhead_seconds_per_scene": (min(engine_cpu) - min(loop_cpu)) / len(scenes),
        "cpu_overhead_fraction": min(engine_cpu) / min(loop_cpu) - 1,
        "scenes": len(scenes),
        "rounds": rounds,
        "loop_seconds": loop_seconds,
        "engine_seconds": engine_seconds,
        "failed": len(run.failed),
        "cluster_start_seconds": cluster_seconds,
        "first_scene_with_model_load_seconds": load_seconds,
        "overhead_seconds_per_scene": (engine - loop) / len(scenes),
        "overhead_fraction": engine / loop - 1,
        "same_class_maps": same,
    }


def process_cpu_seconds() -> float:
    """CPU seconds (user and system) this process has used: steadier than wall time where other work shares
    the machine."""
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cluster_environment() -> dict[str, str]:
    """The environment of the localhost cluster's processes: as docs/region.md starts workers."""
    from landcover.region.engine import WORKER_MALLOC

    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", **WORKER_MALLOC}


def quiet_process(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=cluster_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class LocalhostCluster:
    """A `dask scheduler` and `workers` x `dask worker --no-nanny` processes on 127.0.0.1, as machines joining a
    cluster start them (without a nanny a killed worker stays dead, as a lost machine does)."""

    def __init__(self, workers: int) -> None:
        dask = str(Path(sys.executable).parent / "dask")
        self.address = f"tcp://127.0.0.1:{free_port()}"
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = quiet_process([dask, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"])
        self.workers = [
            quiet_process(
                [dask, "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{k}"]
            )
            for k in range(workers)
        ]
        import distributed

        with distributed.Client(self.address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=180)

    def close(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def region_command(scenes: Path, out: Path, model: Path, params: Path, *where: str) -> list[str]:
    return [
        *(sys.executable, "-m", "landcover.cli.region", "--model", str(model), "--input", str(scenes)),
        *("--output", str(out), "--params", str(params), "--no-progress", *where),
    ]


def differing_files(reference: Path, other: Path) -> list[str]:
    """Files (relative paths) that are not byte-identical in both folders, or in one only; region.json (timings
    and worker addresses) left out."""

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != "region.json"
        }

    one, two = files(reference), files(other)
    return sorted(name for name in one.keys() | two.keys() if one.get(name) != two.get(name))


def staging_left(out: Path) -> list[str]:
    from landcover.io.outputs import STAGING_NAME

    return [str(p) for p in out.rglob("*") if STAGING_NAME.match(p.name)]


def measure_cluster(work: Path, scenes: Path, count: int, model: Path, params: Path) -> dict:
    """One local worker, two worker processes on localhost, two with one SIGKILLed: outputs compared."""
    env = cluster_environment()
    started = time.perf_counter()
    one = subprocess.run(
        region_command(scenes, work / "one", model, params, "--workers", "1"), env=env, capture_output=True, text=True
    )
    one_seconds = time.perf_counter() - started
    if one.returncode != 0:
        raise RuntimeError(f"the one-worker run failed: {one.stderr[-2000:]}")
    cluster = LocalhostCluster(2)
    try:
        started = time.perf_counter()
        two = subprocess.run(
            region_command(scenes, work / "two", model, params, "--scheduler", cluster.address),
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        two_seconds = time.perf_counter() - started
    finally:
        cluster.close()
    two_summary = json.loads((work / "two" / "region.json").read_text()) if two.returncode == 0 else {}
    killed = measure_kill(work, scenes, count, model, params)
    return {
        "one_worker_seconds": one_seconds,
        "two_workers_seconds": two_seconds,
        "two_workers_returncode": two.returncode,
        "two_workers_scenes_per_worker": sorted(w["scenes_mapped"] for w in two_summary.get("workers", {}).values()),
        "two_workers_differing_files": differing_files(work / "one", work / "two"),
        **killed,
    }


def measure_kill(work: Path, scenes: Path, count: int, model: Path, params: Path) -> dict:
    """A run on two worker processes, one of them SIGKILLed once the first scene is done."""
    cluster = LocalhostCluster(2)
    out = work / "killed"
    try:
        run = subprocess.Popen(
            region_command(scenes, out, model, params, "--scheduler", cluster.address),
            env=cluster_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        while not list((out / "scenes").glob("*.record.json")) and run.poll() is None:
            time.sleep(0.02)
        done_at_kill = len(list((out / "scenes").glob("*.record.json")))
        os.kill(cluster.workers[0].pid, signal.SIGKILL)
        _, stderr = run.communicate(timeout=3600)
    finally:
        cluster.close()
    summary = json.loads((out / "region.json").read_text()) if run.returncode == 0 else {}
    results = summary.get("scene_results", [])
    return {
        "killed_returncode": run.returncode,
        "killed_stderr_tail": stderr[-500:] if run.returncode else "",
        "killed_scenes_done_at_kill": done_at_kill,
        "killed_results_per_scene": sorted(Counter(r["scene"] for r in results).values()) == [1] * count,
        "killed_records": len(list((out / "scenes").glob("*.record.json"))),
        "killed_statuses": {status: sum(r["status"] == status for r in results) for status in ("mapped", "skipped")},
        "killed_staging_left": staging_left(out),
        "killed_differing_files": differing_files(work / "one", out),
    }


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("benchmarks.region_overhead", __doc__)
    parser.add_argument("--size", type=int, default=2048, help="scene side in pixels (default 2048)")
    parser.add_argument("--scenes", type=int, default=8, help="scenes (default 8)")
    parser.add_argument("--model", type=Path, help="an exported ONNX model (default: the one-layer stand-in)")
    parser.add_argument("--window", type=int, default=256, help="predict.window (default 256)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of loop and engine (default 2)")
    parser.add_argument("--skip-overhead", action="store_true", help="leave out 1.")
    parser.add_argument("--skip-cluster", action="store_true", help="leave out 2.")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="region-bench-"))
    try:
        model = args.model or tiny_onnx_model(work / "tiny.onnx", ClassTable.deepglobe())
        params = write_params(work / "params.yaml", args.window)
        scenes = write_scenes(work / "scenes", args.scenes, args.size)
        results: dict = {"size": args.size, "scenes": args.scenes, "model": str(args.model or "one-layer stand-in"),
                         "load_average": os.getloadavg()}  # fmt: skip
        if not args.skip_overhead:
            results["overhead"] = measure_overhead(work, scenes, model, params, args.rounds)
            report_overhead(results["overhead"])
        if not args.skip_cluster:
            results["cluster"] = measure_cluster(work, work / "scenes", args.scenes, model, params)
            report_cluster(results["cluster"])
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report_overhead(found: dict) -> None:
    print(
        f"overhead: {found['scenes']} scenes, fastest of {found['rounds']} rounds: plain loop "
        f"{min(found['loop_seconds']):.2f} s, engine {min(found['engine_seconds']):.2f} s: "
        f"{found['overhead_seconds_per_scene'] * 1000:+.0f} ms a scene, {found['overhead_fraction']:+.1%} "
        f"(target < 5%); by CPU time (the worker's, the scheduler's and the client's against the loop's): "
        f"{found['cpu_overhead_seconds_per_scene'] * 1000:+.0f} ms a scene, {found['cpu_overhead_fraction']:+.1%}; "
        f"cluster start {found['cluster_start_seconds']:.1f} s and first scene with the model load "
        f"{found['first_scene_with_model_load_seconds']:.1f} s, once a run; same class maps: {found['same_class_maps']}"
    )


def report_cluster(found: dict) -> None:
    print(
        f"two workers (separate processes): {found['two_workers_seconds']:.1f} s against one worker's "
        f"{found['one_worker_seconds']:.1f} s (both with process and cluster start), scenes per worker "
        f"{found['two_workers_scenes_per_worker']}, files differing from one worker's: "
        f"{found['two_workers_differing_files'] or 'none'}"
    )
    print(
        f"SIGKILL of a worker after {found['killed_scenes_done_at_kill']} scene(s): exit {found['killed_returncode']}, "
        f"{found['killed_records']} records, one result per scene: {found['killed_results_per_scene']}, "
        f"statuses {found['killed_statuses']}, staging files left: {len(found['killed_staging_left'])}, files "
        f"differing from one worker's: {found['killed_differing_files'] or 'none'}"
    )


if __name__ == "__main__":
    main()
