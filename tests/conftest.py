"""Shared fixtures: tiny datasets written in the raw layouts the pipeline accepts, the reproduced project, a browser."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from landcover.data.palette import ClassTable
from tests.browser import find_browser
from tests.project import REPO, reproduced_template

__all__ = ["REPO"]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist runs a worker per core: each worker's processes use one thread rather than all of
    # them, or OpenMP's spinning threads of one worker take the cores the other needs
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")


class WholeImageStore:
    """The part of a TileStore that TileStore.windows uses, for stand-ins that give whole images from memory
    (whole_image, whole_class_mask): JPEG and PNG files, decoded whole and cropped, RGB."""

    bands = (1, 2, 3)

    def image_path(self, image_id: str) -> Path:
        return Path(f"{image_id}.jpg")

    def class_mask_path(self, image_id: str) -> Path:
        return Path(f"{image_id}.png")

    def windows(self, record, masks: bool = True):
        from landcover.data.tilestore import ImageWindows

        return ImageWindows(self, record, masks)  # type: ignore[arg-type]


def stand_in_runtime(table: ClassTable, scaling=None):
    """A chosen runtime for a stand-in model (the probability function is patched in too): `table`'s classes,
    `scaling`'s bands (default uint8 RGB). Its model file, which the maps' STAC describes (its sha256), is this
    file: a stand-in has none of its own."""
    import torch

    from landcover.data.scaling import UINT8_RGB
    from landcover.inference.runtimes import Runtime
    from landcover.model.checkpoint import ModelInterface

    interface = ModelInterface(table, scaling or UINT8_RGB, 256, "0" * 64)
    return Runtime("torch", Path(__file__), interface, torch.device("cpu"), None)


def map_files(params: Path, inputs: list[Path], out: Path, *flags: str) -> Path:
    """The mapping command (landcover.cli.map) on `inputs` into `out` with `params`; the model is whatever a
    test patched in (the checkpoint named is never read then). Returns `out`."""
    from landcover.cli import map as map_command

    arguments = ["--checkpoint", "unused.pt", "--input", *map(str, inputs), "--output", str(out)]
    map_command.main([*arguments, "--params", str(params), *flags])
    return out


@pytest.fixture(scope="session")
def reproduced_project(tmp_path_factory) -> Path:
    """The repository on the fast profile after a complete `dvc repro`, committed: built once for the
    whole run, shared by every pytest-xdist worker. Read it, or work in a copy (`tests.project.copy_project`)."""
    base = tmp_path_factory.getbasetemp()
    # xdist gives each worker a folder of its own inside the run's folder
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return reproduced_template(shared)


@pytest.fixture(scope="session")
def browser() -> str:
    found = find_browser()
    if found is None:
        pytest.skip(
            "no headless browser: install Debian's chromium (`apt-get install chromium`; .ci/run does "
            "this when it runs as root) to check that the plot pages render"
        )
    return found


def write_pair(folder: Path, image_id: str, height: int, width: int, seed: int = 0) -> None:
    """A random JPEG and a mask of DeepGlobe colours made of a few horizontal bands."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / f"{image_id}_sat.jpg", quality=90)
    colours = ClassTable.deepglobe().colours
    bands = rng.integers(0, len(colours), size=4)
    mask = colours[bands[np.arange(height) * len(bands) // height]][:, None, :].repeat(width, axis=1)
    Image.fromarray(mask).save(folder / f"{image_id}_mask.png")


@pytest.fixture
def plain_dataset(tmp_path: Path) -> Path:
    """A plain folder of four 70x90 pairs (sizes that 32 does not divide)."""
    root = tmp_path / "raw"
    for k, image_id in enumerate(["11", "2", "305", "40"]):
        write_pair(root, image_id, 70, 90, seed=k)
    return root


def prepare_tiny_sample(root: Path, train: dict) -> Path:
    """root/params.yaml (resnet18, the `train` values given) and a tiny sample through the data stages:
    3 train and 3 val images of 64 px, 4 tiles of 32 px each, in root/tiles, encoded and splits."""
    from stages import encode, sample, split, tile

    params = write_params(
        root / "params.yaml",
        sample={"train_images": 6, "valid_images": 0, "test_images": 0, "image_size": 64},
        tile={"size": 32, "stride": 32},
        split={"ratios": {"train": 0.5, "val": 0.5, "test": 0.0}},
        model={"encoder": "resnet18"},
        train={"workers": 0, "restart_epochs": 1, **train},
    )
    sample.main([str(root / "raw"), "--params", str(params)])
    tile.main([str(root / "raw"), str(root / "tiles"), "--params", str(params)])
    encode.main([str(root / "tiles"), str(root / "encoded"), "--report", str(root / "encode.json")])
    split.main(
        [
            str(root / "tiles"),
            str(root / "encoded"),
            str(root / "splits"),
            "--params",
            str(params),
            "--distribution",
            str(root / "distribution.json"),
        ]
    )
    return params


def write_params(path: Path, **sections: dict) -> Path:
    """params.yaml with the repo's values, sections replaced by the ones given."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, values in sections.items():
        params[name] = {**params[name], **values}
    path.write_text(yaml.safe_dump(params))
    return path


# The longest runs start first, so that under pytest-xdist the other workers fill in around them
# rather than wait on them at the end.
LONGEST_FIRST = (
    "tests/test_readme_comparing.py",
    "tests/test_pipeline.py::test_a_kill_during_any_stage",  # from scratch: it needs no reproduced project
    "tests/test_pipeline.py",
    "tests/test_readme.py",
    "tests/test_scenes_end_to_end.py",
    "tests/test_benchmarks.py",
    "tests/test_gpu_check.py",
    "tests/test_region.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((k for k, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)
