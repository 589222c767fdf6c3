"""The class table (names, label values, colours, headline) and the conversions between labels and class indices.

These are the seed notebooks' operations as tested functions:
colour -> index (`colour_to_index`), index -> one-hot (`one_hot`), one-hot -> index
(`reverse_one_hot`) and index -> colour (`index_to_colour`); and for class-index rasters,
label value -> index (`values_to_index`).

A class's index is its row in the table (0..n-1); its value is what an index-raster label holds
for it (DeepGlobe's: the index itself; OpenEarthMap's: 1..8, 0 being no data). The headline flags
say which classes the headline mean (`miou_land`) averages: by default every class but one named
`unknown`, DeepGlobe's rule. The CSV forms are described in docs/data.md ("The class table").
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landcover.io.errors import PipelineError
from landcover.io.textfiles import read_utf8

IGNORE_INDEX = 255  # class index of pixels whose colour or value is in no row of the table
THRESHOLD = 128  # DeepGlobe: binarize each mask channel at 128 before the colour lookup
MAX_LABEL_VALUE = 65535  # label values are what a uint16 (or smaller) index raster holds
# Without a headline column, the headline mean leaves out the class of this name (DeepGlobe's clouds).
DEFAULT_LEFT_OUT = "unknown"

SHORT_HEADER = ("name", "r", "g", "b")
FULL_HEADER = ("name", "value", "r", "g", "b", "headline")
_HEADLINE_WORDS = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}

# presets/<name>/classes.csv beside landcover/: the class tables of public datasets, as data.
PRESETS = Path(__file__).resolve().parents[2] / "presets"

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


def default_headline(names: tuple[str, ...] | list[str]) -> tuple[bool, ...]:
    """Every class but one named `unknown`: the headline of a table that does not say (today's rule)."""
    return tuple(name != DEFAULT_LEFT_OUT for name in names)


@dataclass(frozen=True, eq=False)
class ClassTable:
    """Class names, label values, RGB colours and headline flags, in index order.

    `values` and `headline` may be left out: values are then the indices 0..n-1 and the headline
    every class but one named `unknown` (DeepGlobe's table, and any `name,r,g,b` table).
    """

    names: tuple[str, ...]
    colours: np.ndarray  # (num_classes, 3) uint8
    values: tuple[int, ...] = ()  # the label value of each class in an index raster, 0..65535
    headline: tuple[bool, ...] = ()  # whether each class counts in the headline mean (miou_land)

    def __post_init__(self) -> None:
        colours = np.asarray(self.colours)
        if colours.ndim != 2 or colours.shape[1] != 3 or len(colours) != len(self.names):
            raise ValueError("colours must have shape (len(names), 3)")
        if not 1 <= len(self.names) < IGNORE_INDEX:
            raise PipelineError(f"class table: {len(self.names)} classes; need 1 to {IGNORE_INDEX - 1}")
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "colours", colours.astype(np.uint8))
        values = tuple(int(v) for v in self.values) if len(self.values) else tuple(range(len(self.names)))
        if len(values) != len(self.names):
            raise ValueError("values must have one entry per class")
        outside = [v for v in values if not 0 <= v <= MAX_LABEL_VALUE]
        if outside:
            raise PipelineError(f"class table: label value {outside[0]} is outside 0-{MAX_LABEL_VALUE}")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise PipelineError(f"class table: label value {repeated[0]} belongs to two classes")
        object.__setattr__(self, "values", values)
        headline = tuple(bool(h) for h in self.headline) if len(self.headline) else default_headline(self.names)
        if len(headline) != len(self.names):
            raise ValueError("headline must have one entry per class")
        if len(self.headline) and not any(headline):
            raise PipelineError("class table: no class is in the headline; mark at least one 'yes'")
        object.__setattr__(self, "headline", headline)

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ClassTable)
            and self.names == other.names
            and np.array_equal(self.colours, other.colours)
            and self.values == other.values
            and self.headline == other.headline
        )

    @property
    def is_binary(self) -> bool:
        """True when every channel of every colour is 0 or 255: then the threshold rule applies."""
        return bool(np.isin(self.colours, (0, 255)).all())

    @property
    def ignore_colour(self) -> tuple[int, int, int]:
        used = {tuple(int(v) for v in colour) for colour in self.colours}
        return next(c for c in _IGNORE_COLOUR_CANDIDATES if c not in used)

    @property
    def has_default_values_and_headline(self) -> bool:
        """Values 0..n-1 and the default headline: the short `name,r,g,b` form says everything."""
        return self.values == tuple(range(len(self))) and self.headline == default_headline(self.names)

    @property
    def left_out(self) -> tuple[str, ...]:
        """The names of the classes the headline mean leaves out, in index order."""
        return tuple(name for name, counted in zip(self.names, self.headline) if not counted)

    def index_of(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise PipelineError(f"class table: no class named {name!r}") from None

    @classmethod
    def deepglobe(cls) -> ClassTable:
        return cls(
            tuple(name for name, _ in DEEPGLOBE_CLASSES),
            np.array([colour for _, colour in DEEPGLOBE_CLASSES], dtype=np.uint8),
        )

    @classmethod
    def preset(cls, name: str) -> ClassTable:
        """The class table of a public dataset, from presets/<name>/classes.csv."""
        path = PRESETS / name / "classes.csv"
        if not path.is_file():
            raise PipelineError(f"class table preset {name!r}: no {path}; presets: {', '.join(preset_names())}")
        return cls.from_csv(path)

    @classmethod
    def from_csv(cls, path: str | Path) -> ClassTable:
        """Read a `name,r,g,b` table (DeepGlobe's class_dict.csv) or a `name,value,r,g,b,headline` one.

        A malformed row, or a name, value or colour given twice, raises PipelineError naming the file
        and line.
        """
        path = Path(path)
        header, rows = _read_csv(path)
        full = header == FULL_HEADER
        names: list[str] = []
        values: list[int] = []
        colours: list[tuple[int, ...]] = []
        headline: list[bool] = []
        for line_number, row in rows:
            where = f"{path}, line {line_number}"
            name, value, colour, counted = _parse_row(row, header, where)
            value = len(names) if value is None else value  # the short form: values are the row order
            if name in names:
                raise PipelineError(f"{where}: class name {name!r} appears twice")
            if value in values:
                raise PipelineError(f"{where}: label value {value} already belongs to {names[values.index(value)]!r}")
            if colour in colours:
                raise PipelineError(f"{where}: colour {colour} already belongs to {names[colours.index(colour)]!r}")
            names.append(name)
            values.append(value)
            colours.append(colour)
            if counted is not None:
                headline.append(counted)
        if not names:
            raise PipelineError(f"{path}: no classes")
        if full and not any(headline):
            raise PipelineError(f"{path}: no class is in the headline; mark at least one 'yes'")
        try:
            return cls(tuple(names), np.array(colours, dtype=np.uint8), tuple(values), tuple(headline))
        except PipelineError as error:  # too many classes
            raise PipelineError(f"{path}: {error}") from None

    def to_csv(self, path: str | Path) -> None:
        """The short `name,r,g,b` form where it says everything (values 0..n-1, the default headline), so
        DeepGlobe's class_dict.csv is written as it always was; else `name,value,r,g,b,headline`."""
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            if self.has_default_values_and_headline:
                writer.writerow(SHORT_HEADER)
                for name, colour in zip(self.names, self.colours):
                    writer.writerow([name, *(int(v) for v in colour)])
                return
            writer.writerow(FULL_HEADER)
            for name, value, colour, counted in zip(self.names, self.values, self.colours, self.headline):
                writer.writerow([name, value, *(int(v) for v in colour), "yes" if counted else "no"])


def preset_names() -> list[str]:
    """The presets that have a class table (presets/<name>/classes.csv), sorted."""
    return sorted(path.parent.name for path in PRESETS.glob("*/classes.csv"))


def _read_csv(path: Path) -> tuple[tuple[str, ...], list[tuple[int, list[str]]]]:
    """A class table's header (lower case, one of the two forms) and its non-blank rows with their line numbers."""
    text = read_utf8(path, "class table")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise PipelineError(f"{path}: not a CSV class table ({error})") from None
    header = tuple(cell.strip().lower() for cell in rows[0]) if rows else ()
    if header not in (SHORT_HEADER, FULL_HEADER):
        raise PipelineError(
            f"{path}: header must be '{','.join(SHORT_HEADER)}' or '{','.join(FULL_HEADER)}', got "
            f"{','.join(rows[0]) if rows else 'an empty file'!r}"
        )
    return header, [(number, row) for number, row in enumerate(rows[1:], start=2) if any(c.strip() for c in row)]


def _parse_row(
    row: list[str], header: tuple[str, ...], where: str
) -> tuple[str, int | None, tuple[int, ...], bool | None]:
    """One row's name, value and headline (None in the short form, which has neither) and colour."""
    if len(row) != len(header):
        fields = f"{len(header)} fields {','.join(header)}"
        raise PipelineError(f"{where}: expected {fields}, got {len(row)}: {','.join(row)!r}")
    cells = dict(zip(header, (cell.strip() for cell in row)))
    if not cells["name"]:
        raise PipelineError(f"{where}: empty class name")
    rgb = ",".join(row[header.index("r") : header.index("b") + 1])
    try:
        colour = tuple(int(cells[channel]) for channel in "rgb")
    except ValueError:
        raise PipelineError(f"{where}: r,g,b must be integers 0-255, got {rgb!r}") from None
    if not all(0 <= channel <= 255 for channel in colour):
        raise PipelineError(f"{where}: r,g,b must be integers 0-255, got {rgb!r}")
    if header == SHORT_HEADER:
        return cells["name"], None, colour, None
    return cells["name"], _parse_value(cells["value"], where), colour, _parse_headline(cells["headline"], where)


def _parse_value(cell: str, where: str) -> int:
    try:
        value = int(cell)
    except ValueError:
        raise PipelineError(f"{where}: value must be an integer 0-{MAX_LABEL_VALUE}, got {cell!r}") from None
    if not 0 <= value <= MAX_LABEL_VALUE:
        raise PipelineError(f"{where}: value must be an integer 0-{MAX_LABEL_VALUE}, got {cell!r}")
    return value


def _parse_headline(cell: str, where: str) -> bool:
    try:
        return _HEADLINE_WORDS[cell.lower()]
    except KeyError:
        raise PipelineError(f"{where}: headline must be yes or no (or true/false, 1/0), got {cell!r}") from None


def values_to_index(labels: np.ndarray, table: ClassTable, nodata: float | None = None) -> tuple[np.ndarray, int]:
    """Map an HxW class-index raster (label values, any integer type) to HxW uint8 class indices.

    A value in the table becomes its class's index; a value in no row becomes IGNORE_INDEX and is
    counted; the raster's `nodata` value becomes IGNORE_INDEX too but is not counted (it is not a
    label, and the caller knows how to count it: `labels == nodata`). `nodata` wins over a class of
    the same value. A non-integral `nodata` (NaN, as rasterio may report it) matches no pixel.
    Returns the index raster and the number of off-table pixels.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"class-index labels must be integers, got {labels.dtype}")
    lookup = np.full(MAX_LABEL_VALUE + 1, IGNORE_INDEX, dtype=np.uint8)
    lookup[list(table.values)] = np.arange(len(table), dtype=np.uint8)
    if labels.dtype.kind == "u" and labels.dtype.itemsize <= 2:
        index = lookup[labels]
    else:  # values outside 0..65535 (negative, or of a wider type) are in no row
        inside = (labels >= 0) & (labels <= MAX_LABEL_VALUE)
        index = np.where(inside, lookup[np.where(inside, labels, 0)], IGNORE_INDEX).astype(np.uint8)
    off_table = index == IGNORE_INDEX
    if nodata is not None and float(nodata).is_integer():
        is_nodata = labels == int(nodata)
        index[is_nodata] = IGNORE_INDEX
        off_table &= ~is_nodata
    return index, int(np.count_nonzero(off_table))


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
