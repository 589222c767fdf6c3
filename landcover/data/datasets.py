"""Tiles as a PyTorch dataset: uint8 image and class-index mask, augmented on the fly.

Tiles are windows of whole images (see tilestore), so the dataset keeps the last few images it
opened: a JPEG decoded, to crop from; a GeoTIFF open, to read windows from. A fully random order
would decode a whole 2448 px JPEG for every 512 px tile; `ImageBlockSampler` shuffles tiles
within blocks of images instead, so each image is decoded once per block (per loader worker) and
a batch still mixes tiles of several images.

For validation, `count_once` makes every pixel of an image count once: the edge tiles overlap
their neighbours (see geometry), and pixels an earlier tile already covers are set to the ignore
value in the later one's mask. Without it, 2448 px images in 256 px tiles would score 9% more
pixels, all in the last row and column.

Samples stay uint8 until they reach the device (normalised there, see model.normalise): a float
tensor is four times the bytes to copy between worker processes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from landcover.data.geometry import first_cover_offsets
from landcover.data.palette import IGNORE_INDEX
from landcover.data.tilestore import ImageWindows, TileRecord, TileStore, group_by_image

if TYPE_CHECKING:  # only the augmentation's type: unaugmented datasets need no albumentations
    import albumentations as A


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch.

    Derived, not drawn from a running generator, so a sample's augmentation is the same whatever
    the number of workers, their order, or whether training was resumed.
    """
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def first_cover_corners(records: list[TileRecord]) -> list[tuple[int, int]]:
    """(row, column) in each tile where its pixels not covered by an earlier tile of its image begin."""
    corners = {}
    for tiles in group_by_image(records).values():
        size = tiles[0].size
        rows = first_cover_offsets((tile.y for tile in tiles), size)
        columns = first_cover_offsets((tile.x for tile in tiles), size)
        corners.update({tile.tile: (rows[tile.y], columns[tile.x]) for tile in tiles})
    return [corners[record.tile] for record in records]


class ImageBlockSampler(Sampler[int]):
    """Indices of `records` in a seeded order: images shuffled, cut into blocks of `block_images`, and the
    tiles of each block shuffled together.

    With `block_images` at least the number of images this is a plain shuffle of all tiles. The
    order depends only on `generator`'s seed (and the records), never on the number of workers.
    """

    def __init__(self, records: list[TileRecord], block_images: int, generator: torch.Generator) -> None:
        if block_images < 1:
            raise ValueError(f"block_images must be at least 1, got {block_images}")
        positions = {image_id: position for position, image_id in enumerate(group_by_image(records))}
        self.images: list[list[int]] = [[] for _ in positions]  # each image's tile indices
        for index, record in enumerate(records):
            self.images[positions[record.image_id]].append(index)
        self.block_images = block_images
        self.generator = generator
        self.length = len(records)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        image_order = torch.randperm(len(self.images), generator=self.generator).tolist()
        for start in range(0, len(image_order), self.block_images):
            block = [index for image in image_order[start : start + self.block_images] for index in self.images[image]]
            yield from (block[position] for position in torch.randperm(len(block), generator=self.generator).tolist())


def shard(order: list[int], rank: int, world_size: int, pad: bool) -> list[int]:
    """Rank `rank`'s share of `order`: every `world_size`-th index from position `rank` (as DistributedSampler).

    With `pad`, `order` is first extended by its own beginning to a multiple of `world_size`, so
    every rank gets the same number of indices (a few tiles then count twice in an epoch, as with
    DistributedSampler). Without it the shares together are `order` exactly, each index once.
    """
    if pad and order:
        padding = -len(order) % world_size
        order = order + (order * (padding // len(order) + 1))[:padding]
    return order[rank::world_size]


def contiguous_share(length: int, rank: int, world_size: int) -> range:
    """Rank `rank`'s run of `range(length)` when it is cut into `world_size` contiguous runs as equal as can be.

    For validation: the runs together are every index once (no padding, nothing counted twice),
    and as tiles are stored image by image, each image's tiles fall to one or two ranks, so an
    image is decoded about once in all, not once per rank.
    """
    return range(length * rank // world_size, length * (rank + 1) // world_size)


class ShardedSampler(Sampler[int]):
    """One rank's share (see `shard`) of another sampler's order, drawn anew each time it is iterated.

    Rank r of world size W trains on positions r, r + W, r + 2W, ... of the global order, so batch k
    of every rank together are the tiles a single process with W times the batch size would take
    as its batch k. With one process it is the other sampler's order, unchanged.
    """

    def __init__(self, sampler: Sampler[int] | range, rank: int, world_size: int, pad: bool) -> None:
        self.sampler, self.rank, self.world_size, self.pad = sampler, rank, world_size, pad

    def __len__(self) -> int:
        total = len(self.sampler)  # type: ignore[arg-type]
        return -(-total // self.world_size) if self.pad else len(range(self.rank, total, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(shard(list(self.sampler), self.rank, self.world_size, self.pad))


class TileDataset(Dataset):
    """Tiles of `records`, read from `store`; keeps up to `cached_images` decoded images (with their masks).

    Give it at least the sampler's `block_images`, so every image is decoded once per block.
    """

    def __init__(
        self,
        records: list[TileRecord],
        store: TileStore,
        augment: A.Compose | None = None,
        seed: int = 0,
        count_once: bool = False,
        cached_images: int = 1,
    ) -> None:
        if count_once and augment is not None:
            raise ValueError("count_once masks pixels where they lie in the stored tile: augmentation would move them")
        self.records = records
        self.store = store  # images and class masks (a TileStore with its encoded folder)
        self.augment = augment
        self.seed = seed
        self.epoch = 0  # set by the trainer before each epoch; workers get a fresh copy per epoch
        self.first_cover = first_cover_corners(records) if count_once else None
        self.cached_images = max(1, cached_images)
        self._cache: OrderedDict[str, ImageWindows] = OrderedDict()

    def __getstate__(self) -> dict:
        # Worker processes start with an empty cache: decoded images are not worth pickling, open files cannot be.
        return {**self.__dict__, "_cache": OrderedDict()}

    def __len__(self) -> int:
        return len(self.records)

    def _windows(self, record: TileRecord) -> ImageWindows:
        """`record`'s image and class mask, open (a GeoTIFF) or decoded (a JPEG), the most recently used kept."""
        if record.image_id in self._cache:
            self._cache.move_to_end(record.image_id)
        else:
            self._cache[record.image_id] = self.store.windows(record)
            while len(self._cache) > self.cached_images:
                self._cache.popitem(last=False)[1].close()
        return self._cache[record.image_id]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = self.records[index]
        windows = self._windows(record)
        image, mask = windows.image(record), windows.mask(record)
        if self.augment is not None:
            self.augment.set_random_seed(sample_seed(self.seed, self.epoch, index))
            augmented = self.augment(image=image, mask=mask)
            image, mask = augmented["image"], augmented["mask"]
        if self.first_cover is not None:
            row, column = self.first_cover[index]
            mask[:row] = IGNORE_INDEX
            mask[:, :column] = IGNORE_INDEX
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(mask))
