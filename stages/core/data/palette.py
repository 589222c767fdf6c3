"""The class table (names and colours) and the conversions between colour masks and class indices.

These are the seed notebooks' operations as tested functions:
colour -> index (`colour_to_index`), index -> one-hot (`one_hot`), one-hot -> index
(`reverse_one_hot`) and index -> colour (`index_to_colour`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.core.io.errors import PipelineError
from stages.core.io.textfiles import read_utf8

IGNORE_INDEX = 255  # class index of pixels whose colour is in no row of the table
THRESHOLD = 128  # DeepGlobe: binarize each mask channel at 128 before the colour lookup

DEEPGLOBE_CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("urban_land", (0, 255, 255)),
    ("agriculture_land", (255, 255, 0)),
    ("rangeland", (255, 0, 255)),
    ("forest_land", (0, 255, 0)),
    ("water", (0, 0, 255)),
    ("barren_land", (255, 255, 255)),
    ("unknown", (0, 0, 0)),
)

# Candidates, in order of preference, for drawing ignored pixels; the first one that is not a class
# colour is used, so index_to_colour -> colour_to_index maps ignored pixels back to IGNORE_INDEX.
_IGNORE_COLOUR_CANDIDATES = ((255, 0, 0), (128, 128, 128), (255, 128, 0), (64, 0, 64))


@dataclass(frozen=True, eq=False)
class ClassTable:
    """Class names and their RGB colours, in index order."""

    names: tuple[str, ...]
    colours: np.ndarray  # (num_classes, 3) uint8

    def __post_init__(self) -> None:
        colours = np.asarray(self.colours)
        if colours.ndim != 2 or colours.shape[1] != 3 or len(colours) != len(self.names):
            raise ValueError("colours must have shape (len(names), 3)")
        if not 1 <= len(self.names) < IGNORE_INDEX:
            raise PipelineError(f"class table: {len(self.names)} classes; need 1 to {IGNORE_INDEX - 1}")
        object.__setattr__(self, "colours", colours.astype(np.uint8))

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ClassTable) and self.names == other.names and np.array_equal(self.colours, other.colours)
        )

    @property
    def is_binary(self) -> bool:
        """True when every channel of every colour is 0 or 255: then the threshold rule applies."""
        return bool(np.isin(self.colours, (0, 255)).all())

    @property
    def ignore_colour(self) -> tuple[int, int, int]:
        used = {tuple(int(v) for v in colour) for colour in self.colours}
        return next(c for c in _IGNORE_COLOUR_CANDIDATES if c not in used)

    def index_of(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise PipelineError(f"class table: no class named {name!r}") from None

    @property
    def values(self) -> tuple[int, ...]:  # TEMPORARY until the class-table branch lands
        return tuple(range(len(self.names)))

    @classmethod
    def deepglobe(cls) -> ClassTable:
        return cls(
            tuple(name for name, _ in DEEPGLOBE_CLASSES),
            np.array([colour for _, colour in DEEPGLOBE_CLASSES], dtype=np.uint8),
        )

    @classmethod
    def from_csv(cls, path: str | Path) -> ClassTable:
        """Read a `name,r,g,b` table (DeepGlobe's class_dict.csv); a malformed row raises PipelineError."""
        path = Path(path)
        text = read_utf8(path, "class table")
        try:
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as error:
            raise PipelineError(f"{path}: not a CSV class table ({error})") from None
        if not rows or [cell.strip().lower() for cell in rows[0]] != ["name", "r", "g", "b"]:
            raise PipelineError(
                f"{path}: header must be 'name,r,g,b', got {','.join(rows[0]) if rows else 'an empty file'!r}"
            )
        names: list[str] = []
        colours: list[tuple[int, int, int]] = []
        for line_number, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}, line {line_number}"
            if len(row) != 4:
                raise PipelineError(f"{where}: expected 4 fields name,r,g,b, got {len(row)}: {','.join(row)!r}")
            name = row[0].strip()
            if not name:
                raise PipelineError(f"{where}: empty class name")
            try:
                colour = tuple(int(cell) for cell in row[1:])
            except ValueError:
                raise PipelineError(f"{where}: r,g,b must be integers 0-255, got {','.join(row[1:])!r}") from None
            if not all(0 <= value <= 255 for value in colour):
                raise PipelineError(f"{where}: r,g,b must be integers 0-255, got {','.join(row[1:])!r}")
            if name in names:
                raise PipelineError(f"{where}: class name {name!r} appears twice")
            if colour in colours:
                raise PipelineError(f"{where}: colour {colour} already belongs to {names[colours.index(colour)]!r}")
            names.append(name)
            colours.append(colour)  # type: ignore[arg-type]
        if not names:
            raise PipelineError(f"{path}: no classes")
        return cls(tuple(names), np.array(colours, dtype=np.uint8))

    def to_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["name", "r", "g", "b"])
            for name, colour in zip(self.names, self.colours):
                writer.writerow([name, *(int(v) for v in colour)])


def _pack(rgb: np.ndarray) -> np.ndarray:
    """24-bit integer code of each RGB triple."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def colour_to_index(mask: np.ndarray, table: ClassTable) -> tuple[np.ndarray, int]:
    """Map an HxWx3 colour mask to HxW uint8 class indices.

    For a table of pure 0/255 colours (DeepGlobe's) each channel is first binarized at 128, as
    the challenge prescribes; other tables are matched exactly. Pixels whose colour is in no row
    get IGNORE_INDEX. Returns the index mask and how many pixels were ignored.
    """
    if mask.ndim != 3 or mask.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 colour mask, got shape {mask.shape}")
    if table.is_binary:
        bits = mask >= THRESHOLD
        code = (bits[..., 0].astype(np.uint8) << 2) | (bits[..., 1].astype(np.uint8) << 1) | bits[..., 2]
        lookup = np.full(8, IGNORE_INDEX, dtype=np.uint8)
        table_bits = table.colours >= THRESHOLD
        lookup[(table_bits[:, 0] << 2) | (table_bits[:, 1] << 1) | table_bits[:, 2]] = np.arange(len(table))
        index = lookup[code]
    else:
        table_codes = _pack(table.colours)
        order = np.argsort(table_codes)
        codes = _pack(mask)
        position = np.clip(np.searchsorted(table_codes[order], codes), 0, len(table) - 1)
        found = table_codes[order][position] == codes
        index = np.where(found, order[position], IGNORE_INDEX).astype(np.uint8)
    return index, int(np.count_nonzero(index == IGNORE_INDEX))


def index_to_colour(index: np.ndarray, table: ClassTable) -> np.ndarray:
    """Map HxW class indices to an HxWx3 colour image; ignored pixels get `table.ignore_colour`."""
    lookup = np.zeros((256, 3), dtype=np.uint8)
    lookup[:] = table.ignore_colour
    lookup[: len(table)] = table.colours
    return lookup[index]


def one_hot(index: np.ndarray, num_classes: int) -> np.ndarray:
    """HxW class indices -> HxWxK uint8 one-hot; ignored pixels are all zeros."""
    return (index[..., None] == np.arange(num_classes, dtype=index.dtype)).astype(np.uint8)


def reverse_one_hot(scores: np.ndarray, ignore_empty: bool = True) -> np.ndarray:
    """HxWxK one-hot (or class scores) -> HxW uint8 class indices by argmax over the last axis.

    A pixel whose one-hot row is all zeros (an ignored pixel) maps back to IGNORE_INDEX when
    `ignore_empty` is set, so one_hot and reverse_one_hot round-trip ignored pixels too.
    """
    index = np.argmax(scores, axis=-1).astype(np.uint8)
    if ignore_empty:
        index[~np.any(scores, axis=-1)] = IGNORE_INDEX
    return index


def values_to_index(labels: np.ndarray, table: ClassTable, nodata: float | None = None) -> tuple[np.ndarray, int]:
    """TEMPORARY until the class-table branch lands: label value = class index."""
    index = np.where(labels < len(table), labels, IGNORE_INDEX).astype(np.uint8)
    return index, int(np.count_nonzero(index == IGNORE_INDEX))
