"""The seed notebooks' way of loading, training and predicting, rebuilt as the speed benchmark's reference.

The DeepGlobe notebooks this project descends from (segmentation-models-pytorch's DeepLabV3+ on the
Kaggle copy of the dataset) do the following; each function below does the same, no better and no worse:

- loading: decode the whole 2448x2448 JPEG and colour mask with OpenCV, one-hot encode the mask with
  one `np.all(np.equal(...))` per class into a float64 array (7 x 6 megapixels x 8 bytes = 335 MB),
  then crop, then convert image and mask to float32 CHW;
- training: a model with a per-class sigmoid output, fp32 and NCHW, Dice loss (smp.utils'
  `1 - f_score`) on the float one-hot mask, and an IoU metric on the outputs thresholded at 0.5;
- prediction: one tile at a time, fp32, no overlap, per-class argmax.

Nothing here is used by the pipeline.
"""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from benchmarks.common import speed_part_main
from landcover.data.geometry import tile_grid
from landcover.data.scaling import IMAGENET_MEAN, IMAGENET_STD
from landcover.model.model import build_model


def one_hot_encode(label: np.ndarray, class_colours: np.ndarray) -> np.ndarray:
    """The seed's one-hot: HxWx3 colour mask -> HxWxC bool, one full-image comparison per class."""
    return np.stack([np.all(np.equal(label, colour), axis=-1) for colour in class_colours], axis=-1)


def read_rgb_cv2(path: Path) -> np.ndarray:
    """The seed's decode: OpenCV's imread, BGR to RGB. imread returns None for a file it cannot read."""
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise FileNotFoundError(f"{path}: OpenCV cannot read it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class SeedDataset(Dataset):
    """Whole images and masks decoded for every sample, a float64 one-hot mask, then a random crop."""

    def __init__(self, pairs: list[tuple[Path, Path]], class_colours: np.ndarray, crop: int, seed: int = 0) -> None:
        self.pairs = pairs
        self.class_colours = class_colours
        self.augmentation = A.Compose(
            [A.RandomCrop(height=crop, width=crop, p=1.0), A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)], seed=seed
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        image, mask = read_rgb_cv2(image_path), read_rgb_cv2(mask_path)
        mask = one_hot_encode(mask, self.class_colours).astype("float")  # float64, as in the seed
        sample = self.augmentation(image=image, mask=mask)
        # The seed's preprocessing: the encoder's normalisation, then to float32 CHW.
        image = (sample["image"] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return image.transpose(2, 0, 1).astype("float32"), sample["mask"].transpose(2, 0, 1).astype("float32")


def seed_model(encoder: str, num_classes: int) -> nn.Module:
    """DeepLabV3+ with the seed's sigmoid activation applied inside forward()."""
    return nn.Sequential(build_model(encoder, num_classes), nn.Sigmoid())


def dice_loss(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """smp.utils.losses.DiceLoss: 1 - F1 over the whole batch, every channel pooled."""
    tp = (target * prediction).sum()
    fp = prediction.sum() - tp
    fn = target.sum() - tp
    return 1 - (2 * tp + eps) / (2 * tp + fn + fp + eps)


def iou_score(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """smp.utils.metrics.IoU with threshold 0.5, as logged by the seed's TrainEpoch every batch."""
    predicted = (prediction > 0.5).float()
    intersection = (target * predicted).sum()
    return (intersection + eps) / (target.sum() + predicted.sum() - intersection + eps)


def seed_train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, one_hot: torch.Tensor
) -> float:
    """One fp32 NCHW step of smp.utils' TrainEpoch: forward, Dice loss, backward, step, IoU metric."""
    model.train()
    optimizer.zero_grad()
    prediction = model(images)
    loss = dice_loss(prediction, one_hot)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        iou_score(prediction, one_hot)
    return loss.item()


@torch.inference_mode()
def seed_predict(model: nn.Module, image: np.ndarray, tile: int) -> np.ndarray:
    """Class indices of an HxWx3 uint8 image: fp32 NCHW, one tile at a time, no overlap.

    Where `tile` does not divide the image, the last row and column are flush with the edge (the
    least the seed would have to do to cover every pixel).
    """
    model.eval()
    height, width = image.shape[:2]
    classes = np.zeros((height, width), dtype=np.uint8)
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    for y, x in tile_grid(height, width, tile, tile):
        crop = ((image[y : y + tile, x : x + tile] / 255.0 - mean) / std).transpose(2, 0, 1).astype("float32")
        prediction = model(torch.from_numpy(crop)[None])[0]
        classes[y : y + tile, x : x + tile] = prediction.argmax(0).numpy()
    return classes


if __name__ == "__main__":
    speed_part_main("benchmarks.seed_style", __doc__)
