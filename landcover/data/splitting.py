"""Splitting by image, never by tile: tiles of one image in two splits would leak; or, for a few large scenes,
by blocks of each scene, with a buffer of unused pixels between blocks of different splits."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landcover.data.encoding import ImagePixels, read_pixel_counts
from landcover.data.naming import IMAGE_SUFFIX, natural_key
from landcover.data.palette import IGNORE_INDEX, ClassTable
from landcover.data.scaling import BAND_STATISTICS, band_statistics, write_band_statistics
from landcover.data.tilestore import (
    BLOCKS_FILE,
    Region,
    TileRecord,
    TileStore,
    group_by_image,
    write_blocks,
    write_index,
)
from landcover.io.errors import PipelineError
from landcover.io.outputs import atomic_dir, write_json
from landcover.io.params import SPLIT_NAMES, SplitParams, choose

STATISTICS_TILES = 512  # training tiles (evenly spaced) whose pixels give a scene dataset's band statistics


def split_counts(total: int, ratios: dict[str, float]) -> dict[str, int]:
    """Images per split: rounded shares, every split with a positive ratio gets at least one."""
    wanted = [name for name in SPLIT_NAMES if ratios[name] > 0]
    if total < len(wanted):
        raise PipelineError(
            f"split.ratios: {total} image(s) cannot fill the {len(wanted)} splits "
            f"with a ratio above 0 ({', '.join(wanted)})"
        )
    counts = {name: max(1, round(ratios[name] * total)) if name in wanted else 0 for name in ("val", "test")}
    counts["train"] = total - counts["val"] - counts["test"]
    if counts["train"] < 1:
        raise PipelineError(f"split.ratios: {total} images leave none for train after val and test")
    return {name: counts[name] for name in SPLIT_NAMES}


def split_by_ratios(image_ids: list[str], ratios: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Seeded shuffle of the ids (sorted first, so the input order does not matter), cut by ratio."""
    ordered = sorted(image_ids, key=natural_key)
    shuffled = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    counts = split_counts(len(ordered), ratios)
    splits, start = {}, 0
    for name in SPLIT_NAMES:
        splits[name] = sorted(shuffled[start : start + counts[name]], key=natural_key)
        start += counts[name]
    return splits


def read_id_list(path: Path) -> list[str]:
    """One image a line, as `<id>_sat.jpg` (GLNet's lists) or a bare `<id>`; blank lines skipped."""
    if not path.is_file():
        raise PipelineError(f"split.lists: {path} not found (need train.txt, val.txt and test.txt)")
    ids = [line.strip().removesuffix(IMAGE_SUFFIX) for line in path.read_text().splitlines()]
    return [image_id for image_id in ids if image_id]


def split_by_lists(image_ids: list[str], lists_dir: Path) -> dict[str, list[str]]:
    """Splits from explicit lists; every listed id must be in the dataset, none in two lists."""
    available = set(image_ids)
    splits: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for name in SPLIT_NAMES:
        path = lists_dir / f"{name}.txt"
        ids = read_id_list(path)
        for image_id in ids:
            if image_id in owner:
                raise PipelineError(f"{path}: image {image_id} is also in {owner[image_id]}.txt")
            owner[image_id] = name
        missing = [image_id for image_id in ids if image_id not in available]
        if missing:
            raise PipelineError(
                f"{path}: {len(missing)} of {len(ids)} listed images are not in the dataset "
                f"(first: {missing[0]}); is data.raw the full DeepGlobe train folder?"
            )
        splits[name] = sorted(ids, key=natural_key)
    if not splits["train"]:
        raise PipelineError(f"{lists_dir / 'train.txt'}: no images")
    return splits


def write_splits(out_dir: Path, splits: dict[str, list[str]], records: list[TileRecord]) -> None:
    """out_dir/images.csv (image_id,split) and out_dir/<split>.csv (that split's tiles, index columns)."""
    split_of = {image_id: name for name, ids in splits.items() for image_id in ids}
    with open(out_dir / "images.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image_id", "split"])
        for name in SPLIT_NAMES:
            writer.writerows([image_id, name] for image_id in splits[name])
    for name in SPLIT_NAMES:
        write_index(out_dir / f"{name}.csv", (record for record in records if split_of.get(record.image_id) == name))


def class_distribution(
    splits: dict[str, list[str]], counts: list[ImagePixels], records: list[TileRecord], table: ClassTable
) -> dict[str, dict]:
    """Per split: images, tiles, labelled pixels and each class's share of them (metrics/)."""
    by_image = {image.image_id: image for image in counts}
    tiles_per_image: dict[str, int] = {}
    for record in records:
        tiles_per_image[record.image_id] = tiles_per_image.get(record.image_id, 0) + 1
    report = {}
    for name in SPLIT_NAMES:
        per_class = np.zeros(len(table), dtype=np.int64)
        ignored = 0
        for image_id in splits[name]:
            per_class += by_image[image_id].per_class
            ignored += by_image[image_id].ignored
        labelled = int(per_class.sum())
        report[name] = {
            "images": len(splits[name]),
            "tiles": sum(tiles_per_image.get(image_id, 0) for image_id in splits[name]),
            "labelled_pixels": labelled,
            "ignored_pixels": ignored,
            "class_share": {
                class_name: round(int(n) / labelled, 6) if labelled else None
                for class_name, n in zip(table.names, per_class)
            },
        }
    return report


# --- block split: a few large scenes cut into blocks ---------------------------------------------------


def scene_blocks(records: list[TileRecord], block_size: int) -> list[Region]:
    """Every scene of `records` cut into blocks of `block_size` (the last row and column smaller)."""
    blocks = []
    for _, tiles in sorted(group_by_image(records).items(), key=lambda item: natural_key(item[0])):
        height, width = tiles[0].image_height, tiles[0].image_width
        for y in range(0, height, block_size):
            for x in range(0, width, block_size):
                blocks.append(Region(tiles[0], y, x, min(block_size, height - y), min(block_size, width - x)))
    return blocks


def split_blocks(
    records: list[TileRecord], ratios: dict[str, float], seed: int, block_size: int, buffer: int
) -> tuple[dict[str, list[TileRecord]], list[tuple[Region, str]]]:
    """Blocks shuffled (seeded) and cut by ratio; each tile goes to its blocks' split, and is left out where it
    (widened by `buffer` pixels each side) reaches a block of another split: no training tile comes within
    `buffer` pixels of a test block."""
    blocks = scene_blocks(records, block_size)
    order = np.random.default_rng(seed).permutation(len(blocks))
    counts = split_counts(len(blocks), ratios)
    names = [name for name in SPLIT_NAMES for _ in range(counts[name])]
    split_of_block = [""] * len(blocks)
    for position, block_index in enumerate(order):
        split_of_block[block_index] = names[position]
    split_of = {
        (block.image_id, block.y // block_size, block.x // block_size): split
        for block, split in zip(blocks, split_of_block)
    }
    tiles: dict[str, list[TileRecord]] = {name: [] for name in SPLIT_NAMES}
    for record in records:
        top, left = max(0, record.y - buffer), max(0, record.x - buffer)
        bottom = min(record.image_height, record.y + record.size + buffer) - 1
        right = min(record.image_width, record.x + record.size + buffer) - 1
        touched = {
            split_of[(record.image_id, row, column)]
            for row in range(top // block_size, bottom // block_size + 1)
            for column in range(left // block_size, right // block_size + 1)
        }
        if len(touched) == 1:
            tiles[touched.pop()].append(record)
    return tiles, list(zip(blocks, split_of_block))


def write_block_splits(out_dir: Path, tiles: dict[str, list[TileRecord]], blocks: list[tuple[Region, str]]) -> None:
    """out_dir/blocks.csv (every block and its split) and out_dir/<split>.csv (that split's tiles)."""
    write_blocks(out_dir / BLOCKS_FILE, blocks)
    for name in SPLIT_NAMES:
        write_index(out_dir / f"{name}.csv", tiles[name])


def block_class_distribution(
    tiles: dict[str, list[TileRecord]],
    blocks: list[tuple[Region, str]],
    read_mask: Callable[[Region], np.ndarray],
    table: ClassTable,
) -> dict[str, dict]:
    """Per split: blocks, tiles, labelled pixels and each class's share of them, counted over the split's blocks."""
    report = {}
    for name in SPLIT_NAMES:
        histogram = np.zeros(256, dtype=np.int64)
        mine = [block for block, split in blocks if split == name]
        for block in mine:
            histogram += np.bincount(read_mask(block).ravel(), minlength=256)
        per_class = histogram[: len(table)]
        labelled = int(per_class.sum())
        report[name] = {
            "blocks": len(mine),
            "tiles": len(tiles[name]),
            "labelled_pixels": labelled,
            "ignored_pixels": int(histogram[IGNORE_INDEX]),
            "class_share": {
                class_name: round(int(n) / labelled, 6) if labelled else None
                for class_name, n in zip(table.names, per_class)
            },
        }
    return report


# --- split.method: the split stage's work, from the tile store to the split indexes ----------------------


def write_training_statistics(store: TileStore, train_tiles: list[TileRecord], out_dir: Path) -> None:
    """Each band's mean and std over (up to STATISTICS_TILES evenly spaced) training tiles of a scene dataset, for
    data.scaling statistics (and auto on types other than uint8): measured once, here, on the training split only,
    a tile at a time."""
    if store.scenes is None or not train_tiles:
        return  # DeepGlobe's uint8 RGB takes ImageNet's numbers
    picked = train_tiles[:: max(1, len(train_tiles) // STATISTICS_TILES)]
    statistics = band_statistics(tile_images(store, picked))
    write_band_statistics(out_dir / BAND_STATISTICS, store.bands, store.dtype, statistics)


def tile_images(store: TileStore, tiles: list[TileRecord]) -> Iterator[np.ndarray]:
    """The images of `tiles`, one at a time, each scene opened once."""
    for image_tiles in group_by_image(tiles).values():
        windows = store.windows(image_tiles[0], masks=False)
        try:
            yield from (windows.image(tile) for tile in image_tiles)
        finally:
            windows.close()


@dataclass(frozen=True)
class SplitJob:
    """What a split method reads and where it writes: the tile store (with the encode stage's output), its class
    table and tile index, the split params, the splits folder and the class distribution's file."""

    store: TileStore
    table: ClassTable
    records: list[TileRecord]
    params: SplitParams
    out: Path
    distribution: Path


def _by_blocks(job: SplitJob) -> list[str]:
    """split.method blocks: blocks of scenes, shuffled (seeded) and cut by ratio; returns the summary."""
    params, records = job.params, job.records
    tiles, blocks = split_blocks(records, params.ratios, params.seed, params.block_size, params.buffer)
    with atomic_dir(job.out) as staging:
        write_block_splits(staging, tiles, blocks)
        write_training_statistics(job.store, tiles["train"], staging)
    write_json(job.distribution, block_class_distribution(tiles, blocks, job.store.region_class_mask, job.table))
    left_out = len(records) - sum(len(split) for split in tiles.values())
    return [
        "split: "
        + ", ".join(f"{name} {sum(split == name for _, split in blocks)} blocks" for name in SPLIT_NAMES)
        + f"; {left_out} tiles reach blocks of two splits and are left out"
    ]


def _by_images(job: SplitJob, split: Callable[[list[str]], dict[str, list[str]]]) -> list[str]:
    """Whole images to splits as `split` assigns their ids; returns the summary (images left out first)."""
    counts = read_pixel_counts(job.store.pixel_counts_path, job.table)
    image_ids = [image.image_id for image in counts]
    splits = split(image_ids)
    with atomic_dir(job.out) as staging:
        write_splits(staging, splits, job.records)
        train_ids = set(splits["train"])
        train_tiles = [record for record in job.records if record.image_id in train_ids]
        write_training_statistics(job.store, train_tiles, staging)
    write_json(job.distribution, class_distribution(splits, counts, job.records, job.table))
    summary = "split: " + ", ".join(f"{name} {len(splits[name])} images" for name in SPLIT_NAMES)
    unlisted = len(image_ids) - sum(len(ids) for ids in splits.values())
    if not unlisted:
        return [summary]
    # only lists leave images out: ratios share them all
    note = f"split: {unlisted} images of the dataset are in none of the lists in {job.params.lists}, left out"
    return [note, summary]


# split.method: each name's split of a tile store into the split indexes; returns the stage's summary lines
SPLIT_METHODS: dict[str, Callable[[SplitJob], list[str]]] = {
    "ratios": lambda job: _by_images(job, lambda ids: split_by_ratios(ids, job.params.ratios, job.params.seed)),
    "lists": lambda job: _by_images(job, lambda ids: split_by_lists(ids, Path(job.params.lists))),
    "blocks": _by_blocks,
}


def split_method(params: SplitParams) -> Callable[[SplitJob], list[str]]:
    """split.method's entry of SPLIT_METHODS, or the one-line error naming the key and its names."""
    return choose("split.method", params.method, SPLIT_METHODS)
