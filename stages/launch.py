"""launch: start a stage in N processes on this machine: through torchrun for several, as itself for one.

python -m stages.launch N stages.<name> [the stage's arguments]

dvc.yaml starts train and predict with it (N = train.processes, predict.processes). For one
process torchrun adds nothing a stage uses (no rendezvous, no process group: a stage without
torchrun's variables is rank 0 of 1, landcover/model/ranks.py) and costs a second Python that
imports torch, about 4 s of CPU per run. N that is not a whole number of at least 1 starts the
stage as one process, which reads the same param, refuses it and names its key.

The launcher replaces itself with the command (exec), so signals and the exit status are the stage's
or torchrun's, as if dvc.yaml named that command itself. It imports no torch and nothing of the core.
"""

from __future__ import annotations

import os
import sys


def command(processes: str, module: str, arguments: list[str]) -> list[str]:
    """The command line that runs `module` in `processes` processes."""
    if processes.isdigit() and int(processes) > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc_per_node={int(processes)}"]
        return [sys.executable, *launcher, "-m", module, *arguments]
    return [sys.executable, "-m", module, *arguments]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or not argv[1].startswith("stages."):
        sys.exit("usage: python -m stages.launch PROCESSES stages.<name> [arguments]")
    line = command(argv[0], argv[1], argv[2:])
    os.execv(line[0], line)


if __name__ == "__main__":
    main()
