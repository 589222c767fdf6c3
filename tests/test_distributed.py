"""Training in several processes through torchrun, on the CPU with gloo: one set of outputs from rank 0,
reproducible bytes, the same model as one process on the same global batches, a lost rank fails the
stage, two "nodes" on localhost give the bytes of one node, and the precision and process-count rules."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from landcover.data.datasets import ShardedSampler, contiguous_share, shard
from landcover.data.tilestore import TileStore, read_index
from landcover.io.errors import PipelineError
from landcover.io.outputs import process_alive
from landcover.io.params import AugmentParams, ModelParams, TrainParams, load_params, read_section
from landcover.model import devices
from landcover.model.checkpoint import load_checkpoint
from landcover.model.devices import resolve_precision
from landcover.model.ranks import Ranks
from landcover.training.distributed import data_parallel
from landcover.training.trainer import TrainingData, train
from stages import launch
from tests.conftest import REPO, prepare_tiny_sample

HELPER = REPO / "tests" / "distributed_helper.py"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A tiny sample through the data stages: 3 train and 3 val images of 64 px, 4 tiles of 32 px each."""
    root = tmp_path_factory.mktemp("prepared")
    prepare_tiny_sample(root, train={"epochs": 1, "batch_size": 2})
    assert len(read_index(root / "splits/train.csv")) == 12 and len(read_index(root / "splits/val.csv")) == 12
    return root


def params_file(prepared: Path, path: Path, **train_values) -> Path:
    params = load_params(prepared / "params.yaml")
    params["train"].update(train_values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def environment(**extra: str) -> dict:
    # One thread per process: two processes share this machine's cores.
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def stage_arguments(prepared: Path, out: Path, params: Path) -> list[str]:
    return [
        str(prepared / "tiles"),
        str(prepared / "encoded"),
        str(prepared / "splits"),
        str(out / "models"),
        "--live",
        str(out / "live"),
        "--params",
        str(params),
    ]


def torchrun(launch: list[str], program: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """`torchrun <launch> <program>`, started in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *launch, *program],
        cwd=cwd,
        env=env or environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_stage(prepared: Path, out: Path, processes: int, **train_values) -> subprocess.CompletedProcess:
    """The train stage as dvc.yaml runs it: stages.launch, which starts torchrun --standalone for several."""
    out.mkdir(parents=True, exist_ok=True)
    params = params_file(prepared, out.parent / f"{out.name}.yaml", processes=processes, **train_values)
    command = [sys.executable, "-m", "stages.launch", str(processes), "stages.train"]
    process = subprocess.Popen(
        [*command, *stage_arguments(prepared, out, params)],
        cwd=out,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    result = finished(process)
    assert result.returncode == 0, result.stderr
    return result


def hashes(out: Path) -> dict[str, str]:
    return {
        str(path.relative_to(out)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def two_processes(prepared, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("two") / "run"
    return out, run_stage(prepared, out, processes=2)


def test_shards_are_every_world_size_th_index_of_the_order_as_distributed_sampler_takes_them():
    order = [7, 3, 9, 0, 4, 8, 1]
    for world_size in (1, 2, 3, 4, 9):
        padded = [shard(order, rank, world_size, pad=True) for rank in range(world_size)]
        expected = [
            list(torch.utils.data.DistributedSampler(order, world_size, rank, shuffle=False))
            for rank in range(world_size)
        ]  # DistributedSampler's positions, mapped through the order
        assert padded == [[order[position] for position in positions] for positions in expected]
        assert len({len(share) for share in padded}) == 1  # every rank as many batches
        exact = [shard(order, rank, world_size, pad=False) for rank in range(world_size)]
        assert sorted(index for share in exact for index in share) == sorted(order)  # validation: each once
        assert [
            len(ShardedSampler(order, rank, world_size, pad)) for rank in range(world_size) for pad in (True, False)
        ] == [len(share) for pair in zip(padded, exact) for share in pair]
    assert shard(order, 0, 1, pad=True) == order  # one process: the order unchanged


@pytest.mark.parametrize("length", [0, 1, 5, 12, 27])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_validation_shares_are_contiguous_runs_covering_each_tile_once(length, world_size):
    shares = [contiguous_share(length, rank, world_size) for rank in range(world_size)]
    assert [index for share in shares for index in share] == list(range(length))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_two_processes_write_one_set_of_outputs_from_rank_0(two_processes):
    out, result = two_processes
    files = hashes(out)
    assert {
        "models/best.pt",
        "models/last.pt",
        "models/resume/best.pt",
        "models/resume/last.pt",
        "live/metrics.json",
    } <= set(files)
    assert not [name for name in files if name.endswith(".tmp") or not name.startswith(("models/", "live/"))]
    assert result.stdout.count("train: 1 epochs; last epoch val mIoU") == 1  # one summary line, from rank 0
    checkpoint = load_checkpoint(out / "models/last.pt")
    assert checkpoint["world_size"] == 2 and "train.processes" not in checkpoint["params"]
    metrics = json.loads((out / "live/metrics.json").read_text())
    assert metrics["step"] == 1 and "miou_land" in metrics["val"]


def test_two_processes_resume_a_two_process_run(prepared, two_processes, tmp_path):
    """Every rank loads the resume state; the run goes on from epoch 1 to 2 (ending bit-identical to an
    uninterrupted run is the single process's test: the same code, loading the same state on every rank)."""
    out, _ = two_processes
    shutil.copytree(out, tmp_path / "run")
    result = run_stage(prepared, tmp_path / "run", processes=2, epochs=2, resume=True)
    assert result.stdout.count("train: resuming from") == 1
    checkpoint = load_checkpoint(tmp_path / "run/models/last.pt")
    assert checkpoint["epoch"] == 2 and checkpoint["world_size"] == 2 and len(json.loads(checkpoint["history"])) == 2
    assert json.loads(checkpoint["history"])[0] == json.loads(load_checkpoint(out / "models/last.pt")["history"])[0]
    assert json.loads((tmp_path / "run/live/metrics.json").read_text())["step"] == 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_second_two_process_run_as_two_nodes_on_localhost_gives_identical_bytes(prepared, two_processes, tmp_path):
    """Two torchrun launchers, one process each, meeting at a c10d rendezvous, as on two machines: every output
    file is byte-identical to the module's one-node two-process run, so a run of two processes repeats to the
    byte, and however its processes are launched. And both ranks validate one model, rank 0's (the helper
    records the validated buffers; it changes nothing else)."""
    out, _ = two_processes
    run = tmp_path / "nodes"
    run.mkdir()
    params = params_file(prepared, tmp_path / "nodes.yaml", processes=1, nodes=2)
    launch = [
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--rdzv-id=test-nodes",
    ]
    buffers = tmp_path / "buffers"
    buffers.mkdir()
    env = environment(DDP_TEST_RECORD_BUFFERS=str(buffers))
    program = [str(HELPER), *stage_arguments(prepared, run, params)]
    launchers = [torchrun(launch, program, cwd=run, env=env) for _ in range(2)]
    for result in map(finished, launchers):
        assert result.returncode == 0, result.stderr
    assert hashes(run) == hashes(out)
    validated = [(buffers / f"rank{rank}.txt").read_text().split() for rank in (0, 1)]
    assert len(validated[0]) == 1 and validated[0] == validated[1]  # one epoch, the same buffers on both ranks


def test_two_processes_train_the_model_one_process_trains_on_the_same_global_batches(prepared, tmp_path, monkeypatch):
    """One process with batch 12 against two with batch 6 each: the same 12 tiles make the one optimizer step.

    The helper turns dropout off and has batch norm use its running statistics, so a sample's
    forward pass depends on nothing else in its batch (see tests/distributed_helper.py; CPU batch
    norm cannot be synchronised, PyTorch's SyncBatchNorm runs on GPUs only). The loss is cross-entropy:
    the mean of two halves' means is the whole batch's mean when the halves have as many pixels,
    which soft Dice over a batch is not. In fp32, what differs is only the order of the sums (in
    the convolutions' backward passes and the gradient all-reduce), so:
    - the averaged gradient, Adam's first moment after one step, agrees to 1e-4 relative (3.4e-5 measured);
    - the epoch's train and val metrics, from all-reduced confusion matrices, are equal (val shards not
      padded: each val tile counted once); the mean train loss to 1e-6 relative, the val loss (after the
      step) to 1e-5 (1.0e-6 measured).
    The weights after the step are not compared: Adam's first step moves each weight by about
    lr x sign(gradient), so a gradient within rounding of 0 can move either way.
    """
    two_out = tmp_path / "two"
    two_out.mkdir()
    params = params_file(prepared, tmp_path / "two.yaml", processes=2, batch_size=6, loss="ce", precision="fp32")
    process = torchrun(
        ["--standalone", "--nnodes=1", "--nproc_per_node=2"],
        [str(HELPER), *stage_arguments(prepared, two_out, params)],
        cwd=two_out,
        env=environment(DDP_TEST_BATCH_INDEPENDENT="1"),
    )
    # meanwhile the one process, here, with the helper's same changes
    monkeypatch.chdir(tmp_path)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with monkeypatch.context() as patch:
        from tests import distributed_helper

        patch.setattr(torch.nn.modules.batchnorm._BatchNorm, "forward", torch.nn.modules.batchnorm._BatchNorm.forward)
        patch.setattr(torch.nn.Dropout, "forward", torch.nn.Dropout.forward)
        distributed_helper.batch_independent()  # undone when the context ends
        model, train_params, augment, data = training_inputs(prepared, batch_size=12, loss="ce", precision="fp32")
        train(model, train_params, augment, data, tmp_path / "one/models", tmp_path / "one/live", progress=False)
    result = finished(process)
    assert result.returncode == 0, result.stderr
    one, two = load_checkpoint(tmp_path / "one/models/last.pt"), load_checkpoint(two_out / "models/last.pt")
    moments = [
        (one["optimizer"]["state"][key]["exp_avg"].double(), two["optimizer"]["state"][key]["exp_avg"].double())
        for key in one["optimizer"]["state"]
    ]
    assert one["optimizer"]["state"][0]["step"] == two["optimizer"]["state"][0]["step"] == 1
    worst = max(float((a - b).norm() / a.norm()) for a, b in moments if a.norm() > 0)
    assert worst < 1e-4, f"averaged gradients differ by {worst:.2e} (relative)"
    history_one, history_two = json.loads(one["history"]), json.loads(two["history"])
    for split_name in ("train", "val"):
        first, second = history_one[0][split_name], history_two[0][split_name]
        # train: the first step's forward, from equal weights; val: after the step, from weights within Adam's
        # sign noise of each other (above)
        assert second.pop("loss") == pytest.approx(first.pop("loss"), rel=1e-6 if split_name == "train" else 1e-5)
        assert second == first


def test_a_rank_killed_mid_epoch_fails_the_stage_and_publishes_nothing(prepared, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    params = params_file(prepared, tmp_path / "p.yaml", processes=2)
    result = finished(
        torchrun(
            ["--standalone", "--nnodes=1", "--nproc_per_node=2"],
            [str(HELPER), *stage_arguments(prepared, out, params)],
            cwd=out,
            env=environment(DDP_TEST_DIE_RANK="1"),
        )
    )
    assert result.returncode != 0
    # torchrun's report names the rank that failed first and how
    assert "rank      : 1 (local_rank: 1)" in result.stderr and "Signal 9 (SIGKILL)" in result.stderr
    assert not (out / "models/best.pt").exists() and not (out / "models/last.pt").exists()
    assert not (out / "models/resume/last.pt").exists()  # killed before its first epoch ended
    assert not [path for path in out.rglob("*") if path.name.endswith(".tmp")]


def training_inputs(prepared: Path, **train_values):
    params = load_params(prepared / "params.yaml")
    store = TileStore(prepared / "tiles", prepared / "encoded")
    data = TrainingData(
        read_index(prepared / "splits/train.csv"),
        read_index(prepared / "splits/val.csv"),
        store,
        store.class_table(),
        tile_size=32,
    )
    return (
        read_section(params, "model", ModelParams),
        dataclasses.replace(read_section(params, "train", TrainParams), **train_values),
        read_section(params, "augment", AugmentParams),
        data,
    )


def test_resume_refuses_a_state_of_another_number_of_processes(prepared, two_processes, tmp_path, monkeypatch):
    out, _ = two_processes
    monkeypatch.chdir(tmp_path)
    for name in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    model, train_params, augment, data = training_inputs(prepared, epochs=2, resume=True)
    with pytest.raises(
        PipelineError,
        match=r"resume/last.pt: was trained by 2 process\(es\), now 1 "
        r"\(train.processes x train.nodes\); resume with the same number",
    ):
        train(model, train_params, augment, data, out / "models", tmp_path / "live", progress=False)


def test_a_process_count_torchrun_did_not_start_is_refused(prepared, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    model, train_params, augment, data = training_inputs(prepared, processes=2)
    with pytest.raises(
        PipelineError,
        match=r"train.processes x train.nodes is 2 x 1 = 2 processes, but this is one "
        "process, not started by torchrun",
    ):
        train(model, train_params, augment, data, tmp_path / "models", tmp_path / "live", progress=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(PipelineError, match=r"= 2 processes, but torchrun started 3 \(WORLD_SIZE\)"):
        train(model, train_params, augment, data, tmp_path / "models", tmp_path / "live", progress=False)
    assert not (tmp_path / "models").exists() and not (tmp_path / "live").exists()


@pytest.mark.parametrize(
    "requested, device, native_bf16, expected",
    [
        ("auto", "cpu", True, "bf16"),
        ("auto", "cpu", False, "fp32"),
        ("auto", "cuda", True, "bf16"),
        ("auto", "cuda", False, "fp16"),  # pre-Ampere GPUs: fp16 with a GradScaler
        ("auto", "mps", False, "fp32"),
        ("bf16", "cpu", False, "bf16"),  # asked for explicitly: used, native or not
        ("fp32", "cuda", True, "fp32"),
        ("fp16", "cuda", True, "fp16"),
    ],
)
def test_precision_resolves_per_device(requested, device, native_bf16, expected, monkeypatch):
    monkeypatch.setattr(devices, "bf16_supported", lambda _: native_bf16)
    assert resolve_precision(requested, torch.device(device), "train.precision") == expected


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_fp16_off_cuda_is_refused(device):
    with pytest.raises(
        PipelineError,
        match=f"^params: train.precision fp16 needs a CUDA device, this run is on {device}; use auto, bf16 or fp32$",
    ):
        resolve_precision("fp16", torch.device(device), "train.precision")


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_autocast_runs_the_resolved_precision(precision, dtype):
    with devices.autocast(torch.device("cpu"), precision):
        assert torch.nn.functional.linear(torch.ones(1, 2), torch.ones(3, 2)).dtype == dtype


@pytest.mark.parametrize("unresolved", [True, False, "auto"])
def test_autocast_refuses_what_is_not_a_resolved_precision(unresolved):
    # A bool passed as the precision must not quietly run in fp32.
    with pytest.raises(ValueError, match="precision must be bf16, fp16 or fp32"):
        devices.autocast(torch.device("cpu"), unresolved)


def test_sync_batchnorm_on_cpu_processes_is_refused():
    with pytest.raises(PipelineError, match="train.sync_batchnorm needs CUDA devices"):
        data_parallel(torch.nn.BatchNorm2d(3), Ranks(0, 2, device=torch.device("cpu")), sync_batchnorm=True)
    model = torch.nn.BatchNorm2d(3)
    assert data_parallel(model, Ranks(), sync_batchnorm=True) is model  # one process: nothing to synchronise


def test_deterministic_mode_sets_cublas_workspace_and_the_torch_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        devices.make_deterministic()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:  # global switches: leave the other tests as they found them
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def test_a_process_torchrun_started_ends_when_torchrun_is_killed(tmp_path):
    """torchrun starts its processes in their own sessions: a `kill -9` of dvc repro and torchrun must not leave
    them training as orphans. A stand-in launcher starts a child the way torchrun does, then is SIGKILLed."""
    child = (
        "import sys, time; from landcover.model.ranks import die_with_launcher; "
        "die_with_launcher(); print('ready', flush=True); time.sleep(120)"
    )
    launcher = (
        "import subprocess, sys, time; "
        f"child = subprocess.Popen([sys.executable, '-c', {child!r}], start_new_session=True, "
        "stdout=sys.stdout); print(child.pid, flush=True); time.sleep(120)"
    )
    env = environment(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    process = subprocess.Popen([sys.executable, "-c", launcher], env=env, stdout=subprocess.PIPE, text=True)
    child_pid = int(process.stdout.readline())
    assert process.stdout.readline().strip() == "ready"  # the child made its request
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child_pid}").exists() and process_alive(child_pid):
        assert time.monotonic() < deadline, "the child outlived its launcher"
        time.sleep(0.05)


# --- How dvc.yaml starts train and predict (stages/launch.py) -----------------------------------------------


@pytest.mark.parametrize("processes", ["1", "0", "-2", "two", "1.5", ""])
def test_the_launcher_runs_one_process_or_a_bad_count_as_the_stage_itself(processes):
    """With one process there is no torchrun; a bad count reaches the stage, whose params check names the key."""
    assert launch.command(processes, "stages.train", ["tiles", "--live", "x"]) == [
        sys.executable,
        "-m",
        "stages.train",
        "tiles",
        "--live",
        "x",
    ]


def test_the_launcher_starts_several_processes_through_torchrun_on_this_machine():
    assert launch.command("3", "stages.predict", ["--output", "out"]) == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=3",
        "-m",
        "stages.predict",
        "--output",
        "out",
    ]


@pytest.mark.parametrize("argv", [[], ["2"], ["2", "torch.distributed.run"]])
def test_the_launcher_refuses_what_is_not_a_stage(argv, monkeypatch):
    monkeypatch.setattr(os, "execv", lambda *args: pytest.fail(f"executed {args}"))
    with pytest.raises(SystemExit, match="usage: python -m stages.launch PROCESSES stages.<name>"):
        launch.main(argv)
