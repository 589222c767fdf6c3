"""Prediction split across processes (torchrun, gloo on the CPU) writes what one process writes, byte for
byte, each image by exactly one rank; if any rank fails, nothing is published."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from landcover.data.palette import ClassTable
from landcover.data.tilestore import TileStore, group_by_image, read_index
from landcover.model.checkpoint import checkpoint_config, save_checkpoint
from landcover.model.model import build_model
from landcover.model.ranks import Ranks, ranks_from_environment
from stages import tile
from tests.conftest import REPO, write_pair, write_params

IDS = ["11", "2", "305", "40", "7"]  # five images: two ranks get 3 and 2


def test_rank_r_takes_images_r_r_plus_w_and_so_on():
    items = list("abcdefg")
    shares = [Ranks(rank, 3).share(items) for rank in range(3)]
    assert shares == [["a", "d", "g"], ["b", "e"], ["c", "f"]]
    assert Ranks().share(items) == items


def test_ranks_come_from_torchruns_environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert ranks_from_environment() == Ranks(0, 1, 0)  # plain python: one rank
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert ranks_from_environment() == Ranks(3, 4, 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert ranks_from_environment() == Ranks(3, 4, 1, local_world=2)


def test_processes_on_one_machine_share_its_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert Ranks().threads is None  # alone: each runtime's own default, all cores
    assert Ranks(0, 4, 0, local_world=4).threads == 4
    assert Ranks(1, 6, 1, local_world=3).threads == 5
    assert Ranks(0, 32, 0, local_world=32).threads == 1  # never none


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Tiles of five small images and a random resnet18 checkpoint."""
    root = tmp_path_factory.mktemp("ranks")
    for k, image_id in enumerate(IDS):
        write_pair(root / "raw", image_id, 70, 90, seed=k)
    # the checkpoint's own PyTorch model (the ONNX runtimes would need the export stage's files)
    params = write_params(
        root / "params.yaml", tile={"size": 32, "stride": 32}, predict={"runtime": "torch", "int8": False}
    )
    tile.main([str(root / "raw"), str(root / "tiles"), "--params", str(params)])
    torch.manual_seed(0)
    table = ClassTable.deepglobe()
    save_checkpoint(
        root / "best.pt",
        model=build_model("resnet18", len(table)).state_dict(),
        config=checkpoint_config("resnet18", table, 32),
    )
    return root


def run_predict(root: Path, out: Path, processes: int, tiles: Path | None = None) -> subprocess.CompletedProcess:
    """The predict stage on the tiles' whole index, as dvc.yaml starts it: plain python (1) or torchrun (more)."""
    tiles = tiles or root / "tiles"
    launcher = ["-m", "stages.launch", str(processes), "stages.predict"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    return subprocess.run(
        [
            sys.executable,
            *launcher,
            "--checkpoint",
            str(root / "best.pt"),
            "--tiles",
            str(tiles),
            "--split",
            str(tiles / "index.csv"),
            "--output",
            str(out),
            "--params",
            str(root / "params.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_two_processes_write_what_one_writes_byte_for_byte_each_image_once(prepared, tmp_path):
    one = run_predict(prepared, tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_predict(prepared, tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    expected = snapshot(tmp_path / "one")
    assert sorted(expected) == sorted(f"{i}{suffix}" for i in IDS for suffix in (".png", "_colour.png"))
    assert snapshot(tmp_path / "two") == expected
    order = list(group_by_image(read_index(prepared / "tiles" / "index.csv")))
    for rank in (0, 1):  # rank r predicted images r, r + 2, ... and no other (the ranks' output may interleave)
        assert re.search(rf"predict \(rank {rank} of 2\): predicted {' '.join(order[rank::2])}(?![ \d])", two.stdout)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no staging left


def test_a_failing_rank_publishes_nothing_and_keeps_the_previous_output(prepared, tmp_path):
    """Rank 1 meets a damaged image; rank 0 predicts its own images fine but must not publish them."""
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in (prepared / "tiles").iterdir():  # the tiles, one image of rank 1 damaged
        (damaged / path.name).symlink_to(path)
    (damaged / "images").unlink()
    (damaged / "images").mkdir()
    order = list(group_by_image(read_index(prepared / "tiles" / "index.csv")))
    store = TileStore(prepared / "tiles")
    for image_id in order:
        source = store.image_path(image_id)
        target = damaged / "images" / source.name
        target.write_bytes(
            source.read_bytes()[: source.stat().st_size // 2] if image_id == order[3] else source.read_bytes()
        )
    out = tmp_path / "predictions"
    out.mkdir()
    (out / "previous.png").write_bytes(b"the last good output")
    failed = run_predict(prepared, out, 2, tiles=damaged)
    assert failed.returncode != 0
    assert f"{order[3]}" in failed.stderr and "cannot decode image" in failed.stderr
    assert "another process of the split prediction failed" in failed.stderr  # rank 0 learnt it and stopped
    assert snapshot(out) == {"previous.png": b"the last good output"}
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # staging removed
