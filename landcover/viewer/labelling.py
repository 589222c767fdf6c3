"""Labelling the assessment sample in the viewer: the points of landcover-sample's design, and each answer written
to the sample's CSV at once.

The CSV beside the design (landcover.geo.sampling.SAMPLE_FILES) is the only record of the answers: every
request reads it again, and every answer rewrites it whole, atomically (a staging file in the same folder,
fsynced, renamed over it), so killing the server or closing the tab loses no answer and never leaves half a
file. Its columns, their order and every other cell stay as they were; only the point's `reference` changes, to
a class name of the design, CANNOT_TELL, or empty: exactly what landcover-assess reads (CANNOT_TELL and empty
are unlabelled there). A point is answered once its reference is not empty; the session resumes at the first
point without an answer.
"""

from __future__ import annotations

import csv
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from landcover.geo.area_report import check_points, ids_text
from landcover.geo.sampling import CANNOT_TELL, SAMPLE_FILES, read_design, read_labelled_points
from landcover.io.errors import PipelineError
from landcover.io.outputs import atomic_file
from landcover.viewer.outputs import colour_hex

DESIGN_KEYS = ("classes", "colours", "points")
POINT_KEYS = ("point_id", "lon", "lat", "map_class")


def check_design(design: dict, path: Path) -> None:
    """The parts of a design labelling uses are there (read_design has checked its format)."""
    missing = [key for key in DESIGN_KEYS if not isinstance(design.get(key), list)]
    if missing:
        raise PipelineError(f"{path}: not a sample design of landcover-sample (no list {missing[0]!r})")
    if len(design["colours"]) != len(design["classes"]):
        raise PipelineError(f"{path}: {len(design['classes'])} classes but {len(design['colours'])} colours")
    for point in design["points"]:
        if not isinstance(point, dict) or any(key not in point for key in POINT_KEYS):
            raise PipelineError(f"{path}: a point of the design lacks one of {', '.join(POINT_KEYS)}")


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable: without it a power cut may bring back the old directory entry."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class SampleTable:
    """The CSV as read: its header and rows of text (written back as they are), and each point's row."""

    header: list[str]
    rows: list[list[str]]
    row_of: dict[int, int]  # point_id -> index into rows
    references: dict[int, str]  # point_id -> reference, stripped


class LabellingSession:
    """A sample design and its CSV, for the viewer: `state()` for the page, `answer()` for each key pressed."""

    def __init__(self, design_path: Path, csv_path: Path, design: dict, show_map_class: bool) -> None:
        self.design_path = design_path
        self.csv_path = csv_path
        self.design = design
        self.show_map_class = show_map_class
        self.classes: tuple[str, ...] = tuple(design["classes"])
        self.point_ids: list[int] = [int(point["point_id"]) for point in design["points"]]
        # The server is threaded: one read-modify-write of the CSV at a time.
        self.lock = threading.Lock()

    @classmethod
    def open(cls, design_path: str | Path, show_map_class: bool = False) -> LabellingSession:
        """The design of landcover-sample and the sample.csv beside it, checked against each other."""
        design_path = Path(design_path)
        design = read_design(design_path)
        check_design(design, design_path)
        csv_path = design_path.parent / SAMPLE_FILES["csv"]
        if not csv_path.is_file():
            raise PipelineError(
                f"{csv_path}: file not found; the answers go into the {SAMPLE_FILES['csv']} that landcover-sample "
                f"wrote beside {design_path.name}"
            )
        session = cls(design_path, csv_path, design, show_map_class)
        session.read_table()
        return session

    def read_table(self) -> SampleTable:
        """The CSV, checked: the design's points, each once where the design put it, references of its classes."""
        path = self.csv_path
        parsed = read_labelled_points(path)  # missing file, not UTF-8, missing columns, ids and x, y not numbers
        check_points(self.design, parsed, path)
        absent = sorted(set(self.point_ids) - {row["point_id"] for row in parsed})
        if absent:
            raise PipelineError(
                f"{path}: points {ids_text(absent)} of the design {self.design_path.name} are not in the sample"
            )
        allowed = {*self.classes, CANNOT_TELL, ""}
        wrong = [row for row in parsed if row["reference"] not in allowed]
        if wrong:
            raise PipelineError(
                f"{path}: point {wrong[0]['point_id']}: reference {wrong[0]['reference']!r} is not a class of the "
                f"design ({', '.join(self.classes)}, or {CANNOT_TELL})"
            )
        with open(path, newline="", encoding="utf-8-sig") as file:
            # csv.DictReader, which read_labelled_points uses, skips blank lines: so do these rows
            header, *rows = [row for row in csv.reader(file) if row]
        id_column = header.index("point_id")
        return SampleTable(
            header,
            rows,
            {int(row[id_column]): index for index, row in enumerate(rows)},
            {row["point_id"]: row["reference"] for row in parsed},
        )

    def write_table(self, table: SampleTable) -> None:
        """The CSV replaced whole, atomically and durably, in the form landcover-sample writes it."""
        with atomic_file(self.csv_path) as staging:
            with open(staging, "w", newline="", encoding="utf-8") as file:
                writer = csv.writer(file)
                writer.writerow(table.header)
                writer.writerows(table.rows)
                file.flush()
                os.fsync(file.fileno())
        fsync_folder(self.csv_path.parent)

    def counts(self, references: dict[int, str]) -> dict:
        """Answered (any reference), labelled (a class: what assess counts), can't tell, total, and where to
        resume: the index of the first point without an answer (None when every point has one)."""
        answers = [references[point_id] for point_id in self.point_ids]
        unanswered = [index for index, reference in enumerate(answers) if not reference]
        return {
            "answered": sum(1 for reference in answers if reference),
            "labelled": sum(1 for reference in answers if reference and reference != CANNOT_TELL),
            "cannot_tell": answers.count(CANNOT_TELL),
            "total": len(answers),
            "resume": unanswered[0] if unanswered else None,
        }

    def state(self) -> dict:
        """Everything the page needs: the classes, the points in the design's order with their answers, counts."""
        with self.lock:
            references = self.read_table().references
        points = []
        for point in self.design["points"]:
            point_id = int(point["point_id"])
            shown: dict[str, object] = {"id": point_id, "lon": float(point["lon"]), "lat": float(point["lat"])}
            if self.show_map_class:
                shown["map_class"] = point["map_class"]
            shown["reference"] = references[point_id]
            points.append(shown)
        return {
            "design": str(self.design_path),
            "sample": str(self.csv_path),
            "classes": [
                {"value": value, "name": name, "colour": colour_hex(colour)}
                for value, (name, colour) in enumerate(zip(self.classes, self.design["colours"]))
            ],
            "cannot_tell_reference": CANNOT_TELL,  # the reference that records "can't tell"
            "show_map_class": self.show_map_class,
            "points": points,
            **self.counts(references),
        }

    def points_outside(self, bounds: tuple[float, float, float, float]) -> list[int]:
        """The ids of the points outside `bounds` (west, south, east, north in degrees): where the viewed output
        shows nothing to label them from."""
        west, south, east, north = bounds
        return [
            int(point["point_id"])
            for point in self.design["points"]
            if not (west <= float(point["lon"]) <= east and south <= float(point["lat"]) <= north)
        ]

    def point_id_of(self, point_id: object) -> int:
        if isinstance(point_id, bool) or not isinstance(point_id, (int, str)):
            raise PipelineError(f"point_id {point_id!r}: not a point id (a whole number)")
        try:
            number = int(point_id)
        except ValueError:
            raise PipelineError(f"point_id {point_id!r}: not a point id (a whole number)") from None
        if number not in self.point_ids:
            raise PipelineError(f"point_id {number}: not a point of the sample {self.csv_path}")
        return number

    def answer(self, point_id: object, reference: object) -> dict:
        """Record `reference` (a class name, CANNOT_TELL, or "" to clear) for the point, in the CSV at once; the
        point as it now is, the counts, and `next`: the index of the next point without an answer after it
        (from the start again past the last; None when every point has one)."""
        number = self.point_id_of(point_id)
        if not isinstance(reference, str) or reference.strip() not in {*self.classes, CANNOT_TELL, ""}:
            raise PipelineError(
                f"reference {reference!r}: not a class of the sample ({', '.join(self.classes)}), "
                f"{CANNOT_TELL}, or empty to clear"
            )
        reference = reference.strip()
        with self.lock:
            table = self.read_table()
            row = table.rows[table.row_of[number]]
            column = table.header.index("reference")
            row.extend([""] * (len(table.header) - len(row)))  # a short row: its missing cells were empty
            row[column] = reference
            self.write_table(table)
            references = {**table.references, number: reference}
        index = self.point_ids.index(number)
        order = self.point_ids[index + 1 :] + self.point_ids[: index + 1]
        following = next((point_id for point_id in order if not references[point_id]), None)
        return {
            "point": {"id": number, "reference": reference},
            "index": index,
            "next": None if following is None else self.point_ids.index(following),
            **self.counts(references),
        }
