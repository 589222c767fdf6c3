"""Tiles as a PyTorch dataset: uint8 image and class-index mask, augmented on the fly.

Samples stay uint8 until they reach the device (normalised there, see model.normalise): a float
tensor is four times the bytes to copy between worker processes.
"""
from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from stages.core.tilestore import TileRecord, TileStore


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch.

    Derived, not drawn from a running generator, so a sample's augmentation is the same whatever
    the number of workers, their order, or whether training was resumed.
    """
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class TileDataset(Dataset):
    def __init__(self, records: list[TileRecord], store: TileStore, augment: A.Compose | None = None,
                 seed: int = 0) -> None:
        self.records = records
        self.store = store  # images and class masks (a TileStore with its encoded folder)
        self.augment = augment
        self.seed = seed
        self.epoch = 0  # set by the trainer before each epoch; workers get a fresh copy per epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = self.records[index]
        image, mask = self.store.read_image(record), self.store.read_class_mask(record)
        if self.augment is not None:
            self.augment.set_random_seed(sample_seed(self.seed, self.epoch, index))
            augmented = self.augment(image=image, mask=mask)
            image, mask = augmented["image"], augmented["mask"]
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(mask))
