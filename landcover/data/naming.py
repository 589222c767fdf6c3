"""How DeepGlobe names its files, and the order its image ids sort in."""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_SUFFIX = "_sat.jpg"
MASK_SUFFIX = "_mask.png"
# Ids become file names and tile-name prefixes (`<id>_y..._x...`), so no '_' or '/' in them.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


def natural_key(image_id: str) -> tuple[int, int | str]:
    """Sort numeric ids numerically (DeepGlobe's are integers) and anything else after, by text."""
    return (0, int(image_id)) if image_id.isdigit() else (1, image_id)


def image_id_of(path: Path) -> str:
    """`119` for `119_sat.jpg`; the file's stem for any other image (`scene.tif` -> `scene`)."""
    return path.name.removesuffix(IMAGE_SUFFIX).removesuffix(path.suffix)
