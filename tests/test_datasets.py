"""Training samples: uint8 tensors, augmented the same way for the same (seed, epoch, index)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.core.augment import training_augmentation
from stages.core.datasets import TileDataset, sample_seed
from stages.core.palette import IGNORE_INDEX
from stages.core.tilestore import TileRecord

TILE = 32
NUM_TILES = 3


class ArrayStore:
    """Stands in for a TileStore: each tile's image and class mask from memory, no files."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.images = {f"t{i}": rng.integers(0, 256, (TILE, TILE, 3), dtype=np.uint8) for i in range(NUM_TILES)}
        # classes 0-4 with ignored pixels in a checkerboard of 4-pixel blocks, so every crop has some
        masks = rng.integers(0, 5, (NUM_TILES, TILE, TILE)).astype(np.uint8)
        blocks = (np.add.outer(np.arange(TILE) // 4, np.arange(TILE) // 4) % 2).astype(bool)
        masks[:, blocks] = IGNORE_INDEX
        self.masks = {f"t{i}": masks[i] for i in range(NUM_TILES)}

    def read_image(self, record: TileRecord) -> np.ndarray:
        return self.images[record.tile].copy()

    def read_class_mask(self, record: TileRecord) -> np.ndarray:
        return self.masks[record.tile].copy()


RECORDS = [TileRecord(f"t{i}", "img", 0, i * TILE, TILE, TILE, NUM_TILES * TILE) for i in range(NUM_TILES)]


def augmented_dataset(seed: int = 0) -> TileDataset:
    return TileDataset(RECORDS, ArrayStore(), training_augmentation(TILE, scale_min=0.3, colour_jitter=0.2), seed=seed)


def samples(dataset: TileDataset, order=range(NUM_TILES)) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {index: tuple(t.numpy() for t in dataset[index]) for index in order}


def test_sample_seed_is_fixed_by_seed_epoch_and_index_alone():
    assert sample_seed(7, 2, 5) == sample_seed(7, 2, 5)
    neighbours = {sample_seed(7, 2, 5), sample_seed(8, 2, 5), sample_seed(7, 3, 5), sample_seed(7, 2, 6),
                  sample_seed(2, 7, 5), sample_seed(5, 2, 7)}
    assert len(neighbours) == 6  # changing any one, or swapping two, gives another seed
    assert all(isinstance(seed, int) and 0 <= seed < 2 ** 32 for seed in neighbours)


def test_without_augmentation_samples_are_the_stored_tiles_as_uint8_tensors():
    store = ArrayStore()
    dataset = TileDataset(RECORDS, store)
    assert len(dataset) == NUM_TILES
    image, mask = dataset[1]
    assert isinstance(image, torch.Tensor) and isinstance(mask, torch.Tensor)
    assert image.dtype == torch.uint8 and image.shape == (TILE, TILE, 3)  # HWC: normalised on the device
    assert mask.dtype == torch.uint8 and mask.shape == (TILE, TILE)
    np.testing.assert_array_equal(image.numpy(), store.images["t1"])
    np.testing.assert_array_equal(mask.numpy(), store.masks["t1"])


def test_augmented_samples_keep_shape_dtype_and_class_values_including_ignored():
    dataset = augmented_dataset()
    for image, mask in samples(dataset).values():
        assert image.dtype == np.uint8 and image.shape == (TILE, TILE, 3) and image.flags.c_contiguous
        assert mask.dtype == np.uint8 and mask.shape == (TILE, TILE)
        # nearest-neighbour resampling: no invented classes, and the ignore value survives
        assert set(np.unique(mask)) <= {0, 1, 2, 3, 4, IGNORE_INDEX}
        assert IGNORE_INDEX in mask and (mask != IGNORE_INDEX).any()


def test_augmentation_depends_on_seed_epoch_and_index_only():
    first = samples(augmented_dataset())
    # another dataset (a worker's copy, a resumed run), reading in another order: the same samples
    again = samples(augmented_dataset(), order=reversed(range(NUM_TILES)))
    for index in range(NUM_TILES):
        for a, b in zip(first[index], again[index]):
            np.testing.assert_array_equal(a, b)
    # the samples are really augmented, and differently per index, epoch and seed
    stored = ArrayStore()
    assert not np.array_equal(first[0][0], stored.images["t0"])
    next_epoch = augmented_dataset()
    next_epoch.epoch = 1
    other_seed = augmented_dataset(seed=1)
    same_tile_twice = TileDataset([RECORDS[0], RECORDS[0]], ArrayStore(), augmented_dataset().augment)
    assert not np.array_equal(same_tile_twice[0][0].numpy(), same_tile_twice[1][0].numpy())
    for index in range(NUM_TILES):
        assert not np.array_equal(samples(next_epoch, [index])[index][0], first[index][0])
        assert not np.array_equal(samples(other_seed, [index])[index][0], first[index][0])
