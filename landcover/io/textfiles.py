"""Reading the small text inputs a user supplies (metadata.csv, class_dict.csv) as UTF-8."""

from __future__ import annotations

import codecs
from pathlib import Path

from landcover.io.errors import PipelineError

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_utf8(path: str | Path, what: str) -> str:
    """The text of `path`, UTF-8 with or without the byte-order mark Excel writes.

    Any other encoding raises PipelineError naming the file: decoding it as UTF-8 would fail with a
    traceback, or worse, succeed with NUL characters between the letters (UTF-16 without a BOM).
    Line endings are kept as they are, for the csv module.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PipelineError(f"{path}: cannot read {what} ({error.strerror})") from None
    if data.startswith(_UTF16_BOMS) or b"\x00" in data:
        raise PipelineError(f"{path}: {what} is UTF-16 (or binary), not UTF-8; save it as UTF-8 CSV")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PipelineError(
            f"{path}: {what} is not UTF-8 (byte 0x{data[error.start]:02x} at offset "
            f"{error.start}); save it as UTF-8 CSV"
        ) from None
