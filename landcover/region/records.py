"""Resume records: a small JSON beside each scene's outputs saying what they were made from.

`<id>.record.json` holds the input's identity (io.sources: the sha256 of a local file's bytes, a remote
object's ETag and size), the model's (the sha256 of the file the runtime ran: checkpoint or ONNX, with the
runtime's name) and the mapping settings (predict params and mapping options), and the names of the outputs.
A rerun skips a scene whose record says the same and whose outputs all exist, so a killed run resumes where
it stopped and a changed model, param or input remaps. The record is written last, after every output of
the scene is in place: a scene without one is mapped again, as is one whose record is of another format.

Beside the key, `source_seen` holds a local file's path, size and modification time when it was hashed: a
rerun reuses the hash while the file still has them, rather than reading every input again.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from landcover.geo.mapping import MapOptions
from landcover.io.outputs import write_json
from landcover.io.params import PredictParams
from landcover.io.sources import SourceIdentity

RECORD_SUFFIX = ".record.json"
# predict params that do not change what a scene's outputs hold
NOT_SETTINGS = ("processes",)


def mapping_settings(params: PredictParams, options: MapOptions) -> dict:
    """What the outputs depend on besides the input and the model, as plain JSON values."""
    predict = {name: value for name, value in asdict(params).items() if name not in NOT_SETTINGS}
    return json.loads(json.dumps({"predict": predict, "options": asdict(options)}))


def record_key(source: dict, model: dict, settings: dict) -> dict:
    """What a scene's outputs are made from: the input (its identity's content), model, settings."""
    return {"source": source, "model": model, "settings": settings}


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


def cached_identity(out_dir: Path, image_id: str) -> SourceIdentity | None:
    """The input's identity as the scene's record holds it, for Source.identity to reuse while a local file is
    as it was seen; None without a record or for one of another format."""
    record = read_record(out_dir, image_id)
    key = None if record is None else record.get("key")
    if record is None or not isinstance(key, dict) or not isinstance(key.get("source"), dict):
        return None
    seen = record.get("source_seen")
    return SourceIdentity(key["source"], seen if isinstance(seen, dict) else None)


def write_record(
    out_dir: Path, image_id: str, key: dict, outputs: list[str], scene: dict, seen: dict | None = None
) -> None:
    """The record, written atomically after the outputs: `scene` is what the summary needs (size, CRS), `seen`
    the local input's stat when it was hashed."""
    record = {"key": key, "outputs": outputs, "scene": scene, "source_seen": seen}
    write_json(record_path(out_dir, image_id), record)
