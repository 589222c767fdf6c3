"""Training samples: uint8 tensors, augmented the same way for the same (seed, epoch, index)."""

from __future__ import annotations

import pickle

import albumentations as A
import numpy as np
import pytest
import torch

from landcover.data.augment import training_augmentation
from landcover.data.datasets import ImageBlockSampler, TileDataset, sample_seed
from landcover.data.palette import IGNORE_INDEX
from landcover.data.tilestore import TileRecord
from tests.conftest import WholeImageStore

TILE = 32
NUM_TILES = 3


class ArrayStore(WholeImageStore):
    """Stands in for a TileStore: one whole image and class mask from memory, no files; counts decodes."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.image = rng.integers(0, 256, (TILE, NUM_TILES * TILE, 3), dtype=np.uint8)
        # classes 0-4 with ignored pixels in a checkerboard of 4-pixel blocks, so every crop has some
        self.mask = rng.integers(0, 5, (TILE, NUM_TILES * TILE)).astype(np.uint8)
        blocks = (np.add.outer(np.arange(TILE) // 4, np.arange(NUM_TILES * TILE) // 4) % 2).astype(bool)
        self.mask[blocks] = IGNORE_INDEX
        self.decoded: list[str] = []

    def whole_image(self, record: TileRecord) -> np.ndarray:
        self.decoded.append(record.image_id)
        return self.image  # not a copy: the dataset must not write into what it keeps

    def whole_class_mask(self, record: TileRecord) -> np.ndarray:
        return self.mask

    def tile_image(self, index: int) -> np.ndarray:
        return self.image[:, index * TILE : (index + 1) * TILE]

    def tile_mask(self, index: int) -> np.ndarray:
        return self.mask[:, index * TILE : (index + 1) * TILE]


RECORDS = [TileRecord(f"t{i}", "img", 0, i * TILE, TILE, TILE, NUM_TILES * TILE) for i in range(NUM_TILES)]


def augmented_dataset(seed: int = 0) -> TileDataset:
    return TileDataset(RECORDS, ArrayStore(), training_augmentation(TILE, scale_min=0.3, colour_jitter=0.2), seed=seed)


def samples(dataset: TileDataset, order=range(NUM_TILES)) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {index: tuple(t.numpy() for t in dataset[index]) for index in order}


def test_sample_seed_is_fixed_by_seed_epoch_and_index_alone():
    assert sample_seed(7, 2, 5) == sample_seed(7, 2, 5)
    neighbours = {
        sample_seed(7, 2, 5),
        sample_seed(8, 2, 5),
        sample_seed(7, 3, 5),
        sample_seed(7, 2, 6),
        sample_seed(2, 7, 5),
        sample_seed(5, 2, 7),
    }
    assert len(neighbours) == 6  # changing any one, or swapping two, gives another seed
    assert all(isinstance(seed, int) and 0 <= seed < 2**32 for seed in neighbours)


def test_without_augmentation_samples_are_the_stored_tiles_as_uint8_tensors():
    store = ArrayStore()
    dataset = TileDataset(RECORDS, store)
    assert len(dataset) == NUM_TILES
    image, mask = dataset[1]
    assert isinstance(image, torch.Tensor) and isinstance(mask, torch.Tensor)
    assert image.dtype == torch.uint8 and image.shape == (TILE, TILE, 3)  # HWC: normalised on the device
    assert mask.dtype == torch.uint8 and mask.shape == (TILE, TILE)
    np.testing.assert_array_equal(image.numpy(), store.tile_image(1))
    np.testing.assert_array_equal(mask.numpy(), store.tile_mask(1))


def test_augmented_samples_keep_shape_dtype_and_class_values_including_ignored():
    dataset = augmented_dataset()
    drawn = samples(dataset)
    assert len(drawn) == len(dataset) > 0  # a loop over no samples would check nothing
    for image, mask in drawn.values():
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
    assert not np.array_equal(first[0][0], stored.tile_image(0))
    next_epoch = augmented_dataset()
    next_epoch.epoch = 1
    other_seed = augmented_dataset(seed=1)
    same_tile_twice = TileDataset([RECORDS[0], RECORDS[0]], ArrayStore(), augmented_dataset().augment)
    assert not np.array_equal(same_tile_twice[0][0].numpy(), same_tile_twice[1][0].numpy())
    for index in range(NUM_TILES):
        assert not np.array_equal(samples(next_epoch, [index])[index][0], first[index][0])
        assert not np.array_equal(samples(other_seed, [index])[index][0], first[index][0])


def test_tiles_are_windows_of_the_whole_image_decoded_once_while_kept():
    store = ArrayStore()
    dataset = TileDataset(RECORDS, store, cached_images=1)
    for index in (2, 0, 1, 2):
        image, mask = dataset[index]
        np.testing.assert_array_equal(image.numpy(), store.tile_image(index))
        np.testing.assert_array_equal(mask.numpy(), store.tile_mask(index))
    assert store.decoded == ["img"]  # four tiles, one decode
    image[:] = 0  # a sample is a copy: writing into it leaves the kept image alone
    np.testing.assert_array_equal(dataset[2][0].numpy(), store.tile_image(2))


def test_the_cache_keeps_the_most_recently_used_images_and_workers_start_empty():
    store = ArrayStore()
    records = [TileRecord(f"{name}0", name, 0, 0, TILE, TILE, NUM_TILES * TILE) for name in "abc"]
    dataset = TileDataset(records, store, cached_images=2)
    for index in (0, 1, 0, 2, 0, 1):  # a is used again before c comes in, so b is the one dropped
        dataset[index]
    assert store.decoded == ["a", "b", "c", "b"]
    copy = pickle.loads(pickle.dumps(dataset))  # what a DataLoader worker gets
    assert not copy._cache and len(dataset._cache) == 2


def block_records(images: int, tiles_per_image: int) -> list[TileRecord]:
    return [
        TileRecord(f"i{i}t{t}", f"i{i}", 0, t * TILE, TILE, TILE, tiles_per_image * TILE)
        for i in range(images)
        for t in range(tiles_per_image)
    ]


def test_block_sampler_shuffles_tiles_within_blocks_of_images():
    records = block_records(images=7, tiles_per_image=4)
    order = list(ImageBlockSampler(records, block_images=3, generator=torch.Generator().manual_seed(1)))
    assert sorted(order) == list(range(len(records)))  # every tile once
    blocks = [order[0:12], order[12:24], order[24:28]]  # 3 + 3 + 1 images of 4 tiles
    images_per_block = [{records[index].image_id for index in block} for block in blocks]
    assert [len(images) for images in images_per_block] == [3, 3, 1]
    assert set().union(*images_per_block) == {f"i{i}" for i in range(7)}
    # tiles of a block are mixed, not image after image
    first_block_images = [records[index].image_id for index in blocks[0]]
    assert first_block_images != sorted(first_block_images, key=first_block_images.index)
    again = list(ImageBlockSampler(records, block_images=3, generator=torch.Generator().manual_seed(1)))
    other = list(ImageBlockSampler(records, block_images=3, generator=torch.Generator().manual_seed(2)))
    assert again == order and other != order


def test_a_block_of_all_images_is_a_plain_shuffle_and_each_image_is_decoded_once_per_block():
    records = block_records(images=5, tiles_per_image=3)
    order = list(ImageBlockSampler(records, block_images=5, generator=torch.Generator().manual_seed(0)))
    images = [records[index].image_id for index in order]
    assert len({image for image in images[:5]}) > 2  # the first tiles already come from several images
    store = ArrayStore()
    dataset = TileDataset(records, store, cached_images=2)
    sampler = ImageBlockSampler(records, block_images=2, generator=torch.Generator().manual_seed(0))
    for index in sampler:
        dataset[index]
    assert sorted(store.decoded) == [f"i{i}" for i in range(5)]  # 5 images, 5 decodes
    with pytest.raises(ValueError, match="block_images must be at least 1"):
        ImageBlockSampler(records, block_images=0, generator=torch.Generator())


@pytest.mark.parametrize("dtype, bands", [(np.uint8, 3), (np.uint16, 4), (np.float32, 1)])
def test_our_rotation_gives_albumentations_draws_and_pixels(dtype, bands):
    from landcover.data.augment import RandomRotate90, rotate_pixels

    rng = np.random.default_rng(1)
    image = (rng.random((24, 40, bands)) * 200).astype(dtype)
    mask = rng.integers(0, 7, (24, 40)).astype(np.uint8)
    for factor in range(4):
        np.testing.assert_array_equal(rotate_pixels(image, factor), np.rot90(image, factor))
    ours = A.Compose([RandomRotate90(p=1.0)], seed=5)
    theirs = A.Compose([A.RandomRotate90(p=1.0)], seed=5)
    for _ in range(8):  # the same random factors, draw for draw, and the same pixels
        mine, reference = ours(image=image, mask=mask), theirs(image=image, mask=mask)
        np.testing.assert_array_equal(mine["image"], reference["image"])
        np.testing.assert_array_equal(mine["mask"], reference["mask"])
        assert mine["image"].flags.c_contiguous
