"""Tiles as a PyTorch dataset: uint8 image and class-index mask, augmented on the fly.

For validation, `count_once` makes every pixel of an image count once: the edge tiles overlap
their neighbours (see geometry), and pixels an earlier tile already covers are set to the ignore
value in the later one's mask. Without it, 2448 px images in 256 px tiles would score 9% more
pixels, all in the last row and column.

Samples stay uint8 until they reach the device (normalised there, see model.normalise): a float
tensor is four times the bytes to copy between worker processes.
"""
from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from stages.core.geometry import first_cover_offsets
from stages.core.palette import IGNORE_INDEX
from stages.core.tilestore import TileRecord, TileStore, group_by_image


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


class TileDataset(Dataset):
    def __init__(self, records: list[TileRecord], store: TileStore, augment: A.Compose | None = None,
                 seed: int = 0, count_once: bool = False) -> None:
        if count_once and augment is not None:
            raise ValueError("count_once masks pixels where they lie in the stored tile: augmentation would move them")
        self.records = records
        self.store = store  # images and class masks (a TileStore with its encoded folder)
        self.augment = augment
        self.seed = seed
        self.epoch = 0  # set by the trainer before each epoch; workers get a fresh copy per epoch
        self.first_cover = first_cover_corners(records) if count_once else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = self.records[index]
        image, mask = self.store.read_image(record), self.store.read_class_mask(record)
        if self.augment is not None:
            self.augment.set_random_seed(sample_seed(self.seed, self.epoch, index))
            augmented = self.augment(image=image, mask=mask)
            image, mask = augmented["image"], augmented["mask"]
        if self.first_cover is not None:
            row, column = self.first_cover[index]
            mask[:row] = IGNORE_INDEX
            mask[:, :column] = IGNORE_INDEX
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(mask))
