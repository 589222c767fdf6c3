"""Prediction split across processes or GPUs (launched by torchrun): which images a rank takes, its
device, and the one output directory that all ranks write into and that appears whole or not at all.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK in each process it starts. Without them (a plain
`python -m stages.predict`) there is one rank, no process group, and everything is as before. With
several, rank r takes images r, r + W, r + 2W, ... of the split, on cuda:LOCAL_RANK where CUDA is
present, and writes its own files; a gloo process group serves only to agree on the output
directory (its path, and whether every rank succeeded before it is published).
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

from stages.core.errors import PipelineError
from stages.core.outputs import atomic_dir

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0  # this process, 0 to world - 1
    world: int = 1  # processes in all
    local_rank: int = 0  # this process on its machine: its GPU

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's items: r, r + W, r + 2W, ... (every item exactly once over all ranks, in order within each)."""
        return list(items[self.rank::self.world])

    @property
    def label(self) -> str:
        return "" if self.world == 1 else f" (rank {self.rank} of {self.world})"


def ranks_from_environment() -> Ranks:
    """The ranks torchrun set; one rank when it did not."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


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


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """cuda:LOCAL_RANK for a CUDA device (one GPU per rank); any other device as it is."""
    if device.type != "cuda" or ranks.world == 1:
        return device
    if ranks.local_rank >= torch.cuda.device_count():
        raise PipelineError(f"predict.processes: process {ranks.local_rank} on this machine has no GPU of its own "
                            f"({torch.cuda.device_count()} GPUs); use at most one process per GPU")
    torch.cuda.set_device(ranks.local_rank)
    return torch.device("cuda", ranks.local_rank)


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
                yield Path(box[0])
                succeeded = True
            finally:
                everyone = _all_succeeded(succeeded)
            if not everyone:
                raise PipelineError(f"{final}: another process of the split prediction failed (see its error); "
                                    "nothing was written, the previous output, if any, is unchanged")
    finally:
        dist.barrier()  # rank 0 has published or removed the staging directory
