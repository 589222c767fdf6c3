"""Finding image/mask pairs in a DeepGlobe dataset root.

Two layouts are accepted: the public Kaggle copy (`metadata.csv`, `class_dict.csv`,
`train/<id>_sat.jpg` + `train/<id>_mask.png`; `valid/` and `test/` have no masks and are not
used), or a plain folder of `<id>_sat.jpg` / `<id>_mask.png` pairs, with DeepGlobe's colours
unless a `class_dict.csv` lies beside them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path

from landcover.data.naming import ID_PATTERN, IMAGE_SUFFIX, MASK_SUFFIX, natural_key
from landcover.data.palette import ClassTable
from landcover.io.errors import PipelineError
from landcover.io.textfiles import read_utf8

METADATA_COLUMNS = ("image_id", "split", "sat_image_path", "mask_path")


@dataclass(frozen=True)
class RawPair:
    image_id: str
    image: Path
    mask: Path


def read_class_table(root: str | Path) -> ClassTable:
    path = Path(root) / "class_dict.csv"
    return ClassTable.from_csv(path) if path.exists() else ClassTable.deepglobe()


def find_pairs(root: str | Path) -> list[RawPair]:
    """All labelled image/mask pairs under `root`, sorted by id; every image must have its mask."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"data.raw: {root} does not exist or is not a directory")
    metadata = root / "metadata.csv"
    pairs = _pairs_from_metadata(root, metadata) if metadata.exists() else _pairs_from_folder(root)
    if not pairs:
        raise PipelineError(f"data.raw: no labelled <id>{IMAGE_SUFFIX}/<id>{MASK_SUFFIX} pairs found in {root}")
    for pair in pairs:
        if not ID_PATTERN.match(pair.image_id):
            raise PipelineError(f"{pair.image}: image id {pair.image_id!r} must be letters, digits, '.' or '-'")
    return sorted(pairs, key=lambda pair: natural_key(pair.image_id))


def _metadata_rows(metadata: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every row of metadata.csv, its columns checked."""
    reader = csv.DictReader(io.StringIO(read_utf8(metadata, "metadata"), newline=""))
    try:
        missing = [column for column in METADATA_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{metadata}: missing column {missing[0]!r} (expected {','.join(METADATA_COLUMNS)})")
        return [(reader.line_num, row) for row in reader]  # line_num: the row's line, read just now
    except csv.Error as error:
        raise PipelineError(f"{metadata}, line {reader.line_num}: not a CSV metadata table ({error})") from None


def _refuse_repeats(metadata: Path, lines_and_values: Iterable[tuple[int, Hashable]], what: str) -> None:
    """An image listed on two lines would give its tiles twice: double weight, and perhaps in two splits."""
    first_line: dict[Hashable, int] = {}
    for line, value in lines_and_values:
        if value in first_line:
            raise PipelineError(f"{metadata}, lines {first_line[value]} and {line}: {what} {value} is listed twice")
        first_line[value] = line


def _outside(root: Path, path: Path) -> Path | None:
    """Where `path` leads (symlinks followed) if that is outside `root`, else None.

    A dataset is what lies under data.raw: a path out of it (absolute, `..`, a symlink) would copy
    whatever file it reaches into the tiles, and from there into any DVC remote."""
    resolved = path.resolve()
    return None if resolved.is_relative_to(root.resolve()) else resolved


def _pairs_from_metadata(root: Path, metadata: Path) -> list[RawPair]:
    rows = _metadata_rows(metadata)
    _refuse_repeats(metadata, [(line, repr(row["image_id"])) for line, row in rows], "image id")
    pairs, images = [], []  # images: (line, the file it resolves to)
    for line, row in rows:
        if row["split"] != "train":  # only train/ has masks
            continue
        where = f"{metadata}, line {line}"
        if not row["mask_path"]:
            raise PipelineError(f"{where}: training image {row['image_id']} has no mask_path")
        image, mask = root / row["sat_image_path"], root / row["mask_path"]
        for column, path in (("sat_image_path", image), ("mask_path", mask)):
            if (target := _outside(root, path)) is not None:
                raise PipelineError(f"{where}: {column} {row[column]!r} leads to {target}, outside data.raw ({root})")
            if not path.is_file():
                raise PipelineError(f"{path}: listed in {metadata.name} for image {row['image_id']} but missing")
        pairs.append(RawPair(row["image_id"], image, mask))
        images.append((line, image.resolve()))
    _refuse_repeats(metadata, images, "image")
    return pairs


def _pairs_from_folder(root: Path) -> list[RawPair]:
    images = {path.name[: -len(IMAGE_SUFFIX)]: path for path in root.glob(f"*{IMAGE_SUFFIX}")}
    masks = {path.name[: -len(MASK_SUFFIX)]: path for path in root.glob(f"*{MASK_SUFFIX}")}
    without_mask = sorted(images.keys() - masks.keys(), key=natural_key)
    if without_mask:
        image_id = without_mask[0]
        raise PipelineError(f"{images[image_id]}: no mask {image_id}{MASK_SUFFIX} beside it")
    without_image = sorted(masks.keys() - images.keys(), key=natural_key)
    if without_image:
        image_id = without_image[0]
        raise PipelineError(f"{masks[image_id]}: no image {image_id}{IMAGE_SUFFIX} beside it")
    pairs = [RawPair(image_id, images[image_id], masks[image_id]) for image_id in images]
    for path in [path for pair in pairs for path in (pair.image, pair.mask)]:
        if (target := _outside(root, path)) is not None:
            raise PipelineError(f"{path}: a link to {target}, outside data.raw ({root})")
    return pairs
