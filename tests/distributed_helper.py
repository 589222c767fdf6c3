"""The train stage as torchrun runs it, with test-only changes chosen by environment variables.

Run as `torchrun ... tests/distributed_helper.py <the train stage's arguments>`; it is no test
itself (pytest collects `test_*.py` only), and the stage's code has no test hooks: the changes
are made here, from outside, before the stage's main() runs.

- DDP_TEST_BATCH_INDEPENDENT=1: dropout off and batch norm normalising with its running
  statistics, as in eval mode. Then a sample's forward pass does not depend on the other samples
  of its batch or on the batch's shape (dropout masks are drawn per tensor shape and rank), so
  one process with batch 2B and two with batch B each can be compared number for number.
- DDP_TEST_DIE_RANK=<r>: the process of that rank kills itself with SIGKILL (no handler, no
  cleanup) at its first optimizer step: a rank lost mid-epoch.
- DDP_TEST_RECORD_BUFFERS=<folder>: each rank appends, at the start of every validation pass, the
  sha256 of the validated model's buffers (batch norms' running statistics) to <folder>/rank<r>.txt.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

from torch import nn


def batch_independent() -> None:
    def batch_norm_with_running_statistics(self, input):
        return nn.functional.batch_norm(
            input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )

    nn.modules.batchnorm._BatchNorm.forward = batch_norm_with_running_statistics
    nn.Dropout.forward = lambda self, input: input


def die_at_first_step(rank: int) -> None:
    from landcover.training import loop

    optimise = loop.optimise

    def dying_optimise(*args, **kwargs):
        if int(os.environ["RANK"]) == rank:
            os.kill(os.getpid(), signal.SIGKILL)
        return optimise(*args, **kwargs)

    loop.optimise = dying_optimise


def record_validation_buffers(folder: Path) -> None:
    from landcover.training import trainer

    run_epoch = trainer.run_epoch

    def recording_run_epoch(model, *args, **kwargs):
        if args[4].endswith(" val"):  # the pass's description, "epoch <n> val"
            buffers = b"".join(buffer.detach().cpu().numpy().tobytes() for buffer in model.buffers())
            with open(folder / f"rank{os.environ['RANK']}.txt", "a") as record:
                record.write(hashlib.sha256(buffers).hexdigest() + "\n")
        return run_epoch(model, *args, **kwargs)

    trainer.run_epoch = recording_run_epoch


if __name__ == "__main__":
    if os.environ.get("DDP_TEST_BATCH_INDEPENDENT") == "1":
        batch_independent()
    if "DDP_TEST_DIE_RANK" in os.environ:
        die_at_first_step(int(os.environ["DDP_TEST_DIE_RANK"]))
    if "DDP_TEST_RECORD_BUFFERS" in os.environ:
        record_validation_buffers(Path(os.environ["DDP_TEST_RECORD_BUFFERS"]))

    from landcover.io.errors import run_stage
    from stages import train

    run_stage(train.main)
