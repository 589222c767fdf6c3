"""The CI pieces agree: the GitHub workflow runs the same script as CI here, with what DVC needs;
and the environment installed is the lock's, which agrees with the requirements people edit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import optional
from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "experiments.yml"


def load_workflow() -> dict:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def test_workflow_runs_ci_on_pull_requests_with_full_history():
    workflow = load_workflow()
    assert "pull_request" in workflow["on"]
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    runs = [step.get("run", "") for step in steps]
    assert any(run.strip() == "bash .ci/run" for run in runs)
    assert any("git config --global user.email" in run for run in runs)  # experiment commits need one
    comment = next(step for step in steps if "gh pr comment" in step.get("run", ""))
    report = next(step for step in steps if step.get("run", "").strip() == "bash .ci/run")["env"]["EXPERIMENT_REPORT"]
    assert report.split("/")[-1] in comment["run"]
    assert workflow["permissions"]["pull-requests"] == "write"


def test_ci_runs_the_tests_then_the_experiment_comparison():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    comparison = next(i for i, line in enumerate(lines) if line.startswith("bash .ci/experiments"))
    assert lines.index("make test") < lines.index("make test-slow") < comparison


def test_make_test_and_make_test_slow_together_run_every_test_once():
    makefile = (REPO / "Makefile").read_text()
    recipes = dict(re.findall(r"^(test|test-slow): .*\n((?:\t.*\n)+)", makefile, re.MULTILINE))
    assert recipes["test"].splitlines()[-1].endswith('$(PYTEST) -m "not slow"')
    assert recipes["test-slow"].splitlines()[-1].endswith("$(PYTEST) -m slow")


def sh(cwd: Path, *command: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


def test_ci_pushes_experiments_only_where_there_is_a_dvc_remote(tmp_path):
    """A one-stage pipeline and one experiment: without a DVC remote a line says nothing was pushed;
    with one (and a git origin) the experiment's ref reaches origin and its output the remote."""
    origin, repo, storage = tmp_path / "origin.git", tmp_path / "repo", tmp_path / "storage"
    sh(tmp_path, "git", "init", "-q", "--bare", str(origin))
    repo.mkdir()
    (repo / "params.yaml").write_text("x: 1\n")
    (repo / "dvc.yaml").write_text(
        "stages:\n  write:\n    cmd: python -c \"open('out.txt', 'w').write(open("
        "'params.yaml').read())\"\n    params: [x]\n    outs: [out.txt]\n"
    )
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "repro", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "a pipeline"],
        ["git", "remote", "add", "origin", str(origin)],
        ["dvc", "exp", "run", "-q", "-n", "x-two", "-S", "x=2"],
    ):
        assert sh(repo, *command).returncode == 0, command
    push = REPO / ".ci" / "push-experiments"

    skipped = sh(repo, "bash", str(push), "x-two")
    assert skipped.returncode == 0 and "experiments not pushed" in skipped.stderr
    assert "x-two" not in sh(repo, "git", "ls-remote", str(origin)).stdout

    # a remote is committed config, as CI's clone sees it (dvc exp push reads it from the experiment)
    for command in (
        ["dvc", "remote", "add", "-d", "shared", str(storage)],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "a DVC remote"],
        ["dvc", "exp", "run", "-q", "-n", "x-three", "-S", "x=3"],
    ):
        assert sh(repo, *command).returncode == 0, command
    pushed = sh(repo, "bash", str(push), "x-three")
    assert pushed.returncode == 0 and "pushed x-three" in pushed.stderr, pushed.stderr
    assert "x-three" in sh(repo, "git", "ls-remote", str(origin)).stdout
    assert any(path.is_file() for path in storage.rglob("*"))  # out.txt of x=3, in the DVC remote


def test_headline_check_refuses_missing_and_non_finite_metrics(tmp_path):
    check = REPO / ".ci" / "check_headline.py"
    good = {"miou_land": 0.5, "miou": 0.4, "mean_dice": 0.6, "pixel_accuracy": 0.9}
    cases = {
        "good": (good, 0, ""),
        "nan": ({**good, "miou_land": float("nan")}, 1, "miou_land is nan"),
        "missing": ({k: v for k, v in good.items() if k != "mean_dice"}, 1, "mean_dice is None"),
    }
    for name, (metrics, code, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(metrics))
        result = subprocess.run([sys.executable, str(check), name, str(path)], capture_output=True, text=True)
        assert result.returncode == code, name
        assert message in result.stderr
    result = subprocess.run(
        [sys.executable, str(check), "gone", str(tmp_path / "none.json")], capture_output=True, text=True
    )
    assert result.returncode == 1 and "none.json is missing" in result.stderr


def normalise(name: str) -> str:
    """A package name as pip compares them (PEP 503): PyYAML and pyyaml, ruamel.yaml and ruamel-yaml."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path) -> dict[str, str]:
    """{name: version} of the `name==version` lines of a requirements file people edit."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalise(name)] = version.strip()
    return pins


def read_lock(path) -> dict[str, dict]:
    """{name: {"version", "hashes", "via"}} of a pip-compile lock (`name==version \\`, hash lines, via comments)."""
    entries: dict[str, dict] = {}
    current = None
    for line in path.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if pin:
            current = entries.setdefault(normalise(pin[1]), {"version": pin[2], "hashes": [], "via": ""})
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            current["hashes"].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif current is not None and line.startswith("    #"):
            current["via"] += line
    return entries


LOCK, REMOTE_LOCK = REPO / "requirements.lock", REPO / "requirements-remote.lock"
VECTOR_LOCK = REPO / "requirements-vector.lock"  # optional vector output (pyogrio, predict --polygons)
RUNTIME_LOCK = REPO / "requirements-runtime.lock"  # optional OpenVINO runtime (predict.runtime openvino)
REGION_LOCK = REPO / "requirements-region.lock"  # optional region engine (Dask.distributed, pystac)


@pytest.mark.parametrize(
    "requirements, lock",
    [
        ("requirements.txt", LOCK),
        ("requirements-remote.txt", REMOTE_LOCK),
        ("requirements-vector.txt", VECTOR_LOCK),
        ("requirements-runtime.txt", RUNTIME_LOCK),
        ("requirements-region.txt", REGION_LOCK),
    ],
)
def test_each_direct_requirement_is_locked_at_its_version(requirements, lock):
    wanted, locked = read_requirements(REPO / requirements), read_lock(lock)
    assert {name: locked.get(name, {}).get("version") for name in wanted} == wanted
    # and the lock has no direct requirement that was since removed from the file (`make lock` not rerun)
    assert {name for name, entry in locked.items() if f"-r {requirements}" in entry["via"]} == set(wanted)


@pytest.mark.parametrize("lock", [LOCK, REMOTE_LOCK, VECTOR_LOCK, RUNTIME_LOCK, REGION_LOCK])
def test_every_locked_package_has_hashes(lock):
    locked = read_lock(lock)
    assert len(locked) > 100  # dvc alone pulls in dozens: the lock is the full tree, not the direct list
    unhashed = [name for name, entry in locked.items() if not entry["hashes"]]
    assert unhashed == []
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for entry in locked.values() for digest in entry["hashes"])


@pytest.mark.parametrize("optional", [REMOTE_LOCK, VECTOR_LOCK, RUNTIME_LOCK, REGION_LOCK])
def test_an_optional_lock_adds_to_the_core_lock_without_changing_it(optional):
    core, extra = read_lock(LOCK), read_lock(optional)
    assert {name: extra.get(name, {}).get("version") for name in core} == {
        name: entry["version"] for name, entry in core.items()
    }


def test_make_installs_exactly_the_lock():
    makefile = (REPO / "Makefile").read_text()
    target = re.search(r"^\$\(BIN\)/\.installed: (.*)\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert target, "the Makefile has no $(BIN)/.installed rule"
    # reinstalls when the lock changes, or the project's own metadata (its console script)
    assert target[1].split() == ["requirements.lock", "pyproject.toml"]
    install = [line for line in target[2].splitlines() if "pip install" in line]
    assert len(install) == 2
    assert all(flag in install[0].split() for flag in ("--require-hashes", "--no-deps", "requirements.lock"))
    # then the project itself, editable, adding nothing: its dependencies are the lock's
    assert all(flag in install[1].split() for flag in ("--no-deps", "--no-build-isolation", "--editable", "."))
    assert "pip check" in target[2]
    for target, lock in (
        ("install-remote", "requirements-remote.lock"),
        ("install-vector", "requirements-vector.lock"),
        ("install-runtime", "requirements-runtime.lock"),
        ("install-region", "requirements-region.lock"),
    ):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
        assert "--require-hashes" in recipe[1] and "--no-deps" in recipe[1] and lock in recipe[1]
        assert "pip check" in recipe[1]


def test_make_install_puts_the_mapping_command_on_the_venvs_path():
    """pyproject.toml's console script, installed by `make install`'s editable install of the project."""
    command = Path(sys.executable).parent / "landcover-map"
    assert command.is_file(), "no landcover-map beside this Python: run `make install`"
    result = subprocess.run([str(command), "--help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: landcover-map ")
    assert "--checkpoint" in result.stdout and "--polygons" in result.stdout


def test_make_install_installs_the_library_as_landcover_and_no_stages_package(tmp_path):
    """Outside the checkout, `import landcover` finds the checkout's library and nothing named `stages` is
    importable: the stage scripts run from the checkout (dvc.yaml's `python -m stages.X`) and are never installed."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    probe = (
        "import importlib.util, json, landcover, landcover.cli.map\n"
        "print(json.dumps([landcover.__file__, importlib.util.find_spec('stages') is None]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=environment, capture_output=True, text=True, check=True
    )
    library, no_stages = json.loads(result.stdout)
    assert Path(library) == REPO / "landcover" / "__init__.py"
    assert no_stages, "a package named stages is installed: pyproject.toml's packages must be landcover's alone"
    console_scripts = re.findall(r'^landcover-\w+ = "([\w.]+):', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert console_scripts and all(target.startswith("landcover.cli.") for target in console_scripts)


def test_a_test_of_a_missing_group_skips_naming_its_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyogrio", None)  # import pyogrio then raises ImportError
    monkeypatch.delenv(optional.REQUIRED, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^needs the optional vector group: make install-vector$"):
        optional.need_group("vector")


def test_a_test_of_a_group_ci_installed_fails_rather_than_skips_where_it_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setenv(optional.REQUIRED, "vector runtime")
    with pytest.raises(pytest.fail.Exception, match=r"the runtime group is installed .*openvino cannot be imported"):
        optional.need_group("runtime")
    monkeypatch.setenv(optional.REQUIRED, "vector")  # not named: a skip as on a fresh clone
    with pytest.raises(pytest.skip.Exception):
        optional.need_group("runtime")


def test_ci_installs_and_requires_every_group_the_tests_need():
    script = (REPO / ".ci" / "run").read_text()
    installed = set(re.findall(r"^make install-(\w+)$", script, re.MULTILINE))
    required = re.search(rf'^export {optional.REQUIRED}="([\w ]*)"$', script, re.MULTILINE)
    assert required and set(required[1].split()) == installed == set(optional.GROUPS)
    for group, modules in optional.GROUPS.items():  # each group's modules are its requirements file's packages
        listed = (REPO / f"requirements-{group}.txt").read_text()
        # a module's package may spell _ as - (rio_tiler: rio-tiler)
        assert all(re.search(rf"^{module.replace('_', '[-_]')}==", listed, re.MULTILINE) for module in modules), group


def test_group_skips_go_through_need_group():
    """A plain importorskip of a group's module would skip in CI too, silently."""
    modules = {module for group in optional.GROUPS.values() for module in group}
    direct = [
        f"{path.name}:{number}"
        for path in sorted((REPO / "tests").glob("test_*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "importorskip(" in line and any(f'"{module}"' in line for module in modules)
    ]
    assert direct == []
