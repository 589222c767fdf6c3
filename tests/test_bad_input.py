"""Bad input: one clear error naming the file or param, a non-zero exit, and no output left behind."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stages import encode, split, tile
from stages.core.errors import PipelineError
from tests.conftest import REPO, write_pair, write_params


def run_tile(raw: Path, out: Path, params: Path) -> None:
    tile.main([str(raw), str(out), "--params", str(params)])


def assert_nothing_written(out: Path) -> None:
    """Neither the output nor a staging directory beside it survives a failed stage."""
    assert not out.exists()
    assert not [path.name for path in out.parent.iterdir() if path.name.startswith(f".{out.name}.")]


@pytest.fixture
def params(tmp_path: Path) -> Path:
    return write_params(tmp_path / "params.yaml", tile={"size": 32, "stride": 32})


def test_good_input_tiles(plain_dataset, tmp_path, params):
    run_tile(plain_dataset, tmp_path / "tiles", params)
    assert (tmp_path / "tiles" / "index.csv").is_file()


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, message", [
    (lambda raw: truncate(raw / "305_sat.jpg"), r"305_sat.jpg: cannot decode image"),
    (lambda raw: truncate(raw / "40_mask.png"), r"40_mask.png: cannot decode image"),
    (lambda raw: (raw / "11_sat.jpg").write_bytes(b"not a jpeg"), r"11_sat.jpg: cannot decode image"),
    (lambda raw: (raw / "40_mask.png").unlink(), r"40_sat.jpg: no mask 40_mask.png beside it"),
    (lambda raw: (raw / "class_dict.csv").write_text("name,r,g,b\nurban_land,0,255\n"),
     r"class_dict.csv, line 2: expected 4 fields"),
    (lambda raw: (raw / "metadata.csv").write_text(
        "image_id,split,sat_image_path,mask_path\n11,train,11_sat.jpg,11_missing.png\n"),
     r"11_missing.png: listed in metadata.csv for image 11 but missing"),
])
def test_damaged_raw_data(plain_dataset, tmp_path, params, damage, message):
    damage(plain_dataset)
    with pytest.raises(PipelineError, match=message):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert_nothing_written(tmp_path / "tiles")


def test_mask_with_different_size(tmp_path, params):
    raw = tmp_path / "raw"
    write_pair(raw, "1", 64, 64)
    write_pair(tmp_path / "other", "1", 64, 48)
    (tmp_path / "other" / "1_mask.png").replace(raw / "1_mask.png")
    with pytest.raises(PipelineError, match=r"1_mask.png: mask is 48x64 but its image 1_sat.jpg is 64x64"):
        run_tile(raw, tmp_path / "tiles", params)
    assert_nothing_written(tmp_path / "tiles")


def test_missing_raw_directory(tmp_path, params):
    with pytest.raises(PipelineError, match=r"data.raw: .*nowhere does not exist"):
        run_tile(tmp_path / "nowhere", tmp_path / "tiles", params)
    assert_nothing_written(tmp_path / "tiles")


@pytest.mark.parametrize("tile_params, message", [
    ({"size": 128, "stride": 128}, r"tile.size \(128\) is larger than image .*/2_sat.jpg \(90x70\)"),
    ({"size": 32, "stride": 0}, r"tile.stride must be at least 1"),
])
def test_bad_tile_params(plain_dataset, tmp_path, tile_params, message):
    params = write_params(tmp_path / "params.yaml", tile=tile_params)
    with pytest.raises(PipelineError, match=message):
        run_tile(plain_dataset, tmp_path / "tiles", params)
    assert_nothing_written(tmp_path / "tiles")


def test_split_ratios_that_do_not_sum_to_one(plain_dataset, tmp_path, params):
    run_tile(plain_dataset, tmp_path / "tiles", params)
    encode.main([str(tmp_path / "tiles"), str(tmp_path / "encoded"), "--report", str(tmp_path / "encode.json")])
    bad = write_params(tmp_path / "bad.yaml", split={"ratios": {"train": 0.6, "val": 0.3, "test": 0.3}})
    with pytest.raises(PipelineError, match=r"split.ratios must sum to 1 \(they sum to 1.2\)"):
        split.main([str(tmp_path / "tiles"), str(tmp_path / "encoded"), str(tmp_path / "splits"),
                    "--distribution", str(tmp_path / "distribution.json"), "--params", str(bad)])
    assert_nothing_written(tmp_path / "splits")
    assert not (tmp_path / "distribution.json").exists()


def test_stage_prints_one_error_line_and_exits_non_zero(plain_dataset, tmp_path, params):
    truncate(plain_dataset / "305_sat.jpg")
    result = subprocess.run([sys.executable, "-m", "stages.tile", str(plain_dataset), str(tmp_path / "tiles"),
                             "--params", str(params)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(f"error: {plain_dataset / '305_sat.jpg'}: cannot decode image")
    assert "Traceback" not in result.stderr
    assert_nothing_written(tmp_path / "tiles")
