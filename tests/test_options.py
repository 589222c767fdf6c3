"""Every choosable option's names live in one registry, beside what implements them: the docs' parameter table
lists exactly those names, and the code that owns an option refuses any other, in one line naming the key and
the names it takes, before any work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from landcover.cli import map as map_command
from landcover.data import scaling, scenes, splitting
from landcover.inference import runtimes
from landcover.io.errors import PipelineError
from landcover.io.params import (
    DataParams,
    PredictParams,
    SplitParams,
    TileParams,
    TrainParams,
    load_params,
    read_section,
)
from landcover.model import devices
from landcover.training import components
from stages import predict, split, tile, train
from tests.conftest import REPO, write_params

REGISTRIES = {
    "data.layout": scenes.LAYOUTS,
    "tile.images": scenes.KEPT_IMAGES,
    "data.scaling": scaling.SCALINGS,
    "split.method": splitting.SPLIT_METHODS,
    "train.loss": components.LOSSES,
    "train.scheduler": components.SCHEDULERS,
    "train.device": devices.DEVICES,
    "train.precision": devices.PRECISIONS,
    "predict.precision": devices.PRECISIONS,
    "predict.runtime": runtimes.RUNTIMES,
}
# A row of docs/parameters.md: | `key` | default | meaning |; an option's meaning starts "one of `a`, `b`, ...".
ROW = re.compile(r"^\| `([a-z_.]+)` \| [^|]* \| (.*) \|$", flags=re.MULTILINE)
NAMES = re.compile(r"^one of (`[^`]+`(?:, `[^`]+`)*)")


def documented_names() -> dict[str, list[str]]:
    """Each key of the parameter table whose meaning starts with "one of": the names it lists."""
    rows = dict(ROW.findall((REPO / "docs" / "parameters.md").read_text(encoding="utf-8")))
    listed = {key: NAMES.match(meaning) for key, meaning in rows.items()}
    return {key: re.findall(r"`([^`]+)`", match.group(1)) for key, match in listed.items() if match}


def refusal(key: str, bad: str) -> str:
    """The one line an unknown name of `key` is refused with: the key, its registry's names, the name given."""
    return rf"^params: {re.escape(key)} must be one of {re.escape(', '.join(REGISTRIES[key]))}, got '{bad}'$"


def test_each_option_row_of_the_docs_lists_exactly_its_registry():
    documented = documented_names()
    assert set(documented) == set(REGISTRIES), "an option without a registry, or a registry without a docs row"
    for key, registry in REGISTRIES.items():
        assert documented[key] == list(registry), f"docs/parameters.md's {key} row against its registry"


SECTIONS = {"data": DataParams, "tile": TileParams, "split": SplitParams, "train": TrainParams}
CPU = torch.device("cpu")


def sections(key: str, value: Any, *names: str) -> list:
    """The repository's params sections `names` (those of key's section by default), `key` set to `value`."""
    params = load_params(REPO / "params.yaml")
    own, field = key.split(".")
    read = []
    for name in names or (own,):
        values = {**params[name], field: value} if name == own else params[name]
        read.append(read_section({name: values}, name, SECTIONS.get(name, PredictParams)))
    return read


def section(key: str, value: Any) -> Any:
    return sections(key, value)[0]


# Each option with a name its registry lacks, and the owner's check that refuses it (no file is read).
def train_options(key: str, bad: str) -> None:
    components.check_train_options(*sections(key, bad, "train", "data"))


def find_dataset(key: str, bad: str) -> None:
    scenes.find_dataset(Path("nowhere"), *sections(key, bad, "data", "tile"))


CHECKS = {
    "data.layout": find_dataset,
    "tile.images": find_dataset,
    "split.method": lambda key, bad: splitting.split_method(section(key, bad)),
    "train.loss": train_options,
    "train.scheduler": train_options,
    "train.device": train_options,
    "train.precision": train_options,
    "data.scaling": train_options,
    "predict.runtime": lambda key, bad: runtimes.check_predict_options(section(key, bad)),
    "predict.precision": lambda key, bad: runtimes.check_predict_options(section(key, bad)),
}


@pytest.mark.parametrize("key", list(REGISTRIES))
def test_the_owner_refuses_an_unknown_name_in_one_line_naming_the_key_and_its_names(key):
    assert set(CHECKS) == set(REGISTRIES)
    with pytest.raises(PipelineError, match=refusal(key, "bogus")):
        CHECKS[key](key, "bogus")


@pytest.mark.parametrize("key", list(REGISTRIES))
def test_params_check_only_the_type_of_an_option(key):
    """The name is the owner's to check: params reads any string, and refuses what is not one."""
    assert getattr(section(key, "bogus"), key.split(".")[1]) == "bogus"
    with pytest.raises(PipelineError, match=rf"^params: {re.escape(key)} must be str, got 3$"):
        section(key, 3)


# What each option's dispatch is called with, given a name: library callers that skip the owner's check
# (benchmarks, notebooks) get the same line.
DISPATCH = {
    "train.loss": lambda bad: components.configure_loss(bad),
    "train.scheduler": lambda bad: components.configure_scheduler(None, section("train.scheduler", bad)),
    "train.device": lambda bad: devices.choose_device(bad),
    "train.precision": lambda bad: devices.resolve_precision(bad, CPU, "train.precision"),
    "predict.precision": lambda bad: devices.resolve_precision(bad, CPU, "predict.precision"),
    "data.scaling": lambda bad: scaling.scaling_from_params(section("data.scaling", bad), "uint8"),
    "predict.runtime": lambda bad: runtimes.choose_runtime(section("predict.runtime", bad), CPU, None, None, Path(".")),
    "split.method": lambda bad: splitting.split_method(section("split.method", bad)),
}


@pytest.mark.parametrize("key", list(DISPATCH))
def test_dispatch_goes_through_the_registry_and_refuses_alike(key):
    with pytest.raises(PipelineError, match=refusal(key, "bogus")):
        DISPATCH[key]("bogus")


def test_every_registered_loss_and_scheduler_builds():
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    for name in components.LOSSES:
        assert torch.isfinite(components.configure_loss(name)(logits, target))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    for name in components.SCHEDULERS:
        components.configure_scheduler(optimizer, section("train.scheduler", name))


# --- in the stages: refused first, before any input is read ----------------------------------------------


TRAIN = ["tiles", "encoded", "splits", "models", "--live", "live"]
PREDICT = ["--checkpoint", "best.pt", "--tiles", "tiles", "--split", "test.csv", "--output", "out"]
MAP = ["--checkpoint", "best.pt", "--input", "scene.tif", "--output", "out"]


@pytest.mark.parametrize(
    "stage, section, key, arguments",
    [
        (tile, "data", "layout", ["raw", "tiles"]),
        (tile, "tile", "images", ["raw", "tiles"]),
        (split, "split", "method", ["tiles", "encoded", "splits", "--distribution", "distribution.json"]),
        (train, "train", "loss", TRAIN),
        (train, "train", "scheduler", TRAIN),
        (train, "train", "device", TRAIN),
        (train, "train", "precision", TRAIN),
        (train, "data", "scaling", TRAIN),
        (predict, "predict", "runtime", PREDICT),
        (predict, "predict", "precision", PREDICT),
        (map_command, "predict", "runtime", MAP),
        (map_command, "predict", "precision", MAP),
    ],
)
def test_each_stage_refuses_a_wrong_name_before_reading_its_inputs(tmp_path, stage, section, key, arguments):
    """The inputs named do not exist: the name is refused before any is looked for, and nothing is written."""
    params = write_params(tmp_path / "params.yaml", **{section: {key: "bogus"}})
    paths = [argument if argument.startswith("--") else str(tmp_path / argument) for argument in arguments]
    with pytest.raises(PipelineError, match=refusal(f"{section}.{key}", "bogus")):
        stage.main([*paths, "--params", str(params)])
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


def test_a_wrong_loss_ends_the_train_stage_with_one_line_and_exit_1(tmp_path):
    params = write_params(tmp_path / "params.yaml", train={"loss": "focal"})
    missing = [str(tmp_path / name) for name in ("tiles", "encoded", "splits", "models")]
    result = subprocess.run(
        [sys.executable, "-m", "stages.train", *missing, "--params", str(params), "--live", str(tmp_path / "live")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == "error: params: train.loss must be one of dice, ce, dice_ce, got 'focal'\n"
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]
