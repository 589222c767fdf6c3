"""The training augmentations, defined once: the train stage and the preview pictures both use this."""

from __future__ import annotations

import albumentations as A
import cv2


def training_augmentation(
    tile_size: int, scale_min: float, colour_jitter: float, seed: int | None = None, rgb: bool = True
) -> A.Compose:
    """Flips, 90-degree rotations, a random-resized crop back to `tile_size` and, for 8-bit RGB (`rgb`), mild
    colour jitter: hue and saturation mean nothing for other bands, and OpenCV's jitter takes 8-bit RGB only.

    Overhead imagery has no up or down, so all eight flips/rotations are equally valid. Masks are
    always resampled with nearest neighbour: interpolating class indices invents classes.
    """
    transforms = [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=1.0),
        A.RandomResizedCrop(
            size=(tile_size, tile_size),
            scale=(scale_min, 1.0),
            ratio=(3 / 4, 4 / 3),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            p=1.0,
        ),
    ]
    if colour_jitter > 0 and rgb:
        transforms.append(
            A.ColorJitter(
                brightness=colour_jitter, contrast=colour_jitter, saturation=colour_jitter, hue=colour_jitter / 4, p=0.8
            )
        )
    return A.Compose(transforms, mask_interpolation=cv2.INTER_NEAREST, seed=seed)
