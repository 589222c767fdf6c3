"""The tile layout: whole source images kept byte for byte, tiles as windows of them, and damage found by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landcover.data.tilestore import TileStore
from landcover.io.errors import PipelineError
from stages import encode, preview, split, tile
from tests.conftest import write_params


@pytest.fixture
def prepared(plain_dataset: Path, tmp_path: Path) -> TileStore:
    """The plain dataset (four 70x90 pairs) tiled at 32 px and encoded."""
    params = write_params(tmp_path / "params.yaml", tile={"size": 32, "stride": 32})
    tile.main([str(plain_dataset), str(tmp_path / "tiles"), "--params", str(params)])
    encode.main([str(tmp_path / "tiles"), str(tmp_path / "encoded"), "--report", str(tmp_path / "encode.json")])
    return TileStore(tmp_path / "tiles", tmp_path / "encoded")


def test_sources_are_kept_byte_for_byte_and_tiles_are_their_decoded_windows(plain_dataset, prepared):
    records = prepared.index()
    assert len(records) == 4 * 9  # 70x90 at 32 px: 3 x 3 windows, the last ones flush with the edge
    assert sorted(path.name for path in prepared.images_dir.iterdir()) == ["11.jpg", "2.jpg", "305.jpg", "40.jpg"]
    assert sorted(path.name for path in prepared.class_masks_dir.iterdir()) == ["11.png", "2.png", "305.png", "40.png"]
    for image_id in ("2", "305"):
        assert prepared.image_path(image_id).read_bytes() == (plain_dataset / f"{image_id}_sat.jpg").read_bytes()
        assert prepared.colour_mask_path(image_id).read_bytes() == (plain_dataset / f"{image_id}_mask.png").read_bytes()
    for record in records:  # training pixels are exactly those of decoding the source image
        with Image.open(plain_dataset / f"{record.image_id}_sat.jpg") as source:
            decoded = np.array(source.convert("RGB"))
        np.testing.assert_array_equal(
            prepared.read_image(record), decoded[record.y : record.y + 32, record.x : record.x + 32]
        )
    assert {(record.y, record.x) for record in records if record.image_id == "2"} == {
        (y, x) for y in (0, 32, 38) for x in (0, 32, 58)
    }


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def resize(path: Path) -> None:
    with Image.open(path) as image:
        image.resize((40, 40)).save(path, format=image.format)


@pytest.mark.parametrize(
    "damage, file, message",
    [
        (Path.unlink, "tiles/images/40.jpg", "file not found"),
        (truncate, "tiles/images/40.jpg", "cannot decode image"),
        (Path.unlink, "encoded/masks/40.png", "file not found"),
        (truncate, "encoded/masks/40.png", "cannot decode image"),
        (resize, "tiles/images/40.jpg", "is 40x40 but the tile index says image 40 is 90x70; rerun the tile stage"),
    ],
)
def test_a_missing_or_damaged_file_is_named_when_its_tiles_are_read(prepared, tmp_path, damage, file, message):
    damage(tmp_path / file)
    (record,) = [record for record in prepared.index() if record.image_id == "40"][:1]
    with pytest.raises(PipelineError, match=rf"^{tmp_path / file}: {message}"):
        prepared.read_image(record) if file.startswith("tiles") else prepared.read_class_mask(record)


def test_a_stage_reading_a_damaged_tile_file_fails_with_its_name_and_writes_nothing(prepared, tmp_path):
    params = tmp_path / "params.yaml"
    split.main(
        [
            str(prepared.tiles),
            str(prepared.encoded),
            str(tmp_path / "splits"),
            "--params",
            str(params),
            "--distribution",
            str(tmp_path / "distribution.json"),
        ]
    )
    first_train_image = (tmp_path / "splits/train.csv").read_text().splitlines()[1].split(",")[1]
    damaged = prepared.image_path(first_train_image)
    truncate(damaged)
    with pytest.raises(PipelineError, match=rf"^{damaged}: cannot decode image"):
        preview.main(
            [
                str(prepared.tiles),
                str(prepared.encoded),
                str(tmp_path / "splits"),
                str(tmp_path / "plots"),
                "--params",
                str(params),
            ]
        )
    assert not (tmp_path / "plots").exists()
