"""The processes torchrun starts (train and predict): which one this is, its GPU, dying with the launcher, and
the one output directory that all ranks of a split prediction write into and that appears whole or not at all.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK in each process it starts. Without them (a plain
`python -m stages.predict`) there is one rank and no process group. With
several, each rank runs on cuda:LOCAL_RANK where CUDA is present. In prediction, rank r takes images
r, r + W, r + 2W, ... of the split and writes its own files; a gloo process group serves only to
agree on the output directory (its path, and whether every rank succeeded before it is published).
Training's process group and data sharding are in training/distributed.py.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from landcover.io.errors import PipelineError
from landcover.io.outputs import atomic_dir

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process among those torchrun started (training and prediction alike); rank 0 of 1 without torchrun."""

    rank: int = 0  # this process, 0 to world - 1
    world: int = 1  # processes in all
    local_rank: int = 0  # this process on its machine: its GPU
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where its collectives run
    local_world: int = 1  # processes on this machine, sharing its cores

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and progress."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's items: r, r + W, r + 2W, ... (every item exactly once over all ranks, in order within each)."""
        return list(items[self.rank :: self.world])

    def sum(self, values: np.ndarray) -> np.ndarray:
        """`values` summed over all ranks (the same array on every rank); as is with one rank."""
        if not self.several:
            return values
        tensor = torch.from_numpy(np.ascontiguousarray(values)).to(self.device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    @property
    def label(self) -> str:
        return "" if self.world == 1 else f" (rank {self.rank} of {self.world})"

    @property
    def threads(self) -> int | None:
        """This process's share of the machine's cores (at least 1) where several processes share it; None for
        a process alone, which leaves each runtime its own default (all cores)."""
        if self.local_world == 1:
            return None
        # the cores this process may run on (a container's or taskset's share); all of them where the
        # platform cannot say (macOS)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.local_world)


# Set by torchrun in every process it starts (with LOCAL_WORLD_SIZE, the processes on its machine).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def ranks_from_environment() -> Ranks:
    """The ranks torchrun set; one rank when it did not. The one place that reads torchrun's variables."""
    if not launched_by_torchrun():
        return Ranks()
    # LOCAL_WORLD_SIZE is torchrun's; a launcher without it leaves each runtime its default threads
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return Ranks(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]), local_world=local_world
    )


# prctl(2) option: the signal this process gets when its parent ends.
PR_SET_PDEATHSIG = 1


def die_with_launcher() -> None:
    """Under torchrun on Linux, have this process killed when torchrun ends, however it ends.

    torchrun starts its processes in sessions of their own, so a `kill -9` of `dvc repro` (or of
    torchrun) would leave them running and writing outputs as orphans; with this they end at
    once, as a single process killed with its `dvc repro` does. (torchrun stops them itself
    on SIGTERM or SIGINT.)
    """
    if not launched_by_torchrun() or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return  # no prctl: torchrun still stops its processes whenever it is not killed outright
    if os.getppid() == 1:  # torchrun ended before the request was made
        os.kill(os.getpid(), signal.SIGKILL)


def rank_device(device: torch.device, ranks: Ranks, processes_key: str) -> torch.device:
    """cuda:LOCAL_RANK for a CUDA device (one GPU per rank); any other device as it is.

    `processes_key` is the param that set the number of processes, for the error when a rank has no GPU.
    """
    if device.type != "cuda" or ranks.world == 1:
        return device
    if ranks.local_rank >= torch.cuda.device_count():
        raise PipelineError(
            f"params: {processes_key}: process {ranks.local_rank} on this machine has no GPU of its "
            f"own ({torch.cuda.device_count()} visible); use at most one process per GPU"
        )
    torch.cuda.set_device(ranks.local_rank)
    return torch.device("cuda", ranks.local_rank)


@contextmanager
def process_group(ranks: Ranks) -> Iterator[None]:
    """A gloo process group for several ranks (from torchrun's environment); nothing for one."""
    if ranks.world == 1:
        yield
        return
    dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def _all_succeeded(succeeded: bool) -> bool:
    flag = torch.tensor([int(succeeded)])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


@contextmanager
def shared_atomic_dir(final: str | Path, ranks: Ranks) -> Iterator[Path]:
    """outputs.atomic_dir for all ranks: one staging directory that replaces `final` when every rank succeeded.

    Rank 0 makes the staging directory and sends its path to the others; each rank writes its files
    into it; then the ranks agree (an all-reduce, which is also the barrier) whether all succeeded.
    Only then does rank 0 publish it; if any rank failed, every rank raises and rank 0 removes it, so
    nothing is published. A last barrier keeps every rank alive until rank 0 has done either (torchrun
    stops the other ranks as soon as one exits with an error). One rank: atomic_dir itself.
    """
    if ranks.world == 1:
        with atomic_dir(final) as staging:
            yield staging
        return
    try:
        with ExitStack() as stack:
            box: list[str | None] = [None]
            if ranks.rank == 0:
                try:
                    box[0] = str(stack.enter_context(atomic_dir(final)))
                finally:
                    dist.broadcast_object_list(box, src=0)  # None: rank 0 could not make it
            else:
                dist.broadcast_object_list(box, src=0)
                if box[0] is None:
                    raise PipelineError(f"{final}: the first process could not create the output directory")
            succeeded = False
            try:
                yield Path(str(box[0]))
                succeeded = True
            finally:
                everyone = _all_succeeded(succeeded)
            if not everyone:
                raise PipelineError(
                    f"{final}: another process of the split prediction failed (see its error); "
                    "nothing was written, the previous output, if any, is unchanged"
                )
    finally:
        dist.barrier()  # rank 0 has published or removed the staging directory
