"""Training in several processes, as torchrun starts them: joining the process group, each rank's device,
and the model wrapped for data-parallel training (the ranks themselves, and their sums, are model.ranks.Ranks).

torchrun (`python -m torch.distributed.run`) starts the processes and tells each its place through
the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); the process group is started
from there (NCCL between GPUs, gloo on the CPU). A train stage started without torchrun, or by
torchrun with one process, is one process and starts no group: its results are the bytes a
single process gives.

Rank 0 alone writes (checkpoints, DVCLive's log, the progress bars); every rank computes, and the
numbers logged are sums over all ranks (see loop.EpochMeter).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from landcover.io.errors import PipelineError
from landcover.io.params import TrainParams
from landcover.model.ranks import Ranks, launched_by_torchrun, rank_device, ranks_from_environment


def start_processes(train_params: TrainParams, device: torch.device) -> Ranks:
    """Join the ranks torchrun started (the process group, this rank's device), or run as one process.

    The number of ranks must be what the params say, train.processes x train.nodes: the
    params are what dvc.lock and the checkpoints record.
    """
    expected = train_params.processes * train_params.nodes
    layout = (
        f"train.processes x train.nodes is {train_params.processes} x {train_params.nodes} = "
        f"{expected} process{'es' if expected > 1 else ''}"
    )
    if not launched_by_torchrun():
        if expected != 1:
            raise PipelineError(
                f"params: {layout}, but this is one process, not started by torchrun; run the "
                f"stage with dvc repro (its command starts torchrun) or with torchrun "
                f"--nproc_per_node={train_params.processes} -m stages.train ..."
            )
        return Ranks(device=device)
    ranks = ranks_from_environment()
    if ranks.world != expected:
        raise PipelineError(
            f"params: {layout}, but torchrun started {ranks.world} (WORLD_SIZE); make them agree "
            "(more than one node is launched by hand: docs/multi-gpu.md)"
        )
    if ranks.world == 1:
        return replace(ranks, device=device)
    if device.type not in ("cuda", "cpu"):
        raise PipelineError(
            f"params: train.processes x train.nodes above 1 needs train.device cuda or cpu, not {device.type}"
        )
    device = rank_device(device, ranks, "train.processes")
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return replace(ranks, device=device)


def data_parallel(model: nn.Module, ranks: Ranks, sync_batchnorm: bool) -> nn.Module:
    """The model to train: as is with one process, else wrapped in DistributedDataParallel (gradients averaged
    over ranks after every backward pass), its batch norms synchronised if asked."""
    if not ranks.several:
        return model
    if sync_batchnorm:
        if ranks.device.type != "cuda":
            raise PipelineError(
                "params: train.sync_batchnorm needs CUDA devices (PyTorch's SyncBatchNorm runs on "
                f"GPUs only), this run is on {ranks.device.type}; set it to false"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [ranks.device.index] if ranks.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def share_buffers_of_rank_0(model: nn.Module, ranks: Ranks) -> None:
    """Give every rank rank 0's buffers (batch norms' running statistics) before validation.

    DistributedDataParallel copies rank 0's buffers to the others only at the start of each training
    forward pass, so after an epoch each rank's running statistics include its own last batch.
    Validating those W slightly different models would mix them in the summed confusion matrix that
    picks best.pt, which holds rank 0's.
    """
    if not ranks.several:
        return
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer, src=0)


def unwrapped(model: nn.Module) -> nn.Module:
    """The model itself, without a DistributedDataParallel wrapper: what checkpoints hold and validation runs."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def stop_processes(ranks: Ranks) -> None:
    """Leave the process group that start_processes joined (none with one process)."""
    if ranks.several and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
