"""benchmarks.scale's dataset: DeepGlobe Land Cover's Kaggle layout and counts, every image derived from one of a
few synthetic base scenes so that no two images share a tile's bytes (as in real data, DVC's cache cannot
deduplicate them). Built once into a cache folder, written to a temporary folder and renamed when complete.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEEPGLOBE_IMAGES = {"train": 803, "valid": 171, "test": 172}  # the Kaggle copy; only train/ has masks
SPLITS = tuple(DEEPGLOBE_IMAGES)
JPEG_QUALITY = 90
SEED = 2018
BASE_SCENES = 24  # generate_scene calls (about 2.4 s each at 2448 px); every image derives from one
# Per-image colour offsets: every triple in -6..+6, drawn without replacement within a base scene.
COLOUR_OFFSETS = np.array(list(itertools.product(range(-6, 7), repeat=3)), dtype=np.int16)
GENERATION_METHOD = (
    "derived: {bases} base scenes from landcover.synthetic generate_scene; each image is a base scene circularly "
    "shifted by random prime offsets (np.roll of image and labels), turned by one of the 8 flips/rotations, "
    "plus a per-image colour offset (-6..+6 per channel, distinct within a base); JPEG quality 90, colour "
    "masks with off-palette borders (colour_mask)"
)


def split_counts(labelled: int) -> dict[str, int]:
    """Images per folder: `labelled` in train/, valid/ and test/ in DeepGlobe's proportions (at least 1)."""
    full = DEEPGLOBE_IMAGES["train"]
    return {
        "train": labelled,
        **{split: max(1, round(labelled * DEEPGLOBE_IMAGES[split] / full)) for split in ("valid", "test")},
    }


def image_ids(seed: int, count: int) -> list[int]:
    """`count` distinct ids of 3 to 6 digits, like DeepGlobe's."""
    return [int(i) + 100 for i in np.random.default_rng([seed, 0]).choice(1_000_000 - 100, count, replace=False)]


def primes_below(limit: int) -> np.ndarray:
    sieve = np.ones(limit, dtype=bool)
    sieve[:2] = False
    for n in range(2, math.isqrt(limit - 1) + 1):
        if sieve[n]:
            sieve[n * n :: n] = False
    return np.flatnonzero(sieve)


@dataclass(frozen=True)
class Derivation:
    """How one image is made from its base scene."""

    base: int
    shift: tuple[int, int]  # circular shift (rows, columns): primes, so a multiple of no tile size
    rotation: int  # quarter turns
    flip: bool  # left-right, after the rotation
    colour_offset: tuple[int, int, int]  # added to R, G, B


def base_count(images: int) -> int:
    """Base scenes for `images` images: BASE_SCENES, fewer for fewer images, more if the colour offsets run out."""
    return min(images, max(BASE_SCENES, math.ceil(images / len(COLOUR_OFFSETS))))


def plan_derivations(seed: int, images: int, size: int) -> list[Derivation]:
    """Image k derives from base k % bases; its transform is drawn from its own generator."""
    bases = base_count(images)
    primes = primes_below(size)
    primes = primes[primes > size // 8] if (primes > size // 8).any() else primes
    offsets = [np.random.default_rng([seed, 1, base]).permutation(len(COLOUR_OFFSETS)) for base in range(bases)]
    plans = []
    for k in range(images):
        rng = np.random.default_rng([seed, 2, k])
        base = k % bases
        red, green, blue = (int(v) for v in COLOUR_OFFSETS[offsets[base][k // bases]])
        plans.append(
            Derivation(
                base,
                (int(rng.choice(primes)), int(rng.choice(primes))),
                int(rng.integers(4)),
                bool(rng.integers(2)),
                (red, green, blue),
            )
        )
    return plans


def derive(image: np.ndarray, labels: np.ndarray, plan: Derivation) -> tuple[np.ndarray, np.ndarray]:
    """A new image and its labels from a base scene: shifted, turned, flipped, colour-offset."""
    image = np.rot90(np.roll(image, plan.shift, axis=(0, 1)), plan.rotation)
    labels = np.rot90(np.roll(labels, plan.shift, axis=(0, 1)), plan.rotation)
    if plan.flip:
        image, labels = image[:, ::-1], labels[:, ::-1]
    image = np.clip(image + np.array(plan.colour_offset, dtype=np.int16), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def write_dataset(root: Path, labelled: int, size: int, seed: int = SEED) -> dict:
    """The Kaggle layout in `root` (an empty folder), every image derived from a base scene; returns its description."""
    from landcover.io.imageio import write_jpeg, write_png
    from landcover.synthetic.dataset import colour_mask
    from landcover.synthetic.scene import DEEPGLOBE, generate_scene

    start = time.perf_counter()
    counts = split_counts(labelled)
    jobs = [(split, position) for split in SPLITS for position in range(counts[split])]
    ids = image_ids(seed, len(jobs))
    plans = plan_derivations(seed, len(jobs), size)
    bases = base_count(len(jobs))
    DEEPGLOBE.to_csv(root / "class_dict.csv")
    for split in SPLITS:
        (root / split).mkdir()
    rows: dict[int, tuple[int, str, str, str]] = {}  # by job, written in job order
    for base in range(bases):  # one base scene in memory at a time
        base_image, base_labels = generate_scene(np.random.default_rng([seed, 3, base]), size)
        for k in range(base, len(jobs), bases):
            (split, _), image_id = jobs[k], ids[k]
            image, labels = derive(base_image, base_labels, plans[k])
            image_path, mask_path = f"{split}/{image_id}_sat.jpg", ""
            write_jpeg(root / image_path, image, JPEG_QUALITY)
            if split == "train":
                mask_path = f"{split}/{image_id}_mask.png"
                mask = colour_mask(labels, DEEPGLOBE, np.random.default_rng([seed, 4, k]), off_palette=True)
                write_png(root / mask_path, mask)
            rows[k] = (image_id, split, image_path, mask_path)
        print(f"  base scene {base + 1}/{bases}: {len(range(base, len(jobs), bases))} images", flush=True)
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image_id", "split", "sat_image_path", "mask_path"])
        writer.writerows(rows[k] for k in range(len(jobs)))
    description = {
        "method": GENERATION_METHOD.format(bases=bases),
        "base_scenes": bases,
        "seed": seed,
        "images": counts,
        "image_size": size,
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    (root / "scale-dataset.json").write_text(json.dumps(description, indent=2) + "\n")
    return description


def dataset_folder(cache: Path, labelled: int, size: int) -> Path:
    """Where the dataset of `labelled` images of `size` px lies; its description file is written last."""
    return cache / f"deepglobe-{labelled}-{size}px"


def ensure_dataset(cache: Path, labelled: int, size: int) -> Path:
    """The dataset for (labelled, size) in `cache`, built once; a build that did not finish is never reused."""
    from landcover.io.outputs import process_alive

    root = dataset_folder(cache, labelled, size)
    if (root / "scale-dataset.json").is_file():
        return root
    for stale in cache.glob(f".{root.name}.tmp-*"):  # left by a build that was killed
        if not process_alive(int(stale.name.rsplit("-", 1)[1])):
            shutil.rmtree(stale)
    staging = cache / f".{root.name}.tmp-{os.getpid()}"
    staging.mkdir(parents=True)
    total = sum(split_counts(labelled).values())
    print(
        f"building the dataset once: {total} images of {size}x{size} px into {root}\n"
        f"  generation: {GENERATION_METHOD.format(bases=base_count(total))}",
        flush=True,
    )
    try:
        write_dataset(staging, labelled, size)
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root
