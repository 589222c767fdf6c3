"""Bad input: one clear error naming the file or param, a non-zero exit, and no output left behind.

Where a stage fails after it has written part of its output, nothing of it may survive; where a
previous run's output is there, it must come through a failed run byte for byte.
"""

from __future__ import annotations

import codecs
import errno
import os
import pathlib
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landcover.cli import map as map_command
from landcover.data import tiling
from landcover.data.palette import ClassTable
from landcover.data.tilestore import TileStore
from landcover.inference import class_maps
from landcover.io import imageio
from landcover.io.errors import PipelineError
from stages import encode, predict, split, tile
from tests.conftest import REPO, map_files, stand_in_runtime, write_pair, write_params


def run_tile(raw: Path, out: Path, params: Path) -> None:
    tile.main([str(raw), str(out), "--params", str(params)])


def staging_leftovers(out: Path) -> list[str]:
    return [path.name for path in out.parent.iterdir() if path.name.startswith(f".{out.name}.")]


def assert_nothing_written(out: Path) -> None:
    """Neither the output nor a staging directory beside it survives a failed stage."""
    assert not out.exists()
    assert not staging_leftovers(out)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def tile_pixels(folder: Path) -> dict[str, tuple[bytes, bytes]]:
    """Every tile of a tile stage output (name -> image and colour mask pixels), as training reads them."""
    store = TileStore(folder)
    return {
        record.tile: (store.read_image(record).tobytes(), store.read_colour_mask(record).tobytes())
        for record in store.index()
    }


@pytest.fixture
def params(tmp_path: Path) -> Path:
    return write_params(tmp_path / "params.yaml", tile={"size": 32, "stride": 32})


@pytest.fixture
def tiles_written(monkeypatch) -> list[Path]:
    """The files the tile stage has written so far in this test: proof that a failure came after writes."""
    written: list[Path] = []
    real_save, real_copy = tiling.save_png, tiling.copyfile

    def save(path, image):
        real_save(path, image)
        written.append(Path(path))

    def copy(source, destination):
        real_copy(source, destination)
        written.append(Path(destination))

    monkeypatch.setattr(tiling, "save_png", save)
    monkeypatch.setattr(tiling, "copyfile", copy)
    return written


def test_good_input_tiles(plain_dataset, tmp_path, params):
    run_tile(plain_dataset, tmp_path / "tiles", params)
    assert (tmp_path / "tiles" / "index.csv").is_file()


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# Images are tiled in id order 2, 11, 40, 305: these damages are found after earlier images' tiles were written.
DAMAGE_FOUND_WHILE_WRITING = [
    (lambda raw: truncate(raw / "305_sat.jpg"), r"305_sat.jpg: cannot decode image"),
    (lambda raw: truncate(raw / "40_mask.png"), r"40_mask.png: cannot decode image"),
    (lambda raw: (raw / "11_sat.jpg").write_bytes(b"not a jpeg"), r"11_sat.jpg: cannot decode image"),
]
# These are found before anything is written.
DAMAGE_FOUND_FIRST = [
    (lambda raw: (raw / "40_mask.png").unlink(), r"40_sat.jpg: no mask 40_mask.png beside it"),
    (
        lambda raw: (raw / "class_dict.csv").write_text("name,r,g,b\nurban_land,0,255\n"),
        r"class_dict.csv, line 2: expected 4 fields",
    ),
    (
        lambda raw: (raw / "metadata.csv").write_text(
            "image_id,split,sat_image_path,mask_path\n11,train,11_sat.jpg,11_missing.png\n"
        ),
        r"11_missing.png: listed in metadata.csv for image 11 but missing",
    ),
]


@pytest.mark.parametrize("damage, message", DAMAGE_FOUND_WHILE_WRITING)
def test_damage_found_after_tiles_were_written_leaves_no_output(
    plain_dataset, tmp_path, params, tiles_written, damage, message
):
    damage(plain_dataset)
    with pytest.raises(PipelineError, match=message):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert tiles_written  # the failure came after the stage had written tiles
    assert_nothing_written(tmp_path / "tiles")


@pytest.mark.parametrize("damage, message", DAMAGE_FOUND_WHILE_WRITING + DAMAGE_FOUND_FIRST)
def test_damaged_raw_data_leaves_the_previous_output_as_it_was(plain_dataset, tmp_path, params, damage, message):
    run_tile(plain_dataset, tmp_path / "tiles", params)
    before = snapshot(tmp_path / "tiles")
    damage(plain_dataset)
    with pytest.raises(PipelineError, match=message):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert snapshot(tmp_path / "tiles") == before
    assert not staging_leftovers(tmp_path / "tiles")


def test_mask_with_different_size(tmp_path, params, tiles_written):
    raw = tmp_path / "raw"
    write_pair(raw, "0", 64, 64)  # a good pair first, so tiles are written before the bad one
    write_pair(raw, "1", 64, 64)
    write_pair(tmp_path / "other", "1", 64, 48)
    (tmp_path / "other" / "1_mask.png").replace(raw / "1_mask.png")
    with pytest.raises(PipelineError, match=r"1_mask.png: mask is 48x64 but its image 1_sat.jpg is 64x64"):
        run_tile(raw, tmp_path / "tiles", params)
    assert tiles_written
    assert_nothing_written(tmp_path / "tiles")


def test_missing_raw_directory(plain_dataset, tmp_path, params):
    run_tile(plain_dataset, tmp_path / "tiles", params)
    before = snapshot(tmp_path / "tiles")
    with pytest.raises(PipelineError, match=r"data.raw: .*nowhere does not exist"):
        run_tile(tmp_path / "nowhere", tmp_path / "tiles", params)
    assert snapshot(tmp_path / "tiles") == before


def test_tile_larger_than_a_later_image(plain_dataset, tmp_path, tiles_written):
    write_pair(plain_dataset, "500", 40, 40)  # tiled last
    params = write_params(tmp_path / "params.yaml", tile={"size": 64, "stride": 64})
    with pytest.raises(PipelineError, match=r"tile.size \(64\) is larger than image .*/500_sat.jpg \(40x40\)"):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert tiles_written
    assert_nothing_written(tmp_path / "tiles")


@pytest.mark.parametrize(
    "tile_params, message",
    [
        ({"size": 128, "stride": 128}, r"tile.size \(128\) is larger than image .*/2_sat.jpg \(90x70\)"),
        ({"size": 32, "stride": 0}, r"tile.stride must be at least 1"),
        ({"size": 40, "stride": 40}, r"^params: tile.size must be a positive multiple of 16 .*, got 40$"),
    ],
)
def test_bad_tile_params(plain_dataset, tmp_path, params, tile_params, message):
    run_tile(plain_dataset, tmp_path / "tiles", params)
    before = snapshot(tmp_path / "tiles")
    bad = write_params(tmp_path / "bad.yaml", tile=tile_params)
    with pytest.raises(PipelineError, match=message):
        run_tile(plain_dataset, tmp_path / "tiles", bad)
    assert snapshot(tmp_path / "tiles") == before
    assert not staging_leftovers(tmp_path / "tiles")


def test_split_ratios_that_do_not_sum_to_one(plain_dataset, tmp_path, params):
    run_tile(plain_dataset, tmp_path / "tiles", params)
    encode.main([str(tmp_path / "tiles"), str(tmp_path / "encoded"), "--report", str(tmp_path / "encode.json")])
    split_args = [
        str(tmp_path / "tiles"),
        str(tmp_path / "encoded"),
        str(tmp_path / "splits"),
        "--distribution",
        str(tmp_path / "distribution.json"),
    ]
    split.main([*split_args, "--params", str(params)])
    before = snapshot(tmp_path / "splits"), (tmp_path / "distribution.json").read_bytes()
    bad = write_params(tmp_path / "bad.yaml", split={"ratios": {"train": 0.6, "val": 0.3, "test": 0.3}})
    with pytest.raises(PipelineError, match=r"split.ratios must sum to 1 \(they sum to 1.2\)"):
        split.main([*split_args, "--params", str(bad)])
    assert (snapshot(tmp_path / "splits"), (tmp_path / "distribution.json").read_bytes()) == before
    assert not staging_leftovers(tmp_path / "splits")


def test_stage_prints_one_error_line_and_exits_non_zero(plain_dataset, tmp_path, params):
    truncate(plain_dataset / "305_sat.jpg")
    result = subprocess.run(
        [sys.executable, "-m", "stages.tile", str(plain_dataset), str(tmp_path / "tiles"), "--params", str(params)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(f"error: {plain_dataset / '305_sat.jpg'}: cannot decode image")
    assert "Traceback" not in result.stderr
    assert_nothing_written(tmp_path / "tiles")


# --- text encodings of metadata.csv and class_dict.csv -------------------------------------------


def kaggle_metadata(raw: Path) -> str:
    rows = [f"{image_id},train,{image_id}_sat.jpg,{image_id}_mask.png" for image_id in ("2", "11", "40", "305")]
    return "image_id,split,sat_image_path,mask_path\n" + "\n".join(rows) + "\n"


CLASS_DICT = "name,r,g,b\n" + "".join(
    f"{name},{r},{g},{b}\n" for name, (r, g, b) in zip(ClassTable.deepglobe().names, ClassTable.deepglobe().colours)
)


@pytest.mark.parametrize("file_name", ["metadata.csv", "class_dict.csv"])
@pytest.mark.parametrize(
    "encode_text, message",
    [
        (lambda text: text.encode("utf-16"), r"is UTF-16 \(or binary\), not UTF-8; save it as UTF-8 CSV"),
        (lambda text: text.encode("utf-16-le"), r"is UTF-16 \(or binary\), not UTF-8"),  # no BOM
        (
            lambda text: text.replace("image_id", "imag\xe9_id").replace("urban", "urb\xe4n").encode("cp1252"),
            r"is not UTF-8 \(byte 0x(e9|e4) at offset \d+\); save it as UTF-8 CSV",
        ),
    ],
)
def test_a_csv_in_another_encoding_is_one_clear_error(plain_dataset, tmp_path, params, file_name, encode_text, message):
    texts = {"metadata.csv": kaggle_metadata(plain_dataset), "class_dict.csv": CLASS_DICT}
    for name, text in texts.items():
        (plain_dataset / name).write_text(text)
    (plain_dataset / file_name).write_bytes(encode_text(texts[file_name]))
    what = "metadata" if file_name == "metadata.csv" else "class table"
    with pytest.raises(PipelineError, match=rf"{file_name}: {what} {message}"):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert_nothing_written(tmp_path / "tiles")


def test_csvs_saved_by_excel_with_a_utf8_bom_are_read(plain_dataset, tmp_path, params):
    run_tile(plain_dataset, tmp_path / "plain", params)
    (plain_dataset / "metadata.csv").write_bytes(codecs.BOM_UTF8 + kaggle_metadata(plain_dataset).encode())
    (plain_dataset / "class_dict.csv").write_bytes(codecs.BOM_UTF8 + CLASS_DICT.replace("\n", "\r\n").encode())
    run_tile(plain_dataset, tmp_path / "tiles", params)
    assert snapshot(tmp_path / "tiles") == snapshot(tmp_path / "plain")


# --- metadata.csv rows: each image once, and inside data.raw --------------------------------------


def with_metadata_row(raw: Path, row: str) -> None:
    """metadata.csv of the four plain pairs (lines 2-5: ids 2, 11, 40, 305) and `row` as line 6."""
    (raw / "metadata.csv").write_text(kaggle_metadata(raw) + row + "\n")


@pytest.mark.parametrize(
    "row, message",
    [
        ("11,train,11_sat.jpg,11_mask.png", r"metadata.csv, lines 3 and 6: image id '11' is listed twice$"),
        ("11,valid,valid/11_sat.jpg,", r"metadata.csv, lines 3 and 6: image id '11' is listed twice$"),
        ("7,train,11_sat.jpg,11_mask.png", r"metadata.csv, lines 3 and 6: image .*/raw/11_sat.jpg is listed twice$"),
    ],
)
def test_an_image_listed_twice_in_metadata_is_refused_with_both_lines(plain_dataset, tmp_path, params, row, message):
    """Listed twice, an image's tiles would be indexed twice: double weight, and perhaps in two splits."""
    with_metadata_row(plain_dataset, row)
    with pytest.raises(PipelineError, match=message):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert_nothing_written(tmp_path / "tiles")


@pytest.mark.parametrize("how", ["parent", "absolute", "symlink", "mask"])
def test_a_metadata_row_leading_out_of_data_raw_is_refused_naming_it(plain_dataset, tmp_path, params, how):
    """The files outside are real images: followed, they would be tiled and pushed with the data."""
    write_pair(tmp_path, "outside", 70, 90)
    write_pair(plain_dataset, "7", 70, 90)
    outside = tmp_path / ("outside_mask.png" if how == "mask" else "outside_sat.jpg")
    if how == "symlink":
        (plain_dataset / "link_sat.jpg").symlink_to(outside)
    image, mask = {
        "parent": ("../outside_sat.jpg", "7_mask.png"),
        "absolute": (str(outside), "7_mask.png"),
        "symlink": ("link_sat.jpg", "7_mask.png"),
        "mask": ("7_sat.jpg", "../outside_mask.png"),
    }[how]
    with_metadata_row(plain_dataset, f"7,train,{image},{mask}")
    column, value = ("mask_path", mask) if how == "mask" else ("sat_image_path", image)
    with pytest.raises(
        PipelineError,
        match=rf"^{plain_dataset}/metadata.csv, line 6: {column} '{value}' leads to {outside}, outside data.raw "
        rf"\({plain_dataset}\)$",
    ):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert_nothing_written(tmp_path / "tiles")


def test_a_link_out_of_a_plain_folder_is_refused(plain_dataset, tmp_path, params):
    write_pair(tmp_path, "outside", 70, 90)
    (plain_dataset / "7_sat.jpg").symlink_to(tmp_path / "outside_sat.jpg")
    (plain_dataset / "7_mask.png").symlink_to(plain_dataset / "11_mask.png")  # a link that stays inside is fine
    with pytest.raises(
        PipelineError, match=rf"^{plain_dataset}/7_sat.jpg: a link to {tmp_path}/outside_sat.jpg, outside data.raw"
    ):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert_nothing_written(tmp_path / "tiles")


def test_paths_and_links_that_stay_inside_data_raw_are_followed(plain_dataset, tmp_path, params):
    run_tile(plain_dataset, tmp_path / "plain", params)
    (plain_dataset / "sub").mkdir()
    (plain_dataset / "sub" / "alias_sat.jpg").symlink_to(plain_dataset / "305_sat.jpg")
    rows = [
        "2,train,sub/../2_sat.jpg,2_mask.png",
        "11,train,11_sat.jpg,11_mask.png",
        f"40,train,{plain_dataset / '40_sat.jpg'},40_mask.png",
        "305,train,sub/alias_sat.jpg,305_mask.png",
    ]
    (plain_dataset / "metadata.csv").write_text("image_id,split,sat_image_path,mask_path\n" + "\n".join(rows) + "\n")
    run_tile(plain_dataset, tmp_path / "tiles", params)
    assert snapshot(tmp_path / "tiles") == snapshot(tmp_path / "plain")


# --- image modes, bit depth and size -------------------------------------------------------------


def png_16bit_rgb(path: Path, array: np.ndarray) -> None:
    """A 48-bit RGB PNG, written by hand: Pillow cannot write one (it opens them as 8-bit "RGB")."""
    height, width, _ = array.shape
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def rgb_mask(raw: Path, image_id: str) -> np.ndarray:
    with Image.open(raw / f"{image_id}_mask.png") as image:
        return np.array(image)


@pytest.mark.parametrize(
    "rewrite, message",
    [
        (lambda mask, path: Image.fromarray(mask[..., 0]).save(path), r"single-channel mask \(mode L\)"),
        (lambda mask, path: Image.fromarray(mask[..., 0]).convert("LA").save(path), r"single-channel mask \(mode LA\)"),
        (
            lambda mask, path: Image.fromarray(mask[..., 0].astype(np.uint16) * 257).save(path),
            r"16-bit mask \(mode I;16\) is not supported",
        ),
        (
            lambda mask, path: png_16bit_rgb(path, mask.astype(np.uint16) * 257),
            r"16-bit mask \(mode RGB\) is not supported",
        ),
    ],
)
def test_single_channel_and_16_bit_masks_are_refused(plain_dataset, tmp_path, params, tiles_written, rewrite, message):
    path = plain_dataset / "40_mask.png"
    rewrite(rgb_mask(plain_dataset, "40"), path)
    with pytest.raises(PipelineError, match=rf"40_mask.png: {message}"):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert tiles_written
    assert_nothing_written(tmp_path / "tiles")


def test_palette_masks_give_the_same_tiles_as_rgb_ones(plain_dataset, tmp_path, params, capsys):
    run_tile(plain_dataset, tmp_path / "rgb", params)
    for image_id in ("2", "40"):
        mask = Image.fromarray(rgb_mask(plain_dataset, image_id)).quantize(colors=8, method=Image.Quantize.MAXCOVERAGE)
        assert mask.mode == "P"
        mask.save(plain_dataset / f"{image_id}_mask.png")
    run_tile(plain_dataset, tmp_path / "palette", params)
    assert tile_pixels(tmp_path / "palette") == tile_pixels(tmp_path / "rgb")
    assert "warning" not in capsys.readouterr().err


def test_a_4_band_image_loses_its_4th_band_with_a_warning(plain_dataset, tmp_path, params, capsys):
    run_tile(plain_dataset, tmp_path / "rgb", params)
    with Image.open(plain_dataset / "305_sat.jpg") as image:
        rgb = np.array(image)
    near_infrared = np.random.default_rng(1).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    (plain_dataset / "305_sat.jpg").unlink()
    Image.fromarray(np.dstack([rgb, near_infrared]), mode="RGBA").save(plain_dataset / "305_sat.tif")
    (plain_dataset / "metadata.csv").write_text(kaggle_metadata(plain_dataset).replace("305_sat.jpg", "305_sat.tif"))
    capsys.readouterr()
    run_tile(plain_dataset, tmp_path / "rgba", params)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert warnings == [
        f"warning: {plain_dataset / '305_sat.tif'}: image has 4 bands (mode RGBA); band 4 "
        "(alpha or near-infrared) is dropped and the rest read as RGB"
    ]
    assert tile_pixels(tmp_path / "rgba") == tile_pixels(tmp_path / "rgb")
    # kept as the RGB it reads as, so training reads it without a warning per decode
    stored = {path.name for path in (tmp_path / "rgba/images").iterdir()}
    assert "305.png" in stored and "305.jpg" not in stored and len(stored) == 4
    capsys.readouterr()
    tile_pixels(tmp_path / "rgba")
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "write, message",
    [
        (
            lambda path: Image.fromarray(np.full((20, 30), 1000, np.uint16)).save(path, format="PNG"),
            r"16-bit image \(mode I;16\) is not supported; convert it to 8-bit RGB first",
        ),
        (lambda path: png_16bit_rgb(path, np.full((20, 30, 3), 1000, np.uint16)), r"16-bit image \(mode RGB\)"),
        (
            lambda path: Image.fromarray(np.zeros((20, 30), np.float32)).save(path, format="TIFF"),
            r"16-bit image \(mode F\)",
        ),
    ],
)
def test_16_bit_imagery_is_refused(tmp_path, write, message):
    write(tmp_path / "scene.img")
    with pytest.raises(PipelineError, match=rf"scene.img: {message}"):
        imageio.read_rgb(tmp_path / "scene.img")


@pytest.mark.parametrize("mode", ["L", "P", "RGB", "RGBA", "CMYK"])
@pytest.mark.parametrize("strip_pixels", [1 << 22, 7 * 30])  # one piece, and strips of 7 rows (last one shorter)
def test_read_rgb_converts_like_pillow_strip_by_strip_or_whole(tmp_path, monkeypatch, mode, strip_pixels):
    monkeypatch.setattr(imageio, "_STRIP_PIXELS", strip_pixels)
    rgb = np.random.default_rng(0).integers(0, 256, (50, 30, 3), dtype=np.uint8)
    source = Image.fromarray(rgb).convert(mode)
    source.save(tmp_path / "x.tif")
    array = imageio.read_rgb(tmp_path / "x.tif")
    np.testing.assert_array_equal(array, np.array(source.convert("RGB")))
    assert array.flags.writeable and array.dtype == np.uint8 and array.shape == (50, 30, 3)


def test_images_over_pillows_limit_are_read(tmp_path, monkeypatch):
    """Pillow refuses images over 2x its MAX_IMAGE_PIXELS (a 15000 px orthophoto); ours is larger."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 30x20 = 600 pixels: a "bomb" to Pillow
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "big.png")
    assert imageio.read_rgb(tmp_path / "big.png").shape == (20, 30, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # Pillow's limit is left as it was for everyone else


def test_images_over_the_documented_size_are_refused_before_decoding(
    plain_dataset, tmp_path, params, monkeypatch, tiles_written
):
    write_pair(plain_dataset, "500", 80, 100)  # tiled last, one pixel over the limit
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 80 * 100 - 1)
    with pytest.raises(
        PipelineError,
        match=r"500_sat.jpg: image is 100x80 = 8,000 pixels, over the limit of 7,999 "
        r"pixels; cut it into smaller images",
    ):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert tiles_written
    assert_nothing_written(tmp_path / "tiles")
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 80 * 100)
    run_tile(plain_dataset, tmp_path / "tiles", params)  # at the limit: accepted


# --- a full disk ---------------------------------------------------------------------------------


def no_space_after(calls: int, write):
    """`write`, but the disk fills up after `calls` successful calls."""
    count = [0]

    def failing(*args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(*args, **kwargs)

    return failing


def test_disk_full_while_writing_tiles(plain_dataset, tmp_path, params, monkeypatch):
    run_tile(plain_dataset, tmp_path / "tiles", params)
    before = snapshot(tmp_path / "tiles")
    monkeypatch.setattr(tiling, "copyfile", no_space_after(5, tiling.copyfile))
    with pytest.raises(PipelineError, match=rf"^{tmp_path / 'tiles'}: cannot write output \(No space left on device\)"):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert snapshot(tmp_path / "tiles") == before
    assert not staging_leftovers(tmp_path / "tiles")


def test_disk_full_while_writing_a_checkpoint(tmp_path, monkeypatch):
    from landcover.model.checkpoint import save_checkpoint

    path = tmp_path / "models" / "best.pt"
    save_checkpoint(path, epoch=1)
    before = path.read_bytes()
    monkeypatch.setattr(pathlib.Path, "write_bytes", no_space_after(0, pathlib.Path.write_bytes))
    with pytest.raises(PipelineError, match=rf"^{path}: cannot write output \(No space left on device\)"):
        save_checkpoint(path, epoch=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]


def predict_with_a_stand_in_model(monkeypatch) -> None:
    """The predict stage's and the mapping command's model replaced by one that calls every pixel class 0."""
    import torch

    table = ClassTable.deepglobe()

    def first_class_everywhere(batch: torch.Tensor) -> torch.Tensor:
        probabilities = torch.zeros(batch.shape[0], len(table), batch.shape[1], batch.shape[2])
        probabilities[:, 0] = 1
        return probabilities

    for command in (predict, map_command):
        monkeypatch.setattr(command, "choose_runtime", lambda *args, **kwargs: stand_in_runtime(table))
        monkeypatch.setattr(command, "runtime_probabilities", lambda *args, **kwargs: first_class_everywhere)


def test_disk_full_while_writing_predictions(plain_dataset, tmp_path, params, monkeypatch):
    run_tile(plain_dataset, tmp_path / "tiles", params)
    predict_with_a_stand_in_model(monkeypatch)
    out = tmp_path / "predictions"
    argv = [
        "--checkpoint",
        "unused.pt",
        "--tiles",
        str(tmp_path / "tiles"),
        "--split",
        str(tmp_path / "tiles" / "index.csv"),
        "--output",
        str(out),
        "--params",
        str(params),
    ]
    predict.main(argv)
    before = snapshot(out)
    assert len(before) == 8  # 4 images, class indices and colours
    monkeypatch.setattr(class_maps, "write_png", no_space_after(3, class_maps.write_png))
    with pytest.raises(PipelineError, match=rf"^{out}: cannot write output \(No space left on device\)"):
        predict.main(argv)
    assert snapshot(out) == before
    assert not staging_leftovers(out)


def test_a_stage_reports_a_full_disk_in_one_line(plain_dataset, tmp_path, params):
    """In a real process: the tile stage, made to hit ENOSPC on its 5th file, prints one line and exits 1."""
    script = (
        "import errno, os, sys\n"
        "from stages import tile\nfrom landcover.data import tiling\nfrom landcover.io.errors import run_stage\n"
        "calls = [0]\nreal = tiling.copyfile\n"
        "def copy(source, destination):\n"
        "    calls[0] += 1\n"
        "    if calls[0] > 4:\n"
        "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "    real(source, destination)\n"
        "tiling.copyfile = copy\n"
        "run_stage(lambda: tile.main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(plain_dataset), str(tmp_path / "tiles"), "--params", str(params)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: {tmp_path / 'tiles'}: cannot write output (No space left on "
        "device); the previous output, if any, is unchanged"
    )
    assert "Traceback" not in result.stderr
    assert_nothing_written(tmp_path / "tiles")


# --- rasters for the mapping command (tests/test_geotiff.py has the good ones) ----------------------------------


def geotiff(path: Path, bands: int = 3, side: int = 400, cog: bool = False) -> Path:
    """A random uint8 GeoTIFF in EPSG:32633; with `cog`, laid out as a COG (its header first, then its tiles)."""
    import rasterio
    import rasterio.shutil
    from affine import Affine

    pixels = np.random.default_rng(0).integers(0, 256, (bands, side, side), dtype=np.uint8)
    plain = path.with_name(f"plain_{path.name}") if cog else path
    with rasterio.open(
        plain,
        "w",
        driver="GTiff",
        width=side,
        height=side,
        count=bands,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(10, 0, 500000, 0, -10, 5000000),
    ) as dataset:
        dataset.write(pixels)
    if cog:
        rasterio.shutil.copy(plain, path, driver="COG", blocksize=128, overviews="NONE")
        plain.unlink()
    return path


@pytest.fixture
def predict_input(tmp_path, monkeypatch):
    """The mapping command on --input files, the model a stand-in that calls every pixel class 0."""
    params = write_params(tmp_path / "params.yaml", predict={"window": 64, "batch_size": 4, "precision": "fp32"})
    predict_with_a_stand_in_model(monkeypatch)

    def run(inputs: list[Path], out: Path, *flags: str) -> None:
        map_files(params, inputs, out, *flags)

    return run


def test_raster_with_too_few_bands(tmp_path, predict_input):
    path = geotiff(tmp_path / "two.tif", bands=2)
    with pytest.raises(
        PipelineError,
        match=rf"^{path}: raster has 2 bands; RGB needs 3 \(to read a grey band as RGB, "
        r"give --bands 1,1,1\)$",
    ):
        predict_input([path], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(PipelineError, match=rf"^{path}: --bands 1,2,3: the raster has 2 bands, so no band 3$"):
        predict_input([path], tmp_path / "out", "--bands", "1,2,3")
    predict_input([path], tmp_path / "out", "--bands", "2,2,2")  # a grey band read as RGB
    assert (tmp_path / "out" / "two.tif").is_file()


def test_malformed_band_list_is_a_usage_error(tmp_path, predict_input, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict_input([geotiff(tmp_path / "a.tif")], tmp_path / "out", "--bands", "3,x")
    assert exit_info.value.code == 2
    assert "argument --bands: expected band numbers from 1, comma-separated, e.g. 3,2,1, got '3,x'" in (
        capsys.readouterr().err
    )


def test_a_band_list_of_another_count_than_the_models_is_one_line(tmp_path, predict_input):
    """--bands takes any count, as many as the model's bands: a uint8 RGB model takes three."""
    path = geotiff(tmp_path / "a.tif")
    with pytest.raises(PipelineError, match=rf"^{path}: --bands 3,2: the model takes 3 bands \(R,G,B\)$"):
        predict_input([path], tmp_path / "out", "--bands", "3,2")
    assert not (tmp_path / "out").exists()


def test_a_bad_raster_among_inputs_is_refused_before_any_prediction(tmp_path, predict_input):
    good, corrupt = geotiff(tmp_path / "good.tif"), tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"not a tiff" * 20)  # a TIFF signature, then garbage
    with pytest.raises(PipelineError, match=rf"^{corrupt}: cannot read raster \(.+\)$"):
        predict_input([good, corrupt], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # the good one, first, was not mapped either


def test_corrupt_tiff_is_one_line_and_exit_1_in_a_real_process(tmp_path):
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\xff" * 500)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "landcover.cli.map",
            "--checkpoint",
            str(tmp_path / "none.pt"),
            "--input",
            str(corrupt),
            "--output",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {corrupt}: cannot read raster (")
    assert not (tmp_path / "out").exists()


def png(path: Path, height: int = 64, width: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def no_model(monkeypatch) -> None:
    """The mapping command fails the test if it gets as far as loading a model: paths are checked before."""

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the paths were checked")

    monkeypatch.setattr(map_command, "choose_runtime", load)


def shared_name_cases(tmp_path: Path) -> dict[str, tuple[list[Path], str]]:
    """{case: (inputs, the error's message after the last input's path)}, mapped into tmp_path/out."""
    out = tmp_path / "out"
    first = png(tmp_path / "a" / "119_sat.jpg")
    return {
        "one id in two folders": (
            [first, png(tmp_path / "b" / "119_sat.jpg")],
            rf"its outputs would replace those of {first} \(both write 119.png in {out}\); rename one, or map "
            r"them into separate --output folders",
        ),
        "a raster and a JPEG": (
            [geotiff(tmp_path / "x.tif", side=64), png(tmp_path / "x.jpg")],
            rf"its outputs would replace those of {tmp_path}/x.tif \(both write x_areas.json in {out}\)",
        ),
        "one's class map is another's colours": (
            [png(tmp_path / "c.png"), png(tmp_path / "c_colour.png")],
            rf"its outputs would replace those of {tmp_path}/c.png \(both write c_colour.png in {out}\)",
        ),
        "the same file twice": ([first, tmp_path / "a" / ".." / "a" / "119_sat.jpg"], r"given twice in --input$"),
        "an input in the output folder": (
            [png(out / "d.png")],
            rf"mapping it into {out} would replace it with its map; choose another --output$",
        ),
        "a folder where an output goes": (
            [(out / "e_areas.json").mkdir(parents=True) or png(tmp_path / "e.png")],
            rf"its output {out}/e_areas.json is a folder; move it, or choose another --output$",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "one id in two folders",
        "a raster and a JPEG",
        "one's class map is another's colours",
        "the same file twice",
        "an input in the output folder",
        "a folder where an output goes",
    ],
)
def test_an_output_name_not_free_for_its_file_is_refused_before_any_model_work(tmp_path, predict_input, no_model, case):
    """Two inputs writing one name, or an output replacing its input, would lose a file without a word."""
    inputs, message = shared_name_cases(tmp_path)[case]
    before = snapshot(tmp_path)
    with pytest.raises(PipelineError, match=rf"^{inputs[-1]}: {message}"):
        predict_input(inputs, tmp_path / "out")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "make, output, message",
    [
        pytest.param(lambda tmp: tmp / "missing.png", "out", "{input}: file not found", id="missing"),
        pytest.param(
            lambda tmp: (tmp / "folder").mkdir() or tmp / "folder",
            "out",
            "{input}: is a folder, not an image file",
            id="a folder",
        ),
        pytest.param(
            lambda tmp: png(tmp / "small.png", 7, 10),
            "out",
            r"{input}: image of 10x7 pixels is too small to predict: both sides must be at least 16$",
            id="a small PNG",
        ),
        pytest.param(
            lambda tmp: geotiff(tmp / "small.tif", side=12),
            "out",
            r"{input}: image of 12x12 pixels is too small",
            id="a small raster",
        ),
        pytest.param(
            lambda tmp: (tmp / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 9) and tmp / "fake.png",
            "out",
            r"{input}: cannot decode image",
            id="a PNG's signature, then garbage",
        ),
        pytest.param(lambda tmp: png(tmp / "a.png"), "file", r"{output}: --output is not a folder$", id="out a file"),
        pytest.param(
            lambda tmp: png(tmp / "a.png"),
            "file/out",
            r"{output}: --output cannot be made: {tmp}/file is not a folder$",
            id="out under a file",
        ),
    ],
)
def test_each_bad_path_of_the_mapping_command_is_one_error_naming_it(
    tmp_path, predict_input, no_model, make, output, message
):
    """Each found before the model loads, with nothing written; unchecked, an --output at or under a file is a
    FileExistsError or NotADirectoryError traceback, and a too-small image's error names no file."""
    (tmp_path / "file").write_text("a file where a folder was meant\n")
    path, out = make(tmp_path), tmp_path / output
    before = snapshot(tmp_path)
    with pytest.raises(PipelineError, match="^" + message.format(input=path, output=out, tmp=tmp_path)):
        predict_input([path], out)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "out").exists()


def test_a_4_band_png_checked_up_front_and_then_mapped_warns_once(tmp_path, predict_input, capsys):
    path = tmp_path / "four.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8), mode="RGBA").save(path)
    predict_input([path], tmp_path / "out")
    assert capsys.readouterr().err.count(f"warning: {path}: image has 4 bands (mode RGBA)") == 1
    assert (tmp_path / "out" / "four.png").is_file()


def test_unreadable_input_and_unwritable_output_are_one_error_each(tmp_path, predict_input, no_model):
    locked, readable = png(tmp_path / "locked.png"), png(tmp_path / "a.png")
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root ignores permissions; root without CAP_DAC_OVERRIDE runs the asserts
        pytest.skip("this user reads and writes whatever the permissions say (root)")
    with pytest.raises(PipelineError, match=rf"^{locked}: cannot read \(Permission denied\)$"):
        predict_input([locked], tmp_path / "out")
    (tmp_path / "read-only").mkdir(mode=0o555)
    out = tmp_path / "read-only" / "out"
    with pytest.raises(
        PipelineError, match=rf"^{out}: --output cannot be written: no permission to write in {tmp_path}/read-only$"
    ):
        predict_input([readable], out)
    assert not out.exists()


def test_an_output_under_a_file_is_one_line_and_exit_1_in_a_real_process(tmp_path):
    """One real process: the line and the exit status are run_stage's, for every refusal above."""
    (tmp_path / "file").write_text("a file where a folder was meant\n")
    out = tmp_path / "file" / "out"
    command = [sys.executable, "-m", "landcover.cli.map", "--checkpoint", str(tmp_path / "none.pt"), "--input"]
    result = subprocess.run(
        [*command, str(png(tmp_path / "a.png")), "--output", str(out)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr == f"error: {out}: --output cannot be made: {tmp_path}/file is not a folder\n"


def test_predict_with_input_points_to_the_mapping_command(tmp_path, capsys):
    """Mapping moved out of the predict stage: its old flag gets one usage line naming the new command."""
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--checkpoint", "m.pt", "--input", "scene.tif", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert f"error: {predict.MOVED}" in capsys.readouterr().err
    assert predict.MOVED.startswith("--input moved to the mapping command: landcover-map ")
    assert not (tmp_path / "out").exists()


def test_tiff_truncated_after_its_header_fails_midway_and_leaves_the_previous_output(tmp_path, predict_input):
    path = geotiff(tmp_path / "scene.tif", cog=True)
    out = tmp_path / "out"
    predict_input([path], out, "--confidence")
    before = snapshot(out)
    assert sorted(name for name in before if not name.startswith("model-")) == [
        "scene.item.json", "scene.qml", "scene.tif", "scene_areas.csv", "scene_areas.json", "scene_confidence.tif"
    ]  # fmt: skip
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])  # the header and the first tiles survive
    with pytest.raises(PipelineError, match=rf"^{path}: cannot read raster \(.*Read error.*\)$"):
        predict_input([path], out, "--confidence")
    assert snapshot(out) == before  # nothing half-written: staging and scratch files are gone too
    assert not (tmp_path / "fresh").exists()
    with pytest.raises(PipelineError, match=rf"^{path}: cannot read raster"):
        predict_input([path], tmp_path / "fresh", "--confidence")
    assert list((tmp_path / "fresh").iterdir()) == []
