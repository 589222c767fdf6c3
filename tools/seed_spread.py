"""The same params over N training seeds, as queued DVC experiments, and the spread of their test scores.

    python -m tools.seed_spread --seeds 5 [--first-seed 1] [--set KEY=VALUE ...] [--prefix seed]
                                [--json FILE] [--markdown FILE]
    python -m tools.seed_spread --experiments seed-1 seed-2 ...   # only summarise experiments that ran already
    make seeds N=5                                                 # the first, writing metrics/seeds.json

Run from the project's root. Seed k is the experiment <prefix>-<k>, queued from this commit with the workspace's
params (uncommitted edits included) as `dvc exp run --queue --name seed-k -S train.seed=k` plus each --set; the
queue runs them one at a time (`dvc queue start -j 1`), each in a temporary copy, so the workspace is left as it
is. Only train.seed changes: split.seed, and with it the test images, stays, so the spread is the training's and
not the test sample's (docs/statistics.md, "Seed spread"). A line per finished seed, then a table of each
headline test score's n, mean, sample standard deviation, min and max (landcover/evaluation/seeds.py), and the
same as JSON with each run's scores with --json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from landcover.evaluation.metrics import HEADLINE
from landcover.evaluation.seeds import SEED_PARAM, as_json, check_only_seeds_differ, flat, markdown, spreads
from landcover.io.errors import PipelineError, run_stage
from landcover.io.outputs import atomic_file, write_json

TEST_SCORES = "metrics/test.json"  # where the evaluate stage writes the headline scores (dvc.yaml)
POLL_S = 10  # between looks at the queue: each `dvc queue status` takes a second of CPU from the runs
# The venv's dvc where this Python is a venv's (`.venv/bin/python -m tools.seed_spread` without activating it)
DVC = str(Path(sys.executable).parent / "dvc") if (Path(sys.executable).parent / "dvc").exists() else "dvc"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--seeds", type=int, help="how many seeds to run")
    what.add_argument("--experiments", nargs="+", metavar="NAME", help="summarise these experiments; run nothing")
    parser.add_argument("--first-seed", type=int, default=1, help="the seeds are this one and the next ones")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another param, every seed")
    parser.add_argument("--prefix", default="seed", help="experiment names: PREFIX-<seed> (default: seed)")
    parser.add_argument("--json", type=Path, help="write the summary and each run's scores here as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table here too")
    return parser


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode:
        raise PipelineError(f"git {' '.join(args)}: {result.stderr.strip() or 'failed'}")
    return result.stdout


def dvc(*args: str) -> str:
    result = subprocess.run([DVC, *args], capture_output=True, text=True)
    if result.returncode:
        said = [line for line in result.stderr.splitlines() if line.strip()]
        raise PipelineError(f"dvc {' '.join(args)} failed: {said[0] if said else 'no message'}")
    return result.stdout


def start_queue() -> None:
    """`dvc queue start --jobs 1`. Its worker runs on after the command returns and inherits the command's output
    streams: into pipes, they would hold this call until the whole queue has run, so they go to a file."""
    with tempfile.TemporaryFile("w+") as said:
        result = subprocess.run([DVC, "queue", "start", "--jobs", "1"], stdout=said, stderr=said, text=True)
        if result.returncode:
            said.seek(0)
            lines = [line for line in said.read().splitlines() if line.strip()]
            raise PipelineError(f"dvc queue start failed: {lines[0] if lines else 'no message'}")


def experiment_refs() -> dict[str, list[tuple[str, str]]]:
    """{experiment name: [(its baseline commit, its ref)]}: DVC keeps each under refs/exps/<baseline>/<name>."""
    found: dict[str, list[tuple[str, str]]] = {}
    for ref in git("for-each-ref", "--format=%(refname)", "refs/exps").split():
        parts = ref.split("/")  # refs, exps, the baseline's first 2 hex digits, the other 38, the name
        if len(parts) == 5:
            found.setdefault(parts[4], []).append((parts[2] + parts[3], ref))
    return found


def experiment_commit(name: str, baseline: str) -> str:
    """The commit of experiment `name`: the one on `baseline` first, else the only one of that name, else a git
    revision of that name."""
    refs = experiment_refs().get(name, [])
    on_baseline = [ref for base, ref in refs if base == baseline]
    if on_baseline or len(refs) == 1:
        return git("rev-parse", (on_baseline or [refs[0][1]])[0]).strip()
    if refs:
        raise PipelineError(f"{name}: names {len(refs)} experiments on other commits; check out the one to summarise")
    result = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"], capture_output=True)
    if result.returncode:
        raise PipelineError(f"{name}: no such experiment or git revision")
    return result.stdout.decode().strip()


def read_run(name: str, commit: str) -> tuple[dict, dict]:
    """An experiment's test scores and params, from the files committed with it."""
    shown = subprocess.run(["git", "show", f"{commit}:{TEST_SCORES}"], capture_output=True, text=True)
    if shown.returncode:
        raise PipelineError(f"{name}: has no {TEST_SCORES} (did its evaluate stage run?)")
    params = subprocess.run(["git", "show", f"{commit}:params.yaml"], capture_output=True, text=True).stdout
    try:
        return json.loads(shown.stdout), yaml.safe_load(params) or {}
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise PipelineError(f"{name}: cannot read its {TEST_SCORES} or params.yaml ({error})") from None


def queue_tasks() -> dict[str, tuple[str, str]]:
    """{task id: (experiment name, status)} of `dvc queue status`: rows of task, name, created, status."""
    tasks = {}
    for line in dvc("queue", "status").splitlines():
        cells = line.split()
        if len(cells) >= 3 and cells[0] != "Task" and not line.startswith("Worker"):
            tasks[cells[0]] = (cells[1], cells[-1])
    return tasks


def queue_seeds(seeds: list[int], names: list[str], extra: list[str], baseline: str) -> dict[str, str]:
    """Queue each seed's experiment; {task id: name} of those queued. Refuses names already in use, before any."""
    existing = experiment_refs()
    taken = [name for name in names if any(base == baseline for base, _ in existing.get(name, []))]
    before = queue_tasks()
    taken += [name for name, status in before.values() if name in names and status in ("Queued", "Running")]
    if taken:
        raise PipelineError(
            f"{', '.join(sorted(set(taken)))}: already run or queued on this commit; summarise them with "
            f"--experiments, remove them (dvc exp remove / dvc queue remove), or name the runs with --prefix"
        )
    for seed, name in zip(seeds, names):
        overrides = [item for setting in [f"{SEED_PARAM}={seed}", *extra] for item in ("-S", setting)]
        dvc("exp", "run", "--queue", "--name", name, *overrides)
    queued = {task: name for task, (name, _) in queue_tasks().items() if task not in before and name in names}
    missing = set(names) - set(queued.values())
    if missing:
        raise PipelineError(f"{', '.join(sorted(missing))}: queued, but not in `dvc queue status`")
    return queued


def run_seeds(seeds: list[int], names: list[str], extra: list[str], baseline: str) -> dict[str, str]:
    """Queue the seeds, run the queue, and wait for them, a line per finished seed; {name: commit}."""
    print(
        f"queueing {len(seeds)} seeds ({SEED_PARAM} {seeds[0]} to {seeds[-1]}{'; ' if extra else ''}"
        f"{', '.join(extra)}) on commit {baseline[:7]} with the workspace's params",
        file=sys.stderr,
    )
    pending = queue_seeds(seeds, names, extra, baseline)
    start_queue()
    start, commits, failed = time.monotonic(), {}, []
    try:
        while pending:
            time.sleep(POLL_S)
            status = queue_tasks()
            for task, name in list(pending.items()):
                state = status.get(task, (name, "gone from the queue"))[1]
                if state in ("Queued", "Running"):
                    continue
                del pending[task]
                if state != "Success":
                    failed.append(f"{name} ({state}; its log: dvc queue logs {task})")
                    print(f"{name} failed", file=sys.stderr)
                    continue
                commits[name] = experiment_commit(name, baseline)
                score = read_run(name, commits[name])[0].get(HEADLINE[0])
                shown = f"{score:.4f}" if isinstance(score, float) else repr(score)
                print(
                    f"{name} finished: {HEADLINE[0]} {shown}; {len(commits) + len(failed)} of {len(names)} done "
                    f"after {(time.monotonic() - start) / 60:.1f} min",
                    file=sys.stderr,
                )
    except KeyboardInterrupt:
        waiting = " ".join(pending.values())
        raise PipelineError(
            f"stopped waiting; {waiting} go on in the queue (dvc queue status): summarise them all later with "
            f"--experiments {' '.join(names)}"
        ) from None
    if failed:
        others = f"; summarise the others with --experiments {' '.join(commits)}" if commits else ""
        raise PipelineError(f"{len(failed)} of {len(names)} seeds failed: {', '.join(failed)}{others}")
    return {name: commits[name] for name in names}


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    for setting in args.set:
        if "=" not in setting or setting.split("=", 1)[0].strip() == SEED_PARAM:
            raise PipelineError(f"--set {setting}: give KEY=VALUE for a param other than {SEED_PARAM}")
    if args.seeds is not None and args.seeds < 1:
        raise PipelineError(f"--seeds {args.seeds}: give 1 or more")
    baseline = git("rev-parse", "HEAD").strip()
    if args.experiments:
        commits = {name: experiment_commit(name, baseline) for name in args.experiments}
    else:
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        commits = run_seeds(seeds, [f"{args.prefix}-{seed}" for seed in seeds], args.set, baseline)
    runs, params = {}, {}
    for name, commit in commits.items():
        runs[name], params[name] = read_run(name, commit)
    check_only_seeds_differ(params)
    about = {
        name: {SEED_PARAM: flat(params[name]).get(SEED_PARAM), "commit": commit} for name, commit in commits.items()
    }
    summary = spreads(runs)
    table = markdown(summary, list(runs))
    print(table, end="")
    if args.json:
        write_json(args.json, as_json(summary, runs, about))
    if args.markdown:
        with atomic_file(args.markdown) as staging:
            staging.write_text(table)


if __name__ == "__main__":
    run_stage(main)
