"""The colour table and the colour <-> index <-> one-hot conversions."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from landcover.data.palette import (
    IGNORE_INDEX,
    PRESETS,
    ClassTable,
    colour_to_index,
    index_to_colour,
    one_hot,
    preset_names,
    reverse_one_hot,
    values_to_index,
)
from landcover.io.errors import PipelineError

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
        ("label,red,green,blue\na,0,0,0\n", "header must be 'name,r,g,b' or 'name,value,r,g,b,headline'"),
        ("name,value,r,g,b\na,1,0,0,0\n", "header must be 'name,r,g,b' or 'name,value,r,g,b,headline'"),
        ("name,value,r,g,b,headline\na,1,0,0,0\n", "line 2: expected 6 fields name,value,r,g,b,headline, got 5"),
        ("name,value,r,g,b,headline\na,1,0,0,0,yes\nb,1,0,0,9,yes\n", "line 3: label value 1 already belongs to 'a'"),
        ("name,value,r,g,b,headline\na,1,0,0,0,yes\na,2,0,0,9,yes\n", "line 3: class name 'a' appears twice"),
        ("name,value,r,g,b,headline\na,1,0,0,0,yes\nb,2,0,0,0,no\n", "line 3: colour (0, 0, 0) already belongs to 'a'"),
        ("name,value,r,g,b,headline\na,65536,0,0,0,yes\n", "line 2: value must be an integer 0-65535, got '65536'"),
        ("name,value,r,g,b,headline\na,-1,0,0,0,yes\n", "line 2: value must be an integer 0-65535, got '-1'"),
        ("name,value,r,g,b,headline\na,x,0,0,0,yes\n", "line 2: value must be an integer 0-65535, got 'x'"),
        ("name,value,r,g,b,headline\na,1,0,0,0,maybe\n", "line 2: headline must be yes or no (or true/false, 1/0)"),
        ("name,value,r,g,b,headline\na,1,0,0,0,\n", "line 2: headline must be yes or no (or true/false, 1/0), got ''"),
        ("name,value,r,g,b,headline\na,1,0,0,300,yes\n", "line 2: r,g,b must be integers 0-255, got '0,0,300'"),
        ("name,value,r,g,b,headline\na,1,0,0,0,no\nb,2,0,0,9,no\n", "no class is in the headline"),
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


# --- label values and the headline ------------------------------------------------------------------


def test_a_table_without_values_or_headline_has_todays_defaults():
    assert TABLE.values == tuple(range(7))
    assert TABLE.headline == (True,) * 6 + (False,) and TABLE.left_out == ("unknown",)
    other = ClassTable(("a", "b"), np.array([[1, 2, 3], [4, 5, 6]]))
    assert other.values == (0, 1) and other.headline == (True, True) and other.left_out == ()
    assert TABLE.has_default_values_and_headline and other.has_default_values_and_headline


def test_tables_differ_by_values_and_headline_too():
    assert TABLE != ClassTable(TABLE.names, TABLE.colours, tuple(range(1, 8)))
    assert TABLE != ClassTable(TABLE.names, TABLE.colours, headline=(True,) * 7)
    assert TABLE == ClassTable(TABLE.names, TABLE.colours, tuple(range(7)), (True,) * 6 + (False,))


def test_deepglobe_class_dict_is_written_byte_for_byte_as_before(tmp_path):
    """The tile stage rewrites the raw class_dict.csv through to_csv: DeepGlobe's must not change by a byte."""
    expected = (
        b"name,r,g,b\nurban_land,0,255,255\nagriculture_land,255,255,0\nrangeland,255,0,255\n"
        b"forest_land,0,255,0\nwater,0,0,255\nbarren_land,255,255,255\nunknown,0,0,0\n"
    )
    TABLE.to_csv(tmp_path / "class_dict.csv")
    assert (tmp_path / "class_dict.csv").read_bytes() == expected
    # Kaggle's class_dict.csv (these rows, maybe with \r\n line ends), read and written again
    (tmp_path / "kaggle.csv").write_bytes(expected.replace(b"\n", b"\r\n"))
    ClassTable.from_csv(tmp_path / "kaggle.csv").to_csv(tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == expected


def test_full_form_round_trip_and_when_it_is_written(tmp_path):
    table = ClassTable(
        ("no_cloud", "cloud", "other"),
        np.array([[0, 0, 255], [255, 255, 255], [9, 9, 9]]),
        (10, 20, 300),
        (True, True, False),
    )
    table.to_csv(tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_text()
    assert text == "name,value,r,g,b,headline\nno_cloud,10,0,0,255,yes\ncloud,20,255,255,255,yes\nother,300,9,9,9,no\n"
    assert ClassTable.from_csv(tmp_path / "t.csv") == table
    # values 0..n-1 but a headline other than the default: the full form, and it reads back the same
    headline_only = ClassTable(TABLE.names, TABLE.colours, headline=(True,) * 7)
    headline_only.to_csv(tmp_path / "h.csv")
    assert (tmp_path / "h.csv").read_text().startswith("name,value,r,g,b,headline\nurban_land,0,0,255,255,yes\n")
    assert ClassTable.from_csv(tmp_path / "h.csv") == headline_only
    # a full-form file that says only the defaults is written back in the short form
    (tmp_path / "f.csv").write_text("Name, Value ,r,g,b,HEADLINE\na,0,1,2,3,Yes\nunknown,1,4,5,6,no\n")
    short = ClassTable.from_csv(tmp_path / "f.csv")
    short.to_csv(tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_text() == "name,r,g,b\na,1,2,3\nunknown,4,5,6\n"


@pytest.mark.parametrize(
    "cell, counted",
    [
        ("yes", True),
        ("YES", True),
        ("true", True),
        ("1", True),
        ("no", False),
        ("False", False),
        ("0", False),
        (" no ", False),
    ],
)
def test_headline_cells(tmp_path, cell, counted):
    (tmp_path / "t.csv").write_text(f"name,value,r,g,b,headline\nland,1,0,0,0,yes\nsea,2,0,0,255,{cell}\n")
    assert ClassTable.from_csv(tmp_path / "t.csv").headline == (True, counted)


def test_constructor_refuses_bad_values_and_headlines():
    colours = np.array([[0, 0, 0], [0, 0, 9]])
    with pytest.raises(PipelineError, match="label value 3 belongs to two classes"):
        ClassTable(("a", "b"), colours, (3, 3))
    with pytest.raises(PipelineError, match="label value 70000 is outside 0-65535"):
        ClassTable(("a", "b"), colours, (1, 70000))
    with pytest.raises(PipelineError, match="no class is in the headline"):
        ClassTable(("a", "b"), colours, headline=(False, False))
    with pytest.raises(ValueError, match="one entry per class"):
        ClassTable(("a", "b"), colours, (1,))
    with pytest.raises(ValueError, match="one entry per class"):
        ClassTable(("a", "b"), colours, headline=(True,))


# --- class-index rasters ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.int64])
def test_values_to_index_maps_values_and_counts_the_rest(dtype):
    labels = np.array([[0, 1, 2, 6], [7, 9, 6, 0]], dtype=dtype)
    index, off_table = values_to_index(labels, TABLE)
    assert index.dtype == np.uint8
    np.testing.assert_array_equal(index, [[0, 1, 2, 6], [IGNORE_INDEX, IGNORE_INDEX, 6, 0]])
    assert off_table == 2


def test_values_to_index_with_values_that_are_not_the_indices():
    openearthmap = ClassTable.preset("openearthmap")
    labels = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]], dtype=np.uint8)
    index, off_table = values_to_index(labels, openearthmap, nodata=0)
    np.testing.assert_array_equal(index, [[IGNORE_INDEX, 0, 1, 2, 3, 4, 5, 6, 7, IGNORE_INDEX]])
    assert off_table == 1  # 9; 0 is nodata, not off-table
    # without a nodata value, 0 is simply a value in no row: ignored and counted
    assert values_to_index(labels, openearthmap)[1] == 2
    loveda = ClassTable.preset("loveda")
    index, off_table = values_to_index(np.arange(9, dtype=np.uint8).reshape(3, 3), loveda, nodata=0)
    np.testing.assert_array_equal(index, [[IGNORE_INDEX, 0, 1], [2, 3, 4], [5, 6, IGNORE_INDEX]])
    assert off_table == 1


def test_values_to_index_with_large_and_negative_values():
    table = ClassTable(("low", "high", "top"), np.array([[0, 0, 0], [0, 0, 9], [9, 9, 9]]), (1000, 40000, 65535))
    uint16 = np.array([[1000, 40000, 65535, 0, 999]], dtype=np.uint16)
    index, off_table = values_to_index(uint16, table)
    np.testing.assert_array_equal(index, [[0, 1, 2, IGNORE_INDEX, IGNORE_INDEX]])
    assert off_table == 2
    int16 = np.array([[1000, -1, -32768, 32767, -9999]], dtype=np.int16)
    index, off_table = values_to_index(int16, table, nodata=-9999)
    np.testing.assert_array_equal(index, [[0] + [IGNORE_INDEX] * 4])
    assert off_table == 3  # -1, -32768, 32767; -9999 is nodata
    wide = np.array([[1000, 65536, -65536 + 1000, 40000]], dtype=np.int64)  # no wrap-around into the table
    np.testing.assert_array_equal(values_to_index(wide, table)[0], [[0, IGNORE_INDEX, IGNORE_INDEX, 1]])


def test_values_to_index_nodata_wins_and_non_integral_nodata_matches_nothing():
    labels = np.array([[0, 1, 2]], dtype=np.uint8)
    index, off_table = values_to_index(labels, TABLE, nodata=1)  # 1 is agriculture_land's value too
    np.testing.assert_array_equal(index, [[0, IGNORE_INDEX, 2]])
    assert off_table == 0
    assert values_to_index(labels, TABLE, nodata=1.0)[0][0, 1] == IGNORE_INDEX  # rasterio's float nodata
    index, off_table = values_to_index(labels, TABLE, nodata=float("nan"))
    np.testing.assert_array_equal(index, [[0, 1, 2]])
    index, _ = values_to_index(labels, TABLE, nodata=300)  # outside the type's range: matches nothing
    np.testing.assert_array_equal(index, [[0, 1, 2]])


def test_values_to_index_refuses_float_labels():
    with pytest.raises(ValueError, match="class-index labels must be integers, got float32"):
        values_to_index(np.zeros((2, 2), dtype=np.float32), TABLE)


# --- presets -----------------------------------------------------------------------------------------

PRESET_CLASSES = {
    "landcoverai": (("background", 0), ("building", 1), ("woodland", 2), ("water", 3), ("road", 4)),
    "openearthmap": (
        ("bareland", 1),
        ("rangeland", 2),
        ("developed_space", 3),
        ("road", 4),
        ("tree", 5),
        ("water", 6),
        ("agriculture_land", 7),
        ("building", 8),
    ),
    "loveda": (
        ("background", 1),
        ("building", 2),
        ("road", 3),
        ("water", 4),
        ("barren", 5),
        ("forest", 6),
        ("agriculture", 7),
    ),
}


@pytest.mark.parametrize("name", sorted(PRESET_CLASSES))
def test_each_preset_loads_with_its_datasets_values_and_every_class_in_the_headline(name):
    table = ClassTable.preset(name)
    assert tuple(zip(table.names, table.values)) == PRESET_CLASSES[name]
    assert all(table.headline)
    assert (PRESETS / name / "classes.csv").read_text().startswith("name,value,r,g,b,headline\n")  # the full form


def test_preset_colours_are_the_datasets_published_ones():
    assert ClassTable.preset("loveda").colours[4].tolist() == [159, 129, 183]  # barren, the authors' COLOR_MAP
    assert ClassTable.preset("openearthmap").colours[7].tolist() == [222, 31, 7]  # building, class_rgb_oem
    assert ClassTable.preset("landcoverai").colours[0].tolist() == [163, 255, 115]  # TorchGeo's cmap


def test_an_unknown_preset_names_the_ones_there_are():
    assert preset_names() == ["landcoverai", "loveda", "openearthmap"]
    with pytest.raises(
        PipelineError, match="class table preset 'deepglobe2': no .*classes.csv; presets: landcoverai, loveda"
    ):
        ClassTable.preset("deepglobe2")
