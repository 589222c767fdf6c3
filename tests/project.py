"""Temporary copies of the repository for end-to-end tests, run with the real `dvc` and `git`.

The most expensive thing the suite does is reproducing the pipeline; `reproduced_template` does it
once per test run (once in all, however many pytest-xdist workers ask for it) and every test that
needs a reproduced project works in its own copy (`copy_project`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
FAST_PROFILE = REPO / ".ci" / "fast-profile"


def fast_profile() -> list[str]:
    """The `key=value` overrides of .ci/fast-profile, which CI's experiment comparison uses too."""
    lines = (line.strip() for line in FAST_PROFILE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def as_sections(overrides: list[str]) -> dict:
    """`train.lr=0.001` lines as nested {"train": {"lr": 0.001}} updates."""
    sections: dict = {}
    for override in overrides:
        key, value = override.split("=", 1)
        *parents, leaf = key.split(".")
        node = sections
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value)
    return sections


def set_params(project: Path, sections: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())

    def merge(target: dict, updates: dict) -> None:
        for key, value in updates.items():
            if isinstance(value, dict):
                merge(target[key], value)
            else:
                target[key] = value

    merge(params, sections)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def tool_environment() -> dict[str, str]:
    """The environment a documented command sees: the venv first on PATH, no DVC analytics, a git identity."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


def dvc(project: Path, *args: str) -> str:
    """Run the venv's dvc in `project`; fail the test with its output if it fails."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=project,
        env=tool_environment(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def ran_stages(output: str) -> set[str]:
    """The stages a `dvc repro` or `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '(\w+)'", output))


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, env=tool_environment(), check=True, capture_output=True, text=True
    ).stdout


def copy_repository(destination: Path) -> Path:
    """The working tree as git would see it (tracked and untracked, nothing ignored), as a fresh repo."""
    files = git(REPO, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)
    for path in [destination / "dvc.lock", *destination.glob("metrics/**/*"), *destination.glob("plots/**/*")]:
        if path.is_file():  # start from scratch, as on a fresh clone with nothing reproduced yet
            path.unlink()
    # A clone has history, and DVCLive needs a commit to find its baseline.
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy of the repository"]):
        git(destination, *command)
    return destination


def reproduced_template(shared_root: Path) -> Path:
    """A copy of the repository on the fast profile, fully reproduced and committed, under `shared_root`.

    Built by whichever process asks first; the others wait for it. Never change it: copy it.
    """
    template = shared_root / "reproduced-fast-profile"
    with FileLock(str(shared_root / "reproduced-fast-profile.lock")):
        if not (template / ".reproduced").exists():
            shutil.rmtree(template, ignore_errors=True)  # a build that failed part-way
            template.mkdir(parents=True)
            copy_repository(template)
            set_params(template, as_sections(fast_profile()))
            dvc(template, "repro")
            git(template, "add", "-A")
            git(template, "commit", "-q", "-m", "fast profile as the baseline")
            (template / ".git" / "info" / "exclude").write_text(".reproduced\n")
            (template / ".reproduced").touch()
    return template


def copy_project(template: Path, destination: Path) -> Path:
    """A working copy of a project: its files, git history and DVC cache (the cache's read-only files linked)."""
    cache = template / ".dvc" / "cache"

    def copy(source: str, target: str) -> None:
        if Path(source).is_relative_to(cache):
            os.link(source, target)
        else:
            shutil.copy2(source, target)

    shutil.copytree(template, destination, symlinks=True, copy_function=copy)
    return destination
