"""Splits are by image, seeded and stable; explicit lists (GLNet's) are honoured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landcover.data.encoding import ImagePixels
from landcover.data.palette import ClassTable
from landcover.data.splitting import (
    class_distribution,
    read_id_list,
    split_by_lists,
    split_by_ratios,
    split_counts,
    write_splits,
)
from landcover.data.tilestore import TileRecord, read_index
from landcover.io.errors import PipelineError
from tests.conftest import REPO

RATIOS = {"train": 0.7, "val": 0.15, "test": 0.15}
IDS = [str(i) for i in range(100, 140)]
# split_by_ratios of ids "1".."12" at 0.5/0.25/0.25 with seed 42, as it has always been
PINNED_SPLIT = {"train": ["1", "4", "7", "8", "10", "12"], "val": ["3", "5", "6"], "test": ["2", "9", "11"]}


def test_ratio_split_is_a_partition_and_repeats():
    first = split_by_ratios(IDS, RATIOS, seed=7)
    assert sorted(sum(first.values(), []), key=int) == IDS
    assert {name: len(ids) for name, ids in first.items()} == {"train": 28, "val": 6, "test": 6}
    assert split_by_ratios(list(reversed(IDS)), RATIOS, seed=7) == first  # input order does not matter
    assert split_by_ratios(IDS, RATIOS, seed=8) != first


def test_ratio_split_is_pinned_and_lists_ids_in_natural_order():
    """A seed's split must not move between versions: published scores name the images they used."""
    ids = [str(i) for i in range(1, 13)]
    split = split_by_ratios(ids, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=42)
    assert split == PINNED_SPLIT
    assert all(names == sorted(names, key=int) for names in split.values())  # 2 before 10


def test_split_counts_give_each_nonempty_split_an_image():
    assert split_counts(4, RATIOS) == {"train": 2, "val": 1, "test": 1}
    assert split_counts(5, {"train": 1.0, "val": 0.0, "test": 0.0}) == {"train": 5, "val": 0, "test": 0}
    with pytest.raises(PipelineError, match="2 image"):
        split_counts(2, RATIOS)


def test_tiles_of_one_image_never_land_in_two_splits(tmp_path):
    records = [
        TileRecord(f"{image_id}_y{y:05d}_x00000", image_id, y, 0, 10, 30, 10) for image_id in IDS for y in (0, 10, 20)
    ]
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


def test_split_counts_refuse_ratios_that_leave_no_training_image():
    with pytest.raises(PipelineError, match="3 images leave none for train"):
        split_counts(3, {"train": 0.1, "val": 0.5, "test": 0.4})
    assert split_counts(3, {"train": 0.1, "val": 0.45, "test": 0.45}) == {"train": 1, "val": 1, "test": 1}
    assert split_counts(10, {"train": 0.5, "val": 0.25, "test": 0.25}) == {"train": 6, "val": 2, "test": 2}
    assert split_counts(10, {"train": 0.6, "val": 0.0, "test": 0.4}) == {"train": 6, "val": 0, "test": 4}


def test_images_csv_lists_each_image_with_its_split(tmp_path):
    write_splits(tmp_path, {"train": ["2", "10"], "val": ["1"], "test": []}, [])
    assert (tmp_path / "images.csv").read_bytes() == b"image_id,split\n2,train\n10,train\n1,val\n"
    assert read_index(tmp_path / "test.csv") == []


def test_empty_train_list_and_blank_lines(tmp_path):
    lists = write_lists(tmp_path / "lists", "\n  \n", "1\n", "2_sat.jpg\n")
    assert read_id_list(lists / "train.txt") == []
    with pytest.raises(PipelineError, match="train.txt: no images"):
        split_by_lists(["1", "2"], lists)


def test_class_distribution_per_split():
    table = ClassTable(("a", "b"), np.array([[0, 0, 0], [255, 255, 255]]))
    counts = [ImagePixels("1", (30, 10), 5), ImagePixels("2", (0, 60), 0), ImagePixels("3", (0, 0), 9)]
    records = [TileRecord(f"{i}_{k}", i, 0, 0, 8, 8, 8) for i, n in (("1", 2), ("2", 3), ("3", 1)) for k in range(n)]
    report = class_distribution({"train": ["1", "2"], "val": ["3"], "test": []}, counts, records, table)
    assert report["train"] == {
        "images": 2,
        "tiles": 5,
        "labelled_pixels": 100,
        "ignored_pixels": 5,
        "class_share": {"a": 0.3, "b": 0.7},
    }
    assert report["val"] == {
        "images": 1,
        "tiles": 1,
        "labelled_pixels": 0,
        "ignored_pixels": 9,
        "class_share": {"a": None, "b": None},
    }
    assert report["test"]["images"] == 0 and report["test"]["tiles"] == 0
    thirds = class_distribution({"train": ["1"], "val": [], "test": []}, [ImagePixels("1", (1, 2), 0)], records, table)
    assert thirds["train"]["class_share"] == {"a": 0.333333, "b": 0.666667}  # rounded to 6 places
