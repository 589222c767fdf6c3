"""Pictures of the prepared data: an image beside its mask and class indices, and the augmentation grid."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap

from stages.core.data.palette import IGNORE_INDEX, ClassTable, index_to_colour
from stages.core.evaluation.figures import class_legend, save_figure, shown


def plot_sample(
    image: np.ndarray, mask: np.ndarray, index: np.ndarray, table: ClassTable, title: str, path: str | Path
) -> None:
    """Satellite image | colour mask as stored | encoded class indices (ignored pixels marked)."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 5.6))
    axes[0].imshow(shown(image))
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
            axes[2 * row, column].imshow(drawn_image)
            axes[2 * row + 1, column].imshow(index_to_colour(drawn_index, table), interpolation="nearest")
            axes[2 * row, column].set_title(name if column == 0 else f"augmented {column}", fontsize=8)
        for axis in axes[2 * row : 2 * row + 2].ravel():
            axis.axis("off")
    class_legend(figure, table)
    figure.suptitle("training augmentations: image above, mask below")
    save_figure(figure, path)
