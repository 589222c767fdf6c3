"""Finding image/mask pairs in a DeepGlobe dataset root.

Two layouts are accepted: the public Kaggle copy (`metadata.csv`, `class_dict.csv`,
`train/<id>_sat.jpg` + `train/<id>_mask.png`; `valid/` and `test/` have no masks and are not
used), or a plain folder of `<id>_sat.jpg` / `<id>_mask.png` pairs, with DeepGlobe's colours
unless a `class_dict.csv` lies beside them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from stages.core.data.naming import ID_PATTERN, IMAGE_SUFFIX, MASK_SUFFIX, natural_key
from stages.core.data.palette import ClassTable
from stages.core.io.errors import PipelineError
from stages.core.io.textfiles import read_utf8

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


def _pairs_from_metadata(root: Path, metadata: Path) -> list[RawPair]:
    reader = csv.DictReader(io.StringIO(read_utf8(metadata, "metadata"), newline=""))
    try:
        missing = [column for column in METADATA_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{metadata}: missing column {missing[0]!r} (expected {','.join(METADATA_COLUMNS)})")
        rows = [row for row in reader if row["split"] == "train"]  # only train/ has masks
    except csv.Error as error:
        raise PipelineError(f"{metadata}, line {reader.line_num}: not a CSV metadata table ({error})") from None
    pairs = []
    for row in rows:
        image = root / row["sat_image_path"]
        if not row["mask_path"]:
            raise PipelineError(f"{metadata}: training image {row['image_id']} has no mask_path")
        mask = root / row["mask_path"]
        for path in (image, mask):
            if not path.is_file():
                raise PipelineError(f"{path}: listed in {metadata.name} for image {row['image_id']} but missing")
        pairs.append(RawPair(row["image_id"], image, mask))
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
    return [RawPair(image_id, images[image_id], masks[image_id]) for image_id in images]
