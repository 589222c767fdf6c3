"""Pictures of the prepared data: an image beside its mask and class indices, and the augmentation grid."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.patches import Patch, Rectangle

from landcover.data.palette import IGNORE_INDEX, ClassTable, index_to_colour
from landcover.data.tilestore import Region
from landcover.evaluation.figures import class_legend, save_figure, shown

SPLIT_COLOURS = {"train": "#4c72b0", "val": "#dd8452", "test": "#c44e52"}


def display_rgb(image: np.ndarray) -> np.ndarray:
    """An image as 8-bit RGB to look at: uint8 RGB as it is; otherwise its first three bands (a single band as
    grey), each stretched from its 2nd to its 98th percentile, as GIS viewers show such imagery."""
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    bands = image if image.ndim == 3 else image[..., None]
    bands = bands[..., :3] if bands.shape[2] >= 3 else np.repeat(bands[..., :1], 3, axis=2)
    shown_rgb = np.empty(bands.shape, dtype=np.uint8)
    for channel in range(3):
        values = bands[..., channel].astype(np.float64)
        low, high = np.percentile(values, (2, 98))
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        shown_rgb[..., channel] = np.rint(np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    return shown_rgb


def plot_blocks(blocks: list[tuple[Region, str]], path: str | Path) -> None:
    """Each scene's blocks coloured by the split they went to (split.method blocks)."""
    scenes: dict[str, list[tuple[Region, str]]] = {}
    for block, split in blocks:
        scenes.setdefault(block.image_id, []).append((block, split))
    columns = min(4, len(scenes))
    rows = -(-len(scenes) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for axis, (scene_id, scene_blocks) in zip(axes.ravel(), scenes.items()):
        image = scene_blocks[0][0].record
        for block, split in scene_blocks:
            window = block.window
            axis.add_patch(
                Rectangle(
                    (block.x, block.y), window.width, window.height, facecolor=SPLIT_COLOURS[split], edgecolor="white"
                )
            )
        axis.set_xlim(0, image.image_width)
        axis.set_ylim(image.image_height, 0)
        axis.set_aspect("equal")
        axis.set_title(scene_id, fontsize=9)
    for axis in axes.ravel()[len(scenes) :]:
        axis.axis("off")
    handles = [Patch(facecolor=colour, label=split) for split, colour in SPLIT_COLOURS.items()]
    figure.legend(handles=handles, loc="lower center", ncol=3)
    figure.suptitle("blocks of each scene and their split")
    save_figure(figure, path)


def plot_sample(
    image: np.ndarray, mask: np.ndarray, index: np.ndarray, table: ClassTable, title: str, path: str | Path
) -> None:
    """Satellite image | colour mask as stored | encoded class indices (ignored pixels marked)."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 5.6))
    axes[0].imshow(shown(display_rgb(image)))
    axes[0].set_title("satellite image")
    axes[1].imshow(shown(mask))
    axes[1].set_title("mask (colours as stored)")
    # Indices on a neutral ramp, so this panel shows the numbers the model sees, not the palette again.
    ramp = plt.get_cmap("viridis", len(table))
    colours = [ramp(i) for i in range(len(table))] + [np.array(table.ignore_colour) / 255]
    values = np.where(index == IGNORE_INDEX, len(table), index)
    drawn = axes[2].imshow(
        shown(values),
        cmap=ListedColormap(colours),  # type: ignore[arg-type]
        norm=BoundaryNorm(np.arange(len(table) + 2) - 0.5, len(table) + 1),
        interpolation="nearest",
    )
    axes[2].set_title(f"class indices ({int((index == IGNORE_INDEX).sum())} ignored pixels)")
    colourbar = figure.colorbar(drawn, ax=axes[2], ticks=np.arange(len(table) + 1), fraction=0.046)
    colourbar.ax.set_yticklabels([f"{i} {name}" for i, name in enumerate(table.names)] + [f"{IGNORE_INDEX} ignored"])
    for axis in axes:
        axis.axis("off")
    class_legend(figure, table)
    figure.suptitle(title)
    save_figure(figure, path)


def plot_augmentations(
    tiles: list[tuple[str, np.ndarray, np.ndarray]],
    augment: A.Compose,
    table: ClassTable,
    variants: int,
    path: str | Path,
) -> None:
    """For each (name, image, index) tile: the original and `variants` augmented draws, image over mask."""
    columns = variants + 1
    figure, axes = plt.subplots(2 * len(tiles), columns, figsize=(2.4 * columns, 4.8 * len(tiles)), squeeze=False)
    for row, (name, image, index) in enumerate(tiles):
        augmented = [augment(image=image, mask=index) for _ in range(variants)]
        draws = [(image, index)] + [(result["image"], result["mask"]) for result in augmented]
        for column, (drawn_image, drawn_index) in enumerate(draws):
            axes[2 * row, column].imshow(display_rgb(drawn_image))
            axes[2 * row + 1, column].imshow(index_to_colour(drawn_index, table), interpolation="nearest")
            axes[2 * row, column].set_title(name if column == 0 else f"augmented {column}", fontsize=8)
        for axis in axes[2 * row : 2 * row + 2].ravel():
            axis.axis("off")
    class_legend(figure, table)
    figure.suptitle("training augmentations: image above, mask below")
    save_figure(figure, path)
