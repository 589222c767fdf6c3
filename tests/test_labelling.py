"""The labelling session behind the viewer: the sample's points and classes, each answer in the CSV at once and
atomically, resuming at the first unanswered point, can't tell recorded as such, the CSV read by
landcover-assess, and every refusal one line naming the file."""

from __future__ import annotations

import errno
import json
import os
import threading

import numpy as np
import pytest

from landcover.cli import assess as assess_command
from landcover.cli import sample as sample_command
from landcover.geo.sampling import CANNOT_TELL, POINT_COLUMNS
from landcover.io.errors import PipelineError
from landcover.viewer import labelling
from landcover.viewer.labelling import LabellingSession
from tests.test_change import TABLE, write_class_map
from tests.test_sampling import read_rows, write_rows

POINTS = 10


def block_map() -> np.ndarray:
    """Three classes in blocks: urban (0) above, forest (3) and water (4) below, a strip without a class."""
    classes = np.zeros((24, 24), dtype=np.uint8)
    classes[12:, :12] = 3
    classes[12:, 12:] = 4
    classes[:2, :] = 255
    return classes


def sample_of(map_path, output) -> tuple:
    """A sample of POINTS points of a map into `output`: (design path, CSV path)."""
    sample_command.main(
        ["--map", str(map_path), "--output", str(output), "--size", str(POINTS), "--minimum", "2", "--no-progress"]
    )
    return output / "sample_design.json", output / "sample.csv"


@pytest.fixture
def sample(tmp_path):
    return sample_of(write_class_map(tmp_path / "map.tif", block_map()), tmp_path / "sample")


def references(path) -> dict[int, str]:
    return {int(row["point_id"]): row["reference"] for row in read_rows(path)}


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_state_lists_the_designs_classes_and_points_and_hides_the_map_class_unless_asked(sample):
    design_path, _ = sample
    design = json.loads(design_path.read_text())
    state = LabellingSession.open(design_path).state()
    assert [c["name"] for c in state["classes"]] == list(TABLE.names)
    assert [c["value"] for c in state["classes"]] == list(range(len(TABLE.names)))
    assert state["classes"][0]["colour"] == "#00ffff"  # urban_land's colour in the map's table
    assert [p["id"] for p in state["points"]] == [p["point_id"] for p in design["points"]]
    assert state["points"][0]["lon"] == pytest.approx(design["points"][0]["lon"])
    assert all("map_class" not in point and point["reference"] == "" for point in state["points"])
    assert (state["answered"], state["labelled"], state["total"], state["resume"]) == (0, 0, POINTS, 0)
    assert state["cannot_tell_reference"] == CANNOT_TELL == "cannot-tell"
    assert state["cannot_tell"] == 0

    shown = LabellingSession.open(design_path, show_map_class=True).state()
    assert [p["map_class"] for p in shown["points"]] == [p["map_class"] for p in design["points"]]


def test_each_answer_is_in_the_csv_at_once_and_only_its_reference_cell_changes(sample):
    design_path, csv_path = sample
    before = csv_path.read_bytes().decode("utf-8")
    session = LabellingSession.open(design_path)
    first, second = session.point_ids[:2]
    result = session.answer(first, "forest_land")
    assert result["point"] == {"id": first, "reference": "forest_land"}
    assert (result["answered"], result["labelled"], result["index"], result["next"]) == (1, 1, 0, 1)
    assert references(csv_path) == {
        point_id: "forest_land" if point_id == first else "" for point_id in session.point_ids
    }
    # every other cell, the header, the quoting and the line ends are those landcover-sample wrote
    lines = before.split("\r\n")
    assert lines[0] == ",".join(POINT_COLUMNS)
    changed = [line + "forest_land" if line.startswith(f"{first},") else line for line in lines]
    assert csv_path.read_bytes().decode("utf-8") == "\r\n".join(changed)
    assert str(session.answer(str(second), "water")["answered"]) == "2"  # an id as text too
    assert not [path.name for path in csv_path.parent.iterdir() if path.name.startswith(".")]  # no staging left


def test_a_new_session_resumes_at_the_first_unanswered_point(sample):
    design_path, csv_path = sample
    session = LabellingSession.open(design_path)
    ids = session.point_ids
    for point_id in ids[:3]:
        session.answer(point_id, "urban_land")
    session.answer(ids[5], "water")  # out of order: the gap at 3 is where to resume
    state = LabellingSession.open(design_path).state()
    assert (state["answered"], state["resume"]) == (4, 3)
    assert [p["reference"] for p in state["points"]][:6] == ["urban_land"] * 3 + ["", "", "water"]
    for point_id in ids:
        if not references(csv_path)[point_id]:
            last = session.answer(point_id, "forest_land")
    assert last["next"] is None and LabellingSession.open(design_path).state()["resume"] is None


def test_the_next_point_after_the_last_wraps_to_the_first_unanswered(sample):
    design_path, _ = sample
    session = LabellingSession.open(design_path)
    assert session.answer(session.point_ids[-1], "water")["next"] == 0
    session.answer(session.point_ids[0], "water")
    assert session.answer(session.point_ids[-2], "water")["next"] == 1


def test_cannot_tell_is_recorded_as_such_counts_as_answered_not_labelled_and_clears(sample):
    design_path, csv_path = sample
    session = LabellingSession.open(design_path)
    first = session.point_ids[0]
    result = session.answer(first, CANNOT_TELL)
    assert references(csv_path)[first] == "cannot-tell"
    assert (result["answered"], result["labelled"], result["cannot_tell"], result["resume"]) == (1, 0, 1, 1)
    session.answer(first, "")
    assert references(csv_path)[first] == ""
    assert session.state()["resume"] == 0


def test_the_labelled_csv_is_what_assess_reads(sample, tmp_path, capsys):
    design_path, csv_path = sample
    design = json.loads(design_path.read_text())
    session = LabellingSession.open(design_path)
    for point in design["points"]:  # the map is right everywhere but at one point the labeller cannot tell
        session.answer(point["point_id"], CANNOT_TELL if point["point_id"] == 1 else point["map_class"])
    with pytest.raises(PipelineError, match="1 points have no reference class"):
        assess_command.main(["--sample", str(csv_path), "--design", str(design_path), "--output", str(tmp_path / "a")])
    assess_command.main(
        ["--sample", str(csv_path), "--design", str(design_path), "--output", str(tmp_path / "a"), "--allow-missing"]
    )
    report = json.loads((tmp_path / "a" / "assessment.json").read_text())
    assert (report["points_labelled"], report["points_left_out"]) == (POINTS - 1, 1)
    assert report["overall_accuracy"]["estimate"] == pytest.approx(1.0)
    assert "1 unlabelled points left out" in capsys.readouterr().out


def test_a_failed_write_leaves_the_old_csv_whole_and_no_staging_file(sample, monkeypatch):
    design_path, csv_path = sample
    session = LabellingSession.open(design_path)
    session.answer(session.point_ids[0], "water")
    old = csv_path.read_bytes()

    def full_disk(descriptor):  # after the new CSV's rows are written, before the rename
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(labelling.os, "fsync", full_disk)
    with pytest.raises(PipelineError, match="sample.csv: cannot write output"):
        session.answer(session.point_ids[1], "urban_land")
    assert csv_path.read_bytes() == old
    assert sorted(path.name for path in csv_path.parent.iterdir() if path.name.startswith(".")) == []
    monkeypatch.undo()
    assert session.state()["answered"] == 1


def test_answers_from_many_threads_are_all_kept(sample):
    design_path, csv_path = sample
    session = LabellingSession.open(design_path)
    threads = [threading.Thread(target=session.answer, args=(point_id, "water")) for point_id in session.point_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(references(csv_path).values()) == {"water"}


def test_an_edit_of_the_csv_between_answers_is_kept(sample):
    design_path, csv_path = sample
    session = LabellingSession.open(design_path)
    rows = read_rows(csv_path)
    rows[4]["reference"] = "rangeland"
    write_rows(csv_path, rows)
    session.answer(rows[0]["point_id"], "water")
    assert [row["reference"] for row in read_rows(csv_path)][:5] == ["water", "", "", "", "rangeland"]


def test_bad_answers_are_refused_in_one_line(sample):
    design_path, csv_path = sample
    session = LabellingSession.open(design_path)
    before = csv_path.read_bytes()
    for point_id, reference, expected in [
        (999, "water", "point_id 999: not a point of the sample"),
        ("x", "water", "point_id 'x': not a point id"),
        (True, "water", "point_id True: not a point id"),
        (None, "water", "point_id None: not a point id"),
        (1, "Water", "reference 'Water': not a class of the sample"),
        (1, None, "reference None: not a class"),
    ]:
        with pytest.raises(PipelineError) as error:
            session.answer(point_id, reference)
        assert expected in one_line(error)
    assert csv_path.read_bytes() == before


def rewrite(csv_path, change) -> None:
    rows = read_rows(csv_path)
    change(rows)
    write_rows(csv_path, rows)


def moved(rows):
    rows[2]["x"] = str(float(rows[2]["x"]) + 10)


def unknown_reference(rows):
    rows[3]["reference"] = "forest"


def dropped_point(rows):
    del rows[6]


def no_reference_column(rows):
    for row in rows:
        del row["reference"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (moved, "sample.csv: points 3 are not in the design (other ids, or moved)"),
        (unknown_reference, "sample.csv: point 4: reference 'forest' is not a class of the design"),
        (dropped_point, "sample.csv: points 7 of the design sample_design.json are not in the sample"),
        (no_reference_column, "sample.csv: the sample has no column 'reference'"),
    ],
)
def test_a_csv_that_does_not_match_its_design_is_refused_in_one_line(sample, change, expected):
    design_path, csv_path = sample
    rewrite(csv_path, change)
    with pytest.raises(PipelineError) as error:
        LabellingSession.open(design_path)
    assert expected in one_line(error)


def test_a_missing_or_bad_design_or_a_missing_csv_is_refused_in_one_line(sample, tmp_path):
    design_path, csv_path = sample
    design = json.loads(design_path.read_text())
    cases = {
        tmp_path / "absent.json": (None, "absent.json: file not found"),
        tmp_path / "text.json": ("not json", "text.json: not a sample design (not JSON"),
        tmp_path / "other.json": ({"format": "other"}, "other.json: not a sample design of landcover-sample"),
        tmp_path / "nopoints.json": (
            {**design, "points": None},
            "nopoints.json: not a sample design of landcover-sample (no list 'points')",
        ),
    }
    for path, (content, expected) in cases.items():
        if content is not None:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(PipelineError) as error:
            LabellingSession.open(path)
        assert expected in one_line(error)
    csv_path.unlink()
    with pytest.raises(PipelineError) as error:
        LabellingSession.open(design_path)
    assert one_line(error).startswith(f"{csv_path}: file not found; the answers go into the sample.csv that")


def test_the_points_outside_the_viewed_maps_are_named(sample):
    design_path, _ = sample
    session = LabellingSession.open(design_path)
    points = session.design["points"]
    lons, lats = [p["lon"] for p in points], [p["lat"] for p in points]
    assert session.points_outside((min(lons), min(lats), max(lons), max(lats))) == []
    east_half = (sorted(lons)[POINTS // 2], min(lats), max(lons), max(lats))
    outside = session.points_outside(east_half)
    assert outside == [p["point_id"] for p in points if p["lon"] < east_half[0]] and len(outside) >= POINTS // 2
