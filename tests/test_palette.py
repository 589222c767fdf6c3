"""The colour table and the colour <-> index <-> one-hot conversions."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stages.core.errors import PipelineError
from stages.core.palette import (IGNORE_INDEX, ClassTable, index_to_colour, colour_to_index, one_hot,
                                 reverse_one_hot)

TABLE = ClassTable.deepglobe()
indices = arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12)),
                 elements=st.sampled_from([*range(len(TABLE)), IGNORE_INDEX]))


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


def test_class_table_is_not_limited_to_seven_classes(tmp_path):
    path = tmp_path / "class_dict.csv"
    path.write_text("name,r,g,b\nwater,0,0,255\nland,255,255,0\ncloud,255,255,255\n")
    table = ClassTable.from_csv(path)
    assert table.names == ("water", "land", "cloud")
    index, _ = colour_to_index(np.array([[[250, 250, 250], [3, 3, 240]]], dtype=np.uint8), table)
    np.testing.assert_array_equal(index, [[2, 0]])


@pytest.mark.parametrize("content, message", [
    ("name,r,g,b\nurban_land,0,255\n", "line 2: expected 4 fields"),
    ("name,r,g,b\nurban_land,0,255,x\n", "line 2: r,g,b must be integers"),
    ("name,r,g,b\nurban_land,0,255,256\n", "line 2: r,g,b must be integers 0-255"),
    ("name,r,g,b\n,0,255,255\n", "line 2: empty class name"),
    ("name,r,g,b\na,0,0,0\na,0,0,255\n", "line 3: class name 'a' appears twice"),
    ("name,r,g,b\na,0,0,0\nb,0,0,0\n", "line 3: colour (0, 0, 0) already belongs to 'a'"),
    ("label,red,green,blue\na,0,0,0\n", "header must be 'name,r,g,b'"),
    ("name,r,g,b\n", "no classes"),
])
def test_malformed_class_table_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "class_dict.csv"
    path.write_text(content)
    with pytest.raises(PipelineError, match=re.escape(message)) as error:
        ClassTable.from_csv(path)
    assert str(path) in str(error.value)
