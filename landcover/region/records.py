"""Resume records: a small JSON beside each scene's outputs saying what they were made from.

`<id>.record.json` holds the sha256 of the input's bytes, the model's (the file the runtime ran: checkpoint
or ONNX, with the runtime's name) and the mapping settings (predict params and mapping options), and the
names of the outputs. A rerun skips a scene whose record says the same and whose outputs all exist, so a
killed run resumes where it stopped and a changed model, param or input remaps. The record is written
last, after every output of the scene is in place: a scene without one is mapped again.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from landcover.geo.mapping import MapOptions
from landcover.io.outputs import write_json
from landcover.io.params import PredictParams

RECORD_SUFFIX = ".record.json"
# predict params that do not change what a scene's outputs hold
NOT_SETTINGS = ("processes",)


def mapping_settings(params: PredictParams, options: MapOptions) -> dict:
    """What the outputs depend on besides the input and the model, as plain JSON values."""
    predict = {name: value for name, value in asdict(params).items() if name not in NOT_SETTINGS}
    return json.loads(json.dumps({"predict": predict, "options": asdict(options)}))


def record_key(input_sha256: str, model: dict, settings: dict) -> dict:
    """What a scene's outputs are made from: input bytes, model, settings."""
    return {"input_sha256": input_sha256, "model": model, "settings": settings}


def record_path(out_dir: Path, image_id: str) -> Path:
    return Path(out_dir) / f"{image_id}{RECORD_SUFFIX}"


def read_record(out_dir: Path, image_id: str) -> dict | None:
    try:
        record = json.loads(record_path(out_dir, image_id).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_matches(out_dir: Path, image_id: str, key: dict) -> dict | None:
    """The scene's record if it was made from `key` and every output it lists exists, else None."""
    record = read_record(out_dir, image_id)
    if record is None or record.get("key") != key:
        return None
    if not all((Path(out_dir) / name).is_file() for name in record.get("outputs", [])):
        return None
    return record


def write_record(out_dir: Path, image_id: str, key: dict, outputs: list[str], scene: dict) -> None:
    """The record, written atomically after the outputs: `scene` is what the summary needs (size, CRS)."""
    write_json(record_path(out_dir, image_id), {"key": key, "outputs": outputs, "scene": scene})
