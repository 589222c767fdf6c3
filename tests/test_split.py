"""Splits are by image, seeded and stable; explicit lists (GLNet's) are honoured."""
from __future__ import annotations

from pathlib import Path

import pytest

from stages.core.errors import PipelineError
from stages.core.splitting import read_id_list, split_by_lists, split_by_ratios, split_counts, write_splits
from stages.core.tilestore import TileRecord, read_index
from tests.conftest import REPO

RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}
IDS = [str(i) for i in range(100, 140)]


def test_ratio_split_is_a_partition_and_repeats():
    first = split_by_ratios(IDS, RATIOS, seed=7)
    assert sorted(sum(first.values(), []), key=int) == IDS
    assert {name: len(ids) for name, ids in first.items()} == {"train": 28, "val": 6, "test": 6}
    assert split_by_ratios(list(reversed(IDS)), RATIOS, seed=7) == first  # input order does not matter
    assert split_by_ratios(IDS, RATIOS, seed=8) != first


def test_split_counts_give_each_nonempty_split_an_image():
    assert split_counts(4, RATIOS) == {"train": 2, "val": 1, "test": 1}
    assert split_counts(5, {"train": 1.0, "val": 0.0, "test": 0.0}) == {"train": 5, "val": 0, "test": 0}
    with pytest.raises(PipelineError, match="2 image"):
        split_counts(2, RATIOS)


def test_tiles_of_one_image_never_land_in_two_splits(tmp_path):
    records = [TileRecord(f"{image_id}_y{y:05d}_x00000", image_id, y, 0, 10, 30, 10)
               for image_id in IDS for y in (0, 10, 20)]
    splits = split_by_ratios(IDS, RATIOS, seed=1)
    write_splits(tmp_path, splits, records)
    owners: dict[str, str] = {}
    for name in splits:
        for record in read_index(tmp_path / f"{name}.csv"):
            assert owners.setdefault(record.image_id, name) == name
    assert len(owners) == len(IDS)
    assert sum(len(read_index(tmp_path / f"{name}.csv")) for name in splits) == len(records)


def test_glnet_preset_ships_454_207_142_disjoint_lists():
    lists = {name: read_id_list(REPO / "splits" / "glnet" / f"{name}.txt") for name in ("train", "val", "test")}
    assert {name: len(ids) for name, ids in lists.items()} == {"train": 454, "val": 207, "test": 142}
    assert len(set().union(*map(set, lists.values()))) == 803
    splits = split_by_lists(sum(lists.values(), []), REPO / "splits" / "glnet")
    assert splits["test"] == sorted(lists["test"], key=int)


def write_lists(folder: Path, train: str, val: str, test: str) -> Path:
    folder.mkdir()
    for name, content in (("train", train), ("val", val), ("test", test)):
        (folder / f"{name}.txt").write_text(content)
    return folder


def test_lists_accept_bare_ids_and_leave_unlisted_images_out(tmp_path):
    lists = write_lists(tmp_path / "lists", "1_sat.jpg\n2\n", "3\n", "4_sat.jpg\n")
    assert split_by_lists(["1", "2", "3", "4", "5"], lists) == {"train": ["1", "2"], "val": ["3"], "test": ["4"]}


def test_lists_with_unknown_or_repeated_ids_are_refused(tmp_path):
    unknown = write_lists(tmp_path / "unknown", "1\n2\n", "3\n", "99\n")
    with pytest.raises(PipelineError, match=r"test.txt: 1 of 1 listed images are not in the dataset \(first: 99\)"):
        split_by_lists(["1", "2", "3"], unknown)
    repeated = write_lists(tmp_path / "repeated", "1\n2\n", "2\n", "3\n")
    with pytest.raises(PipelineError, match="val.txt: image 2 is also in train.txt"):
        split_by_lists(["1", "2", "3"], repeated)
    with pytest.raises(PipelineError, match="not found"):
        split_by_lists(["1"], tmp_path / "nowhere")
