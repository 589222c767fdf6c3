"""The colour table and the colour <-> index <-> one-hot conversions."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stages.core.data.palette import (
    IGNORE_INDEX,
    ClassTable,
    colour_to_index,
    index_to_colour,
    one_hot,
    reverse_one_hot,
)
from stages.core.io.errors import PipelineError

TABLE = ClassTable.deepglobe()
indices = arrays(
    np.uint8,
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    elements=st.sampled_from([*range(len(TABLE)), IGNORE_INDEX]),
)


def test_deepglobe_table_matches_the_dataset_readme():
    assert TABLE.names[1] == "agriculture_land" and tuple(TABLE.colours[1]) == (255, 255, 0)
    assert TABLE.names[6] == "unknown" and tuple(TABLE.colours[6]) == (0, 0, 0)
    assert len(TABLE) == 7 and TABLE.is_binary


@given(indices)
def test_index_colour_index_round_trip(index):
    restored, ignored = colour_to_index(index_to_colour(index, TABLE), TABLE)
    np.testing.assert_array_equal(restored, index)
    assert ignored == np.count_nonzero(index == IGNORE_INDEX)


@given(indices)
def test_one_hot_round_trip(index):
    encoded = one_hot(index, len(TABLE))
    assert encoded.shape == (*index.shape, len(TABLE)) and encoded.dtype == np.uint8
    assert (encoded.sum(axis=-1) == (index != IGNORE_INDEX)).all()  # ignored pixels: all zeros
    np.testing.assert_array_equal(reverse_one_hot(encoded), index)


def test_reverse_one_hot_takes_the_argmax_of_scores():
    scores = np.array([[[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]])
    np.testing.assert_array_equal(reverse_one_hot(scores), [[1, 0]])
    assert reverse_one_hot(scores).dtype == np.uint8  # written as a class-index PNG


@given(arrays(np.uint8, (6, 6, 3)), st.sampled_from(range(len(TABLE))))
def test_threshold_at_128_per_channel(noise, class_index):
    """Values on the right side of 128 in every channel read as the class, whatever they are."""
    colour = TABLE.colours[class_index].astype(int)
    jittered = np.where(colour == 255, 128 + noise % 128, noise % 128).astype(np.uint8)
    index, ignored = colour_to_index(jittered, TABLE)
    assert (index == class_index).all() and ignored == 0


def test_threshold_boundary_and_colours_in_no_row():
    mask = np.array([[[127, 255, 255], [128, 255, 0], [255, 0, 0], [200, 30, 10]]], dtype=np.uint8)
    index, ignored = colour_to_index(mask, TABLE)
    # 127 -> 0 (urban: 0,255,255); 128 -> 255 (agriculture); pure red and reddish are in no row.
    np.testing.assert_array_equal(index, [[0, 1, IGNORE_INDEX, IGNORE_INDEX]])
    assert ignored == 2


def test_non_binary_table_matches_colours_exactly():
    table = ClassTable(("road", "grass"), np.array([[128, 128, 128], [20, 200, 20]]))
    mask = np.array([[[128, 128, 128], [20, 200, 20], [129, 128, 128]]], dtype=np.uint8)
    index, ignored = colour_to_index(mask, table)
    np.testing.assert_array_equal(index, [[0, 1, IGNORE_INDEX]])
    assert ignored == 1
    assert table.ignore_colour not in {(128, 128, 128), (20, 200, 20)}


def test_class_table_csv_round_trip(tmp_path):
    TABLE.to_csv(tmp_path / "class_dict.csv")
    assert ClassTable.from_csv(tmp_path / "class_dict.csv") == TABLE
    assert b"\r" not in (tmp_path / "class_dict.csv").read_bytes()  # "\n" line ends: the bytes DVC hashes


def test_class_table_is_not_limited_to_seven_classes(tmp_path):
    path = tmp_path / "class_dict.csv"
    path.write_text("name,r,g,b\nwater,0,0,255\nland,255,255,0\ncloud,255,255,255\n")
    table = ClassTable.from_csv(path)
    assert table.names == ("water", "land", "cloud")
    index, _ = colour_to_index(np.array([[[250, 250, 250], [3, 3, 240]]], dtype=np.uint8), table)
    np.testing.assert_array_equal(index, [[2, 0]])


@pytest.mark.parametrize(
    "content, message",
    [
        ("name,r,g,b\nurban_land,0,255\n", "line 2: expected 4 fields"),
        ("name,r,g,b\nurban_land,0,255,x\n", "line 2: r,g,b must be integers"),
        ("name,r,g,b\nurban_land,0,255,256\n", "line 2: r,g,b must be integers 0-255"),
        ("name,r,g,b\n,0,255,255\n", "line 2: empty class name"),
        ("name,r,g,b\na,0,0,0\na,0,0,255\n", "line 3: class name 'a' appears twice"),
        ("name,r,g,b\na,0,0,0\nb,0,0,0\n", "line 3: colour (0, 0, 0) already belongs to 'a'"),
        ("label,red,green,blue\na,0,0,0\n", "header must be 'name,r,g,b'"),
        ("name,r,g,b\n", "no classes"),
    ],
)
def test_malformed_class_table_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "class_dict.csv"
    path.write_text(content)
    with pytest.raises(PipelineError, match=re.escape(message)) as error:
        ClassTable.from_csv(path)
    assert str(path) in str(error.value)


def test_class_table_refuses_mismatched_colours_and_too_many_or_no_classes():
    with pytest.raises(ValueError, match="colours must have shape"):
        ClassTable(("a", "b"), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="colours must have shape"):
        ClassTable(("a",), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="colours must have shape"):
        ClassTable(("a",), np.zeros(3))
    with pytest.raises(PipelineError, match="0 classes; need 1 to 254"):
        ClassTable((), np.zeros((0, 3)))
    names = tuple(f"c{i}" for i in range(255))
    with pytest.raises(PipelineError, match="255 classes; need 1 to 254"):
        ClassTable(names, np.zeros((255, 3)))
    assert len(ClassTable(names[:254], np.zeros((254, 3)))) == 254  # index 255 stays free for "ignored"


def test_class_colours_are_stored_as_uint8_whatever_they_were_given_as():
    table = ClassTable(("a", "b"), np.array([[0, 128, 255], [1, 2, 3]], dtype=np.int64))
    assert table.colours.dtype == np.uint8  # what masks are compared with, and what checkpoints store
    np.testing.assert_array_equal(table.colours, [[0, 128, 255], [1, 2, 3]])
    assert ClassTable.deepglobe().colours.dtype == np.uint8


def test_tables_are_equal_by_names_and_colours():
    assert TABLE == ClassTable.deepglobe() and TABLE != "deepglobe"
    assert TABLE != ClassTable(TABLE.names, TABLE.colours[::-1])
    assert TABLE != ClassTable(TABLE.names[::-1], TABLE.colours)
    assert TABLE.colours.dtype == np.uint8


def test_ignore_colour_is_the_first_candidate_no_class_uses():
    assert TABLE.ignore_colour == (255, 0, 0)
    red = ClassTable(("red", "grey"), np.array([[255, 0, 0], [128, 128, 128]]))
    assert red.ignore_colour == (255, 128, 0)
    assert not red.is_binary and ClassTable(("red",), np.array([[255, 0, 0]])).is_binary


def test_index_of_names_the_missing_class():
    assert TABLE.index_of("water") == 4
    with pytest.raises(PipelineError, match="no class named 'lava'"):
        TABLE.index_of("lava")


def test_class_table_csv_is_name_r_g_b(tmp_path):
    ClassTable(("a", "b"), np.array([[1, 2, 3], [4, 5, 6]])).to_csv(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == "name,r,g,b\na,1,2,3\nb,4,5,6\n"
    # a header in other case and with spaces, blank rows and padded cells are accepted
    (tmp_path / "loose.csv").write_text("Name, R ,g,B\n\n a ,1,2,3\n,,,\n")
    assert ClassTable.from_csv(tmp_path / "loose.csv") == ClassTable(("a",), np.array([[1, 2, 3]]))


def test_unreadable_class_tables_are_refused(tmp_path):
    with pytest.raises(PipelineError, match="cannot read class table"):
        ClassTable.from_csv(tmp_path / "missing.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(PipelineError, match="binary.csv: class table is UTF-16 \\(or binary\\), not UTF-8"):
        ClassTable.from_csv(tmp_path / "binary.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(PipelineError, match="got 'an empty file'"):
        ClassTable.from_csv(tmp_path / "empty.csv")


def test_colour_masks_must_be_rgb():
    with pytest.raises(ValueError, match="expected an HxWx3 colour mask"):
        colour_to_index(np.zeros((4, 4), dtype=np.uint8), TABLE)
    with pytest.raises(ValueError, match="expected an HxWx3 colour mask"):
        colour_to_index(np.zeros((4, 4, 4), dtype=np.uint8), TABLE)


def test_exact_matching_tells_apart_colours_that_differ_in_one_channel():
    colours = np.array([[10, 20, 30], [10, 20, 31], [10, 21, 30], [11, 20, 30], [250, 250, 250]])
    table = ClassTable(tuple("abcde"), colours)
    mask = np.concatenate([colours, [[0, 0, 0], [255, 255, 255], [10, 20, 29]]])[None].astype(np.uint8)
    index, ignored = colour_to_index(mask, table)
    np.testing.assert_array_equal(index, [[0, 1, 2, 3, 4, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    assert ignored == 3
    np.testing.assert_array_equal(index_to_colour(index, table)[0, :5], colours)


def test_reverse_one_hot_can_keep_empty_rows_as_class_0():
    empty = np.zeros((1, 2, 3), dtype=np.uint8)
    np.testing.assert_array_equal(reverse_one_hot(empty, ignore_empty=False), [[0, 0]])
    np.testing.assert_array_equal(reverse_one_hot(empty), [[IGNORE_INDEX, IGNORE_INDEX]])
