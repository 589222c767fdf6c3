"""What every picture shares: the Agg backend, byte-stable PNG files and the class legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from landcover.data.palette import ClassTable
from landcover.io.outputs import atomic_file

# The most pixels per side an image panel is drawn from. A panel is about 500 px wide in the saved
# file, so more only costs memory: matplotlib keeps float RGBA copies of what it draws (a 2448 px
# image would take 190 MB per copy, and the preview stage went over 1 GB at DeepGlobe's size).
MAX_SHOWN_SIDE = 1024


def shown(array: np.ndarray) -> np.ndarray:
    """`array` subsampled by a whole step (nearest: class values stay exact) to at most MAX_SHOWN_SIDE a side."""
    step = -(-max(array.shape[:2]) // MAX_SHOWN_SIDE)
    return array[::step, ::step]


def save_figure(figure: plt.Figure, path: str | Path) -> None:
    """Save without the matplotlib version stamp, so identical plots give identical files."""
    with atomic_file(path) as staging:
        figure.savefig(staging, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def class_legend(figure: plt.Figure, table: ClassTable, with_ignored: bool = True) -> None:
    handles = [
        Patch(facecolor=np.array(colour) / 255, edgecolor="black", label=name)  # type: ignore[arg-type]
        for name, colour in zip(table.names, table.colours)
    ]
    if with_ignored:
        ignored = Patch(facecolor=np.array(table.ignore_colour) / 255, edgecolor="black", label="ignored")  # type: ignore[arg-type]
        handles.append(ignored)
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), frameon=False)
