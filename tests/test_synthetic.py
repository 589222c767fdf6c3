"""The synthetic sample: DeepGlobe's layout, determinism, realistic masks, and a task that needs texture."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from landcover.data.palette import IGNORE_INDEX, ClassTable, colour_to_index
from landcover.synthetic.dataset import colour_mask, write_sample
from landcover.synthetic.scene import generate_scene

TABLE = ClassTable.deepglobe()
AGRICULTURE = TABLE.index_of("agriculture_land")
RANGELAND = TABLE.index_of("rangeland")
WATER = TABLE.index_of("water")
UNKNOWN = TABLE.index_of("unknown")
LAND = [index for index in range(len(TABLE)) if index != UNKNOWN]
SAMPLE = dict(seed=7, valid_images=2, test_images=1, image_size=96, jpeg_quality=90, progress=False)
CROSS = ndimage.generate_binary_structure(2, 1)


def files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def metadata(root: Path) -> list[dict[str, str]]:
    with open(root / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def borders(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another class."""
    return ndimage.grey_dilation(labels, footprint=CROSS) != ndimage.grey_erosion(labels, footprint=CROSS)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    write_sample(root, train_images=3, **SAMPLE)
    return root


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, np.ndarray]]:
    """Scenes for the statistical checks: enough independent regions for stable pooled shares and colours."""
    return [generate_scene(np.random.default_rng([2018, k]), 256) for k in range(48)]


def test_same_arguments_give_byte_identical_files(sample, tmp_path):
    write_sample(tmp_path, train_images=3, **SAMPLE)
    assert files(tmp_path) == files(sample)


def test_an_image_does_not_depend_on_how_many_are_asked_for(sample, tmp_path):
    write_sample(tmp_path, train_images=2, **SAMPLE)
    first_two = {row["image_id"] for row in metadata(sample)[:2]}
    assert {row["image_id"] for row in metadata(tmp_path)[:2]} == first_two
    smaller, larger = files(tmp_path), files(sample)
    shared = [name for name in smaller if name.startswith("train/")]
    assert len(shared) == 4 and all(smaller[name] == larger[name] for name in shared)


def test_layout_is_the_kaggle_deepglobe_one(sample):
    with open(sample / "metadata.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["image_id", "split", "sat_image_path", "mask_path"]
    rows = metadata(sample)
    assert [row["split"] for row in rows] == ["train"] * 3 + ["valid"] * 2 + ["test"]
    ids = [row["image_id"] for row in rows]
    assert len(set(ids)) == len(ids) and all(100 <= int(image_id) <= 999_999 for image_id in ids)
    for row in rows:
        assert row["sat_image_path"] == f"{row['split']}/{row['image_id']}_sat.jpg"
        assert row["mask_path"] == (f"train/{row['image_id']}_mask.png" if row["split"] == "train" else "")
        with Image.open(sample / row["sat_image_path"]) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (96, 96))
    # Masks exist for train only, as in the real download.
    assert sorted(path.name for path in (sample / "train").iterdir()) == sorted(
        name for row in rows[:3] for name in (f"{row['image_id']}_sat.jpg", f"{row['image_id']}_mask.png")
    )
    assert not list(sample.glob("valid/*_mask.png")) and not list(sample.glob("test/*_mask.png"))
    assert ClassTable.from_csv(sample / "class_dict.csv") == TABLE


def test_written_masks_have_few_ignored_pixels(sample):
    rows = [row for row in metadata(sample) if row["mask_path"]]
    assert len(rows) == 3  # the sample's train images: a loop over none would check nothing
    for row in rows:
        with Image.open(sample / row["mask_path"]) as image:
            assert (image.mode, image.size) == ("RGB", (96, 96))
            index, ignored = colour_to_index(np.asarray(image), TABLE)
        assert ignored < 0.001 * index.size


@pytest.mark.parametrize("size", [33, 96])
def test_scene_shapes_and_determinism(size):
    image, labels = generate_scene(np.random.default_rng(3), size)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert labels.shape == (size, size) and labels.dtype == np.uint8 and labels.max() < len(TABLE)
    again = generate_scene(np.random.default_rng(3), size)
    assert np.array_equal(image, again[0]) and np.array_equal(labels, again[1])


def test_off_palette_values_only_along_borders():
    _, labels = generate_scene(np.random.default_rng(11), 512)
    mask = colour_mask(labels, TABLE, np.random.default_rng(0), off_palette=True)
    on_border = borders(labels)
    interior = ~on_border
    assert np.array_equal(mask[interior], TABLE.colours[labels[interior]])
    off_palette = ~np.isin(mask, (0, 255)).all(axis=2)
    assert off_palette[on_border].mean() > 0.2 and not off_palette[interior].any()

    index, ignored = colour_to_index(mask, TABLE)
    # A few pixels in no row, like DeepGlobe's pure red: a small share of the border, far below 0.1%.
    assert 0 < ignored < 0.05 * on_border.sum() and ignored < 0.001 * labels.size
    assert on_border[index == IGNORE_INDEX].all()
    valid = index != IGNORE_INDEX
    assert np.array_equal(index[valid], labels[valid])  # drifted values still threshold to their class


def test_plain_mask_is_the_palette():
    labels = np.arange(len(TABLE), dtype=np.uint8).repeat(3).reshape(3, -1)
    mask = colour_mask(labels, TABLE, np.random.default_rng(0), off_palette=False)
    assert np.array_equal(mask, TABLE.colours[labels])


def test_class_imbalance_is_deepglobe_like(scenes):
    counts = sum(np.bincount(labels.ravel(), minlength=len(TABLE)) for _, labels in scenes)
    shares = counts / counts.sum()
    assert shares.argmax() == AGRICULTURE and 0.35 < shares[AGRICULTURE] < 0.75
    assert WATER in np.argsort(shares[LAND])[:2]  # rare, like DeepGlobe's 3%
    assert shares[UNKNOWN] < 0.08 and (counts[LAND] > 0).all()


def test_regions_are_large_with_smooth_borders(scenes):
    for _, labels in scenes:
        assert borders(labels).mean() < 0.05  # pixel noise would put most pixels on a border
    # Curved, not rectangular: where a 2x2 window holds a border, the border often steps both
    # across and down (a staircase); around axis-aligned rectangles it does so only at corners.
    on_border = stepping_both_ways = 0
    for _, labels in scenes:
        top_left, top_right, bottom_left, bottom_right = (
            labels[:-1, :-1],
            labels[:-1, 1:],
            labels[1:, :-1],
            labels[1:, 1:],
        )
        steps_across = (top_left != top_right) | (bottom_left != bottom_right)
        steps_down = (top_left != bottom_left) | (top_right != bottom_right)
        stepping_both_ways += np.count_nonzero(steps_across & steps_down)
        on_border += np.count_nonzero(steps_across | steps_down)
    assert stepping_both_ways > 0.3 * on_border


def coherence(image: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """How much the local gradients share one orientation (structure tensor): 1 for stripes, low for mottling."""
    grey = image.astype(np.float32).mean(axis=2)
    gy, gx = ndimage.sobel(grey, axis=0), ndimage.sobel(grey, axis=1)
    jyy, jxx, jxy = (ndimage.gaussian_filter(product, sigma) for product in (gy * gy, gx * gx, gx * gy))
    return np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-6)


def test_agriculture_and_rangeland_differ_in_texture_not_colour(scenes):
    colours: dict[int, list[np.ndarray]] = {AGRICULTURE: [], RANGELAND: []}
    texture: dict[int, list[np.ndarray]] = {AGRICULTURE: [], RANGELAND: []}
    for image, labels in scenes:
        orientation = coherence(image)
        for cls in colours:
            inner = ndimage.binary_erosion(labels == cls, iterations=6)  # away from other classes
            colours[cls].append(image[inner].astype(np.float64))
            texture[cls].append(orientation[inner])
    agriculture, rangeland = (np.concatenate(colours[cls]) for cls in (AGRICULTURE, RANGELAND))
    assert len(agriculture) > 10_000 and len(rangeland) > 10_000

    spread = np.sqrt(np.concatenate([agriculture, rangeland]).var(axis=0).sum())
    # Classes of distinct colours (agriculture and water or barren) are about 2 spreads apart.
    assert np.linalg.norm(agriculture.mean(axis=0) - rangeland.mean(axis=0)) < 0.6 * spread

    def balanced_accuracy(agriculture_score: np.ndarray, rangeland_score: np.ndarray) -> float:
        threshold = (np.median(agriculture_score) + np.median(rangeland_score)) / 2
        return ((agriculture_score > threshold).mean() + (rangeland_score <= threshold).mean()) / 2

    # Nearest class mean in RGB barely beats chance; one texture statistic nearly separates the classes.
    centre_a, centre_r = agriculture.mean(axis=0), rangeland.mean(axis=0)
    colour_score = [
        np.linalg.norm(pixels - centre_r, axis=1) - np.linalg.norm(pixels - centre_a, axis=1)
        for pixels in (agriculture, rangeland)
    ]
    assert balanced_accuracy(*colour_score) < 0.7
    assert balanced_accuracy(*(np.concatenate(texture[cls]) for cls in (AGRICULTURE, RANGELAND))) > 0.85
