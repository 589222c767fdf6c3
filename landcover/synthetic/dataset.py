"""The synthetic dataset written in the Kaggle DeepGlobe layout: metadata.csv, class_dict.csv,
train/ (images and masks), valid/ and test/ (images only), masks with DeepGlobe's off-palette borders."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import cast

import numpy as np
from tqdm import tqdm

from landcover.data.palette import THRESHOLD, ClassTable
from landcover.io.imageio import write_jpeg, write_png
from landcover.synthetic.fields import edges
from landcover.synthetic.scene import DEEPGLOBE, generate_scene

SPLITS = ("train", "valid", "test")

# --- Masks ----------------------------------------------------------------------------------------
# Real DeepGlobe masks have values like (251, 3, 240) along region borders, and a few pixels whose
# thresholded colour is in no row. Shares are of the border pixels.
DRIFTED_BORDER_SHARE = 0.5
MAX_DRIFT = 30  # well inside the 128 threshold, so drifted values still read as their class
INVALID_BORDER_SHARE = 0.01


def _borders(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another class."""
    border = edges(labels)
    border[1:] |= labels[1:] != labels[:-1]
    border[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return border


def _colour_in_no_row(table: ClassTable) -> tuple[int, int, int] | None:
    """A 0/255 colour that thresholds to no class (pure red for DeepGlobe), or None if all 8 are taken."""
    used = {tuple(int(v) for v in colour) for colour in table.colours}
    free = (c for c in itertools.product((255, 0), repeat=3) if c not in used)
    return cast("tuple[int, int, int] | None", next(free, None))


def colour_mask(labels: np.ndarray, table: ClassTable, rng: np.random.Generator, off_palette: bool) -> np.ndarray:
    """HxWx3 uint8 RGB mask in the table's palette; with off_palette, pixels along region borders get
    off-palette values like real DeepGlobe masks: mostly values that are not exactly 0/255 but threshold
    at 128 to the right class colour (e.g. 251,3,240), plus a very small share (well under 0.1% of pixels)
    that threshold to a colour that is in no row (e.g. pure red 255,0,0) -> these become ignore pixels."""
    mask = table.colours[labels]
    if not off_palette:
        return mask
    if not table.is_binary:
        raise ValueError("off-palette border values need a table of 0/255 colours (the threshold rule)")
    border = np.flatnonzero(_borders(labels))
    pixels = mask.reshape(-1, 3)
    drifted = border[rng.random(border.size) < DRIFTED_BORDER_SHARE]
    drift = rng.integers(1, MAX_DRIFT + 1, size=(drifted.size, 3), dtype=np.uint8)
    values = pixels[drifted]
    pixels[drifted] = np.where(values >= THRESHOLD, values - drift, values + drift)
    invalid_colour = _colour_in_no_row(table)
    if invalid_colour is not None:
        pixels[border[rng.random(border.size) < INVALID_BORDER_SHARE]] = invalid_colour
    return mask


def _image_ids(seed: int, count: int) -> list[int]:
    """Distinct ids of 3 to 6 digits, like DeepGlobe's; asking for more keeps the earlier ones."""
    rng = np.random.default_rng([seed, len(SPLITS)])  # apart from every image's [seed, split, position]
    ids: dict[int, None] = {}  # an ordered set
    while len(ids) < count:
        ids[int(rng.integers(100, 1_000_000))] = None
    return list(ids)


def write_sample(
    root: Path,
    *,
    seed: int,
    train_images: int,
    valid_images: int,
    test_images: int,
    image_size: int,
    jpeg_quality: int,
    progress: bool = True,
) -> None:
    """Write metadata.csv, class_dict.csv, train/<id>_sat.jpg + train/<id>_mask.png, valid/<id>_sat.jpg,
    test/<id>_sat.jpg (no masks for valid/test, as in the real dataset) into root (exists, empty)."""
    root = Path(root)
    counts = {"train": train_images, "valid": valid_images, "test": test_images}
    jobs = [(split, position) for split in SPLITS for position in range(counts[split])]
    DEEPGLOBE.to_csv(root / "class_dict.csv")
    for split in SPLITS:
        (root / split).mkdir()
    rows = []
    for (split, position), image_id in tqdm(
        list(zip(jobs, _image_ids(seed, len(jobs)))), desc="sample", unit="image", disable=not progress
    ):
        # Seeded by split and position: an image does not change when other splits grow or shrink.
        rng = np.random.default_rng([seed, SPLITS.index(split), position])
        image, labels = generate_scene(rng, image_size)
        image_path = f"{split}/{image_id}_sat.jpg"
        write_jpeg(root / image_path, image, jpeg_quality)
        mask_path = ""
        if split == "train":  # the challenge never released masks for valid and test
            mask_path = f"{split}/{image_id}_mask.png"
            write_png(root / mask_path, colour_mask(labels, DEEPGLOBE, rng, off_palette=True))
        rows.append((image_id, split, image_path, mask_path))
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image_id", "split", "sat_image_path", "mask_path"])
        writer.writerows(rows)
