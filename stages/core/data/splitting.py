"""Splitting by image, never by tile: tiles of one image in two splits would leak."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from stages.core.data.encoding import ImagePixels
from stages.core.data.naming import IMAGE_SUFFIX, natural_key
from stages.core.data.palette import ClassTable
from stages.core.data.tilestore import TileRecord, write_index
from stages.core.io.errors import PipelineError
from stages.core.io.params import SPLIT_NAMES


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
